"""Record readers of ``lab.records`` on hand-made records (the committed ones: tests/test_notebooks.py)."""

from lab.records import CF_TERM_TRIALS, cf_term_trials, cf_term_words
from llmrec_lite.profiles import get_profile


def _row(name, settings, far_masked):
    hit = {"hr@10": far_masked, "hr@10_masked": far_masked}
    return {"name": name, "settings": settings, "far": hit, "stage1_far": hit}


def _record(dataset, values, base=None):
    profile = get_profile("cpu")
    mine = base or {"samples_per_task": list(profile.item_token_samples), "cf_term": True, "known_bias": True,
                    "user_vectors": profile.user_vectors}
    without = {k: v for k, v in mine.items() if k != "cf_term"}  # leaving the term out means it is off
    settings = (mine, without, {**mine, "stage2": {"cf_term": False}})
    return {"dataset": dataset, "candidates": [_row(n, s, v) for n, s, v in zip("abc", settings, values)]}


def test_cf_term_trials_pair_each_base_with_its_variants_by_their_settings():
    profile = get_profile("cpu")
    trials = cf_term_trials([_record("x", (0.09, 0.07, 0.10)), _record("y", (0.05, 0.03, 0.04))], profile)
    assert list(trials["trial"]) == list(CF_TERM_TRIALS) * 2 and set(trials["base"]) == {"a"}
    words = cf_term_words(trials)
    # means over both datasets: 0.07 for the base, 0.05 without the term, 0.07 in stage 1 only
    assert f"(0.0700), {CF_TERM_TRIALS[1]} 0.0500 (-0.0200); {CF_TERM_TRIALS[2]} 0.0700 (+0.0000)" in words
    flipped = cf_term_words(cf_term_trials([_record("x", (0.05, 0.08, 0.02))], profile))
    assert f"{CF_TERM_TRIALS[1]} 0.0800 (+0.0300)" in flipped


def test_cf_term_trials_name_a_base_that_is_not_the_profiles():
    other = {"samples_per_task": [1, 2], "cf_term": True}
    words = cf_term_words(cf_term_trials([_record("x", (0.09, 0.07, 0.10), base=other)], get_profile("cpu")))
    assert words.startswith("from “a” (0.0900)")


def test_cf_term_trials_say_so_when_a_record_lacks_them():
    profile = get_profile("cpu")
    partial = _record("x", (0.09, 0.07, 0.10))
    partial["candidates"] = partial["candidates"][:1]
    assert cf_term_words(cf_term_trials([partial], profile)) == "no record holds these trials on every dataset yet"
    assert cf_term_trials([], profile).empty


# --------------------------------------------------------------------------- chapter 9's facts


def _tuned(dataset, settings_and_hr):
    return {"dataset": dataset, "candidates": [{"name": n, "settings": s, "valid": {"hr@10": hr, "hr@10_masked": hr}}
                                               for n, (s, hr) in settings_and_hr.items()]}


def test_tune_facts_say_whether_the_profile_trains_the_choice():
    from lab.records import NO_RECORD, tune_facts

    profile = get_profile("cpu")
    mine, other = {"item_logit": profile.item_logit}, {"item_logit": "not " + profile.item_logit}
    won = tune_facts([_tuned("x", {"mine": (mine, 0.2), "other": (other, 0.1)})], profile)
    assert won["tune_chosen"] == "mine" and won["tune_profile_matches"] == "matches"
    assert won["tune_profile_sentence"].startswith(f"The profile's head ({profile.item_logit} logits")
    assert won["tune_profile_sentence"].endswith(") matches it.")
    lost = tune_facts([_tuned("x", {"mine": (mine, 0.1), "other": (other, 0.2)})], profile)
    assert lost["tune_chosen"] == "other" and lost["tune_profile_sentence"].endswith(") does not match it.")
    none = tune_facts([], profile)
    assert none["tune_chosen"] == NO_RECORD and none["tune_profile_matches"] == "cannot be compared with"
    assert none["tune_profile_sentence"].startswith("With no tuning record")


