"""Classic baselines on the same split and ranking rule: popularity, WALS, BPR-MF.

Every baseline is fitted on the training parts only and scores every item for every
user, so its numbers are directly comparable with the LLM's (full ranking, one target).
"""

from __future__ import annotations

from implicit.cpu.bpr import BayesianPersonalizedRanking
import numpy as np
from threadpoolctl import threadpool_limits
import torch

from llmrec_lite.metrics import evaluate_dot_product, evaluate_scorer, target_ranks
from llmrec_lite.wals import fold_in


def popularity_scores(split) -> np.ndarray:
    """Training-interaction count of each item (the same for every user)."""
    return split.data.item_popularity(split.train).astype(np.float32)


def fit_bpr(split, factors: int = 64, iterations: int = 100, learning_rate: float = 0.05,
            regularization: float = 0.01, seed: int = 0):
    """BPR-MF with the ``implicit`` library; returns (user_factors, item_factors) as tensors.

    implicit's BPR appends a bias column to the item factors and a constant 1 to the user
    factors, so the dot product includes the item bias.
    """
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


def answer_leak(split, wals, samples: int = 2000, k: int = 10, seed: int = 0) -> dict:
    """How much a fitted WALS user vector knows about the answers of training prompts.

    WALS solves each user's vector from all of that user's training items, so a training
    prompt's answer (a later training item) helped make the vector the prompt reads; a test
    prompt's answer never did. For a seeded sample of training prefixes this scores the
    answer by the WALS dot product, the prefix masked, with the fitted vector and with the
    vector folded in from the prefix alone (:func:`~llmrec_lite.wals.fold_in`), beside the
    validation targets of every user (fitted vector, history masked): no test target is read.

    Returns:
        ``{"fitted": HR@k, "prefix": HR@k, "valid": HR@k, "samples": n, "k": k}``.
    """
    prefixes = list(split.train_samples())
    rng = np.random.default_rng(seed)
    chosen = [prefixes[i] for i in sorted(rng.choice(len(prefixes), size=min(samples, len(prefixes)), replace=False))]
    items = wals.item_factors
    users = torch.as_tensor([s.user for s in chosen])
    answers = [s.target for s in chosen]
    histories = [s.history for s in chosen]
    folded = fold_in(items, histories, wals.config.regularization, wals.config.alpha)
    hit = lambda ranks: float(np.mean(ranks < k))  # noqa: E731
    valid = evaluate_dot_product(wals.user_factors, items, split, targets="valid", ks=(k,))[f"hr@{k}_masked"]
    return {"fitted": hit(target_ranks(wals.user_factors[users] @ items.T, answers, exclude=histories)),
            "prefix": hit(target_ranks(folded @ items.T, answers, exclude=histories)),
            "valid": float(valid), "samples": len(chosen), "k": k}
