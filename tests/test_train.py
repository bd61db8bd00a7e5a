"""Two-stage training: what each stage trains, overfitting, resumption, refusal of mismatches."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from llmrec_lite.data import load_dataset
from llmrec_lite.profiles import get_profile
from llmrec_lite.projectors import CheckpointMismatchError
from llmrec_lite.prompts import collate, encode, render
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.templates import get_template
from llmrec_lite import train as TR
from llmrec_lite.wals import WALS, WALSConfig

from conftest import needs_real_data
from fusion_fixtures import tiny_backbone

PROFILE = get_profile("smoke")


@pytest.fixture
def ctx(s3rec_file):
    data = load_dataset(path=s3rec_file)
    split = LeaveOneOutSplit.from_data(data)
    wals = WALS(WALSConfig(num_factors=8, iterations=3)).fit(split.train_matrix(), show_progress=False)
    return TR.RunContext(PROFILE, data, split, wals, tiny_backbone())


def settings(stage, output="item-token", **kw):
    base = dict(samples_per_task=None, sample_ratio=1.0, val_users=4, eval_every=2, checkpoint_every=2)
    base.update(kw)
    return PROFILE.train_settings(stage, output, **base)


def grads_after_one_step(ctx, tmp_path, stage, output):
    model = TR.build_model(ctx, settings(stage, output), tmp_path)
    tok = ctx.backbone.tokenizer
    rs = [render(get_template("sequential", 0), ctx.data, u, ctx.split.history(u), int(ctx.split.test_targets[u]))
          for u in range(ctx.split.num_users)]
    batch = collate([encode(r, tok) for r in rs], tok.pad_token_id, with_response=output == "text-id")
    model(batch)["loss"].backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_stage1_trains_projectors_only(ctx, tmp_path, output):
    got = grads_after_one_step(ctx, tmp_path, 1, output)
    assert any(n.startswith("projectors.user") for n in got) and any(n.startswith("projectors.item") for n in got)
    assert not any("lora_" in n for n in got)
    assert all(n.startswith("projectors.") or n == "item_logit_log_scale" for n in got), got


@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_stage2_trains_projectors_and_lora_only(ctx, tmp_path, output):
    TR.train_stage(ctx, settings(1, output), tmp_path, show_progress=False)
    got = grads_after_one_step(ctx, tmp_path, 2, output)
    assert any("lora_B" in n for n in got) and any(n.startswith("projectors.") for n in got)
    assert all(n.startswith("projectors.") or "lora_" in n or n == "item_logit_log_scale" for n in got), got


def test_stage2_starts_from_stage1_projectors(ctx, tmp_path):
    TR.train_stage(ctx, settings(1), tmp_path, show_progress=False)
    from llmrec_lite.projectors import Projectors

    saved = Projectors.from_pretrained(tmp_path / "item-token" / "stage1" / "final" / "projectors")
    model = TR.build_model(ctx, settings(2), tmp_path)
    for (name, a), b in zip(saved.state_dict().items(), model.projectors.state_dict().values()):
        assert torch.equal(a, b), name
    fresh = TR.build_model(ctx, settings(1), tmp_path / "elsewhere")  # a stage-1 start is not the trained one
    assert not torch.equal(fresh.projectors.item.fc2.weight, saved.item.fc2.weight)


def test_stage2_without_stage1_is_refused(ctx, tmp_path):
    with pytest.raises(FileNotFoundError, match="run `train --stage 1`"):
        TR.build_model(ctx, settings(2), tmp_path)


def test_overfit_item_token_ranks_targets_first(ctx, tmp_path):
    s = settings(1, "item-token", tasks=("sequential",), epochs=300, lr=3e-2, batch_size=8, warmup_ratio=0.0,
                 eval_every=10_000, checkpoint_every=10_000)
    s2 = settings(2, "item-token", tasks=("sequential",), epochs=300, lr=3e-2, batch_size=8, warmup_ratio=0.0,
                  eval_every=10_000, checkpoint_every=10_000)
    TR.train_stage(ctx, s, tmp_path, show_progress=False)
    result = TR.train_stage(ctx, s2, tmp_path, show_progress=False)
    assert result["final_loss"] < 0.05, result["final_loss"]
    model, _ = TR.load_trained(ctx, tmp_path, "item-token", 2)
    samples = list(ctx.split.train_samples())
    tok = ctx.backbone.tokenizer
    rs = [render(get_template("sequential", 0), ctx.data, x.user, x.history, x.target) for x in samples]
    batch = collate([encode(r, tok) for r in rs], tok.pad_token_id, with_response=False)
    with torch.no_grad():
        top = model.score_items(batch).argmax(1)
    assert top.tolist() == [x.target for x in samples]


def test_overfit_text_id_generates_targets(ctx, tmp_path):
    common = dict(tasks=("sequential",), epochs=300, lr=1e-2, batch_size=8, warmup_ratio=0.0,
                  eval_every=10_000, checkpoint_every=10_000)
    TR.train_stage(ctx, settings(1, "text-id", **common), tmp_path, show_progress=False)
    result = TR.train_stage(ctx, settings(2, "text-id", **common), tmp_path, show_progress=False)
    assert result["final_loss"] < 0.1, result["final_loss"]  # nats per response token, from 7+ at the start
    model, _ = TR.load_trained(ctx, tmp_path, "text-id", 2)
    tok = ctx.backbone.tokenizer
    samples = list(ctx.split.train_samples())
    rs = [render(get_template("sequential", 0), ctx.data, x.user, x.history, x.target) for x in samples]
    encoded = [encode(r, tok) for r in rs]
    batch = collate(encoded, tok.pad_token_id, with_response=False)
    answer_len = max(e.num_response_tokens for e in encoded)
    generated = model.greedy_generate(batch, answer_len)
    for row, e in enumerate(encoded):
        assert generated[row, : e.num_response_tokens].tolist() == e.input_ids[e.response_start:]


def test_interrupted_run_resumes_to_the_same_result(ctx, tmp_path):
    kw = dict(epochs=3, batch_size=2, checkpoint_every=3, eval_every=4)
    full = TR.train_stage(ctx, settings(1, **kw), tmp_path / "full", show_progress=False)
    part = TR.train_stage(ctx, settings(1, **kw), tmp_path / "cut", show_progress=False, stop_after_steps=3)
    assert part["interrupted"] and (tmp_path / "cut" / "item-token" / "stage1" / "checkpoint" / "state.json").exists()
    resumed = TR.train_stage(ctx, settings(1, **kw), tmp_path / "cut", resume=True, show_progress=False)
    assert resumed["steps"] == full["steps"]
    assert abs(resumed["final_loss"] - full["final_loss"]) < 1e-5
    log = lambda p: [json.loads(line)["loss"] for line in open(p / "item-token" / "stage1" / "log.jsonl")]
    assert log(tmp_path / "cut") == pytest.approx(log(tmp_path / "full"), abs=1e-5)


def test_resume_with_other_settings_is_refused(ctx, tmp_path):
    TR.train_stage(ctx, settings(1, epochs=2, batch_size=2, checkpoint_every=2), tmp_path, show_progress=False,
                   stop_after_steps=2)
    with pytest.raises(CheckpointMismatchError, match="train differ"):
        TR.train_stage(ctx, settings(1, epochs=2, batch_size=2, checkpoint_every=2, lr=0.5), tmp_path, resume=True,
                       show_progress=False)


def test_loading_refuses_other_factors(ctx, tmp_path):
    TR.train_stage(ctx, settings(1), tmp_path, show_progress=False)
    other = WALS(WALSConfig(num_factors=8, iterations=3, seed=5)).fit(ctx.split.train_matrix(), show_progress=False)
    wrong = TR.RunContext(ctx.profile, ctx.data, ctx.split, other, ctx.backbone)
    with pytest.raises(CheckpointMismatchError, match="wals_fingerprint"):
        TR.load_trained(wrong, tmp_path, "item-token", 1)


def test_same_seed_same_losses(ctx, tmp_path):
    a = TR.train_stage(ctx, settings(1), tmp_path / "a", show_progress=False)
    b = TR.train_stage(ctx, settings(1), tmp_path / "b", show_progress=False)
    assert a["final_loss"] == b["final_loss"] and a["final_val_loss"] == b["final_val_loss"]


# ------------------------------------------------------------------ the command line, real data, a real kill


def _cli(*args):
    return [sys.executable, "-m", "llmrec_lite", "train", "--dataset", "lastfm", "--profile", "smoke", *args]


@needs_real_data
@pytest.mark.data
@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_cli_smoke_both_stages(tmp_path, output):
    for stage in ("1", "2"):
        proc = subprocess.run(_cli("--stage", stage, "--out", str(tmp_path), "--output", output),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("stage", "steps", "samples", "final_loss", "seconds", "tokens_per_second"):
            assert key in out
        assert out["stage"] == int(stage) and out["steps"] > 0


@needs_real_data
@pytest.mark.data
def test_cli_killed_and_resumed(tmp_path):
    args = ("--stage", "1", "--samples", "400")
    full = subprocess.run(_cli(*args, "--out", str(tmp_path / "full")), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    expected = json.loads(full.stdout.strip().splitlines()[-1])
    checkpoint = tmp_path / "cut" / "item-token" / "stage1" / "checkpoint" / "state.json"
    proc = subprocess.Popen(_cli(*args, "--out", str(tmp_path / "cut")), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert killed, "the run finished before it could be killed; give it more samples"
    resumed = subprocess.run(_cli(*args, "--out", str(tmp_path / "cut"), "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert got["steps"] == expected["steps"]
    assert abs(got["final_loss"] - expected["final_loss"]) < 1e-5
