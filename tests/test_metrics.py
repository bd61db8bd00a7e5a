import math

import numpy as np
import pytest
import torch

from llmrec_lite import metrics as M


def test_ranks_hand_made():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.4, 0.4, 0.4], [1.0, 0.0, 2.0, 3.0]])
    # row 0: target 2 (0.5) is behind item 1 -> rank 1
    # row 1: all tied, target 2 -> items 0 and 1 come first (stable order) -> rank 2
    # row 2: target 0 (1.0) behind items 3 and 2 -> rank 2
    ranks = M.target_ranks(scores, [2, 2, 0])
    assert list(ranks) == [1, 2, 2]


def test_exclusion_masks_history_and_ranks_excluded_target_last():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    assert list(M.target_ranks(scores, [2], exclude=[[1]])) == [0]
    assert list(M.target_ranks(scores, [2], exclude=[[2]])) == [4]


def test_hr_and_ndcg_hand_computed():
    ranks = np.array([0, 1, 4, 9, 10])
    assert M.hit_rate(ranks, 5) == pytest.approx(3 / 5)
    assert M.hit_rate(ranks, 10) == pytest.approx(4 / 5)
    expected5 = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5
    expected10 = expected5 + (1 / math.log2(11)) / 5
    assert M.ndcg(ranks, 5) == pytest.approx(expected5)
    assert M.ndcg(ranks, 10) == pytest.approx(expected10)
    out = M.metrics_from_ranks(ranks, (5, 10), "_x")
    assert set(out) == {"hr@5_x", "ndcg@5_x", "hr@10_x", "ndcg@10_x"}


def test_ranks_agree_with_top_k_lists(rng):
    scores = torch.tensor(rng.integers(0, 5, size=(50, 30)).astype(np.float32))  # many ties
    targets = rng.integers(0, 30, size=50)
    lists = M.top_k(scores, 10)
    from_lists = M.metrics_from_ranks(M.ranks_from_lists(lists, targets))
    from_scores = M.metrics_from_ranks(M.target_ranks(scores, targets))
    assert from_lists == from_scores


def test_evaluate_scores_masked_keys():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    out = M.evaluate_scores(scores, [2], histories=[[1]], ks=(1,))
    assert out["hr@1"] == 0.0 and out["hr@1_masked"] == 1.0


def test_paired_bootstrap_separates_a_consistent_gain_only():
    from llmrec_lite.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    base = rng.integers(0, 50, size=400)
    same = paired_bootstrap(base, base)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["verdict"] == "not separated"
    better = np.where(rng.random(400) < 0.3, 0, base)  # 30 % of users get their target first
    result = paired_bootstrap(better, base)
    assert result["difference"] > 0 and result["ci95"][0] > 0 and result["verdict"] == "above"
    assert paired_bootstrap(base, better)["verdict"] == "below"
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(base, base[:10])