def test_shift_facts_turn_with_the_far_target():
    from lab.records import shift_facts

    profile = get_profile("cpu")

    def record(near, far):
        row = _row("a", {}, 0.0)
        row.update(near={"hr@10": near}, far={"hr@10": far})
        return {"dataset": "lastfm", "candidates": [row]}

    names = {"lastfm": "LastFM"}
    falls = shift_facts([record(0.09, 0.07)], "lastfm", profile, names)
    assert (falls["shift_verdict"], falls["shift_reading"]) == ("falls", "supports")
    assert falls["shift_sentence"].endswith("reads 0.0900 one item past its training and 0.0700 two items past.")
    assert falls["shift_reading_sentence"].startswith("Accuracy falls with the extra step, which supports")
    holds = shift_facts([record(0.07, 0.09)], "lastfm", profile, names)
    assert holds["shift_reading_sentence"].startswith("Accuracy does not fall with the extra step, which does not support")
    assert shift_facts([], "lastfm", profile, names)["shift_near"] == "no record"


def _seeds(verdict, difference):
    entry = {"difference": difference, "ci95": [difference - 0.01, difference + 0.01], "verdict": verdict}
    return {"dataset": verdict.replace(" ", "_"), "users": 100,
            "seeds": [{"seed": 0, "stage 2 - stage 1 (far)": {"hr@10": entry}}],
            "over seeds": {"hr@10": {"stage 2 - stage 1": {"min": difference, "max": difference},
                                     "seeds above zero": 1, "intervals above zero": 0,
                                     "seed-averaged stage 2 - stage 1": entry,
                                     "stage 2": {"sd": 0.001}, "stage 1": {"sd": 0.002}}}}


def test_seed_facts_name_each_dataset_under_its_verdict():
    from lab.records import seed_facts

    names = {"above": "A", "not_separated": "B", "below": "C"}
    facts = seed_facts([_seeds("above", 0.02), _seeds("not separated", 0.0)], names)
    assert (facts["seed_above"], facts["seed_not_separated"], facts["seed_below"]) == ("A", "B", "none")
    assert facts["seed_sentence"] == ("With the training noise averaged out, stage 2's gain over stage 1 lies above "
                                      "zero on A and is not separated from zero on B.")
    assert facts["users_to_resolve"]["users needed"].tolist()[0] == 25  # 100 * (0.01 / 0.02) ** 2
    assert seed_facts([_seeds("below", -0.02)], names)["seed_sentence"].endswith("lies below zero on C.")
    assert seed_facts([], names)["seed_sentence"].startswith("There is no seed record")


def test_cf_term_sentence_reads_the_profiles_base():
    from lab.records import cf_term_sentence

    profile = get_profile("cpu")
    sentence = cf_term_sentence(cf_term_trials([_record("x", (0.09, 0.07, 0.10)), _record("y", (0.05, 0.03, 0.04))],
                                               profile))
    assert sentence == ("For the profile's settings, mean far HR@10 masked over the datasets is 0.0700 with the CF "
                        "term, 0.0500 without it and 0.0700 with it in stage 1 only. Every base that was also trained "
                        "without the term scores lower without it.")
    assert cf_term_sentence(cf_term_trials([], profile)) == "No record holds these trials on every dataset yet."


def test_fusion_facts_say_whether_the_results_have_a_fusion_row():
    from lab.records import fusion_facts

    assert fusion_facts([], get_profile("cpu"), {})["fusion_profile_sentence"] == (
        "It is 0, the model alone, so the results have no late-fusion row.")
    smoke = fusion_facts([], get_profile("smoke"), {})
    assert smoke["fusion_profile_sentence"] == "It is 0.5, so the results have a late-fusion row."
    assert smoke["fusion_record_weight"] == "no record" and smoke["fusion_sentence"].startswith("There is no fusion record")
