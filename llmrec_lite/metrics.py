"""Ranking metrics with one relevant item per user (leave-one-out).

With a single relevant item at 0-based rank ``r``:
``HR@K = 1[r < K]`` and ``NDCG@K = 1[r < K] / log2(r + 2)`` (the ideal DCG is 1).
Ranks are computed over the whole catalogue ("full ranking"), never against sampled
negatives, whose numbers are an order of magnitude higher and not comparable.
Ties are broken by item index, exactly as a stable sort of the scores would order
them, so metrics computed from ranks equal metrics recomputed from top-K lists.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

DEFAULT_KS = (5, 10)


def target_ranks(
    scores: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray | Sequence[int],
    exclude: Sequence[Iterable[int]] | None = None,
) -> np.ndarray:
    """0-based rank of each row's target among all items.

    Args:
        scores: ``(users, items)`` scores, higher is better.
        targets: Target item index per row.
        exclude: Optional per-row item indices to remove from the ranking (for example
            the user's history). An excluded target is ranked last.

    Returns:
        ``(users,)`` int64 ranks.
    """
    scores = torch.as_tensor(scores).detach().to(torch.float32).clone()
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=scores.device)
    if exclude is not None:
        for row, items in enumerate(exclude):
            items = torch.as_tensor(np.asarray(list(items), dtype=np.int64), device=scores.device)
            scores[row, items] = -torch.inf
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_scores = scores[rows, targets].unsqueeze(1)
    item_index = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)
    ahead = (scores > target_scores) | ((scores == target_scores) & (item_index < targets.unsqueeze(1)))
    ranks = ahead.sum(1)
    if exclude is not None:
        # an excluded target cannot be recommended: put it behind every item
        excluded_target = torch.isneginf(target_scores.squeeze(1))
        ranks = torch.where(excluded_target, torch.full_like(ranks, scores.shape[1]), ranks)
    return ranks.cpu().numpy().astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@K: the share of users whose target is in the top K."""
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item: mean of ``1 / log2(rank + 2)`` over hits."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(gains.mean())


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS, suffix: str = "") -> dict:
    """``{"hr@5": ..., "ndcg@5": ..., "hr@10": ..., ...}`` from target ranks."""
    out = {}
    for k in ks:
        out[f"hr@{k}{suffix}"] = hit_rate(ranks, k)
        out[f"ndcg@{k}{suffix}"] = ndcg(ranks, k)
    return out


def ranks_from_lists(top_lists: Sequence[Sequence[int]], gold: Sequence[int]) -> np.ndarray:
    """Ranks from ranked top-K lists (a miss gets rank ``len(list)``, i.e. outside top K)."""
    ranks = []
    for ranked, target in zip(top_lists, gold):
        ranked = list(ranked)
        ranks.append(ranked.index(target) if target in ranked else len(ranked))
    return np.array(ranks, dtype=np.int64)


def top_k(scores: torch.Tensor | np.ndarray, k: int, exclude: Sequence[Iterable[int]] | None = None) -> np.ndarray:
    """Top-``k`` item indices per row, ties broken by item index (stable)."""
    scores = torch.as_tensor(scores).detach().to(torch.float32).clone()
    if exclude is not None:
        for row, items in enumerate(exclude):
            scores[row, torch.as_tensor(np.asarray(list(items), dtype=np.int64))] = -torch.inf
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return order.cpu().numpy()


