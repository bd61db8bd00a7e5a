import math

import pytest

from llmrec_lite.diagnose import diagnosis_words, one_sided_fisher

from conftest import needs_real_data, needs_smollm2

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


@needs_real_data
@pytest.mark.data
@needs_smollm2
def test_the_text_id_side_memorises_a_few_prompts_in_the_cpu_configuration(tmp_path):
    # the real configuration (SmolLM2's tokenizer, LoRA on every linear layer, the profile's user
    # vectors and precision), CI-sized: 8 LastFM prompts; benchmarks/overfit_text_id.py runs 32
    from llmrec_lite.diagnose import overfit_text_id
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.runs import Run

    run = Run.open(get_profile("cpu"), "lastfm", tmp_path / "run", show_progress=False)
    result = overfit_text_id(run, num_prompts=8, epochs=30, show_progress=False)
    assert result["distinct_answers"] == 8
    assert result["hr@1_before"] <= 0.25 and result["hr@1_after"] >= 0.75, result
    assert result["final_loss"] < result["first_loss"] / 10
