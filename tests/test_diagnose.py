import math

import pytest

from llmrec_lite.diagnose import diagnosis_words, one_sided_fisher

BASE = {"train_vs_test_p": 0.01, "gold_position_median": 400.0, "popularity_position_median": 900.0,
        "uniform_position": 1823.5}


def test_the_verdict_follows_the_gold_position_and_the_training_prompts():
    assert "higher than popularity" in diagnosis_words(BASE) and "not a defect" in diagnosis_words(BASE)
    prior = diagnosis_words({**BASE, "gold_position_median": 1000.0})
    assert "no higher than popularity" in prior and "not yet the user" in prior
    assert "no sign of learning" in diagnosis_words({**BASE, "gold_position_median": 1900.0})
    assert "more often than test users" in diagnosis_words(BASE)
    assert "within noise" in diagnosis_words({**BASE, "train_vs_test_p": 0.5})


def test_fisher_exact_test_against_a_hand_count():
    # 2 hits of 100 against 0 of 100: P(a gets both hits) = C(100,2) / C(200,2)
    assert math.isclose(one_sided_fisher(2, 100, 0, 100), math.comb(100, 2) / math.comb(200, 2))
    assert one_sided_fisher(0, 100, 0, 100) == 1.0
    assert one_sided_fisher(20, 100, 2, 100) < 1e-4 < one_sided_fisher(2, 100, 20, 100)


def test_only_a_text_id_model_is_diagnosed():
    from types import SimpleNamespace

    from llmrec_lite.diagnose import text_id_diagnosis

    with pytest.raises(ValueError, match="text-id model"):
        text_id_diagnosis(SimpleNamespace(model=SimpleNamespace(output="item-token")), None)
