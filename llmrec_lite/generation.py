"""Ranking the catalogue with a text-id model: trie-constrained beam search and exact scoring.

Every item's answer text (`` LastFM item_1024`` plus end-of-sequence) is a token sequence;
together they form a prefix trie. Beam search may only follow trie edges, so every
finished beam is a real catalogue item (OpenP5's protocol, 10 beams).

The search here is batched across users and never calls Python per beam: the trie is
stored as padded tensors (``child_tokens[node]``, ``child_nodes[node]``), so one step
gathers the allowed tokens of all beams of all users at once, adds their log-probabilities
and keeps the best ``num_beams`` per user with one ``topk``. The KV cache of the prompt is
computed once and reordered between steps.

:func:`exact_item_scores` scores *every* catalogue item's log-likelihood given the prompt
(walking the trie once, each node's distribution computed from its parent's KV cache) to
measure how often beam search misses the true top K; :func:`sequence_item_scores` is its
readable reference, one teacher-forced answer per item.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from llmrec_lite.backbone import cache_of, with_cache


@dataclass
class ItemTrie:
    """A prefix trie over item token sequences, as tensors.

    Attributes:
        child_tokens: ``(nodes, max_children)`` token ids of each node's children, ``-1`` padded.
        child_nodes: ``(nodes, max_children)`` the children's node ids (``0`` where padded).
        leaf_item: ``(nodes,)`` the item a node completes, or ``-1``.
        sequences: The token sequence of every item.
    """

    child_tokens: torch.Tensor
    child_nodes: torch.Tensor
    leaf_item: torch.Tensor
    sequences: list[list[int]]

    @classmethod
    def build(cls, sequences: list[list[int]]) -> "ItemTrie":
        children: list[dict[int, int]] = [{}]
        leaf = [-1]
        for item, seq in enumerate(sequences):
            node = 0
            for token in seq:
                if leaf[node] != -1:
                    raise ValueError(f"Item {leaf[node]}'s sequence is a prefix of item {item}'s: end every sequence with EOS.")
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children[node][token] = nxt
                    children.append({})
                    leaf.append(-1)
                node = nxt
            if leaf[node] != -1:
                raise ValueError(f"Items {leaf[node]} and {item} have the same token sequence.")
            if children[node]:
                raise ValueError(f"Item {item}'s sequence is a prefix of another's: end every sequence with EOS.")
            leaf[node] = item
        width = max(1, max(len(c) for c in children))
        tokens = torch.full((len(children), width), -1, dtype=torch.long)
        nodes = torch.zeros((len(children), width), dtype=torch.long)
        for n, c in enumerate(children):
            for j, (tok, child) in enumerate(sorted(c.items())):
                tokens[n, j], nodes[n, j] = tok, child
        return cls(tokens, nodes, torch.tensor(leaf, dtype=torch.long), [list(s) for s in sequences])

    @classmethod
    def from_catalogue(cls, data, tokenizer) -> "ItemTrie":
        """The trie of every item's answer text, as :func:`~llmrec_lite.prompts.encode` writes it."""
        eos = tokenizer.eos_token_id
        seqs = [tokenizer(" " + data.item_text(i), add_special_tokens=False)["input_ids"] + [eos]
                for i in range(data.num_items)]
        return cls.build(seqs)

    @property
    def depth(self) -> int:
        return max(len(s) for s in self.sequences)

    def to(self, device) -> "ItemTrie":
        return ItemTrie(self.child_tokens.to(device), self.child_nodes.to(device), self.leaf_item.to(device), self.sequences)


def forced_prefix(trie: ItemTrie) -> tuple[list[int], int]:
    """Tokens every answer starts with (the dataset name, ``item_``) and the node they lead to."""
    tokens, node = [], 0
    while int((trie.child_tokens[node] >= 0).sum()) == 1 and int(trie.leaf_item[node]) < 0:
        tokens.append(int(trie.child_tokens[node, 0]))
        node = int(trie.child_nodes[node, 0])
    return tokens, node


