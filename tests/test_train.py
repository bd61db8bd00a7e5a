"""Two-stage training: what each stage trains, overfitting, resumption, refusal of mismatches,
and finished work that is never replaced silently."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from llmrec_lite.batching import training_steps
from llmrec_lite.diagnose import text_id_diagnosis
from llmrec_lite.evaluate import evaluate_text_id
from llmrec_lite.checkpoints import CheckpointMismatchError, CorruptCheckpointError
from llmrec_lite.profiles import get_profile
from llmrec_lite.prompts import collate
from llmrec_lite.runs import FinishedWorkError, Run
from llmrec_lite.templates import get_template
from llmrec_lite.settings import TrainSettings
from llmrec_lite.wals import WALS, WALSConfig

from cli_runner import run_cli
from conftest import needs_real_data

PROFILE = get_profile("smoke")


@pytest.fixture
def run(tiny_run):
    return tiny_run


def settings(stage, output="item-token", **kw):
    base = dict(samples_per_task=None, sample_ratio=1.0, val_users=4, eval_every=2, checkpoint_every=2)
    base.update(kw)
    return TrainSettings.from_profile(PROFILE, stage, output, **base)


def train_prompts(run, with_target=False):
    """Every training prefix as a sequential prompt (template 0), encoded as in training."""
    enc = run.encoder()
    samples = list(run.split.train_samples())
    tmpl = get_template("sequential", 0)
    return samples, [enc.encode(tmpl, x.user, x.history, x.target if with_target else None) for x in samples]


def grads_after_one_step(run, stage, output):
    model = run.build_model(settings(stage, output))
    _, encoded = train_prompts(run, with_target=True)
    batch = collate(encoded, run.backbone.tokenizer.pad_token_id, with_response=output == "text-id")
    model(batch)["loss"].backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_stage1_trains_projectors_only(run, output):
    got = grads_after_one_step(run, 1, output)
    assert any(n.startswith("projectors.user") for n in got) and any(n.startswith("projectors.item") for n in got)
    assert not any("lora_" in n for n in got)
    assert all(n.startswith("projectors.") or n == "item_logit_log_scale" for n in got), got


@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_stage2_trains_projectors_and_lora_only(run, output):
    run.train(settings(1, output), show_progress=False)
    got = grads_after_one_step(run, 2, output)
    assert any("lora_B" in n for n in got) and any(n.startswith("projectors.") for n in got)
    assert all(n.startswith("projectors.") or "lora_" in n or n == "item_logit_log_scale" for n in got), got


def test_stage2_starts_from_stage1_projectors(run, tmp_path):
    run.train(settings(1), show_progress=False)
    from llmrec_lite.projectors import Projectors

    saved = Projectors.from_pretrained(run.stage_dir("item-token", 1) / "final" / "projectors")
    model = run.build_model(settings(2))
    for (name, a), b in zip(saved.state_dict().items(), model.projectors.state_dict().values()):
        assert torch.equal(a, b), name
    fresh = run.at(tmp_path / "elsewhere").build_model(settings(1))  # a stage-1 start is not the trained one
    assert not torch.equal(fresh.projectors.item.fc2.weight, saved.item.fc2.weight)


def test_stage2_without_stage1_is_refused(run):
    with pytest.raises(FileNotFoundError, match="run `train --stage 1`"):
        run.build_model(settings(2))


def test_steps_are_counted_before_training(run):
    s = settings(1, epochs=2, batch_size=3)
    result = run.train(s, show_progress=False)
    assert result["steps"] == training_steps(s, run.split.num_train_samples) == s.total_steps(run.split.num_train_samples)


def test_overfit_item_token_ranks_targets_first(run):
    # What matters is the ranking: every training target first. The loss only has to have
    # fallen far below a uniform guess; its last digits depend on the CPU's summation order.
    common = dict(tasks=("sequential",), epochs=300, lr=1e-2, batch_size=8, warmup_ratio=0.0,
                  eval_every=10_000, checkpoint_every=10_000)
    run.train(settings(1, "item-token", **common), show_progress=False)
    result = run.train(settings(2, "item-token", **common), show_progress=False)
    uniform = torch.log(torch.tensor(float(run.data.num_items))).item()
    assert result["final_loss_mean_last_10pct"] < 0.25 * uniform, result
    trained = run.load("item-token", 2)
    samples, encoded = train_prompts(run)
    batch = collate(encoded, run.backbone.tokenizer.pad_token_id, with_response=False)
    with torch.no_grad():
        top = trained.model.score_items(batch).argmax(1)
    assert top.tolist() == [x.target for x in samples]


def test_overfit_text_id_generates_targets(run):
    common = dict(tasks=("sequential",), epochs=300, lr=1e-2, batch_size=8, warmup_ratio=0.0,
                  eval_every=10_000, checkpoint_every=10_000)
    run.train(settings(1, "text-id", **common), show_progress=False)
    result = run.train(settings(2, "text-id", **common), show_progress=False)
    assert result["final_loss_mean_last_10pct"] < 0.5, result  # nats per response token, from 7+ at the start
    trained = run.load("text-id", 2)
    _, encoded = train_prompts(run, with_target=True)
    batch = collate(encoded, run.backbone.tokenizer.pad_token_id, with_response=False)
    answer_len = max(e.num_response_tokens for e in encoded)
    generated = trained.model.greedy_generate(batch, answer_len)
    for row, e in enumerate(encoded):
        assert generated[row, : e.num_response_tokens].tolist() == e.input_ids[e.response_start:]
    # the diagnosis reads a memorised model as one: its own training prompts answered, gold positions in range
    test = evaluate_text_id(trained, users=np.arange(run.split.num_users), show_progress=False)
    diagnosis = text_id_diagnosis(trained, test, exact_users=2, train_prompts=6)
    assert diagnosis["train_prompts"] == 6 and diagnosis["train_hr@10"] == 1.0, diagnosis
    assert diagnosis["exact_users"] == 2 and 1 <= diagnosis["gold_position_median"] <= run.data.num_items
    assert diagnosis["distinct_top1"] <= diagnosis["test_users"] == run.split.num_users


def test_interrupted_run_resumes_to_the_same_result(run, tmp_path):
    kw = dict(epochs=3, batch_size=2, checkpoint_every=3, eval_every=4)
    full = run.at(tmp_path / "full").train(settings(1, **kw), show_progress=False)
    cut = run.at(tmp_path / "cut")
    part = cut.train(settings(1, **kw), show_progress=False, stop_after_steps=3)
    assert part["interrupted"] and (cut.stage_dir("item-token", 1) / "checkpoint" / "state.json").exists()
    resumed = cut.train(settings(1, **kw), resume=True, show_progress=False)
    assert resumed["steps"] == full["steps"]
    assert abs(resumed["final_loss"] - full["final_loss"]) < 1e-5
    log = lambda r: [x["loss"] for x in r.read_log("item-token", 1)]
    assert log(cut) == pytest.approx(log(run.at(tmp_path / "full")), abs=1e-5)


def test_resume_after_a_kill_logs_each_step_once(run):
    s = settings(1, epochs=3, batch_size=2, checkpoint_every=3, eval_every=4)
    run.train(s, show_progress=False, stop_after_steps=3)
    log = run.stage_dir("item-token", 1) / "log.jsonl"
    # a kill after the checkpoint: steps 4-5 were logged but not checkpointed
    with open(log, "a") as fh:
        fh.write(json.dumps({"step": 4, "loss": 1.0}) + "\n" + json.dumps({"step": 5, "loss": 1.0}) + "\n{\"step\": 6")
    run.train(s, resume=True, show_progress=False)
    steps = [r["step"] for r in run.read_log("item-token", 1)]
    assert steps == list(range(1, len(steps) + 1))


def test_resume_with_other_settings_is_refused(run):
    run.train(settings(1, epochs=2, batch_size=2, checkpoint_every=2), show_progress=False, stop_after_steps=2)
    with pytest.raises(CheckpointMismatchError, match="train differ"):
        run.train(settings(1, epochs=2, batch_size=2, checkpoint_every=2, lr=0.5), resume=True, show_progress=False)


def test_finished_stage_is_never_replaced_silently(run):
    first = run.train(settings(1), show_progress=False)
    with pytest.raises(FinishedWorkError, match="--overwrite"):
        run.train(settings(1), show_progress=False)
    with pytest.raises(FinishedWorkError, match="other settings"):
        run.train(settings(1, lr=0.5), resume=True, show_progress=False)
    reused = run.train(settings(1), resume=True, show_progress=False)
    assert reused["reused"] and reused["final_loss"] == first["final_loss"]
    again = run.train(settings(1), overwrite=True, show_progress=False)
    assert "reused" not in again and again["final_loss"] == first["final_loss"]


def test_resume_without_a_checkpoint_is_refused(run):
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        run.train(settings(1), resume=True, show_progress=False)


def test_corrupt_checkpoint_names_file_and_fix(run):
    run.train(settings(1, epochs=2, batch_size=2, checkpoint_every=2), show_progress=False, stop_after_steps=2)
    checkpoint = run.stage_dir("item-token", 1) / "checkpoint"
    (checkpoint / "trainable.safetensors").write_bytes(b"\x00\x01broken")
    with pytest.raises(CorruptCheckpointError, match="trainable.safetensors.*delete"):
        run.train(settings(1, epochs=2, batch_size=2, checkpoint_every=2), resume=True, show_progress=False)


def test_loading_refuses_other_factors(run):
    run.train(settings(1), show_progress=False)
    other = WALS(WALSConfig(num_factors=8, iterations=3, seed=5)).fit(run.split.train_matrix(), show_progress=False)
    wrong = Run(run.out, run.profile, run.data, run.split, other, run.backbone)
    with pytest.raises(CheckpointMismatchError, match="wals_fingerprint"):
        wrong.load("item-token", 1)


def test_models_sharing_a_backbone_keep_their_own_adapters(run):
    # A stage-1 and a stage-2 model of one run share the backbone object (and its LoRA
    # layers). Loading one must not change what the other computes.
    common = dict(tasks=("sequential",), epochs=3, lr=5e-2, batch_size=4, warmup_ratio=0.0)
    run.train(settings(1, **common), show_progress=False)
    run.train(settings(2, **common), show_progress=False)
    _, encoded = train_prompts(run)
    batch = collate(encoded, run.backbone.tokenizer.pad_token_id, with_response=False)

    def scores(trained):
        with torch.no_grad():
            return trained.model.score_items(batch)

    second = run.load("item-token", 2)
    alone = scores(second)
    first = run.load("item-token", 1)  # puts identity adapters into the shared backbone
    stage1 = scores(first)
    assert not torch.allclose(stage1, alone)  # the adapters matter, so the check below can fail
    assert torch.equal(scores(second), alone)
    assert torch.equal(scores(first), stage1)
    assert torch.equal(scores(run.load("item-token", 1)), stage1)


def test_earlier_targets_match_the_validation_evaluation(run):
    from llmrec_lite.evaluate import evaluate_earlier_targets, evaluate_item_token

    run.train(settings(1), show_progress=False)
    trained = run.load("item-token", 1)
    keys = ("hr@10", "ndcg@10", "hr@10_masked")
    for steps_back, targets in ((0, "test"), (1, "valid")):
        shifted = evaluate_earlier_targets(trained, steps_back, show_progress=False)
        direct = evaluate_item_token(trained, targets=targets, show_progress=False)
        assert [shifted.metrics[k] for k in keys] == [direct.metrics[k] for k in keys]
        assert shifted.gold.tolist() == run.split.target_items(targets).tolist()


def test_model_is_evaluated_with_the_history_length_it_was_trained_with(run):
    run.train(settings(1, max_history=2), show_progress=False)
    trained = run.load("item-token", 1)
    assert trained.encoder.max_history == 2  # not the profile's 10
    user = max(range(run.split.num_users), key=lambda u: len(run.split.history(u)))
    encoded = trained.encoder.for_user(get_template("sequential", 0), user)
    assert encoded.slot_kinds.count("item") == 2 < len(run.split.history(user))


def test_same_seed_same_losses(run, tmp_path):
    a = run.at(tmp_path / "a").train(settings(1), show_progress=False)
    b = run.at(tmp_path / "b").train(settings(1), show_progress=False)
    assert a["final_loss"] == b["final_loss"] and a["final_val_loss"] == b["final_val_loss"]


# ------------------------------------------------------------------ the command line, real data, a real kill


TRAIN = ("train", "--dataset", "lastfm", "--profile", "smoke")


@needs_real_data
@pytest.mark.data
@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_cli_smoke_both_stages(tmp_path, output):
    for stage in ("1", "2"):
        _, out, _ = run_cli(*TRAIN, "--stage", stage, "--out", str(tmp_path), "--output", output)
        for key in ("stage", "steps", "samples", "final_loss", "seconds", "tokens_per_second"):
            assert key in out
        assert out["stage"] == int(stage) and out["steps"] > 0


@needs_real_data
@pytest.mark.data
def test_cli_killed_and_resumed(tmp_path):
    args = (*TRAIN, "--stage", "1", "--samples", "400")
    _, expected, _ = run_cli(*args, "--out", str(tmp_path / "full"))
    checkpoint = tmp_path / "cut" / "item-token" / "stage1" / "checkpoint" / "state.json"
    # the run to kill is a real process: SIGKILL leaves no chance to clean up
    proc = subprocess.Popen([sys.executable, "-m", "llmrec_lite", *args, "--out", str(tmp_path / "cut")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert killed, "the run finished before it could be killed; give it more samples"
    _, got, _ = run_cli(*args, "--out", str(tmp_path / "cut"), "--resume")
    assert got["steps"] == expected["steps"]
    assert abs(got["final_loss"] - expected["final_loss"]) < 1e-5
