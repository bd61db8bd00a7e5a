"""The cpu profile's item-token model on CUDA: the head this book chose on CPUs (cosine logits,
dense supervision, history and known-item offsets, the CF term, prefix user vectors, LoRA on
every linear layer) scores, trains and evaluates on a GPU as it does on the CPU.

The tests marked ``gpu`` are skipped without a CUDA device (``conftest.py``). One test here runs
everywhere: a run whose backbone is on the CPU trains on the CPU, whatever else the machine has.
"""

import dataclasses

import pytest
import torch

from conftest import make_tiny_run
from llmrec_lite.backbone import BackboneSettings, load_backbone
from llmrec_lite.evaluate import evaluate_model
from llmrec_lite.profiles import CHOSEN_HEAD, EVERY_LINEAR_LAYER, get_profile
from llmrec_lite.settings import TrainSettings
from llmrec_lite.templates import get_template

# the smoke profile's sizes with the cpu profile's head and LoRA placement; float32 on both
# devices, so the two runs differ only by the devices' arithmetic
CPU_HEAD = dict(cf_term=True, known_bias=True, user_vectors="prefix", eval_user_vectors="folded",
                lora_targets=EVERY_LINEAR_LAYER, lora_dropout=0.0, train_bf16=False, **CHOSEN_HEAD)
PROFILE = dataclasses.replace(get_profile("smoke"), **CPU_HEAD)


def _run(s3rec_file, folder, device):
    backbone = load_backbone(BackboneSettings(kind="tiny", lora_targets=EVERY_LINEAR_LAYER, lora_dropout=0.0),
                             device=device)
    return make_tiny_run(s3rec_file, folder, PROFILE, backbone)


def _settings(stage):
    return TrainSettings.from_profile(PROFILE, stage, "item-token", samples_per_task=8, val_users=4, eval_every=2,
                                      checkpoint_every=2)


def _device(module):
    return next(module.parameters()).device.type


def test_a_run_on_the_cpu_trains_on_the_cpu(s3rec_file, tmp_path):
    # Accelerate once moved every model to a GPU where one was present, the cpu profile's too
    run = _run(s3rec_file, tmp_path / "run", "cpu")
    run.train(_settings(1), show_progress=False)
    assert _device(run.backbone.model) == "cpu"
    assert _device(run.load("item-token", 1).model) == "cpu"


@pytest.mark.gpu
def test_the_cpu_profiles_head_scores_alike_on_cuda(s3rec_file, tmp_path):
    cpu, gpu = _run(s3rec_file, tmp_path / "cpu", "cpu"), _run(s3rec_file, tmp_path / "gpu", "cuda")
    models = [run.build_model(_settings(1)).eval() for run in (cpu, gpu)]
    assert _device(models[1]) == "cuda" and models[1].item_known_bias.device.type == "cuda"
    with torch.no_grad():
        for model in models:  # each learned term away from its zero start, so that each one counts
            model.item_cf_weight.fill_(0.7)
            model.item_known_bias.fill_(-1.5)
            model.item_history_bias.fill_(-0.5)
    users = list(range(cpu.split.num_users))
    batch = cpu.encoder().batch(get_template("sequential", 0), users)
    with torch.no_grad():
        on_cpu = models[0].score_items(batch)
        on_gpu = models[1].score_items(batch.to("cuda")).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_the_cpu_profiles_head_trains_and_evaluates_on_cuda(s3rec_file, tmp_path):
    cpu, gpu = _run(s3rec_file, tmp_path / "cpu", "cpu"), _run(s3rec_file, tmp_path / "gpu", "cuda")
    for run in (cpu, gpu):
        for stage in (1, 2):
            result = run.train(_settings(stage), show_progress=False)
            assert result["steps"] > 0
    assert _device(cpu.backbone.model) == "cpu" and _device(gpu.backbone.model) == "cuda"
    for stage in (1, 2):  # the same steps on the same prompts: the same losses, up to rounding
        losses = [torch.tensor([r["loss"] for r in run.read_log("item-token", stage) if "loss" in r])
                  for run in (cpu, gpu)]
        assert len(losses[0]) == len(losses[1]) > 0
        # the first step's loss is one forward pass from the same weights; Adam's later steps move
        # each weight by about its learning rate whatever the gradient's size, so the devices'
        # rounding grows with the steps (0.4 % after three steps on the H200): a looser bound
        torch.testing.assert_close(losses[1][0], losses[0][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=1e-3)
    trained = [run.load("item-token", 2) for run in (cpu, gpu)]
    assert _device(trained[1].model) == "cuda"
    assert trained[1].model.item_cf_weight.item() != 0.0  # the CF term trained on the GPU
    evaluations = [evaluate_model(t, users=range(cpu.split.num_users), show_progress=False) for t in trained]
    assert evaluations[1].metrics["users"] == cpu.split.num_users
    for key in ("hr@10", "ndcg@10"):
        assert 0.0 <= evaluations[1].metrics[key] <= 1.0
    top = trained[1].recommend([0, 1], k=3)
    assert len(top) == 2
