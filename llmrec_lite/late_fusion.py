"""Late fusion: the item-token model's scores plus a weighted share of the WALS model's own.

The fusion model reads a user's WALS vector as one token of its prompt, and its item
scores compare its last hidden state with the projected WALS item vectors. What it does
not do is rank by the WALS dot product ``user_factors[u] · item_factors[j]`` itself,
which on these datasets is a strong ranker once history is masked. Late fusion adds it
back after the forward pass::

    fused[u, j] = z(model_scores[u])[j] + weight * z(user_factors[u] @ item_factors.T)[j]

where ``z`` standardises each row (mean 0, standard deviation 1), so that ``weight`` means
the same for any logit scale or temperature. ``weight = 0`` is the model alone (its scores
are returned untouched). The weight is an inference setting like masking the history:
training never sees it, so one trained model is scored at every weight from one forward
pass (:func:`lab.runners.fusion_sweep`), and the weight the validation record picks
goes into the profile (``Profile.cf_weight``).

It is not part of the paper's method: the book reports the model alone and the fused
score as separate rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch


# Past this the model's share of the fused score is below float32's resolution (the ranking is
# WALS's alone), and far past it the product overflows float32 into inf and NaN.
MAX_CF_WEIGHT = 1e6


def check_cf_weight(weight: float) -> float:
    """``weight`` as a float, refused unless finite and from 0 to :data:`MAX_CF_WEIGHT`."""
    weight = float(weight)
    if not math.isfinite(weight) or not 0 <= weight <= MAX_CF_WEIGHT:
        raise ValueError(f"cf_weight={weight!r}: the share of the WALS score in the fused ranking must be a "
                         f"finite number from 0 (the model's own scores) to {MAX_CF_WEIGHT:g} (WALS's ranking; "
                         "recommend with the wals model for exactly that).")
    return weight


def standardize(scores: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation (float32; a constant row becomes 0)."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    centred = scores - scores.mean(dim=-1, keepdim=True)
    spread = centred.std(dim=-1, keepdim=True)
    return centred / torch.where(spread > 0, spread, torch.ones_like(spread))


def cf_scores(user_factors: torch.Tensor, item_factors: torch.Tensor, users) -> torch.Tensor:
    """``(len(users), items)`` WALS dot products of the given users with every item (float32, CPU)."""
    index = torch.as_tensor(np.asarray(users, dtype=np.int64), device=user_factors.device)
    return (user_factors[index].float() @ item_factors.float().T).cpu()


def fuse_scores(model_scores: torch.Tensor, wals_scores: torch.Tensor, weight: float) -> torch.Tensor:
    """The fused ranking scores (see the module docstring).

    Args:
        model_scores: ``(users, items)`` item-token scores.
        wals_scores: ``(users, items)`` WALS dot products of the same users (:func:`cf_scores`).
        weight: Share of the WALS score; ``0`` returns ``model_scores`` unchanged.

    Raises:
        ValueError: a negative or non-finite weight, or the two score matrices differ in shape.
    """
    weight = check_cf_weight(weight)
    if weight == 0:
        return model_scores
    if tuple(model_scores.shape) != tuple(wals_scores.shape):
        raise ValueError(f"Late fusion needs one WALS score per model score: got {tuple(model_scores.shape)} "
                         f"model scores and {tuple(wals_scores.shape)} WALS scores.")
    return standardize(model_scores) + weight * standardize(wals_scores)
