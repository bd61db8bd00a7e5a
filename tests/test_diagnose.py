import pytest

from llmrec_lite.diagnose import diagnosis_words

BASE = {"train_hr@10": 0.02, "test_hr@10": 0.0, "gold_position_median": 400.0, "uniform_position": 1823.5}


def test_the_verdict_follows_the_gold_position_and_the_training_prompts():
    learning = diagnosis_words(BASE)
    assert "better than unseen" in learning and "not a defect" in learning
    flat = diagnosis_words({**BASE, "gold_position_median": 1900.0})
    assert "cannot tell a defect" in flat and "no higher than" in flat
    assert "no better than unseen" in diagnosis_words({**BASE, "train_hr@10": 0.0})


def test_only_a_text_id_model_is_diagnosed():
    from types import SimpleNamespace

    from llmrec_lite.diagnose import text_id_diagnosis

    with pytest.raises(ValueError, match="text-id model"):
        text_id_diagnosis(SimpleNamespace(model=SimpleNamespace(output="item-token")), None)
