"""lab/DECISIONS.md: current with the committed records, and the profile takes every choice."""

import dataclasses
import subprocess
import sys

import pytest

from lab.decisions import DECISIONS_FILE, check_profile, decisions, render
from llmrec_lite.profiles import Profile, get_profile


def test_decisions_file_is_current():
    assert DECISIONS_FILE.read_text() == render("cpu"), "run: python -m lab.decisions"


def test_check_command_passes_on_the_committed_file():
    code = subprocess.run([sys.executable, "-m", "lab.decisions", "--check"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr


def test_every_chosen_value_is_the_profiles():
    profile = get_profile("cpu")
    rows = decisions(profile)
    assert not check_profile(profile, rows)
    named = [name for row in rows for name in row.settings]
    assert len(named) == len(set(named)), "a setting has two rows"
    assert set(named) <= {f.name for f in dataclasses.fields(Profile)}


@pytest.mark.parametrize("change", [{"cf_weight": 0.5}, {"eval_user_vectors": "fitted"}, {"dense_weight": 0.0},
                                    {"item_token_samples": (800, 1200)}])
def test_a_profile_off_its_records_is_refused(change, monkeypatch):
    profile = dataclasses.replace(get_profile("cpu"), **change)
    assert check_profile(profile, decisions(profile))
    monkeypatch.setitem(__import__("llmrec_lite.profiles", fromlist=["PROFILES"]).PROFILES, "cpu", profile)
    with pytest.raises(ValueError, match="does not take its records' choices"):
        render("cpu")
