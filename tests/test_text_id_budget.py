"""The text-id budget curve (lab.runners.text_id_budget_curve, benchmarks/text_id_budget.py):
validation targets only (replace every test target, nothing changes), resumable point by
point, and its readers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_real_data
from fusion_fixtures import tiny_backbone

import lab.runners
from lab.budget import budget_figure, budget_readings, budget_table, budget_words
from lab.runners import RecordMismatchError, budget_stages, text_id_budget_curve
from llmrec_lite.data import InteractionData, load_dataset
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run, StageBusyError, stage_lock
from llmrec_lite.settings import TrainSettings
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.wals import WALS, WALSConfig

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
BUDGETS = (8, 16)
USERS = 6
# what a machine's speed or the day decides: left out when two records are compared
TIMINGS = frozenset({"seconds", "train_seconds", "train_minutes", "eval_seconds", "machine", "date"})


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def _sequences(users: int = 12, items: int = 30, seed: int = 3) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(100 + rng.choice(items, size=int(rng.integers(5, 9)), replace=False)) for _ in range(users)]


def _run(data: InteractionData, folder: Path) -> Run:
    """A smoke-profile run (tiny random backbone) on ``data``, WALS fitted on its training part."""
    split = LeaveOneOutSplit.from_data(data)
    wals = WALS(WALSConfig(num_factors=8, iterations=3)).fit(split.train_matrix(), show_progress=False)
    return Run(folder, get_profile("smoke"), data, split, wals, tiny_backbone())


@pytest.fixture
def data(tmp_path) -> InteractionData:
    path = tmp_path / "Budget.txt"
    path.write_text("".join(f"{u + 1} {' '.join(map(str, seq))}\n" for u, seq in enumerate(_sequences())))
    return load_dataset(path=path)


def _with_other_test_targets(data: InteractionData) -> InteractionData:
    """The same data with every user's test target (last item) replaced by another item."""
    sequences = []
    for seq in data.sequences:
        seq = np.array(seq).copy()
        seq[-1] = (seq[-1] + 1 + len(seq)) % data.num_items
        while seq[-1] in seq[:-1]:
            seq[-1] = (seq[-1] + 1) % data.num_items
        sequences.append(seq)
    other = InteractionData(**{**data.__dict__, "sequences": sequences})
    assert (LeaveOneOutSplit.from_data(other).test_targets != LeaveOneOutSplit.from_data(data).test_targets).all()
    return other


def test_budget_curve_never_reads_a_test_target(data, tmp_path):
    first = text_id_budget_curve(_run(data, tmp_path / "a"), BUDGETS, users=USERS, record=tmp_path / "a.json",
                                 show_progress=False)
    second = text_id_budget_curve(_run(_with_other_test_targets(data), tmp_path / "b"), BUDGETS, users=USERS,
                                  record=tmp_path / "b.json", show_progress=False)
    assert without_timings(first) == without_timings(second)
    assert json.loads((tmp_path / "a.json").read_text()) == first
    # what the record holds: both variants at both budgets, popularity, CF - no CF per budget
    assert first["targets"] == "valid" and first["users"] == USERS and first["missing"] == []
    assert [(p["variant"], p["budget"]) for p in first["points"]] == [
        ("text-id", 8), ("text-id-text", 8), ("text-id", 16), ("text-id-text", 16)]
    cf, text = first["points"][2], first["points"][3]
    assert cf["prompts_per_task"] == [4, 4] and text["prompts_per_task"] == [None, 8]
    assert cf["prompts"] == text["prompts"] == 16 and [s["stage"] for s in cf["stages"]] == [1, 2]
    for p in first["points"]:
        assert set(p["valid"]) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10"} and len(p["ranks"]) == USERS
        assert p["hr@10_ci95"][0] <= p["valid"]["hr@10"] <= p["hr@10_ci95"][1]
        assert 1 <= p["distinct_top1"] <= USERS and p["final_loss"] > 0 and p["steps"] > 0
        assert p["- popularity"]["hr@10"]["users"] == USERS
    assert [row["budget"] for row in first["cf - no cf"]] == list(BUDGETS)
    assert len(first["popularity"]["ranks"]) == USERS and "hr@10_masked" in first["popularity"]


def _finished_stages(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("final/result.json")}


