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
