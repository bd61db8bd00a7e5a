"""The command line: every command ends with one JSON line. A few tests run it as a user does, a
subprocess whose last stdout line is JSON; the rest call the same ``main`` in this process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cli_runner import run_cli
from conftest import needs_real_data




def test_data_by_path(s3rec_file):
    _, out, _ = run_cli("data", "--path", str(s3rec_file), subprocess=True)
    assert (out["users"], out["items"], out["interactions"]) == (4, 10, 18)
    assert (out["train_samples"], out["valid"], out["test"]) == (6, 4, 4)


def test_unknown_dataset_lists_known_ones():
    code, out, err = run_cli("data", "--dataset", "netflix", check=False, subprocess=True)
    assert code == 2
    assert "lastfm" in out["error"] and "beauty" in out["error"] and "ml1m" in out["error"]
    assert "netflix" in err


def test_malformed_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3 4 5\n2 3 4 five 6\n")
    code, out, _ = run_cli("data", "--path", str(bad), check=False, subprocess=True)
    assert code == 2 and str(bad) in out["error"] and "line 2" in out["error"]


@pytest.fixture
def wals_file(s3rec_file):
    """The tiny file with one more user and item: HR@10, which `wals` reports, needs over 10 items."""
    with s3rec_file.open("a") as fh:
        fh.write("5 20 10 11 12\n")
    return s3rec_file


def test_wals_same_command_same_numbers(wals_file):
    args = ("wals", "--path", str(wals_file), "--factors", "4", "--iterations", "3", "--seed", "3")
    _, a, _ = run_cli(*args)
    _, b, _ = run_cli(*args)
    timing = {"seconds", "seconds_per_iteration"}
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    for key in ("seconds", "final_loss", "hr@10", "ndcg@10", "hr@10_masked", "ndcg@10_masked"):
        assert key in a


def test_wals_saves_factors(tmp_path, wals_file):
    _, out, _ = run_cli("wals", "--path", str(wals_file), "--factors", "4", "--iterations", "2",
                        "--out", str(tmp_path / "w"))
    from llmrec_lite.wals import WALS

    model, info = WALS.load(tmp_path / "w")
    assert info["fingerprint"] == out["fingerprint"] and info["indexing"] == "sequential"
    assert model.user_factors.shape == (5, 4)


@needs_real_data
@pytest.mark.data
def test_data_lastfm_counts():
    _, out, _ = run_cli("data", "--dataset", "lastfm")
    assert (out["users"], out["items"], out["interactions"]) == (1090, 3646, 52551)
    assert out["train_samples"] == 52551 - 3 * 1090
    assert out["valid"] == out["test"] == 1090


@needs_real_data
@pytest.mark.data
def test_wals_lastfm_torch_close_to_implicit():
    common = ("wals", "--dataset", "lastfm", "--factors", "64", "--iterations", "15")
    _, torch_out, _ = run_cli(*common, "--backend", "torch")
    _, implicit_out, _ = run_cli(*common, "--backend", "implicit")
    assert abs(torch_out["hr@10"] - implicit_out["hr@10"]) <= 0.15 * implicit_out["hr@10"]
    assert torch_out["hr@10_masked"] >= 0.07


@pytest.fixture(scope="module")
def smoke_pipeline(tmp_path_factory):
    """One ``run --profile smoke`` on LastFM for this module's tests: (its folder, its JSON line)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    _, first, _ = run_cli("run", "--dataset", "lastfm", "--profile", "smoke", "--out", str(out))
    return out, first


@needs_real_data
@pytest.mark.data
def test_run_smoke_pipeline_writes_results_and_reuses_them(smoke_pipeline):
    from llmrec_lite.results.rows import LATE_FUSION, LLM_RUNS, evaluations_for
    from llmrec_lite.profiles import get_profile

    out, first = smoke_pipeline
    saved = json.loads((out / "results.json").read_text())
    expected_llm_rows = sum(len(evaluations_for(stage)) for _, stage, _ in LLM_RUNS)
    assert get_profile("smoke").cf_weight > 0  # so the late-fusion row is tested here
    # + the late-fusion row, popularity, WALS, BPR, SASRec
    assert first["rows"] == len(saved["rows"]) == expected_llm_rows + 1 + 4
    fused = next(r for r in saved["rows"] if r["variant"] == LATE_FUSION)
    assert fused["cf_weight"] == get_profile("smoke").cf_weight and fused["stage"] == 2
    assert {p["comparison"] for p in saved["paired"]} >= {"late fusion - stage 2", "late fusion - WALS"}
    # the command line scores the same fusion: evaluate --cf-weight on the table's users gives the row's numbers
    _, ev, _ = run_cli("evaluate", "--run", str(out), "--cf-weight", str(fused["cf_weight"]),
                       "--users", str(fused["users"]))
    assert ev["cf_weight"] == fused["cf_weight"] and ev["hr@10"] == fused["hr@10"]
    assert {r["model"] for r in saved["rows"]} >= {label for _, _, label in LLM_RUNS}
    for row in saved["rows"]:
        assert 0.0 <= row["hr@5"] <= row["hr@10"] <= 1.0
        if row["variant"] != "classic":
            lo, hi = row["hr@10_ci95"]
            assert lo <= row["hr@10"] <= hi
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == len(saved["rows"]) + 1  # header + one line per row
    # a second run finds every stage and evaluation finished and reports the same numbers
    _, second, _ = run_cli("run", "--dataset", "lastfm", "--profile", "smoke", "--out", str(out))
    again = json.loads((out / "results.json").read_text())
    assert [r["hr@10"] for r in again["rows"]] == [r["hr@10"] for r in saved["rows"]]


