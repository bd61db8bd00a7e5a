"""Late fusion of the item-token scores with the WALS score (llmrec_lite.late_fusion)."""

import numpy as np
import pytest
import torch

from llmrec_lite.late_fusion import cf_scores, check_cf_weight, fuse_scores, standardize
from llmrec_lite.metrics import top_k


def test_weight_zero_is_the_model_alone():
    model = torch.randn(3, 7)
    assert fuse_scores(model, torch.randn(3, 7), 0.0) is model


def test_rows_are_standardised_and_a_constant_row_is_left_at_zero():
    rows = standardize(torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]]))
    assert torch.allclose(rows[0].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(rows[0].std(), torch.tensor(1.0), atol=1e-6)
    assert torch.equal(rows[1], torch.zeros(4))


def test_the_weight_does_not_depend_on_either_score_scale():
    g = torch.Generator().manual_seed(0)
    model, wals = torch.randn(5, 40, generator=g), torch.randn(5, 40, generator=g)
    fused = fuse_scores(model, wals, 0.5)
    rescaled = fuse_scores(20.0 * model + 3.0, 0.01 * wals - 1.0, 0.5)
    assert np.array_equal(top_k(fused, 10), top_k(rescaled, 10))


def test_a_large_weight_ranks_as_wals_and_a_small_one_as_the_model():
    g = torch.Generator().manual_seed(1)
    model, wals = torch.randn(6, 50, generator=g), torch.randn(6, 50, generator=g)
    assert np.array_equal(top_k(fuse_scores(model, wals, 1e4), 10), top_k(wals, 10))
    assert np.array_equal(top_k(fuse_scores(model, wals, 1e-5), 10), top_k(model, 10))


def test_cf_scores_are_the_dot_products_of_the_given_users():
    users, items = torch.randn(4, 3), torch.randn(6, 3)
    assert torch.allclose(cf_scores(users, items, [2, 0]), torch.stack([users[2] @ items.T, users[0] @ items.T]))


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf")])
def test_bad_weights_are_refused(weight):
    with pytest.raises(ValueError, match="cf_weight"):
        check_cf_weight(weight)


def test_scores_of_other_users_are_refused():
    with pytest.raises(ValueError, match="one WALS score per model score"):
        fuse_scores(torch.randn(3, 7), torch.randn(2, 7), 0.5)
