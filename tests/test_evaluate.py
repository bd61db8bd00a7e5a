"""Evaluation: rankings dumps reproduce the metrics; pipeline pieces on small data."""

import json

import numpy as np
import pytest

from llmrec_lite.metrics import metrics_from_ranks, ranks_from_lists

from cli_runner import run_cli
from conftest import needs_real_data


@needs_real_data
@pytest.mark.data
@pytest.mark.parametrize("output, mask", [("item-token", False), ("item-token", True), ("text-id", False)])
def test_metrics_recomputed_from_dump_equal_the_report(tmp_path, output, mask):
    run = tmp_path / "run"
    run_cli("train", "--dataset", "lastfm", "--profile", "smoke", "--stage", "1", "--out", str(run), "--output", output)
    dump = tmp_path / "rankings.jsonl"
    args = ["evaluate", "--run", str(run), "--output", output, "--stage", "1", "--task", "sequential",
            "--template", "unseen", "--users", "12", "--dump-rankings", str(dump)]
    _, report, _ = run_cli(*args, *(["--mask-history"] if mask else []))
    records = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(records) == report["users"] == 12
    assert all(len(r["top"]) == 10 for r in records)
    recomputed = metrics_from_ranks(ranks_from_lists([r["top"] for r in records], [r["gold"] for r in records]))
    for key, value in recomputed.items():
        assert report[key] == value, key
    assert report["template"] == "sequential-unseen"
    assert report["stage"] == 1 and "model_stage" not in report and report["targets"] == "test"
