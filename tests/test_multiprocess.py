"""Training with several processes: two real processes (gloo on the CPU), launched the way a
multi-GPU machine is, train stage 1 of the smoke profile together; the saved projectors load
and give the same evaluation on both ranks and in a single process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import run_cli
from conftest import needs_real_data

ACCELERATE = Path(sys.executable).with_name("accelerate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(*args, processes=2):
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "llmrec_lite", *args]
    # CPU processes (gloo), as on the machines CI runs on: on a GPU machine the launcher would
    # give each process its own GPU, and one GPU has no second device for rank 1
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _single(*args):
    return run_cli(*args)[1]


@needs_real_data
@pytest.mark.data
@pytest.mark.skipif(not ACCELERATE.exists(), reason="the accelerate launcher is not installed beside this Python")
def test_two_processes_train_stage1_and_agree(tmp_path):
    out = tmp_path / "run"
    trained = _launch("train", "--dataset", "lastfm", "--profile", "smoke", "--stage", "1", "--out", str(out))
    assert len(trained) == 2  # one JSON line per process
    single = _single("train", "--dataset", "lastfm", "--profile", "smoke", "--stage", "1", "--out", str(tmp_path / "one"))
    # each optimizer step took one batch per process: half the steps, the same prompts
    assert trained[0]["steps"] == trained[1]["steps"] == (single["steps"] + 1) // 2
    assert trained[0]["samples"] == single["samples"]
    log = [json.loads(line) for line in (out / "item-token" / "stage1" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, trained[0]["steps"] + 1))  # written once, by the main process
    args = ("evaluate", "--run", str(out), "--stage", "1", "--users", "16")
    ranks = _launch(*args)
    alone = _single(*args)
    keys = ("hr@5", "hr@10", "ndcg@5", "ndcg@10", "hr@10_masked", "users")
    assert len(ranks) == 2
    assert {k: ranks[0][k] for k in keys} == {k: ranks[1][k] for k in keys} == {k: alone[k] for k in keys}