def _prompt_forward(model, batch, forced: list[int] | None = None):
    """Runs the prompt, plus the tokens every answer starts with, in one pass.

    Returns (log-probs of the next token, cache, last position, attention mask, summed
    log-probability of the forced tokens). Appending the forced tokens to the prompt saves
    one sequential decoding step each, over all beams.
    """
    embeds, mask, positions = model.input_embeddings(batch), batch.attention_mask, batch.position_ids
    forced = forced or []
    if forced:
        ids = torch.tensor(forced, device=embeds.device).expand(embeds.shape[0], -1)
        embeds = torch.cat([embeds, model.model.get_input_embeddings()(ids).to(embeds.dtype)], dim=1)
        mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
        positions = torch.cat([positions, positions[:, -1:] + 1 + torch.arange(len(forced), device=ids.device)], dim=1)
    # only the last len(forced) + 1 positions need the (vocabulary-sized) LM head
    out = model.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=len(forced) + 1)
    logp = out.logits[:, -len(forced) - 1 :].float().log_softmax(-1)
    forced_score = torch.zeros(embeds.shape[0], device=embeds.device)
    for i, token in enumerate(forced):
        forced_score = forced_score + logp[:, i, token]
    return logp[:, -1], cache_of(out), positions[:, -1], mask, forced_score