def test_usage_errors_end_with_a_json_line():
    code, out, err = run_cli("evaluate", "--no-such-flag", check=False, subprocess=True)
    assert code == 2 and "error" in out and "usage" in err


def test_json_line_has_no_nan(s3rec_file):
    # zero iterations: the loss history is empty; the JSON line must stay valid JSON (null, not NaN)
    proc = subprocess.run([sys.executable, "-m", "llmrec_lite", "wals", "--path", str(s3rec_file), "--factors", "4",
                           "--iterations", "0"], capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1]
    assert "NaN" not in last and "Infinity" not in last
    json.loads(last)


def test_targets_flag_and_no_old_spelling(wals_file):
    common = ("wals", "--path", str(wals_file), "--factors", "4", "--iterations", "2")
    _, valid, _ = run_cli(*common, "--targets", "valid")
    _, test, _ = run_cli(*common)
    assert valid["targets"] == "valid" and test["targets"] == "test"
    # --stage means a training stage; the targets are --targets only
    code, report, _ = run_cli(*common, "--stage", "valid", check=False)
    assert code == 2 and "error" in report


@needs_real_data
@pytest.mark.data
def test_results_rows_keep_their_training_stage(smoke_pipeline):
    out, _ = smoke_pipeline
    rows = json.loads((out / "results.json").read_text())["rows"]
    llm = [r for r in rows if r["variant"] != "classic"]
    assert {r["stage"] for r in llm} == {1, 2}
    assert all(r["stage"] == (1 if r["model"].endswith("stage 1") else 2) for r in llm)
    assert all(r["targets"] == "test" for r in rows)


@needs_real_data
@pytest.mark.data
def test_results_carry_the_llm_share(smoke_pipeline):
    """results.json says what the LLM adds beyond WALS: each item-token stage's learned head
    scalars (read back from the saved stage, equal to the loaded model's) and its overlap with
    the WALS ranking over the table's users."""
    import math

    from llmrec_lite.evaluate import Evaluation
    from llmrec_lite.metrics import top_k
    from llmrec_lite.pipeline import overlap_with_wals, wals_ranks, wals_scores
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.runs import Run

    out, _ = smoke_pipeline
    share = json.loads((out / "results.json").read_text())["llm_share"]
    run = Run.open(get_profile("smoke"), "lastfm", out)
    for stage in (1, 2):
        head, overlap = share[f"stage {stage}"]["head"], share[f"stage {stage}"]["overlap with WALS"]
        model = run.load("item-token", stage).model
        assert math.isclose(head["logit_scale"], float(model.item_logit_log_scale.detach().exp()), rel_tol=1e-6)
        assert math.isclose(head["history_bias"], float(model.item_history_bias.detach()), abs_tol=1e-7)
        assert 0.0 <= overlap["top_k_jaccard"] <= 1.0 and overlap["users"] > 0
        for rule in ("unmasked", "masked"):
            assert 0.0 <= overlap[rule]["same_hit"] <= 1.0 and 0.0 <= overlap[rule]["hits_in_common"] <= 1.0
    # a "model" that ranks exactly as WALS does overlaps it fully; one that never agrees does not
    users = np.arange(12)
    plain, masked = wals_ranks(run, users)
    same = Evaluation({}, top_k(wals_scores(run, users), 10), run.split.target_items("test")[users], users, plain, masked)
    full = overlap_with_wals(run, same)
    assert full["top_k_jaccard"] == 1.0 and full["unmasked"]["same_hit"] == 1.0 == full["masked"]["same_hit"]
    worst = top_k(-wals_scores(run, users), 10)
    other = Evaluation({}, worst, same.gold, users, np.full(12, 10_000), np.full(12, 10_000))
    assert overlap_with_wals(run, other)["top_k_jaccard"] == 0.0


@needs_real_data
@pytest.mark.data
def test_the_run_layout_lists_everything_a_run_writes(smoke_pipeline):
    """Every file and folder ``run`` writes matches a line of the layout in runs.py's docstring."""
    import fnmatch
    import re

    import llmrec_lite.runs

    out, _ = smoke_pipeline
    listed = []
    for line in llmrec_lite.runs.__doc__.splitlines():
        for entry in re.findall(r"OUT/(\S+)", line):
            listed.append(re.sub(r"<[^>]+>", "*", entry.rstrip(",").rstrip("/")))
    written = {str(p.relative_to(out)) for p in out.iterdir()}
    written |= {str(p.relative_to(out)) for p in out.glob("*/*") if p.parent.name not in ("eval", "sasrec", "wals")}
    def covered(path, pattern):  # the path itself, or a folder on the way to a listed entry
        parts, wanted = path.split("/"), pattern.split("/")
        return len(parts) <= len(wanted) and all(fnmatch.fnmatch(a, b) for a, b in zip(parts, wanted))

    unlisted = sorted(w for w in written if not any(covered(w, pattern) for pattern in listed))
    assert not unlisted, f"runs.py's layout does not list {unlisted}"
