"""Inference: the top-``k`` items for some users, from a trained fusion model or a classic baseline.

One entry point, in the shape readers know from ``implicit`` (``recommend(userid, user_items,
N, filter_already_liked_items)``) and recommenders (``recommend_k_items(test, top_k,
remove_seen)``)::

    run = Run.open(profile, "lastfm", "runs/lastfm")
    ids = recommend(run.load("item-token", 2), users=[41], k=10)         # fusion model
    ids = recommend(ClassicRecommender(run, "wals"), users=[41], k=10)   # WALS dot product

Users are 0-based indices; the items come back as the dataset names them (its file's raw
ids), or as item indices with ``as_indices=True``. The prompt is the one a user's target
in ``targets`` is predicted with (``"test"``: the whole history but the last item), and
``exclude_seen`` removes that history from the ranking.
"""

from __future__ import annotations

import numpy as np
import torch

from llmrec_lite.baselines import classic_scorers
from llmrec_lite.evaluate import as_trained_precision, item_token_scores
from llmrec_lite.generation import ItemTrie, constrained_beam_search
from llmrec_lite.late_fusion import cf_scores, fuse_scores
from llmrec_lite.metrics import top_k
from llmrec_lite.templates import get_template
from llmrec_lite.variants import check_targets


def _users(users) -> np.ndarray:
    raw = np.atleast_1d(np.asarray(users))
    if raw.ndim > 1:
        raise ValueError(f"users has shape {raw.shape}: give one user index or a flat list of them.")
    if raw.size and raw.dtype.kind not in "iu":  # 1.5, True or "41" would be cast silently to another user
        raise ValueError(f"users={users!r}: give 0-based user indices as whole numbers (ints), "
                         "e.g. data.raw_user_ids.tolist().index(raw_id) for a user named in the file.")
    return raw.astype(np.int64).reshape(-1)


def _check_users(users: np.ndarray, split) -> None:
    bad = [int(u) for u in users if not 0 <= int(u) < split.num_users]
    if bad:
        raise ValueError(f"Unknown user index {bad[0]}: {split.data.name} has user indices 0-{split.num_users - 1}.")


class ClassicRecommender:
    """A classic baseline of a run (``popularity``, ``wals`` or ``bpr``) behind the same API.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` (its split and WALS factors are used).
        name: ``"popularity"``, ``"wals"`` or ``"bpr"`` (BPR is fitted on construction).
    """

    def __init__(self, run, name: str = "wals"):
        self.split = run.split
        self.name = name
        self._run = run
        # only WALS's user vectors depend on the targets (fitted, or folded in from the history)
        self._fixed = None if name == "wals" else classic_scorers(run.split, run.wals, seed=run.profile.seed,
                                                                   names=(name,))[name]
        self._wals: dict[str, object] = {}

    def score(self, users, targets: str = "test"):
        """``(len(users), items)`` scores for the prompts of ``targets``. WALS reads the user
        vectors the run's results read (:meth:`~llmrec_lite.runs.Run.eval_wals`)."""
        if self._fixed is not None:
            return self._fixed(users)
        if targets not in self._wals:
            self._wals[targets] = classic_scorers(self.split, self._run.eval_wals(targets), names=("wals",))["wals"]
        return self._wals[targets](users)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, **kwargs):
        return recommend(self, users, k=k, exclude_seen=exclude_seen, **kwargs)


def _whole_number(value, name: str, what: str) -> int:
    # bool is an int to Python, and a float would slice silently: both are refused by name
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r}: give a whole number of {what} (at least 1).")
    if value < 1:
        raise ValueError(f"{name}={value!r}: give at least 1 of {what}.")
    return int(value)