def evaluate_scores(
    scores: torch.Tensor | np.ndarray,
    targets: Sequence[int],
    histories: Sequence[Iterable[int]] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict:
    """HR@K and NDCG@K, unmasked and (when ``histories`` is given) with history masked.

    The unmasked numbers follow OpenP5's rule (history items stay in the ranking);
    the ``_masked`` ones remove each user's history items first (the S3-Rec rule).
    """
    out = metrics_from_ranks(target_ranks(scores, targets), ks)
    if histories is not None:
        out.update(metrics_from_ranks(target_ranks(scores, targets, exclude=histories), ks, "_masked"))
    return out


def per_user_values(ranks: np.ndarray, key: str = "hr@10") -> np.ndarray:
    """Each user's contribution to ``key`` (``hr@K`` or ``ndcg@K``) from 0-based target ranks."""
    k = int(key.split("@")[1].split("_")[0])
    ranks = np.asarray(ranks)
    if key.startswith("hr"):
        return (ranks < k).astype(float)
    return np.where(ranks < k, 1 / np.log2(ranks + 2.0), 0.0)


def bootstrap_interval(ranks: np.ndarray, key: str = "hr@10", samples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric over users (resampled with replacement)."""
    values = per_user_values(ranks, key)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_bootstrap(ranks_a: np.ndarray, ranks_b: np.ndarray, key: str = "hr@10", samples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """Difference ``a - b`` of a metric over the same users, with its paired bootstrap interval.

    Both rank arrays must be over the same users in the same order: each resample draws
    users, and both models' values of a drawn user move together, so the interval reflects
    how consistently one model beats the other rather than each model's own spread.
    """
    a, b = per_user_values(ranks_a, key), per_user_values(ranks_b, key)
    if a.shape != b.shape:
        raise ValueError(f"Paired comparison needs the same users: {len(a)} ranks against {len(b)}.")
    return {"key": key, **difference_interval(a - b, samples, seed, level)}


def difference_interval(diff: np.ndarray, samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of per-user differences with its bootstrap interval over users, and a verdict:
    ``"above"`` (the interval is above zero), ``"below"`` or ``"not separated"``."""
    diff = np.asarray(diff, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"difference": float(diff.mean()), "ci95": [float(lo), float(hi)], "users": int(len(diff)),
            "verdict": "above" if lo > 0 else ("below" if hi < 0 else "not separated")}


def check_catalogue_size(num_items: int, ks: Sequence[int] = DEFAULT_KS, name: str = "the dataset") -> None:
    """Refuses a catalogue too small for HR@K: with ``K`` items or fewer every list holds the answer.

    Raises:
        ValueError: ``num_items <= max(ks)``.
    """
    if num_items <= max(ks):
        raise ValueError(f"{name} has {num_items} item(s): HR@{max(ks)} and NDCG@{max(ks)} need more than {max(ks)} "
                         f"items to rank, since every top-{max(ks)} list would hold the answer (HR@{max(ks)} = 1 "
                         "for any model). Use a data file with a larger catalogue.")


def evaluate_scorer(score_fn, split, users=None, targets: str = "test", ks: Sequence[int] = DEFAULT_KS,
                    batch_size: int = 2048, top: int = 10) -> tuple[dict, np.ndarray]:
    """HR/NDCG, unmasked and with history masked, of ``score_fn(users) -> (len(users), items)``.

    Users are scored in batches (bounds memory on large catalogues). Also returns the
    top-``top`` lists (unmasked).
    """
    users = np.arange(split.num_users) if users is None else np.asarray(users)
    items = split.target_items(targets)
    ranks, masked, tops = [], [], []
    for b in range(0, len(users), batch_size):
        chunk = users[b : b + batch_size]
        scores = torch.as_tensor(score_fn(chunk), dtype=torch.float32)
        gold = items[chunk]
        ranks.append(target_ranks(scores, gold))
        masked.append(target_ranks(scores, gold, exclude=[split.history(int(u), targets) for u in chunk]))
        tops.append(top_k(scores, top))
    ranks, masked = np.concatenate(ranks), np.concatenate(masked)
    out = metrics_from_ranks(ranks, ks)
    out.update(metrics_from_ranks(masked, ks, "_masked"))
    out["users"] = int(len(users))
    out["hr@10_ci95"] = list(bootstrap_interval(ranks, "hr@10"))
    out["hr@10_masked_ci95"] = list(bootstrap_interval(masked, "hr@10"))
    return out, np.concatenate(tops)


def evaluate_dot_product(user_factors, item_factors, split, targets: str = "test", ks: Sequence[int] = DEFAULT_KS,
                         batch_size: int = 2048) -> dict:
    """Ranks all items by ``x_uᵀ y_i`` for every user; HR/NDCG unmasked and masked."""
    users_t, items_t = torch.as_tensor(user_factors), torch.as_tensor(item_factors)
    return evaluate_scorer(lambda u: users_t[torch.as_tensor(u)] @ items_t.T, split, targets=targets, ks=ks,
                           batch_size=batch_size)[0]
