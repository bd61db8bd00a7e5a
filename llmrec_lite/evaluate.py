"""Evaluation of trained models: leave-one-out ranking over the whole catalogue.

Item-token models score every item in one forward pass per batch of users. Metrics
follow :mod:`llmrec_lite.metrics` (HR@K, NDCG@K with one relevant item), unmasked
(OpenP5's rule) and with each user's history masked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import time

import numpy as np
import torch

from llmrec_lite.baselines import CLASSIC, classic_scorers
from llmrec_lite.generation import ItemTrie, constrained_beam_search
from llmrec_lite.late_fusion import cf_scores, check_cf_weight, fuse_scores
from llmrec_lite.metrics import (DEFAULT_KS, bootstrap_interval, evaluate_scorer,
                                 metrics_from_ranks, ranks_from_lists, target_ranks, top_k)
from llmrec_lite.templates import get_template
from llmrec_lite.variants import check_targets


@dataclass
class Evaluation:
    """Metrics plus what is needed to check them: per-user top lists, gold items and ranks."""

    metrics: dict
    top_items: np.ndarray
    gold: np.ndarray
    users: np.ndarray
    ranks: np.ndarray | None = None
    other_ranks: np.ndarray | None = None  # the other rule's ranks (masked when the metrics are unmasked)
    # masked ranks of the LLM's own term (the head's WALS term left out), for models with a CF term
    llm_alone_ranks: np.ndarray | None = None

    def bootstrap(self, key: str = "hr@10", samples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
        """Percentile bootstrap interval of a metric over users (resampled with replacement)."""
        ranks = self.ranks if self.ranks is not None else ranks_from_lists(self.top_items, self.gold)
        return bootstrap_interval(ranks, key, samples, seed, level)

    def rankings(self, data) -> list[dict]:
        """One record per user: the ranked top-K items and the gold item, as the prompts name them
        (``user``, ``gold``, ``top``) and as the data file names them (``*_in_file``). A slot beam
        search left empty (``-1``) is dropped, so a list may be shorter than K."""
        records = []
        for u, g, row in zip(self.users.tolist(), self.gold.tolist(), self.top_items.tolist()):
            row = [i for i in row if i >= 0]
            records.append({"user": data.user_id(u), "gold": data.item_id(g), "top": [data.item_id(i) for i in row],
                            "user_in_file": int(data.raw_user_ids[u]), "gold_in_file": int(data.raw_item_ids[g]),
                            "top_in_file": [int(data.raw_item_ids[i]) for i in row]})
        return records


def evaluation_users(split, num_users: int | None, seed: int = 0) -> np.ndarray:
    """All users, or a seeded subset (sorted) of ``num_users``."""
    if num_users is not None and num_users < 1:
        raise ValueError(f"users={num_users!r}: evaluate at least 1 user (or leave it out for all of them).")
    if num_users is None or num_users >= split.num_users:
        return np.arange(split.num_users)
    return np.sort(np.random.default_rng(seed).choice(split.num_users, size=num_users, replace=False))


def as_trained_precision(trained, bf16: bool | None) -> bool:
    """``bf16`` if given, else the precision the model was trained in (a
    :class:`~llmrec_lite.runs.Trained` carries its settings; a bare model: float32)."""
    if bf16 is not None:
        return bool(bf16)
    settings = getattr(trained, "settings", None)
    return bool(getattr(settings, "bf16", False))


@torch.no_grad()
def item_token_scores(model, batch, items: torch.Tensor | None = None, bf16: bool = False,
                      llm_alone: bool = False):
    """``(batch, items)`` float32 scores on the CPU: the backbone under bfloat16 autocast when
    ``bf16`` (as in training), the scores themselves in float32 (see
    :meth:`~llmrec_lite.fusion.FusionModel.item_logits`).

    ``llm_alone``: return ``(scores, scores without the head's WALS term)`` from the same
    forward pass (the second is ``None`` for a model without a CF term).
    """
    device = model.user_factors.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = model.last_hidden(batch)
    scores = model.answer_scores(hidden, batch, items).float().cpu()
    if not llm_alone:
        return scores
    alone = model.answer_scores(hidden, batch, items, cf_term=False).float().cpu() if model.cf_term else None
    return scores, alone


def _unpack(trained, encoder):
    """``(model, encoder)`` from a :class:`~llmrec_lite.runs.Trained` or a model and its encoder."""
    if encoder is None:
        if not hasattr(trained, "encoder"):
            raise TypeError("Pass a trained model from Run.load (it carries its prompt encoder), or model and encoder.")
        return trained.model, trained.encoder
    return trained, encoder


@torch.no_grad()
def item_token_batches(model, encoder, task: str, template: str | int, targets: str, users, batch_size: int = 32,
                       bf16: bool = False, cf_weight: float = 0.0, show_progress: bool = True, llm_alone: bool = False):
    """Yields ``(user indices, (len, items) scores)`` for every batch of ``users``' prompts
    (``llm_alone``: ``(user indices, scores, scores of the LLM term alone or None)``, see
    :func:`item_token_scores`).

    Prompts are batched by length (little padding); the catalogue's item matrix is projected
    once for all batches, and the backbone runs on weights cast once and with its LoRA
    adapters merged (:meth:`~llmrec_lite.fusion.FusionModel.compute_weights`). With ``cf_weight > 0`` the scores are late-fused with the WALS dot
    product (:func:`llmrec_lite.late_fusion.fuse_scores`).
    """
    cf_weight = check_cf_weight(cf_weight)
    model.eval()
    items = model.item_matrix()
    device = model.user_factors.device
    with model.compute_weights(bf16, merge_lora=True):  # same scores up to rounding, about twice as fast
        for chunk, batch in encoder.batches(get_template(task, template), users, targets, batch_size, device,
                                            "evaluate", show_progress, by_length=True):
            scores, alone = (item_token_scores(model, batch, items, bf16, llm_alone=True) if llm_alone
                             else (item_token_scores(model, batch, items, bf16), None))
            if cf_weight:
                scores = fuse_scores(scores, cf_scores(model.user_factors, model.item_factors, chunk), cf_weight)
            yield (chunk, scores, alone) if llm_alone else (chunk, scores)


@torch.no_grad()
def evaluate_item_token(trained, encoder=None, task: str = "sequential", template: str | int = "seen",
                        targets: str = "test", users=None, batch_size: int = 32, ks=DEFAULT_KS, top: int = 10,
                        mask_history: bool = False, bf16: bool | None = None, cf_weight: float = 0.0,
                        user_factors: torch.Tensor | None = None, show_progress: bool = True) -> Evaluation:
    """Ranks the catalogue for every user with an item-token model.

    Args:
        trained: A :class:`~llmrec_lite.runs.Trained` model (or a
            :class:`~llmrec_lite.fusion.FusionModel` with ``output="item-token"``, and ``encoder``).
        encoder: The :class:`~llmrec_lite.prompts.PromptEncoder` the model was trained with
            (taken from ``trained`` when omitted).
        task, template: Which prompt (``"seen"`` is training template 0, ``"unseen"`` the held-out one).
        targets: ``"test"`` or ``"valid"`` targets (model selection uses ``"valid"``).
        users: User indices (default: all).
        mask_history: Rank with each user's history removed. The plain metric keys and the
            top lists follow this rule; the other rule's HR/NDCG are added with a suffix
            (``_masked`` or ``_unmasked``).
        bf16: Run the backbone under bfloat16 autocast (``None``: as the model was trained).
        cf_weight: Late fusion with the WALS score (:mod:`llmrec_lite.late_fusion`; 0: the model alone).
        user_factors: ``(users, k)`` user vectors the prompts read (and late fusion scores
            with) instead of the fitted ones, e.g.
            :func:`~llmrec_lite.wals.history_user_factors` for ``targets``.

    The work is done once (:func:`item_token_batches`), and both rules' ranks come from the
    same scores. A model whose head adds the WALS score (``cf_term``) is also ranked by its
    LLM term alone, history masked (``llm_alone_ranks``; metrics ``*_llm_alone_masked``), from
    the same forward pass.
    """
    bf16 = as_trained_precision(trained, bf16)
    model, encoder = _unpack(trained, encoder)
    split = encoder.split
    users = np.arange(split.num_users) if users is None else np.asarray(users)
    tmpl = get_template(task, template)
    gold_items = split.target_items(check_targets(targets))
    ranks, masked, alone_ranks, tops, order = [], [], [], [], []
    start = time.perf_counter()
    with model.reading_users(user_factors):
        for chunk, scores, alone in item_token_batches(model, encoder, task, template, targets, users, batch_size,
                                                       bf16, cf_weight, show_progress, llm_alone=True):
            gold = gold_items[chunk]
            histories = [split.history(int(u), targets) for u in chunk]
            ranks.append(target_ranks(scores, gold))
            masked.append(target_ranks(scores, gold, exclude=histories))
            if alone is not None:
                alone_ranks.append(target_ranks(alone, gold, exclude=histories))
            tops.append(top_k(scores, top, exclude=histories if mask_history else None))
            order.append(chunk)
    seconds = time.perf_counter() - start
    # back to the order of ``users``
    position = {int(u): i for i, u in enumerate(np.concatenate(order))}
    back = np.array([position[int(u)] for u in users], dtype=np.int64)
    ranks, masked, tops = (np.concatenate(x)[back] for x in (ranks, masked, tops))
    alone_ranks = np.concatenate(alone_ranks)[back] if alone_ranks else None
    plain, other = (masked, ranks) if mask_history else (ranks, masked)
    metrics = metrics_from_ranks(plain, ks)
    metrics.update(metrics_from_ranks(other, ks, "_unmasked" if mask_history else "_masked"))
    if alone_ranks is not None:
        metrics.update(metrics_from_ranks(alone_ranks, ks, "_llm_alone_masked"))
    metrics.update({"users": int(len(users)), "seconds": seconds, "users_per_second": len(users) / max(seconds, 1e-9),
                    "task": task, "template": tmpl.name, "targets": targets, "masked": mask_history})
    metrics["bf16"] = bf16
    if cf_weight:
        metrics["cf_weight"] = float(cf_weight)
    return Evaluation(metrics, tops, gold_items[users], users, plain, other, alone_ranks)


def evaluate_earlier_targets(trained, steps_back: int, **kwargs) -> Evaluation:
    """:func:`evaluate_item_token` on targets ``steps_back`` items before each user's test
    target, each predicted from the items before it (see
    :meth:`~llmrec_lite.split.LeaveOneOutSplit.earlier`): 0 is the test target, 1 the
    validation target, 2 the last training target. A diagnostic, not a selection rule."""
    _, encoder = _unpack(trained, None)  # a Run.load model: it carries its encoder and precision
    shifted = replace(trained, encoder=replace(encoder, split=encoder.split.earlier(steps_back)))
    return evaluate_item_token(shifted, targets="test", **kwargs)


TARGET_DISTANCES = {0: "test target", 1: "validation target", 2: "last training target"}


def accuracy_by_target_distance(models: dict, split, wals=None, steps_back=(2, 1, 0), users=None,
                                known: dict | None = None, show_progress: bool = True) -> list[dict]:
    """HR@10 (unmasked and masked) of fixed, trained models as the target moves back through
    each user's sequence: the last training target, the validation target, the test target.

    The models do not change, only which item they must predict (from everything before it),
    so the rows show how accuracy depends on the target's distance from the training period.

    Args:
        models: ``{label: Trained}`` item-token models (from :meth:`~llmrec_lite.runs.Run.load`).
        split: The run's :class:`~llmrec_lite.split.LeaveOneOutSplit`.
        wals: The run's fitted WALS model: adds the WALS dot product and popularity (both from
            the real training part, like the models) as reference rows.
        steps_back: Which targets (see :data:`TARGET_DISTANCES`).
        users: User indices (default: all).
        known: ``{label: metrics}`` of the models on the test target, already computed on the
            same users (the results table's rows): used for ``steps_back=0`` instead of
            ranking the catalogue again.

    Returns:
        One dict per model and target: ``model``, ``steps_back``, ``target``, ``hr@10``,
        ``hr@10_masked``, ``users``.
    """
    scorers = {} if wals is None else {CLASSIC[k]: fn for k, fn in classic_scorers(
        split, wals, names=("wals", "popularity")).items()}
    known, rows = known or {}, []
    for k in steps_back:
        shifted = split.earlier(k)
        results = {label: known[label] if k == 0 and label in known else
                   evaluate_earlier_targets(t, k, users=users, show_progress=show_progress).metrics
                   for label, t in models.items()}
        results.update({label: evaluate_scorer(fn, shifted, users, "test")[0] for label, fn in scorers.items()})
        rows += [{"model": label, "steps_back": k, "target": TARGET_DISTANCES.get(k, f"{k} items before the test target"),
                  "hr@10": m["hr@10"], "hr@10_masked": m["hr@10_masked"], "users": m["users"]}
                 for label, m in results.items()]
    return rows


@torch.no_grad()
def evaluate_text_id(trained, encoder=None, task: str = "sequential", template: str | int = "seen",
                     targets: str = "test", users=None, batch_size: int = 16, num_beams: int = 10,
                     mask_history: bool = False, ks=DEFAULT_KS, trie=None, user_factors: torch.Tensor | None = None,
                     show_progress: bool = True) -> Evaluation:
    """Top-``num_beams`` lists by trie-constrained beam search for a text-id model.

    The beams are the ranking: an item outside them counts as a miss at every K up to
    ``num_beams`` (OpenP5's protocol). ``mask_history`` forbids the user's history items
    in the search (its metrics are reported under the plain keys, with ``masked: true``).
    ``user_factors``: as in :func:`evaluate_item_token`.
    """
    model, encoder = _unpack(trained, encoder)
    split = encoder.split
    users = np.arange(split.num_users) if users is None else np.asarray(users)
    tmpl = get_template(task, template)
    gold_items = split.target_items(check_targets(targets))
    trie = trie or ItemTrie.from_catalogue(split.data, model.backbone.tokenizer)
    tops = []
    start = time.perf_counter()
    model.eval()
    # merged adapters only: the search runs without autocast, so the weights keep their precision
    with model.reading_users(user_factors), model.compute_weights(False, merge_lora=True):
        for chunk, batch in encoder.batches(tmpl, users, targets, batch_size, model.user_factors.device, "beam search",
                                            show_progress):
            exclude = [split.history(int(u), targets) for u in chunk] if mask_history else None
            items, _ = constrained_beam_search(model, batch, trie, num_beams=num_beams, exclude=exclude)
            tops.append(items.cpu().numpy())
    seconds = time.perf_counter() - start
    top_items = np.concatenate(tops)
    ranks = ranks_from_lists(top_items, gold_items[users])
    metrics = metrics_from_ranks(ranks, ks)
    metrics.update({"users": int(len(users)), "seconds": seconds, "users_per_second": len(users) / max(seconds, 1e-9),
                    "task": task, "template": tmpl.name, "targets": targets, "masked": mask_history,
                    "num_beams": num_beams})
    return Evaluation(metrics, top_items, gold_items[users], users, ranks)


def evaluate_model(trained, encoder=None, **kwargs) -> Evaluation:
    """Dispatches on the model's output side (item-token: full scores; text-id: beam search).

    ``trained`` is a :class:`~llmrec_lite.runs.Trained` (from :meth:`Run.load`), so the
    prompts are encoded as in its training; or pass a model and its encoder.
    """
    bf16 = as_trained_precision(trained, kwargs.pop("bf16", None))  # read before unpacking drops the settings
    model, encoder = _unpack(trained, encoder)
    if model.output == "item-token":
        kwargs.pop("num_beams", None)
        return evaluate_item_token(model, encoder, bf16=bf16, **kwargs)
    if kwargs.pop("cf_weight", 0.0):
        raise ValueError("Late fusion (cf_weight > 0) needs a score for every item: it applies to the item-token "
                         "side only; evaluate this text-id model with cf_weight=0.")
    return evaluate_text_id(model, encoder, **kwargs)
