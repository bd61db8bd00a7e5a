"""Rendering prompts into text pieces and embedding slots, and batching them.

A rendered prompt is a list of :class:`Segment` s: text, a *user slot* or an *item slot*.
In the model with embeddings each slot becomes exactly one input vector (the projected
CF embedding); in the text-only baseline the same slots are written as text ids
(``user_5``, ``item_1024``). After the prompt comes `` Response:`` and, for the text-id
output, the target text (``LastFM item_1024``) and end-of-sequence.

:func:`encode` tokenizes one rendered prompt; :func:`collate` pads a list of encoded
prompts on the left (generation continues at the right edge) and builds the
``attention_mask``, ``position_ids`` and ``labels`` (only response tokens count).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from llmrec_lite.data import FIRST_ITEM_ID
from llmrec_lite.templates import Template, training_templates

USER, ITEM, TEXT = "user", "item", "text"
RESPONSE = " Response:"
DEFAULT_HISTORY = 10
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Segment:
    """A piece of a prompt: ``kind`` is ``"text"`` (``value`` a str) or a slot
    (``"user"`` / ``"item"``, ``value`` the 0-based user or item index)."""

    kind: str
    value: str | int
    item: int | None = None  # a text piece that spells a history item's id: that item's index


@dataclass
class Rendered:
    """A prompt rendered from a template.

    Attributes:
        segments: Text pieces and slots, in order, ending with `` Response:``.
        target_text: ``"<Dataset> item_<id>"`` or ``None`` when no target is given.
        template: The template's name (``sequential-3``, ``direct-unseen``).
        user: User index; target: target item index or ``None``.
        prefix: For a training prompt, every item before its target (the whole prefix, not
            only the shown history): what the user's CF vector may be built from when it is
            folded in per prompt (``user_vectors="prefix"``); ``None`` elsewhere.
        known: Every item the user consumed before the prompt's target, shown or not (a
            training prompt: its prefix; an evaluation prompt: the history before its
            target): what the known-items offset of the item scores reads (``known_bias``).
            ``None`` where not recorded.
    """

    segments: list[Segment]
    target_text: str | None
    template: str
    user: int
    target: int | None = None
    prefix: tuple[int, ...] | None = None
    known: tuple[int, ...] | None = None

    def slots(self) -> list[Segment]:
        return [s for s in self.segments if s.kind != TEXT]

    def as_text(self, slot_markers: bool = True) -> str:
        """The prompt as a string; slots shown as ``⟨user_5⟩`` / ``⟨item_1024⟩`` markers
        (each stands for one projected vector, not for text)."""
        parts = []
        for s in self.segments:
            if s.kind == TEXT:
                parts.append(str(s.value))
            elif slot_markers:
                shown = f"user_{int(s.value) + 1}" if s.kind == USER else f"item_{int(s.value) + FIRST_ITEM_ID}"
                parts.append(f"⟨{shown}⟩")
        text = "".join(parts)
        return text + (f" {self.target_text}" if self.target_text else "")


def render(
    template: Template,
    data,
    user: int,
    history: Sequence[int] | None = None,
    target: int | None = None,
    with_embeddings: bool = True,
    max_history: int | None = DEFAULT_HISTORY,
) -> Rendered:
    """Renders one prompt.

    Args:
        template: The wording.
        data: The :class:`~llmrec_lite.data.InteractionData` (ids and dataset name).
        user: 0-based user index.
        history: Item indices, oldest first (sequential task; ignored by direct templates).
        target: Item index of the answer, or ``None`` (inference).
        with_embeddings: Slots (True) or ids written as text (the text-only baseline).
        max_history: Keep the last ``max_history`` items (``None``: all of them).

    Raises:
        ValueError: a sequential template with an empty history, or an unknown user.
    """
    if max_history is not None and max_history < 1:
        raise ValueError(f"max_history={max_history!r}: a prompt shows at least 1 history item (or None for all).")
    if not 0 <= user < data.num_users:
        raise ValueError(f"Unknown user index {user}: {data.name} has users 0-{data.num_users - 1} (ids 1-{data.num_users}).")
    needs_history = "{history}" in template.text
    if needs_history:
        history = list(history if history is not None else [])
        if not history:
            raise ValueError(
                f"Template {template.name} needs a history, but user {data.user_id(user)} has an empty one; "
                "use a direct template for users without history."
            )
        if max_history is not None:
            history = history[-max_history:]

    def user_piece() -> list[Segment]:
        return [Segment(USER, user)] if with_embeddings else [Segment(TEXT, f"user_{data.user_id(user)}")]

    def item_piece(item: int) -> list[Segment]:
        # a text id stays its own piece (never merged), so its last token's position is known
        return [Segment(ITEM, int(item))] if with_embeddings else [Segment(TEXT, f"item_{data.item_id(item)}", int(item))]

    segments: list[Segment] = []
    text = template.text
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        if start < 0:
            segments.append(Segment(TEXT, text[pos:]))
            break
        if start > pos:
            segments.append(Segment(TEXT, text[pos:start]))
        end = text.index("}", start)
        name = text[start + 1 : end]
        if name == "dataset":
            segments.append(Segment(TEXT, data.display_name))
        elif name == "user":
            segments += user_piece()
        elif name == "history":
            for k, item in enumerate(history):
                if k:
                    segments.append(Segment(TEXT, ", "))
                segments += item_piece(item)
        else:
            raise ValueError(f"Template {template.name} has an unknown placeholder {{{name}}}.")
        pos = end + 1
    segments.append(Segment(TEXT, RESPONSE))
    segments = _merge_text(segments)
    target_text = data.item_text(target) if target is not None else None
    return Rendered(segments, target_text, template.name, user, target)


def _merge_text(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for s in segments:
        if s.kind == TEXT and s.item is None and merged and merged[-1].kind == TEXT and merged[-1].item is None:
            merged[-1] = Segment(TEXT, str(merged[-1].value) + str(s.value))
        else:
            merged.append(s)
    return merged


# --------------------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """One tokenized prompt.

    Attributes:
        input_ids: Token ids; slot positions hold a placeholder id (overwritten by embeddings).
        slot_positions: Positions of the slots in ``input_ids``.
        slot_kinds: ``"user"`` / ``"item"`` per slot.
        slot_values: User or item index per slot.
        response_start: First position of the response (labels start here); equals
            ``len(input_ids)`` when there is no target.
        user, target: Indices (``target`` may be ``None``).
        history_positions: Position of each history item, oldest first: its slot, or the last
            token of its text id. The hidden state there has read the history up to that item
            (causal attention), so it can be trained to predict the item after it.
        history_items: The item index at each of those positions.
        prefix: :attr:`Rendered.prefix`.
        known: :attr:`Rendered.known`.
    """

    input_ids: list[int]
    slot_positions: list[int]
    slot_kinds: list[str]
    slot_values: list[int]
    response_start: int
    user: int
    target: int | None = None
    template: str = ""
    history_positions: list[int] = field(default_factory=list)
    history_items: list[int] = field(default_factory=list)
    prefix: tuple[int, ...] | None = None
    known: tuple[int, ...] | None = None

    def next_item_targets(self) -> list[tuple[int, int]]:
        """``(position, item)`` pairs for dense supervision: each history position is paired
        with the item that followed it (the last one with the prompt's target)."""
        if self.target is None:
            return []
        following = self.history_items[1:] + [self.target]
        return list(zip(self.history_positions, following))

    @property
    def num_text_tokens(self) -> int:
        return self.response_start - len(self.slot_positions)

    @property
    def num_response_tokens(self) -> int:
        return len(self.input_ids) - self.response_start


def encode(rendered: Rendered, tokenizer, add_bos: bool = False, add_eos: bool = True) -> Encoded:
    """Tokenizes a rendered prompt; each slot takes exactly one position.

    Text pieces are tokenized one by one (without special tokens), so a slot never
    merges with neighbouring text. The target, when present, is tokenized after the
    prompt and followed by end-of-sequence.
    """
    placeholder = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids: list[int] = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    positions, kinds, values, item_positions, items = [], [], [], [], []
    for s in rendered.segments:
        if s.kind == TEXT:
            ids += tokenizer(str(s.value), add_special_tokens=False)["input_ids"]
            if s.item is not None:
                item_positions.append(len(ids) - 1)
                items.append(int(s.item))
        else:
            if s.kind == ITEM:
                item_positions.append(len(ids))
                items.append(int(s.value))
            positions.append(len(ids))
            kinds.append(s.kind)
            values.append(int(s.value))
            ids.append(placeholder)
    response_start = len(ids)
    if rendered.target_text is not None:
        ids += tokenizer(" " + rendered.target_text, add_special_tokens=False)["input_ids"]
        if add_eos:
            ids.append(tokenizer.eos_token_id)
    return Encoded(ids, positions, kinds, values, response_start, rendered.user, rendered.target, rendered.template,
                   item_positions, items, rendered.prefix, rendered.known)


@dataclass
class Batch:
    """Padded tensors for a list of :class:`Encoded` prompts (left padding).

    ``slot_batch``/``slot_pos`` address every slot; ``slot_is_user`` and ``slot_values``
    say which embedding goes there. ``labels`` are ``-100`` except on response tokens.
    ``next_batch``/``next_pos``/``next_items`` address every history position of prompts
    with a target and the item that followed it (dense next-item supervision).
    ``seen_batch``/``seen_items`` pair every row with each item of its prompt's history, and
    ``next_seen_batch``/``next_seen_items`` every dense position (its index in ``next_items``)
    with the history items it can see (the history term of the item scores).
    ``prefix_batch``/``prefix_items`` pair every row with each item of its training prefix
    (``None`` unless every prompt is a training prompt that carries one);
    ``known_batch``/``known_items`` every row with each item its user consumed before the
    target (``None`` unless every prompt carries :attr:`Rendered.known`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    slot_batch: torch.Tensor
    slot_pos: torch.Tensor
    slot_is_user: torch.Tensor
    slot_values: torch.Tensor
    users: torch.Tensor
    targets: torch.Tensor
    next_batch: torch.Tensor | None = None
    next_pos: torch.Tensor | None = None
    next_items: torch.Tensor | None = None
    seen_batch: torch.Tensor | None = None
    seen_items: torch.Tensor | None = None
    next_seen_batch: torch.Tensor | None = None
    next_seen_items: torch.Tensor | None = None
    prefix_batch: torch.Tensor | None = None
    prefix_items: torch.Tensor | None = None
    known_batch: torch.Tensor | None = None
    known_items: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def to(self, device) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, row: int) -> "Batch":
        """The batch of one prompt (its left padding dropped)."""
        keep = self.attention_mask[row].bool()
        offset = int((~keep).sum())
        slots = self.slot_batch == row
        seen = None if self.seen_batch is None else self.seen_batch == row
        return Batch(
            input_ids=self.input_ids[row : row + 1, offset:],
            attention_mask=self.attention_mask[row : row + 1, offset:],
            position_ids=self.position_ids[row : row + 1, offset:],
            labels=self.labels[row : row + 1, offset:],
            slot_batch=torch.zeros_like(self.slot_batch[slots]),
            slot_pos=self.slot_pos[slots] - offset,
            slot_is_user=self.slot_is_user[slots],
            slot_values=self.slot_values[slots],
            users=self.users[row : row + 1],
            targets=self.targets[row : row + 1],
            seen_batch=None if seen is None else torch.zeros_like(self.seen_batch[seen]),
            seen_items=None if seen is None else self.seen_items[seen],
        )


def collate(items: Sequence[Encoded], pad_token_id: int, with_response: bool = True) -> Batch:
    """Pads on the left and builds masks, positions and labels.

    Args:
        items: Encoded prompts.
        pad_token_id: Id used for padding (never attended to).
        with_response: Keep the response tokens (training); ``False`` cuts every prompt
            at ``response_start`` (generation and item-token scoring).
    """
    seqs = [it.input_ids if with_response else it.input_ids[: it.response_start] for it in items]
    width = max(len(s) for s in seqs)
    n = len(items)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    slot_b, slot_p, slot_u, slot_v = [], [], [], []
    next_b, next_p, next_i = [], [], []
    seen_b, seen_i, next_seen_b, next_seen_i = [], [], [], []
    for row, (it, seq) in enumerate(zip(items, seqs)):
        offset = width - len(seq)
        seen_b += [row] * len(it.history_items)
        seen_i += it.history_items
        for j, (pos, item) in enumerate(it.next_item_targets()):
            # causal attention: the j-th history position sees history items 0..j
            next_seen_b += [len(next_i)] * (j + 1)
            next_seen_i += it.history_items[: j + 1]
            next_b.append(row)
            next_p.append(offset + pos)
            next_i.append(item)
        input_ids[row, offset:] = torch.tensor(seq, dtype=torch.long)
        attention[row, offset:] = 1
        if with_response and it.response_start < len(seq):
            labels[row, offset + it.response_start :] = input_ids[row, offset + it.response_start :]
        for pos, kind, value in zip(it.slot_positions, it.slot_kinds, it.slot_values):
            slot_b.append(row)
            slot_p.append(offset + pos)
            slot_u.append(kind == USER)
            slot_v.append(value)
    has_prefix = bool(items) and all(it.prefix is not None for it in items)
    prefix_b = [row for row, it in enumerate(items) for _ in it.prefix] if has_prefix else []
    prefix_i = [int(i) for it in items for i in it.prefix] if has_prefix else []
    has_known = bool(items) and all(it.known is not None for it in items)
    known_b = [row for row, it in enumerate(items) for _ in it.known] if has_known else []
    known_i = [int(i) for it in items for i in it.known] if has_known else []
    # positions count real tokens only, so a left-padded prompt is seen exactly as unpadded
    position_ids = (attention.cumsum(1) - 1).clamp_min(0)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=position_ids,
        labels=labels,
        slot_batch=torch.tensor(slot_b, dtype=torch.long),
        slot_pos=torch.tensor(slot_p, dtype=torch.long),
        slot_is_user=torch.tensor(slot_u, dtype=torch.bool),
        slot_values=torch.tensor(slot_v, dtype=torch.long),
        users=torch.tensor([it.user for it in items], dtype=torch.long),
        targets=torch.tensor([-1 if it.target is None else it.target for it in items], dtype=torch.long),
        next_batch=torch.tensor(next_b, dtype=torch.long),
        next_pos=torch.tensor(next_p, dtype=torch.long),
        next_items=torch.tensor(next_i, dtype=torch.long),
        seen_batch=torch.tensor(seen_b, dtype=torch.long),
        seen_items=torch.tensor(seen_i, dtype=torch.long),
        next_seen_batch=torch.tensor(next_seen_b, dtype=torch.long),
        next_seen_items=torch.tensor(next_seen_i, dtype=torch.long),
        prefix_batch=torch.tensor(prefix_b, dtype=torch.long) if has_prefix else None,
        prefix_items=torch.tensor(prefix_i, dtype=torch.long) if has_prefix else None,
        known_batch=torch.tensor(known_b, dtype=torch.long) if has_known else None,
        known_items=torch.tensor(known_i, dtype=torch.long) if has_known else None,
    )


def sample_training_prompts(split, task: str, num_samples: int | None, seed: int = 0,
                            with_embeddings: bool = True, max_history: int = DEFAULT_HISTORY) -> list[Rendered]:
    """Renders training prompts: random training samples, each with a random training template.
    Sequential prompts come from the training prefixes (OpenP5's protocol); direct
    prompts use the same (user, target) pairs without the history. Templates are drawn
    from :func:`~llmrec_lite.templates.training_templates` only: the unseen template can
    never appear here.

    Args:
        split: The leave-one-out split.
        task: ``"sequential"`` or ``"direct"``.
        num_samples: How many prompts (``None``: one per training sample).
        seed: Seed for the sample and template draws.
    """
    samples = list(split.train_samples())
    rng = np.random.default_rng(seed)
    if num_samples is not None and num_samples < len(samples):
        chosen = rng.choice(len(samples), size=num_samples, replace=False)
        samples = [samples[i] for i in sorted(chosen)]
    templates = training_templates(task)
    picks = rng.integers(0, len(templates), size=len(samples))
    return [
        replace(render(templates[t], split.data, s.user, s.history, s.target, with_embeddings, max_history),
                prefix=tuple(int(i) for i in s.history), known=tuple(int(i) for i in s.history))
        for s, t in zip(samples, picks)
    ]


# --------------------------------------------------------------------------- the encoder


@dataclass
class PromptEncoder:
    """Turns (template, user, history, target) into model inputs, the same way everywhere.

    It holds everything that decides what a model sees: the dataset (names and ids), the
    tokenizer and its BOS rule, the history length, and whether ids are embedding slots or
    text. A trained run records :meth:`config` and evaluation rebuilds the encoder from
    it, so a model is always prompted the way it was trained.

    Attributes:
        split: The leave-one-out split (its ``data`` names users and items; histories come from it).
        tokenizer: The backbone's tokenizer (``pad_token`` set).
        add_bos: Start every prompt with the BOS token (OpenLLaMA: yes; SmolLM2: no).
        max_history: History items shown in a sequential prompt (the last ones).
        with_embeddings: Slots for ids (the fusion model) or ids as text (the baseline).
    """

    split: object
    tokenizer: object
    add_bos: bool = False
    max_history: int | None = DEFAULT_HISTORY
    with_embeddings: bool = True

    @classmethod
    def for_backbone(cls, split, backbone, max_history: int | None = DEFAULT_HISTORY,
                     with_embeddings: bool = True) -> "PromptEncoder":
        """The encoder for a loaded :class:`~llmrec_lite.backbone.Backbone` (its tokenizer and BOS rule)."""
        return cls(split, backbone.tokenizer, backbone.add_bos, max_history, with_embeddings)

    @property
    def data(self):
        return self.split.data

    def config(self) -> dict:
        """What a run records about its prompts (compared when a trained model is loaded)."""
        return {"add_bos": self.add_bos, "max_history": self.max_history, "with_embeddings": self.with_embeddings}

    def with_config(self, config: dict) -> "PromptEncoder":
        """The same encoder with a recorded :meth:`config` applied."""
        return PromptEncoder(self.split, self.tokenizer, bool(config["add_bos"]), config["max_history"],
                             bool(config["with_embeddings"]))

    def render(self, template: Template, user: int, history: Sequence[int] | None = None,
               target: int | None = None) -> Rendered:
        return render(template, self.data, user, history, target, self.with_embeddings, self.max_history)

    def encode(self, template: Template, user: int, history: Sequence[int] | None = None,
               target: int | None = None) -> Encoded:
        """One prompt, tokenized (with the target's text when ``target`` is given)."""
        return encode(self.render(template, user, history, target), self.tokenizer, add_bos=self.add_bos)

    def encode_rendered(self, rendered: Rendered) -> Encoded:
        return encode(rendered, self.tokenizer, add_bos=self.add_bos)

    def for_user(self, template: Template, user: int, targets: str = "test", with_target: bool = False) -> Encoded:
        """The prompt with which ``user``'s target in ``targets`` (``"valid"``/``"test"``) is predicted."""
        target = int(self.split.target_items(targets)[user]) if with_target else None
        history = self.split.history(int(user), targets)
        rendered = replace(self.render(template, int(user), history, target), known=tuple(int(i) for i in history))
        return self.encode_rendered(rendered)

    def batch(self, template: Template, users: Sequence[int], targets: str = "test") -> Batch:
        """Evaluation prompts of ``users`` (no responses), padded into one batch."""
        encoded = [self.for_user(template, int(u), targets) for u in users]
        return collate(encoded, self.tokenizer.pad_token_id, with_response=False)

    def batches(self, template: Template, users: Sequence[int], targets: str = "test", batch_size: int = 32,
                device=None, desc: str = "evaluate", show_progress: bool = True, by_length: bool = False):
        """Yields ``(user chunk, batch)`` over ``users``, ``batch_size`` at a time.

        Args:
            by_length: Batch the users in order of prompt length (shortest first) instead
                of the given order, so that a batch carries little padding; the chunks
                say which users each batch holds.
        """
        users = np.asarray(users)
        encoded = None
        if by_length:
            encoded = [self.for_user(template, int(u), targets) for u in users]
            order = np.argsort([e.response_start for e in encoded], kind="stable")
            users, encoded = users[order], [encoded[i] for i in order]
        for b in tqdm(range(0, len(users), batch_size), desc=f"{desc} {template.name}", disable=not show_progress):
            chunk = users[b : b + batch_size]
            if encoded is None:
                batch = self.batch(template, chunk, targets)
            else:
                batch = collate(encoded[b : b + batch_size], self.tokenizer.pad_token_id, with_response=False)
            yield chunk, (batch.to(device) if device is not None else batch)

    def training_prompts(self, task: str, num_samples: int | None, seed: int = 0) -> list[Encoded]:
        """Encoded training prompts (see :func:`sample_training_prompts`)."""
        prompts = sample_training_prompts(self.split, task, num_samples, seed=seed, with_embeddings=self.with_embeddings,
                                          max_history=self.max_history)
        return [self.encode_rendered(p) for p in prompts]
