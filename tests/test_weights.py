"""Compute weights: frozen weights cast once and LoRA merged for no-grad passes, put back exactly."""

import pytest
import torch

from llmrec_lite.data import load_dataset
from llmrec_lite.split import LeaveOneOutSplit

from test_fusion import batch_for, model_for


@pytest.fixture
def split(s3rec_file):
    return LeaveOneOutSplit.from_data(load_dataset(path=s3rec_file))


def trained_adapters(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def weights_of(model):
    return {n: p.detach().clone() for n, p in model.model.named_parameters()}


def scores(model, batch, bf16):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model.score_items(batch).float()


def test_merged_adapters_give_the_adapted_scores_and_every_weight_comes_back(split):
    model = model_for(split)
    model.set_stage(2)
    trained_adapters(model)
    model.eval()
    batch, _ = batch_for(split, model.backbone.tokenizer, with_response=False)
    before, flags = weights_of(model), {n: p.requires_grad for n, p in model.model.named_parameters()}
    plain = scores(model, batch, bf16=False)
    with torch.no_grad(), model.compute_weights(False, merge_lora=True):
        assert model._adapters_merged
        merged = scores(model, batch, bf16=False)
    torch.testing.assert_close(merged, plain, rtol=1e-4, atol=1e-4)
    assert not model._adapters_merged
    after = weights_of(model)
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert {n: p.requires_grad for n, p in model.model.named_parameters()} == flags
    # the adapters run again outside the block: a change to B changes the scores
    with torch.no_grad():
        next(p for n, p in model.model.named_parameters() if "lora_B" in n).add_(1.0)
    assert not torch.allclose(scores(model, batch, bf16=False), plain)


def test_weights_cast_once_change_no_bfloat16_score(split):
    model = model_for(split)
    model.eval()
    batch, _ = batch_for(split, model.backbone.tokenizer, with_response=False)
    plain = scores(model, batch, bf16=True)
    with model.compute_weights(True):
        cast = scores(model, batch, bf16=True)
        assert any(p.dtype == torch.bfloat16 for p in model.model.parameters())
    assert torch.equal(cast, plain)  # autocast makes the same cast: bit for bit
    assert all(p.dtype == torch.float32 for p in model.model.parameters())


def test_training_losses_and_gradients_are_bit_identical_on_cast_weights(split):
    model = model_for(split)
    model.set_stage(2)
    trained_adapters(model)
    batch, _ = batch_for(split, model.backbone.tokenizer, with_response=False)

    def step():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(batch)["loss"]
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = step()
    with model.compute_weights(True):
        cast_loss, cast_grads = step()
    assert torch.equal(loss, cast_loss)
    assert grads.keys() == cast_grads.keys() and all(torch.equal(grads[n], cast_grads[n]) for n in grads)


def test_merging_needs_a_pass_without_gradients(split):
    model = model_for(split)
    with pytest.raises(RuntimeError, match="no_grad"):
        with model.compute_weights(False, merge_lora=True):
            pass