def test_budget_curve_resumes_where_it_stopped(data, tmp_path, monkeypatch):
    run, record = _run(data, tmp_path / "run"), tmp_path / "curve.json"
    first = text_id_budget_curve(run, BUDGETS[:1], users=USERS, record=record, show_progress=False)
    assert [p["budget"] for p in first["points"]] == [8, 8]
    stages = _finished_stages(run.out)
    assert len(stages) == 3  # text-id stages 1 and 2, text-id-text stage 2

    # a later session adds a budget: the measured points stay as they were, only the new ones are measured
    scored = []
    real_evaluate = lab.runners.evaluate_model
    monkeypatch.setattr(lab.runners, "evaluate_model", lambda *a, **k: scored.append(1) or real_evaluate(*a, **k))
    second = text_id_budget_curve(run, BUDGETS, users=USERS, record=record, show_progress=False)
    assert len(scored) == 2 and second["points"][:2] == first["points"] and second["missing"] == []
    assert {k: v for k, v in _finished_stages(run.out).items() if k in stages} == stages

    # run again: nothing trained, nothing scored, the same record
    def refuse(*args, **kwargs):
        raise AssertionError("a finished point was measured again")

    monkeypatch.setattr(lab.runners, "evaluate_model", refuse)
    monkeypatch.setattr(Run, "_train", refuse)
    written = record.read_bytes()
    assert text_id_budget_curve(run, BUDGETS, users=USERS, record=record, show_progress=False) == second
    assert record.read_bytes() == written  # not even rewritten

    # two processes never build one curve together
    with stage_lock(run.out / "text_id_budget" / "curve"), pytest.raises(StageBusyError):
        text_id_budget_curve(run, BUDGETS, users=USERS, record=record, show_progress=False)

    # a point lost (the session stopped after training, before the record was written): its stages are
    # reused, only the scoring runs again, and it gives the same point
    saved = json.loads(record.read_text())
    saved["points"] = [p for p in saved["points"] if (p["variant"], p["budget"]) != ("text-id", 16)]
    record.write_text(json.dumps(saved))
    monkeypatch.undo()
    stages = _finished_stages(run.out)
    third = text_id_budget_curve(run, BUDGETS, users=USERS, record=record, show_progress=False)
    assert without_timings(third["points"]) == without_timings(second["points"])
    assert _finished_stages(run.out) == stages

    # a record of other users is not mixed with these
    with pytest.raises(RecordMismatchError, match="user_ids"):
        text_id_budget_curve(run, BUDGETS, users=USERS - 1, record=record, show_progress=False)


def test_budget_stages_split_the_budget_in_the_profiles_ratio():
    cpu = get_profile("cpu")
    # 800 prompts are the cpu profile's own text-id runs, with CF embeddings and without
    assert budget_stages(cpu, "text-id", 800) == {s: TrainSettings.from_profile(cpu, s, "text-id").samples_per_task
                                                  for s in (1, 2)} == {1: 200, 2: 200}
    assert budget_stages(cpu, "text-id-text", 800) == {2: TrainSettings.from_profile(cpu, 2, "text-id-text").samples_per_task}
    assert budget_stages(cpu, "text-id", 25000) == {1: 6250, 2: 6250}
    assert budget_stages(get_profile("gpu"), "text-id", 8000) == {1: 1000, 2: 1000}  # 2 epochs, no counts: halves
    for bad in (dict(variant="item-token", budget=800), dict(variant="text-id", budget=0)):
        with pytest.raises(ValueError):
            budget_stages(cpu, **bad)


def test_budget_readers_on_a_hand_made_record():
    def point(variant, budget, hr, verdict):
        return {"variant": variant, "label": variant, "budget": budget, "prompts": budget, "steps": 1,
                "train_minutes": 1.0, "final_loss_mean_last_10pct": 1.0, "valid": {"hr@10": hr, "ndcg@10": hr / 2},
                "hr@10_ci95": [hr / 2, hr * 2], "ndcg@10_ci95": [0.0, hr], "distinct_top1": 3,
                "- popularity": {"hr@10": {"difference": hr - 0.05, "verdict": verdict}}}

    pair = lambda b, v: {"budget": b, "hr@10": {"verdict": v}}
    record = {"dataset": "x", "profile": "cpu", "users": 500, "variants": ["text-id", "text-id-text"],
              "popularity": {"hr@10": 0.05, "hr@10_ci95": [0.03, 0.07]},
              "points": [point("text-id", 800, 0.0, "below"), point("text-id-text", 800, 0.0, "below"),
                         point("text-id", 5000, 0.06, "not separated"), point("text-id-text", 5000, 0.02, "below"),
                         point("text-id", 25000, 0.09, "above"), point("text-id-text", 25000, 0.04, "not separated")],
              "cf - no cf": [pair(800, "not separated"), pair(5000, "not separated"), pair(25000, "above")]}
    readings = budget_readings(record)
    assert readings["text-id"] == {"measured": [800, 5000, 25000], "above_popularity": 5000, "passes_popularity": 25000}
    assert readings["text-id-text"]["above_popularity"] is None
    assert readings["cf_separates"] == {"budget": 25000, "verdict": "above"}
    words = budget_words(record)
    assert "passes popularity (interval above zero) from 25,000" in words and "first separate from none at 25,000" in words
    assert len(budget_table(record)) == 6
    assert len(budget_figure(record).data) == 4  # the popularity band and line, one line per variant


@needs_real_data
def test_budget_script_on_lastfm_with_the_smoke_profile(tmp_path, capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from text_id_budget import main
    finally:
        sys.path.remove(str(BENCHMARKS))
    out, runs = tmp_path / "curve.json", tmp_path / "runs"
    args = ["--profile", "smoke", "--dataset", "lastfm", "--budgets", "8", "--users", "4", "--runs", str(runs),
            "--out", str(out), "--quiet"]
    record = main(args)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["missing"] == [] and set(summary["points"]) == {
        "text-id 8", "text-id-text 8"}
    assert record["dataset"] == "lastfm" and record["machine"] and record["date"]
    assert (runs / "budget-8" / "text-id" / "stage2" / "final" / "result.json").exists()
    again = main(args)  # resumes: nothing left to measure, the same points
    assert again["points"] == record["points"]
    with pytest.raises(SystemExit):
        main([*(a if a != "4" else "3" for a in args)])  # other users (3, not 4): refused
