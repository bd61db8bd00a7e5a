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


def classic_baselines(split, wals, users=None, stage: str = "test", bpr_factors: int = 64, seed: int = 0) -> dict:
    """Popularity, WALS dot product and BPR-MF on the same users and rule."""
    pop = torch.as_tensor(popularity_scores(split))
    bpr_users, bpr_items = fit_bpr(split, factors=bpr_factors, seed=seed)
    scorers = {
        "popularity": lambda u: pop.expand(len(u), -1),
        "WALS (dot product)": lambda u: wals.user_factors[torch.as_tensor(u)] @ wals.item_factors.T,
        "BPR-MF (implicit)": lambda u: bpr_users[torch.as_tensor(u)] @ bpr_items.T,
    }
    return {name: evaluate_scorer(fn, split, users, stage)[0] for name, fn in scorers.items()}