@torch.no_grad()
def recommend_indices(model, users, k: int = 10, exclude_seen: bool = True, targets: str = "test",
                      task: str = "sequential", template: str | int = "seen", num_beams: int | None = None,
                      cf_weight: float = 0.0) -> list[np.ndarray]:
    """Item indices per user, best first (see :func:`recommend`).

    Each user's array holds ``min(k, eligible)`` items, where *eligible* is the catalogue less
    that user's history when ``exclude_seen`` is set: a request beyond what can be returned
    gets fewer items, never a seen item or a filler.
    """
    check_targets(targets)
    k = _whole_number(k, "k", "items to recommend")
    if num_beams is not None:
        _whole_number(num_beams, "num_beams", "beams (or None: k beams)")
    users = _users(users)
    split = model.split if isinstance(model, ClassicRecommender) else model.encoder.split
    _check_users(users, split)
    exclude = [np.unique(split.history(int(u), targets)) for u in users] if exclude_seen else None
    eligible = [split.num_items] * len(users) if exclude is None else [split.num_items - len(seen) for seen in exclude]
    want = min(k, max(eligible, default=0))
    if want < 1:
        return [np.zeros(0, dtype=np.int64) for _ in users]
    if isinstance(model, ClassicRecommender):
        scores = torch.as_tensor(model.score(users, targets), dtype=torch.float32)
        top = top_k(scores, want, exclude=exclude)
    else:
        fusion, encoder = model.model, model.encoder
        tmpl = get_template(task, template)
        batch = encoder.batch(tmpl, users, targets).to(fusion.user_factors.device)
        fusion.eval()
        # the user vectors the run's evaluation reads (folded-in ones under eval_user_vectors="folded")
        with fusion.reading_users(model.user_vectors(targets) if model.user_vectors else None):
            top = _fusion_top(model, fusion, batch, users, split, want, exclude, cf_weight, num_beams)
    # top_k puts excluded items last and beam search fills missing slots with -1: both are cut
    rows = [np.asarray(row, dtype=np.int64) for row in top]
    if exclude is not None:
        rows = [row[~np.isin(row, seen)] for row, seen in zip(rows, exclude)]
    return [row[row >= 0][:want] for row in rows]


def _fusion_top(model, fusion, batch, users, split, k, exclude, cf_weight, num_beams) -> np.ndarray:
    if fusion.output == "item-token":
        scores = item_token_scores(fusion, batch, bf16=as_trained_precision(model, None))
        if cf_weight:
            scores = fuse_scores(scores, cf_scores(fusion.user_factors, fusion.item_factors, users), cf_weight)
        return top_k(scores, k, exclude=exclude)
    if cf_weight:
        raise ValueError("Late fusion (cf_weight > 0) needs a score for every item: it applies to the item-token "
                         "side only.")

    trie = ItemTrie.from_catalogue(split.data, fusion.backbone.tokenizer)
    items = constrained_beam_search(fusion, batch, trie, num_beams=max(k, num_beams or k), exclude=exclude)[0].cpu().numpy()
    if exclude is None:
        return items[:, :k]
    # a beam can die in a branch whose items are all excluded; where that left a user short, the
    # search runs again unconstrained with room for every excluded item, which then are cut
    short = [(i >= 0).sum() < min(k, split.num_items - len(seen)) for i, seen in zip(items, exclude)]
    if not any(short):
        return items[:, :k]
    wide = min(split.num_items, k + max(len(seen) for seen in exclude))
    return constrained_beam_search(fusion, batch, trie, num_beams=max(wide, num_beams or wide))[0].cpu().numpy()


def recommend(model, users, k: int = 10, exclude_seen: bool = True, targets: str = "test", task: str = "sequential",
              template: str | int = "seen", as_indices: bool = False, num_beams: int | None = None,
              cf_weight: float = 0.0) -> list[list]:
    """The top-``k`` items for each user.

    Args:
        model: A :class:`~llmrec_lite.runs.Trained` fusion model (either output side; the
            text-id side ranks by trie-constrained beam search with ``max(k, num_beams)`` beams),
            or a :class:`ClassicRecommender`.
        users: One 0-based user index or several.
        k: How many items per user.
        exclude_seen: Leave out the items of the user's history.
        targets: Which prompt: ``"test"`` (history = all but the last item, the held-out test
            target is then the answer to check) or ``"valid"`` (all but the last two).
        task, template: The prompt's wording (fusion models only).
        as_indices: Item indices instead of the dataset's ids.
        cf_weight: Item-token models: late fusion with the WALS score (:mod:`llmrec_lite.late_fusion`;
            a profile's ``cf_weight``); ``0``: the model's own scores.

    Returns:
        One list of item ids (or indices) per user, best first: ``k`` of them, or fewer when
        the user has fewer eligible items (the catalogue less the history with ``exclude_seen``).

    Raises:
        ValueError: an unknown user index, targets, task or template.
    """
    top = recommend_indices(model, users, k, exclude_seen, targets, task, template, num_beams, cf_weight)
    if as_indices:
        return [row.tolist() for row in top]
    data = model.split.data if isinstance(model, ClassicRecommender) else model.encoder.data
    return [np.asarray(data.raw_item_ids)[row].tolist() for row in top]
