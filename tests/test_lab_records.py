"""Record readers of ``lab.records`` on hand-made records (the committed ones: tests/test_notebooks.py)."""

from lab.records import CF_TERM_TRIALS, cf_term_trials, cf_term_words
from llmrec_lite.profiles import get_profile


def _row(name, settings, far_masked):
    hit = {"hr@10": far_masked, "hr@10_masked": far_masked}
    return {"name": name, "settings": settings, "far": hit, "stage1_far": hit}


def _record(dataset, values):
    profile = get_profile("cpu")
    mine = {"samples_per_task": list(profile.item_token_samples), "cf_term": True, "known_bias": True,
            "user_vectors": profile.user_vectors, "max_history": profile.max_history}
    settings = (mine, {**mine, "cf_term": False}, {**mine, "stage2": {"cf_term": False}})
    return {"dataset": dataset, "candidates": [_row(n, s, v) for n, s, v in zip("abc", settings, values)]}


def test_cf_term_trials_find_the_profiles_row_and_its_two_variants_by_their_settings():
    profile = get_profile("cpu")
    trials = cf_term_trials([_record("x", (0.09, 0.07, 0.10)), _record("y", (0.05, 0.03, 0.04))], profile)
    assert list(trials["trial"]) == list(CF_TERM_TRIALS) * 2
    words = cf_term_words(trials)
    # means over both datasets: 0.07 for the profile's, 0.05 without the term, 0.07 in stage 1 only
    assert f"{CF_TERM_TRIALS[1]}: 0.0500, below the profile's 0.0700 by 0.0200" in words
    assert f"{CF_TERM_TRIALS[2]}: 0.0700, level with" in words
    flipped = cf_term_words(cf_term_trials([_record("x", (0.05, 0.08, 0.02))], profile))
    assert f"{CF_TERM_TRIALS[1]}: 0.0800, above the profile's 0.0500" in flipped


def test_cf_term_trials_say_so_when_a_record_lacks_them():
    profile = get_profile("cpu")
    partial = _record("x", (0.09, 0.07, 0.10))
    partial["candidates"] = partial["candidates"][:1]
    assert cf_term_words(cf_term_trials([partial], profile)) == "no record holds the three trials yet"
    assert cf_term_trials([], profile).empty
