"""The fact functions whose dicts chapters 5 and 8 glue in hidden cells (one per section)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmrec_lite import explorer as E
from llmrec_lite.backbone import one_gpu_recipe
from llmrec_lite.diagnose import budget_facts, diagnosis_facts, diagnosis_words
from llmrec_lite.profiles import get_profile
from llmrec_lite.settings import TrainSettings
from llmrec_lite.train import far_target_facts, stage_facts, trained_facts, validation_loss_facts


def test_stage_and_trained_facts():
    smoke = get_profile("smoke")
    settings = {(o, s): TrainSettings.from_profile(smoke, s, o) for o in ("item-token", "text-id") for s in (1, 2)}
    facts = stage_facts(smoke, settings, 1000)
    assert facts["prefix_total"] == 1000
    assert facts["planned_steps"] == {f"{o} {s}": st.total_steps(1000) for (o, s), st in settings.items()}
    assert (facts["lora_r"], facts["lora_alpha"], facts["lora_dropout"]) == (smoke.lora_r, smoke.lora_alpha,
                                                                            smoke.lora_dropout)
    assert facts["lora_targets"] == "q_proj, v_proj"
    results = {("item-token", 1): {"seconds": 60.0, "steps": 8}, ("text-id", 2): {"seconds": 30.0, "steps": 4}}
    assert trained_facts(results) == {"train_minutes": 1.5, "trained_steps": {"item-token 1": 8, "text-id 2": 4}}


def test_validation_loss_facts_read_the_first_and_last_validation_record():
    logs = {"item-token": [{"loss": 9}, {"val_loss": 8.0}, {"loss": 7}, {"val_loss": 6.5}],
            "text-id": [{"val_loss": 3.0}, {"val_loss": 2.0}, {"val_loss": 1.5}]}
    assert validation_loss_facts(logs, 100) == {"item_token_val_first": 8.0, "item_token_val_last": 6.5,
                                                 "text_id_val_first": 3.0, "text_id_val_last": 1.5,
                                                 "log_items": math.log(100)}


def test_far_target_facts_with_and_without_a_record():
    assert far_target_facts([], [], []) == {"far_chosen": "none (no record for this profile)",
                                            "far_profile_matches": "cannot be compared with",
                                            "far_spread": "no record", "far_halfwidth": "no record"}
    ranked = [("b", 0.08, 0.05), ("a", 0.07, 0.04), ("c", 0.05, 0.03)]
    far = [{"candidates": [{"far_hr@10_ci95": [0.06, 0.10]}, {"far_hr@10_ci95": [0.04, 0.06]}]}]
    facts = far_target_facts(ranked, [True, False, False], far)
    assert facts == {"far_chosen": "b", "far_profile_matches": "trains", "far_spread": "0.0300",
                     "far_halfwidth": "0.0150"}
    assert far_target_facts(ranked, [False, True, False], far)["far_profile_matches"] == "does not train"


def test_diagnosis_and_budget_facts():
    d = {"train_hr@10": 0.5, "test_hr@10": 0.1, "train_vs_test_p": 0.01, "gold_position_median": 10.0,
         "uniform_position": 50.5, "popularity_position_median": 20.0}
    facts = diagnosis_facts(d)
    assert facts["tid_train_hr10"] == 0.5 and facts["tid_test_hr10"] == 0.1
    assert facts["tid_verdict"] == diagnosis_words(d) and len(facts) == len(d) + 1
    ours, theirs = [{"steps": 4, "prompts": 16}, {"steps": 4, "prompts": 16}], [{"steps": 9, "prompts": 300}] * 2
    assert budget_facts(ours, theirs, 32) == {"text_samples": 32, "text_steps": 8, "openp5_samples": 600,
                                              "openp5_ratio": 600 / 32}
    assert budget_facts(ours, theirs, 0)["openp5_ratio"] == 600  # nothing trained: no division by zero


def test_measure_facts_read_the_measures_table():
    rows = {E.WALS_VIEW: [0.9, 0.3, 1.0, None], E.projected_view(1): [0.8, 0.2, 2.0, 0.4],
            E.projected_view(2): [0.85, 0.25, 3.0, 0.5]}
    measures = pd.DataFrame.from_dict(rows, orient="index", columns=[
        "UMAP trustworthiness", "popularity of neighbours (Spearman)", "mean norm", "nearest-token cosine (mean)"])
    tokens = np.array([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1
    facts = E.measure_facts(measures, tokens)
    assert facts == pytest.approx({"tw_wals": 0.9, "tw_s2": 0.85, "np_wals": 0.3, "np_s2": 0.25, "ntc_s1": 0.4,
                                   "ntc_s2": 0.5, "token_norm": 3.0, "norm_s2": 3.0, "norm_ratio": 1.0,
                                   "np_k": E.POPULARITY_NEIGHBOURS})


def test_one_gpu_recipe_is_the_gpu_profiles():
    gpu = get_profile("gpu")
    recipe = one_gpu_recipe(gpu, 123, "LastFM")
    assert recipe["backbone"] == "openlm-research/open_llama_3b_v2"
    assert recipe["quantisation"].startswith("nf4, double quantisation=True, compute dtype=bfloat16")
    assert recipe["LoRA"].startswith(f"r={gpu.lora_r}, alpha={gpu.lora_alpha}")
    assert recipe["optimizer steps per stage (LastFM)"] == 123 and recipe["epochs per stage"] == gpu.epochs
    assert recipe["training prompts"].startswith("20% ")
