"""Classic baselines on the same split and ranking rule: popularity, WALS, BPR-MF.

Every baseline is fitted on the training parts only and scores every item for every
user, so its numbers are directly comparable with the LLM's (full ranking, one target).
"""

from __future__ import annotations

import numpy as np
import torch

from llmrec_lite.metrics import evaluate_scorer


def popularity_scores(split) -> np.ndarray:
    """Training-interaction count of each item (the same for every user)."""
    return split.data.item_popularity(split.train).astype(np.float32)


def fit_bpr(split, factors: int = 64, iterations: int = 100, learning_rate: float = 0.05,
            regularization: float = 0.01, seed: int = 0):
    """BPR-MF with the ``implicit`` library; returns (user_factors, item_factors) as tensors.

    implicit's BPR appends a bias column to the item factors and a constant 1 to the user
    factors, so the dot product includes the item bias.
    """
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate, regularization=regularization,
                                            iterations=iterations, random_state=seed, num_threads=1)
        model.fit(split.train_matrix().tocsr(), show_progress=False)
    return torch.from_numpy(np.asarray(model.user_factors)), torch.from_numpy(np.asarray(model.item_factors))


# short names (command line, ``recommend``) -> row labels of the results table
CLASSIC = {"popularity": "popularity", "wals": "WALS (dot product)", "bpr": "BPR-MF (implicit)"}


def classic_scorers(split, wals, bpr_factors: int = 64, seed: int = 0, names=tuple(CLASSIC)) -> dict:
    """``{short name: score_fn}``; ``score_fn(users)`` gives ``(len(users), items)`` scores.

    Only the baselines in ``names`` are built (BPR trains on first use of this function).
    """
    unknown = set(names) - set(CLASSIC)
    if unknown:
        raise ValueError(f"Unknown baseline {sorted(unknown)[0]!r}; choose one of {', '.join(CLASSIC)}.")
    scorers = {}
    if "popularity" in names:
        pop = torch.as_tensor(popularity_scores(split))
        scorers["popularity"] = lambda u: pop.expand(len(u), -1)
    if "wals" in names:
        scorers["wals"] = lambda u: wals.user_factors[torch.as_tensor(u)] @ wals.item_factors.T
    if "bpr" in names:
        bpr_users, bpr_items = fit_bpr(split, factors=bpr_factors, seed=seed)
        scorers["bpr"] = lambda u: bpr_users[torch.as_tensor(u)] @ bpr_items.T
    return scorers


def classic_baselines(split, wals, users=None, targets: str = "test", bpr_factors: int = 64, seed: int = 0) -> dict:
    """Popularity, WALS dot product and BPR-MF on the same users and rule, keyed by row label."""
    return {CLASSIC[name]: evaluate_scorer(fn, split, users, targets)[0]
            for name, fn in classic_scorers(split, wals, bpr_factors, seed).items()}