@torch.no_grad()
def constrained_beam_search(model, batch, trie: ItemTrie, num_beams: int = 10,
                            exclude: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``num_beams`` catalogue items per prompt by trie-constrained beam search.

    Args:
        model: A text-id :class:`~llmrec_lite.fusion.FusionModel`.
        batch: Prompts built with ``with_response=False`` (left padded).
        trie: The catalogue trie (:meth:`ItemTrie.from_catalogue`).
        num_beams: Beams per prompt (OpenP5: 10 = the largest K reported).
        exclude: Optional per-prompt item indices that may not be returned (e.g. history).

    Returns:
        ``(items, scores)``, each ``(batch, num_beams)``, best first; scores are summed
        log-probabilities. An item slot is ``-1`` only if the catalogue has fewer items.
    """
    device = batch.input_ids.device
    trie = trie.to(device)
    bsz, k = batch.input_ids.shape[0], num_beams
    banned = None
    if exclude is not None:
        banned = torch.zeros((bsz, int(trie.leaf_item.max()) + 1), dtype=torch.bool, device=device)
        for row, items in enumerate(exclude):
            if len(items):
                banned[row, torch.as_tensor(np.asarray(items), device=device)] = True

    forced, start_node = forced_prefix(trie)
    logp, cache, last_pos, mask, forced_score = _prompt_forward(model, batch, forced)
    # every prompt starts with one live beam where the answers branch; the others start dead (-inf)
    node = torch.full((bsz, k), start_node, dtype=torch.long, device=device)
    score = torch.full((bsz, k), -torch.inf, device=device)
    score[:, 0] = forced_score
    logp = logp.unsqueeze(1).expand(bsz, k, -1)
    cache.batch_repeat_interleave(k)
    mask = mask.repeat_interleave(k, dim=0)
    positions = last_pos.repeat_interleave(k, dim=0).unsqueeze(1)
    rows = torch.arange(bsz, device=device).unsqueeze(1)
    for step in range(trie.depth + 1):
        finished = trie.leaf_item[node] >= 0
        if bool(finished.all()):
            break
        tokens = trie.child_tokens[node]  # (B, K, C)
        valid = tokens >= 0
        cand = score.unsqueeze(-1) + torch.gather(logp, 2, tokens.clamp_min(0))
        cand = cand.masked_fill(~valid, -torch.inf)
        children = trie.child_nodes[node]
        if banned is not None:
            item = trie.leaf_item[children]
            hit = (item >= 0) & banned[rows.unsqueeze(-1).expand_as(item), item.clamp_min(0)]
            cand = cand.masked_fill(hit, -torch.inf)
        # a finished beam keeps its score through a single "stay" candidate
        stay = torch.full_like(cand, -torch.inf)
        stay[..., 0] = score
        cand = torch.where(finished.unsqueeze(-1), stay, cand)
        children = torch.where(finished.unsqueeze(-1), node.unsqueeze(-1).expand_as(children), children)
        width = cand.shape[-1]
        best, flat = cand.reshape(bsz, -1).topk(k, dim=1)
        origin = flat // width
        node = torch.gather(children.reshape(bsz, -1), 1, flat)
        chosen = torch.gather(tokens.clamp_min(0).reshape(bsz, -1), 1, flat)
        score = best
        # feed the chosen tokens; reorder the cache so each beam continues its parent's state
        index = (rows * k + origin).reshape(-1)
        cache.reorder_cache(index)
        mask = torch.cat([mask[index], torch.ones((bsz * k, 1), dtype=mask.dtype, device=device)], dim=1)
        positions = positions[index] + 1
        out = model.model(input_ids=chosen.reshape(-1, 1), attention_mask=mask, position_ids=positions,
                          **with_cache(cache))
        cache = cache_of(out)
        logp = out.logits[:, -1].float().log_softmax(-1).reshape(bsz, k, -1)
    items = trie.leaf_item[node]
    items = torch.where(torch.isfinite(score), items, torch.full_like(items, -1))
    return items, score


@torch.no_grad()
def exact_item_scores(model, batch, trie: ItemTrie, chunk_size: int = 128) -> torch.Tensor:
    """Log-likelihood of every catalogue item's answer for each prompt: ``(batch, items)``.

    The trie is walked level by level: each node's next-token distribution is computed once,
    from its parent's KV cache plus one token, and shared by every item below it. That feeds one
    token per trie node instead of one per item and answer token (several times fewer on a
    catalogue of numbered ids); :func:`sequence_item_scores` is the same sum, item by item.
    ``chunk_size`` bounds how many nodes' caches are held at once.
    """
    device = batch.input_ids.device
    trie = trie.to(device)
    num_items = int(trie.leaf_item.max()) + 1
    out_scores = torch.full((batch.input_ids.shape[0], num_items), -torch.inf, device=device)
    forced, start = forced_prefix(trie)
    for row in range(batch.input_ids.shape[0]):
        logp, cache, last_pos, mask, forced_score = _prompt_forward(model, batch.select(row), forced)
        _score_below(model, trie, torch.tensor([start], device=device), forced_score, logp, cache, mask,
                     last_pos.view(1), out_scores[row], chunk_size)
    return out_scores


def _score_below(model, trie: ItemTrie, nodes, scores, logp, cache, mask, positions, out, chunk_size: int) -> None:
    """Writes into ``out`` the score of every item below ``nodes`` (their summed log-probabilities
    ``scores``, next-token log-probs ``logp``, KV ``cache`` and ``mask`` row by row)."""
    tokens = trie.child_tokens[nodes]
    parent, slot = (tokens >= 0).nonzero(as_tuple=True)
    token, child = tokens[parent, slot], trie.child_nodes[nodes][parent, slot]
    child_score = scores[parent] + logp[parent, token]
    item = trie.leaf_item[child]
    done = item >= 0
    out[item[done]] = child_score[done]
    inner = (~done).nonzero(as_tuple=True)[0]
    for start in range(0, len(inner), chunk_size):  # depth first: a chunk's subtree before the next chunk
        pick = inner[start : start + chunk_size]
        rows = parent[pick]
        sub = copy.deepcopy(cache)
        sub.reorder_cache(rows)
        sub_mask = torch.cat([mask[rows], torch.ones((len(rows), 1), dtype=mask.dtype, device=mask.device)], dim=1)
        sub_pos = positions[rows] + 1
        step = model.model(input_ids=token[pick].unsqueeze(1), attention_mask=sub_mask, position_ids=sub_pos.unsqueeze(1),
                           **with_cache(sub))
        _score_below(model, trie, child[pick], child_score[pick], step.logits[:, -1].float().log_softmax(-1),
                     cache_of(step), sub_mask, sub_pos, out, chunk_size)


@torch.no_grad()
def sequence_item_scores(model, batch, trie: ItemTrie, chunk_size: int = 256) -> torch.Tensor:
    """The readable reference for :func:`exact_item_scores`: every item's whole answer
    teacher-forced after the prompt, ``(batch, items)`` log-likelihoods.

    The prompt is run once; its KV cache is copied for a chunk of items at a time, and the
    items' token sequences (grouped by length) are scored in one forward pass per chunk.
    """
    device = batch.input_ids.device
    seqs = trie.sequences
    out_scores = torch.empty((batch.input_ids.shape[0], len(seqs)), device=device)
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_length.setdefault(len(s), []).append(i)
    for row in range(batch.input_ids.shape[0]):
        single = batch.select(row)
        first_logp, cache, last_pos, mask, _ = _prompt_forward(model, single)
        for length, items in by_length.items():
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                n = len(chunk)
                toks = torch.tensor([seqs[i] for i in chunk], device=device)  # (n, length)
                c = _copy_cache(cache, n)
                m = torch.cat([mask.expand(n, -1), torch.ones((n, length - 1), dtype=mask.dtype, device=device)], 1)
                pos = last_pos.view(1, 1) + 1 + torch.arange(length - 1, device=device).view(1, -1)
                total = first_logp[0, toks[:, 0]]
                if length > 1:
                    logits = model.model(input_ids=toks[:, :-1], attention_mask=m, position_ids=pos.expand(n, -1),
                                         **with_cache(c)).logits.float().log_softmax(-1)
                    total = total + torch.gather(logits, 2, toks[:, 1:].unsqueeze(-1)).squeeze(-1).sum(1)
                out_scores[row, torch.tensor(chunk, device=device)] = total
    return out_scores


def _copy_cache(cache, n: int):
    c = copy.deepcopy(cache)
    c.batch_repeat_interleave(n)
    return c
