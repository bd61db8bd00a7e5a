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


def test_every_cpu_value_off_the_defaults_has_a_row():
    """profiles.py says so: each value the cpu profile changes is accounted for in the table."""
    profile, base = get_profile("cpu"), Profile(name="defaults")
    changed = {f.name for f in dataclasses.fields(Profile)
               if f.name != "name" and getattr(profile, f.name) != getattr(base, f.name)}
    named = {name for row in decisions(profile) for name in row.settings}
    assert changed <= named, sorted(changed - named)


def test_lab_runs_without_the_book_extras():
    """The record scripts and the decisions table need no pandas or plotly (optional book extras)."""
    code = ("import sys\n"
            "for name in ('pandas', 'plotly', 'plotly.graph_objects', 'plotly.subplots'):\n"
            "    sys.modules[name] = None\n"
            "import lab.runners, lab.decisions\n"
            "lab.decisions.render('cpu')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
