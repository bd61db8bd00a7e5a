"""The learning-efficiency settings: dense next-item supervision, cosine item logits, learning
rates per parameter group, and the tuning record that never reads a test target."""

import numpy as np
import pytest
import torch

from conftest import needs_real_data
from llmrec_lite.data import InteractionData
from llmrec_lite.profiles import get_profile
from llmrec_lite.prompts import collate
from llmrec_lite.runs import Run
from llmrec_lite.settings import TrainSettings
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.templates import get_template
from llmrec_lite.train import parameter_groups
from lab.records import without_timings
from lab.runners import tune

PROFILE = get_profile("smoke")


def settings(stage, **kw):
    base = dict(samples_per_task=None, sample_ratio=1.0, val_users=4, eval_every=2, checkpoint_every=2)
    base.update(kw)
    return TrainSettings.from_profile(PROFILE, stage, "item-token", **base)


@pytest.mark.parametrize("with_embeddings", [True, False])
def test_dense_targets_pair_each_history_item_with_the_next(tiny_run, with_embeddings):
    enc = tiny_run.encoder(with_embeddings=with_embeddings)
    history = [0, 3, 5]
    encoded = enc.encode(get_template("sequential", 0), 1, history, target=7)
    pairs = encoded.next_item_targets()
    assert [item for _, item in pairs] == [3, 5, 7]
    assert encoded.history_items == history
    tokens = enc.tokenizer.convert_ids_to_tokens([encoded.input_ids[p] for p, _ in pairs])
    if with_embeddings:  # each position is the item's slot
        assert [p for p, _ in pairs] == [p for p, k in zip(encoded.slot_positions, encoded.slot_kinds) if k == "item"]
    else:  # each position is the last token of the item's text id (its last digit)
        ids = [enc.data.item_id(i) for i in history]
        assert [t.lstrip("▁Ġ")[-1] for t in tokens] == [str(i)[-1] for i in ids]
    # no target (inference): nothing to supervise
    assert enc.encode(get_template("sequential", 0), 1, history).next_item_targets() == []
    # a direct prompt has no history positions
    assert enc.encode(get_template("direct", 0), 1, history, target=7).next_item_targets() == []


def test_collate_shifts_dense_positions_with_the_padding(tiny_run):
    enc = tiny_run.encoder()
    short = enc.encode(get_template("sequential", 0), 0, [1], target=2)
    long = enc.encode(get_template("sequential", 0), 1, [1, 2, 3, 4], target=5)
    batch = collate([short, long], tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    pad = len(long.input_ids[: long.response_start]) - short.response_start
    assert batch.next_items.tolist() == [2, 2, 3, 4, 5]
    assert batch.next_batch.tolist() == [0, 1, 1, 1, 1]
    assert batch.next_pos[0].item() == pad + short.history_positions[0]


def test_dense_supervision_does_not_see_the_item_it_predicts(tiny_run):
    # the hidden state at history position k must not change when the items after k change
    model = tiny_run.build_model(settings(1, dense_weight=0.5))
    model.eval()
    enc = tiny_run.encoder()
    tmpl = get_template("sequential", 0)
    a = enc.encode(tmpl, 0, [1, 2, 3], target=4)
    b = enc.encode(tmpl, 0, [1, 6, 7], target=8)
    pad = tiny_run.backbone.tokenizer.pad_token_id
    with torch.no_grad():
        ha = model.hidden_states(collate([a], pad, with_response=False))[0]
        hb = model.hidden_states(collate([b], pad, with_response=False))[0]
    first = a.history_positions[0]
    torch.testing.assert_close(ha[: first + 1], hb[: first + 1])
    assert not torch.allclose(ha[a.history_positions[1]], hb[b.history_positions[1]])


def test_dense_loss_mixes_answer_and_history_positions(tiny_run):
    enc = tiny_run.encoder()
    encoded = [enc.encode(get_template("sequential", 0), 0, [1, 2, 3], target=4)]
    batch = collate(encoded, tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    plain = tiny_run.build_model(settings(1, dense_weight=0.0))
    dense = tiny_run.build_model(settings(1, dense_weight=0.5))
    dense.load_state_dict(plain.state_dict())
    with torch.no_grad():
        p, d = plain(batch), dense(batch)
    torch.testing.assert_close(p["answer_loss"], d["answer_loss"])
    assert p["loss"].item() == pytest.approx(p["answer_loss"].item())
    assert d["loss"].item() != pytest.approx(d["answer_loss"].item())


def test_cosine_logits_start_at_the_temperature_and_are_bounded(tiny_run):
    model = tiny_run.build_model(settings(1, item_logit="cosine", logit_temperature=0.05))
    assert model.item_logit_log_scale.exp().item() == pytest.approx(20.0)
    batch = tiny_run.encoder().batch(get_template("sequential", 0), [0, 1])
    with torch.no_grad():
        scores = model.score_items(batch)
    assert scores.abs().max().item() <= 20.0 + 1e-4
    # the catalogue computed once gives the same scores
    with torch.no_grad():
        torch.testing.assert_close(model.score_items(batch, model.item_matrix()), scores)


def test_overfit_with_cosine_logits_and_dense_supervision(tiny_run):
    common = dict(tasks=("sequential",), epochs=300, lr=1e-2, batch_size=8, warmup_ratio=0.0, eval_every=10_000,
                  checkpoint_every=10_000, item_logit="cosine", dense_weight=0.5)
    tiny_run.train(settings(1, **common), show_progress=False)
    tiny_run.train(settings(2, **common), show_progress=False)
    trained = tiny_run.load("item-token", 2)
    assert trained.model.item_logit == "cosine" and trained.model.dense_weight == 0.5
    enc, tmpl = tiny_run.encoder(), get_template("sequential", 0)
    samples = list(tiny_run.split.train_samples())
    batch = collate([enc.encode(tmpl, x.user, x.history) for x in samples], tiny_run.backbone.tokenizer.pad_token_id,
                    with_response=False)
    with torch.no_grad():
        top = trained.model.score_items(batch).argmax(1)
    assert top.tolist() == [x.target for x in samples]


def test_learning_rates_per_parameter_group(tiny_run):
    model = tiny_run.build_model(settings(1))
    model.set_stage(2)
    groups = parameter_groups(model, settings(2, lr=1e-3, lora_lr=3e-4, projector_lr=2e-3))
    rates = sorted(g["lr"] for g in groups)
    assert rates == sorted([2e-3, 3e-4, settings(2).logit_scale_lr])
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("bad, message", [(dict(item_logit="l2"), "item_logit"), (dict(dense_weight=1.0), "dense_weight"),
                                          (dict(logit_temperature=0.0), "temperature"), (dict(lora_lr=-1.0), "lora_lr")])
def test_bad_head_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        settings(1, **bad)


def _with_other_test_targets(run):
    """The same run with every user's test target (last item) replaced by another item."""
    data = run.data
    sequences = []
    for seq in data.sequences:
        seq = np.array(seq).copy()
        seq[-1] = (seq[-1] + 1 + len(seq)) % data.num_items
        if seq[-1] == seq[-2]:
            seq[-1] = (seq[-1] + 1) % data.num_items
        sequences.append(seq)
    fields = {k: v for k, v in data.__dict__.items()}
    fields["sequences"] = sequences
    other = InteractionData(**fields)
    split = LeaveOneOutSplit.from_data(other)
    assert (split.test_targets != run.split.test_targets).all()
    return Run(run.out.parent / "other", run.profile, other, split, run.wals, run.backbone)


def test_tuning_record_never_reads_a_test_target(tiny_run):
    candidates = {"dot": {"item_logit": "dot"}, "cosine + dense": {"item_logit": "cosine", "dense_weight": 0.5}}
    first = tune(tiny_run, candidates, budget=1.0, show_progress=False)
    second = tune(_with_other_test_targets(tiny_run), candidates, budget=1.0, show_progress=False)
    assert without_timings(first) == without_timings(second)
    assert first["targets"] == "valid" and first["best"] in candidates
    row = first["candidates"][0]
    assert {"hr@10", "ndcg@10", "hr@10_masked"} <= set(row["valid"]) and row["curve"]
    assert all("val_hr@10" in point for point in row["curve"])


def test_stage_split_record_never_reads_a_test_target(tiny_run):
    from lab.records import split_table
    from lab.runners import stage_split

    splits = [(4, 8), (8, 4)]
    first = stage_split(tiny_run, splits, show_progress=False)
    second = stage_split(_with_other_test_targets(tiny_run), splits, show_progress=False)
    assert without_timings(first) == without_timings(second)
    assert first["targets"] == "valid" and first["best"] in {"4 + 8", "8 + 4"}
    row = first["splits"][1]
    assert row["samples_per_task"] == [8, 4] and len(row["stages"]) == 4  # both stages, with and without CF
    assert set(row["paired"]) == {"stage 2 - stage 1", "stage 1 - no CF", "stage 2 - no CF"}
    assert "stage 2 - first split" in row and "stage 2 - first split" not in first["splits"][0]
    assert len(split_table(first)) == 2
    with pytest.raises(ValueError, match="STAGE1|positive"):
        stage_split(tiny_run, [(4, 0)], show_progress=False)


def test_evaluation_runs_in_the_precision_the_model_was_trained_in(tiny_run):
    from llmrec_lite.evaluate import evaluate_model

    tiny_run.train(settings(1, bf16=True, epochs=1), show_progress=False)
    trained = tiny_run.load("item-token", 1)
    assert evaluate_model(trained, users=[0, 1], show_progress=False).metrics["bf16"] is True
    assert evaluate_model(trained, users=[0, 1], bf16=False, show_progress=False).metrics["bf16"] is False
    assert evaluate_model(trained.model, trained.encoder, users=[0, 1], show_progress=False).metrics["bf16"] is False


def test_dense_supervision_counts_more_targets_than_prompts(tiny_run):
    plain = tiny_run.train(settings(1, epochs=1), show_progress=False)
    assert plain["targets"] == plain["samples"]
    dense = tiny_run.at(tiny_run.out.parent / "dense").train(settings(1, epochs=1, dense_weight=0.5), show_progress=False)
    assert dense["samples"] == plain["samples"] and dense["targets"] > dense["samples"]
    assert dense["targets_per_second"] > 0 and dense["prompts_per_second"] > 0


def test_profiles_take_the_head_the_recorded_tuning_chose():
    import json
    from pathlib import Path

    from llmrec_lite.profiles import CHOSEN_HEAD
    from lab.records import choose, record_table

    records = [json.loads(p.read_text()) for p in sorted(Path(__file__).parents[1].glob("benchmarks/results/tune_*_cpu.json"))]
    assert {r["dataset"] for r in records} >= {"lastfm", "beauty"}
    assert all(r["targets"] == "valid" for r in records)
    best = next(c for c in records[0]["candidates"] if c["name"] == choose(records))["settings"]
    assert all(CHOSEN_HEAD[k] == v for k, v in best.items())
    for profile in ("cpu", "gpu"):
        assert all(getattr(get_profile(profile), k) == v for k, v in CHOSEN_HEAD.items())
    assert len(record_table(records[0])) == len(records[0]["candidates"])


def test_cpu_profile_takes_the_stage_split_the_records_chose():
    """The prompts per stage come from the distance record's best candidate where it names
    them (it scores at the test target's distance), else from the stage-split record."""
    import json
    from pathlib import Path

    from lab.records import choose_split, distance_ranking

    results = Path(__file__).parents[1] / "benchmarks/results"
    records = [json.loads(p.read_text()) for p in sorted(results.glob("split_*_cpu.json"))]
    assert {r["dataset"] for r in records} >= {"lastfm", "beauty"}
    assert all(r["targets"] == "valid" for r in records)
    far = [json.loads(p.read_text()) for p in sorted(results.glob("distance_*_cpu.json"))]
    best = distance_ranking(far)[0][0]
    samples = next(c for c in far[0]["candidates"] if c["name"] == best)["settings"].get("samples_per_task")
    assert tuple(get_profile("cpu").item_token_samples) == (tuple(samples) if samples else choose_split(records))


def test_history_pairs_follow_causal_attention(tiny_run):
    enc = tiny_run.encoder()
    short = enc.encode(get_template("sequential", 0), 0, [1], target=2)
    long = enc.encode(get_template("sequential", 0), 1, [1, 2, 3, 4], target=5)
    direct = enc.encode(get_template("direct", 0), 2, [6, 7], target=8)
    batch = collate([short, long, direct], tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    answer = sorted(zip(batch.seen_batch.tolist(), batch.seen_items.tolist()))
    assert answer == [(0, 1), (1, 1), (1, 2), (1, 3), (1, 4)]  # the direct prompt shows no history
    dense = {}
    for row, item in zip(batch.next_seen_batch.tolist(), batch.next_seen_items.tolist()):
        dense.setdefault(row, []).append(item)
    # dense position k sees the history up to and including its own item, never the item it predicts
    assert dense == {0: [1], 1: [1], 2: [1, 2], 3: [1, 2, 3], 4: [1, 2, 3, 4]}
    for row, seen in dense.items():
        assert batch.next_items[row].item() not in seen


def _twin_models(tiny_run, base: dict, **extra):
    """``(plain, variant)`` eval-mode models of ``base`` settings, the variant with ``extra``
    on top and the plain model's weights: any difference in scores comes from ``extra``."""
    plain = tiny_run.build_model(settings(1, **base))
    variant = tiny_run.build_model(settings(1, **base, **extra))
    variant.load_state_dict(plain.state_dict(), strict=False)
    return plain.eval(), variant.eval()


def test_history_bias_moves_only_the_items_the_prompt_shows(tiny_run):
    enc = tiny_run.encoder()
    encoded = [enc.encode(get_template("sequential", 0), 0, [1, 2, 1], target=4)]
    batch = collate(encoded, tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    plain, biased = _twin_models(tiny_run, dict(item_logit="cosine", dense_weight=0.5), history_bias=True)
    with torch.no_grad():
        before = plain.score_items(batch)
        torch.testing.assert_close(biased.score_items(batch), before)  # starts at 0: no change
        biased.item_history_bias.fill_(-3.0)
        after = biased.score_items(batch)
    shift = (after - before)[0]
    assert torch.allclose(shift[[1, 2]], torch.tensor(-3.0))  # item 1 shown twice, offset once
    others = torch.ones_like(shift, dtype=torch.bool)
    others[[1, 2]] = False
    assert torch.all(shift[others] == 0)
    # trainable with the logit scale, off by default
    assert biased.item_history_bias.requires_grad and not plain.item_history_bias.requires_grad
    groups = parameter_groups(biased, settings(1, history_bias=True))
    assert any(any(p is biased.item_history_bias for p in g["params"]) and g.get("weight_decay") == 0.0 for g in groups)


def test_history_bias_is_saved_and_loaded(tiny_run, tmp_path):
    from llmrec_lite.checkpoints import load_final_into, save_final

    s = settings(1, item_logit="cosine", history_bias=True)
    model = tiny_run.build_model(s)
    with torch.no_grad():
        model.item_history_bias.fill_(-2.5)
    save_final(model, tmp_path / "final", {"steps": 0})
    fresh = tiny_run.build_model(s)
    load_final_into(fresh, tmp_path / "final")
    assert fresh.item_history_bias.item() == pytest.approx(-2.5)


def test_prompts_carry_every_item_consumed_before_their_target(tiny_run):
    """Training prompts: their whole prefix; evaluation prompts: the history before the target
    (shown or not, the target never)."""
    from llmrec_lite.prompts import sample_training_prompts

    split = tiny_run.split
    for rendered in sample_training_prompts(split, "sequential", None, max_history=2):
        assert rendered.known == rendered.prefix and rendered.target not in rendered.known[-1:]
    enc = tiny_run.encoder()
    for targets in ("valid", "test"):
        batch = enc.batch(get_template("sequential", 0), [0, 1], targets)
        for row in (0, 1):
            known = batch.known_items[batch.known_batch == row].tolist()
            assert known == split.history(row, targets).tolist()
    # a batch mixing prompts without the list has none (the offset is then skipped)
    bare = enc.encode(get_template("sequential", 0), 0, [1], target=2)
    assert collate([bare], tiny_run.backbone.tokenizer.pad_token_id, with_response=False).known_batch is None


def test_known_bias_moves_every_item_the_user_consumed_and_is_saved(tiny_run, tmp_path):
    from llmrec_lite.checkpoints import load_final_into, save_final

    enc = tiny_run.encoder()
    # shows items 1 and 2; the user also consumed 3 and 1 earlier (not shown)
    rendered = enc.render(get_template("sequential", 0), 0, [1, 2], target=4)
    from dataclasses import replace

    batch = collate([enc.encode_rendered(replace(rendered, known=(3, 1, 1, 2)))],
                    tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    s_known = settings(1, item_logit="cosine", history_bias=True, known_bias=True)
    plain, known = _twin_models(tiny_run, dict(item_logit="cosine", history_bias=True), known_bias=True)
    with torch.no_grad():
        before = plain.score_items(batch)
        torch.testing.assert_close(known.score_items(batch), before)  # starts at 0: no change
        known.item_history_bias.fill_(-1.0)
        known.item_known_bias.fill_(-2.0)
        shift = (known.score_items(batch) - before)[0]
    assert torch.allclose(shift[[1, 2]], torch.tensor(-3.0))  # shown and consumed: both offsets, once each
    assert torch.allclose(shift[3], torch.tensor(-2.0))  # consumed, not shown: the known offset only
    others = torch.ones_like(shift, dtype=torch.bool)
    others[[1, 2, 3]] = False
    assert torch.all(shift[others] == 0)
    assert known.item_known_bias.requires_grad and not plain.item_known_bias.requires_grad
    assert known.trainable_parameters()["known_bias"] == 1
    groups = parameter_groups(known, s_known)
    assert any(any(p is known.item_known_bias for p in g["params"]) and g.get("weight_decay") == 0.0 for g in groups)
    # its gradient flows from the answer position in stage 1
    known.train()
    train_batch = collate([enc.encode_rendered(replace(rendered, known=(3, 1, 1, 2)))],
                          tiny_run.backbone.tokenizer.pad_token_id)
    known(train_batch)["loss"].backward()
    assert known.item_known_bias.grad is not None and known.item_known_bias.grad.abs() > 0
    save_final(known, tmp_path / "final", {"steps": 0})
    fresh = tiny_run.build_model(s_known)
    load_final_into(fresh, tmp_path / "final")
    assert fresh.item_known_bias.item() == pytest.approx(-2.0)


def test_readout_starts_as_the_identity_and_trains_from_stage_one(tiny_run, tmp_path):
    from llmrec_lite.checkpoints import load_final_into, save_final
    from llmrec_lite.projectors import CheckpointMismatchError

    enc = tiny_run.encoder()
    batch = collate([enc.encode(get_template("sequential", 0), 0, [1, 2], target=3)],
                    tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    plain, read = _twin_models(tiny_run, dict(item_logit="cosine"), readout=True)
    with torch.no_grad():
        torch.testing.assert_close(read.score_items(batch), plain.score_items(batch))
    assert read.readout.weight.requires_grad and read.trainable_parameters()["readout"] == read.readout.weight.numel()
    # its gradient flows in stage 1 (backbone frozen)
    read.train()
    read(collate([enc.encode(get_template("sequential", 0), 0, [1, 2], target=3)],
                 tiny_run.backbone.tokenizer.pad_token_id, with_response=False))["loss"].backward()
    assert read.readout.weight.grad is not None and read.readout.weight.grad.abs().sum() > 0
    with torch.no_grad():
        read.readout.weight.mul_(2.0).add_(0.01)
    save_final(read, tmp_path / "final", {"steps": 0})
    fresh = tiny_run.build_model(settings(1, item_logit="cosine", readout=True))
    load_final_into(fresh, tmp_path / "final")
    torch.testing.assert_close(fresh.readout.weight, read.readout.weight)
    # a stage saved without a readout cannot silently load into a model that has one
    save_final(plain, tmp_path / "plain", {"steps": 0})
    with pytest.raises(CheckpointMismatchError, match="readout"):
        load_final_into(fresh, tmp_path / "plain")


def _shifted_runs(tmp_path, last_items):
    """Two shifted runs (steps_back=1) of files that differ only in each user's last item."""
    from fusion_fixtures import tiny_backbone

    backbone = tiny_backbone()
    lines = ["1 10 11 12 13 14 15 16 17 18 19", "2 11 12 15 16 10 13", "3 10 13 15 17 18 19 16",
             "4 19 18 17 16 14 12", "5 12 14 16 18 11 13 15"]
    runs = []
    for k, last in enumerate(last_items):
        folder = tmp_path / f"file{k}"
        folder.mkdir()
        # user 1 names every item first, so both files index the catalogue alike
        text = [lines[0]] + [" ".join(line.split()[:-1] + [str(item)]) for line, item in zip(lines[1:], last)]
        (folder / "Shop.txt").write_text("\n".join(text) + "\n")
        runs.append(Run.open(PROFILE, None, tmp_path / f"run{k}", path=folder / "Shop.txt", backbone=backbone,
                             steps_back=1, show_progress=False))
    return runs


# the last item of users 2-5 in each of the two files: the shifted runs' real test targets
OTHER_TEST_TARGETS = [(13, 16, 12, 15), (17, 11, 10, 19)]
# the smoke profile's candidate and a shorter stage 2, for the records made from the distance runs
PROFILE_AND_SHORT = {"16 + 16": {"samples_per_task": tuple(PROFILE.item_token_samples)},
                     "16 + 4": {"samples_per_task": (16, 4)}}


def _record_on_both(tmp_path, make, *args, candidates=PROFILE_AND_SHORT):
    """``make`` (a record builder of :mod:`lab.runners`) on both shifted runs, whose files
    differ only in the real test targets: the two records must be equal but for their timings.
    Returns ``(first run, second run, first record, second record)``."""
    first, second = _shifted_runs(tmp_path, OTHER_TEST_TARGETS)
    a = make(first, *args, candidates=candidates, show_progress=False)
    b = make(second, *args, candidates=candidates, show_progress=False)
    assert without_timings(a) == without_timings(b)
    return first, second, a, b


def test_distance_record_never_reads_a_real_test_target(tmp_path):
    from lab.records import add_to_record, distance_best, distance_ranking, distance_table
    from lab.runners import distance_tune

    candidates = {"8 + 8": {"samples_per_task": (8, 8)}, "8 + 4": {"samples_per_task": (8, 4)},
                  "8 + 8 slow LoRA": {"samples_per_task": (8, 8), "stage2": {"lora_lr": 1e-4}}}
    first, second, a, b = _record_on_both(tmp_path, distance_tune, candidates=candidates)
    # the shifted run's test target is the real validation target, its training ends one item earlier
    assert first.split.test_targets.tolist() == second.split.test_targets.tolist()
    assert a["steps_back"] == 1 and a["best"] in candidates
    row = a["candidates"][2]
    assert {"hr@10", "hr@10_masked"} <= set(row["far"]) and {"hr@10"} <= set(row["near"])
    assert row["stage 2 - stage 1 (far)"]["hr@10"]["verdict"] in {"above", "below", "not separated"}
    # candidates that share stage 1 train it once; the slower LoRA only changes stage 2
    runs = first.out / "distance"
    assert json_of(runs / "8-8-slow-lora/item-token/stage1/config.json") == json_of(runs / "8-8/item-token/stage1/config.json")
    assert json_of(runs / "8-8-slow-lora/item-token/stage2/config.json")["train"]["lora_lr"] == 1e-4
    assert [r[0] for r in distance_ranking([a, b])][0] == a["best"] and len(distance_table(a)) == 3
    # a candidate added later joins the record; the earlier rows stay as measured
    extra = distance_tune(first, {"8 + 8 prefix": {"samples_per_task": (8, 8), "user_vectors": "prefix"}},
                          show_progress=False)
    assert json_of(runs / "8-8-prefix/item-token/stage1/config.json")["train"]["user_vectors"] == "prefix"
    merged = add_to_record(a, extra, {"date": "today"})
    assert [c["name"] for c in merged["candidates"]] == [*candidates, "8 + 8 prefix"]
    assert merged["candidates"][:3] == a["candidates"]
    assert merged["added"] == [{"candidates": ["8 + 8 prefix"], "date": "today"}]
    # each row says where it was measured: the added one its batch's date, the others the record's
    table = distance_table(add_to_record({**a, "date": "then"}, extra, {"date": "today"}))
    assert table["measured on"].iloc[-1].endswith(", today")
    assert table["measured on"].iloc[0].endswith(", then")
    assert merged["best"] == distance_best(merged["candidates"])
    with pytest.raises(ValueError, match="users"):
        add_to_record(a, {**extra, "users": 1}, {})


def test_seed_record_never_reads_a_real_test_target_and_trains_each_seed_apart(tmp_path):
    import numpy as np

    from llmrec_lite.evaluate import evaluate_model
    from lab.records import seed_summary, seed_table
    from lab.runners import seed_spread
    from llmrec_lite.variants import ITEM_TOKEN

    first, _, a, _ = _record_on_both(tmp_path, seed_spread, (0, 3))
    assert a["candidate"] == "16 + 16" and [r["seed"] for r in a["seeds"]] == [0, 3]
    runs = first.out / "distance"
    # the profile's seed is the distance record's run; another seed trains both stages apart
    assert [r["name"] for r in a["seeds"]] == ["16 + 16", "16 + 16, seed 3"]
    for stage in (1, 2):
        assert json_of(runs / f"16-16/item-token/stage{stage}/config.json")["train"]["seed"] == PROFILE.seed
        assert json_of(runs / f"16-16-seed-3/item-token/stage{stage}/config.json")["train"]["seed"] == 3
    # each seed's stage 2 is scored as an evaluation of it on the same users ranks it
    for row, folder in zip(a["seeds"], ("16-16", "16-16-seed-3")):
        ev = evaluate_model(first.at(runs / folder).load(ITEM_TOKEN, 2), targets="test", show_progress=False)
        assert row["far"]["hr@10"] == ev.metrics["hr@10"]
    over = a["over seeds"]["hr@10"]
    differences = [r["stage 2 - stage 1 (far)"]["hr@10"]["difference"] for r in a["seeds"]]
    assert over["stage 2 - stage 1"]["mean"] == pytest.approx(np.mean(differences))
    # the seed-averaged per-user difference has the mean of the seeds' differences (same users)
    assert over["seed-averaged stage 2 - stage 1"]["difference"] == pytest.approx(np.mean(differences))
    assert over["seeds above zero"] == sum(d > 0 for d in differences)
    assert list(seed_table(a)["seed"]) == [0, 3, "mean"]
    summary = seed_summary(a)
    assert (summary["users"], summary["seeds"]) == (a["users"], 2)
    assert summary["difference"] == over["seed-averaged stage 2 - stage 1"]["difference"]
    assert (summary["min"], summary["max"]) == (min(differences), max(differences))
    assert summary["seeds_above"] == over["seeds above zero"] and summary["sd_stage2"] == over["stage 2"]["sd"]
    lo, hi = summary["ci95"]
    assert summary["verdict"] == ("above" if lo > 0 else "below" if hi < 0 else "not separated")
    with pytest.raises(ValueError, match="two different seeds"):
        seed_spread(first, (1, 1), candidates=PROFILE_AND_SHORT, show_progress=False)
    with pytest.raises(ValueError, match="Unknown distance candidate"):
        seed_spread(first, (0, 1), candidate="nope", candidates=PROFILE_AND_SHORT, show_progress=False)


def test_distance_candidate_with_other_lora_adapters_trains_on_its_own_backbone(tmp_path):
    from lab.runners import candidate_run, distance_tune

    first, _ = _shifted_runs(tmp_path, OTHER_TEST_TARGETS)
    every = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    candidates = {"8 + 8": {"samples_per_task": (8, 8)},
                  "8 + 8 wide LoRA": {"samples_per_task": (8, 8), "backbone": {"lora_r": 4, "lora_targets": every}}}
    record = distance_tune(first, candidates, show_progress=False)
    runs = first.out / "distance"
    for stage in (1, 2):
        wide = json_of(runs / f"8-8-wide-lora/item-token/stage{stage}/config.json")["backbone"]
        assert wide["lora_r"] == 4 and wide["lora_targets"] == list(every)
        assert json_of(runs / f"8-8/item-token/stage{stage}/config.json")["backbone"]["lora_r"] == first.backbone.settings.lora_r
    assert record["candidates"][1]["settings"]["backbone"]["lora_r"] == 4
    # the run's own backbone is untouched: its adapters sit on the query and value projections only
    assert first.backbone.settings.lora_targets == ("q_proj", "v_proj")
    adapted = {n.split(".")[-4] for n, _ in candidate_run(first, candidates["8 + 8 wide LoRA"], tmp_path / "w")
               .backbone.model.named_parameters() if "lora_A" in n}
    assert adapted == set(every)
    # a candidate that names the run's own settings shares its backbone
    assert candidate_run(first, {"backbone": {"lora_r": first.backbone.settings.lora_r}}, tmp_path / "s").backbone is first.backbone
    with pytest.raises(ValueError, match="lora_r.*not hidden_size"):
        candidate_run(first, {"backbone": {"hidden_size": 3}}, tmp_path / "x")


def test_users_to_resolve_scales_one_runs_interval_to_the_seed_averaged_gain():
    from lab.records import users_to_resolve

    def record(intervals, averaged, users=1000):
        return {"dataset": "shop", "users": users,
                "seeds": [{"stage 2 - stage 1 (far)": {"hr@10": {"ci95": list(ci)}}} for ci in intervals],
                "over seeds": {"hr@10": {"seed-averaged stage 2 - stage 1": {"difference": averaged}}}}

    # half-widths .010 and .006 average to .008; a gain of .004 is half of it: four times the users
    got = users_to_resolve(record([(-0.005, 0.015), (-0.002, 0.010)], -0.004))
    assert got["half_width"] == pytest.approx(0.008) and got["gain"] == pytest.approx(0.004)
    assert got["needed"] == 4000
    assert users_to_resolve(record([(-0.005, 0.015)] * 2, 0.005))["needed"] == 4000  # 4.0 times the record's
    assert users_to_resolve(record([(0.0, 0.01)], 0.01))["needed"] == 250  # fewer than the record's 1,000
    assert users_to_resolve(record([(0.0, 0.01)], 0.0))["needed"] is None  # a zero gain: no number of users


def test_more_users_record_reads_beside_the_test_table_in_every_case():
    from lab.records import more_users_against_test, more_users_row
    from llmrec_lite.results import paired_verdict

    def entry(difference, ci, users, verdict=None):
        return {"key": "hr@10", "difference": difference, "ci95": list(ci), "users": users,
                "verdict": verdict or paired_verdict(ci)}

    valid = entry(0.010, (0.006, 0.014), 10000)
    row = {"name": "mine", "far": {"hr@10": 0.06}, "stage1_far": {"hr@10": 0.05},
           "stage 2 - stage 1 (far)": {"hr@10": valid}}
    record = {"dataset": "shop", "users": 10000, "candidates": [row]}
    assert more_users_row(record) is row
    got = more_users_against_test(record, entry(0.012, (0.002, 0.022), 2000))
    assert got["reading"] == "agree" and got["valid"] is valid and got["apart"] is None
    held = more_users_against_test(record, entry(0.004, (-0.004, 0.012), 2000))
    assert held["reading"] == "holds" and held["apart"] is None  # the interval holds +0.0100: too few users
    # below: half-widths .004 and .008 are 1.96 standard errors each; .010 apart is 2.2 of them
    below = more_users_against_test(record, entry(0.0, (-0.008, 0.008), 2000))
    assert below["reading"] == "below" and below["apart"] == pytest.approx(2.19, abs=0.01)
    assert more_users_against_test(record, entry(0.030, (0.020, 0.040), 2000))["reading"] == "agree"
    unresolved = {**record, "candidates": [{**row, "stage 2 - stage 1 (far)": {
        "hr@10": entry(0.0, (-0.004, 0.004), 10000)}}]}
    assert more_users_against_test(unresolved, entry(0.03, (0.02, 0.04), 2000))["reading"] == "above"
    assert more_users_against_test(record, None) == {"valid": valid, "test": None, "reading": "no test", "apart": None}
    # the reading flips when the test interval crosses zero (same mean distance from the validation estimate)
    assert [more_users_against_test(record, entry(0.011, (lo, lo + 0.02), 2000))["reading"]
            for lo in (0.001, -0.001)] == ["agree", "holds"]
    with pytest.raises(ValueError, match="one candidate"):
        more_users_row({**record, "candidates": [row, row]})


def test_more_users_records_are_of_the_cpu_profiles_run_on_more_users_than_its_distance_record():
    import json
    from pathlib import Path

    from lab.catalogue import candidate_matches, profile_candidate
    from lab.records import MORE_USERS_RECORD, more_users_row

    results = Path(__file__).parents[1] / "benchmarks/results"
    profile = get_profile("cpu")
    records = [json.loads(p.read_text()) for p in sorted(results.glob(MORE_USERS_RECORD.format(dataset="*", profile="cpu")))]
    assert {r["dataset"] for r in records} >= {"beauty"}
    for record in records:
        row = more_users_row(record)
        distance = json.loads((results / f"distance_{record['dataset']}_cpu.json").read_text())
        # the profile's candidate under the profile's seed, on the same shifted run, on more users
        assert row["name"] == profile_candidate(profile) and "seed" not in row["settings"]
        assert candidate_matches(profile, row["settings"], [c["settings"] for c in distance["candidates"]])
        assert record["steps_back"] == 1 and record["users"] > distance["users"]
        assert record["head"] == distance["head"]


def test_fusion_record_never_reads_a_real_test_target(tmp_path):
    from llmrec_lite.evaluate import evaluate_model
    from lab.records import fusion_choice, fusion_ranking
    from lab.runners import fusion_sweep
    from llmrec_lite.variants import ITEM_TOKEN

    first, second, a, b = _record_on_both(tmp_path, fusion_sweep, (2.0, 0.5))
    assert a["candidate"] == "16 + 16"  # the one the profile trains
    assert [r["weight"] for r in a["weights"]] == [0.0, 0.5, 2.0]  # 0, the model alone, always scored
    assert a["best"] in (0.0, 0.5, 2.0) and fusion_choice([a, b]) == a["best"]
    assert [r[0] for r in fusion_ranking([a, b])][0] == "{:g}".format(a["best"])
    # weight 0 is the model alone, as an evaluation of the same model on the same users ranks it
    alone = evaluate_model(first.at(first.out / "distance" / "16-16").load(ITEM_TOKEN, 2), targets="test",
                           show_progress=False)
    assert a["weights"][0]["far"]["hr@10"] == alone.metrics["hr@10"]
    assert a["weights"][0]["far"]["hr@10_masked"] == alone.metrics["hr@10_masked"]
    assert a["best - model alone (far)"]["hr@10"]["verdict"] in {"above", "below", "not separated"}
    assert set(a["wals"]) == {"far", "near"}
    with pytest.raises(ValueError, match="steps_back=1"):
        fusion_sweep(Run.open(PROFILE, None, tmp_path / "real", path=tmp_path / "file0" / "Shop.txt",
                              backbone=first.backbone, show_progress=False), show_progress=False)


def test_user_vector_record_never_reads_a_real_test_target(tmp_path):
    from llmrec_lite.evaluate import evaluate_model
    from lab.records import user_vectors_ranking
    from lab.runners import user_vectors_sweep
    from llmrec_lite.variants import ITEM_TOKEN
    from llmrec_lite.wals import history_user_factors

    first, second, a, b = _record_on_both(tmp_path, user_vectors_sweep,
                                          candidates={"16 + 16": PROFILE_AND_SHORT["16 + 16"]})
    assert [r["name"] for r in a["vectors"]] == ["fitted", "folded"] and a["best"] in ("fitted", "folded")
    assert [r[0] for r in user_vectors_ranking([a, b])][0] == a["best"]
    assert set(a["folded - fitted (far)"]) == ({"model", "wals", "fused"} if PROFILE.cf_weight else {"model", "wals"})
    trained = first.at(first.out / "distance" / "16-16").load(ITEM_TOKEN, 2)
    fitted, folded = a["vectors"]
    # "fitted" is the model as evaluation ranks it; "folded" the same evaluation reading the folded-in vectors
    for way, factors in (("fitted", None), ("folded", history_user_factors(first.wals, first.split, "test"))):
        ev = evaluate_model(trained, targets="test", user_factors=factors, show_progress=False)
        row = fitted if way == "fitted" else folded
        assert (row["far"]["hr@10"], row["far"]["hr@10_masked"]) == (ev.metrics["hr@10"], ev.metrics["hr@10_masked"])
    # near targets: a validation prompt shows only the training part, so the folded WALS ranking is the
    # fold-in of what the fitted one was fitted on (close, not identical: the fit ends on an item step)
    assert set(fitted["wals"]) == {"far", "near"}


def test_history_user_factors_fold_in_everything_before_the_target_and_evaluation_can_read_them(tmp_path):
    from llmrec_lite.wals import fold_in, history_user_factors

    run = _shifted_runs(tmp_path, [(13, 16, 12, 15)])[0]
    split, wals = run.split, run.wals
    test = history_user_factors(wals, split, "test")
    valid = history_user_factors(wals, split, "valid")
    for u in range(split.num_users):
        expected = fold_in(wals.item_factors, [split.history(u, "test")], wals.config.regularization, wals.config.alpha)
        assert torch.allclose(test[u], expected[0], atol=1e-5)
    # a test history holds the validation item too, so the vectors differ where that item is new
    assert not torch.allclose(test, valid)
    from llmrec_lite.fusion import FusionModel

    model = FusionModel(run.backbone, wals.user_factors, wals.item_factors)
    fitted = model.user_factors.clone()
    with model.reading_users(test):
        assert torch.equal(model.user_factors, test)
    assert torch.equal(model.user_factors, fitted)  # back to the fitted vectors after the block
    with pytest.raises(ValueError, match="cannot replace"):
        with model.reading_users(test[:, :3]):
            pass


def test_evaluation_reads_the_user_vectors_the_user_vector_record_chose():
    """The results read the user vectors (fitted or folded in) that the record (validation
    targets only) ranks first."""
    import json
    from pathlib import Path

    from lab.catalogue import profile_candidate
    from lab.records import user_vectors_ranking

    records = [json.loads(p.read_text()) for p in sorted(Path(__file__).parents[1].glob("benchmarks/results/user_vectors_*_cpu.json"))]
    assert {r["dataset"] for r in records} >= {"lastfm", "beauty"}
    assert all(r["steps_back"] == 1 and r["candidate"] == profile_candidate(get_profile("cpu")) for r in records)
    assert user_vectors_ranking(records)[0][0] == get_profile("cpu").eval_user_vectors


def test_results_read_the_profiles_evaluation_user_vectors(tiny_run):
    """``eval_user_vectors="folded"``: the WALS row reads the vectors folded in from every item
    before the test target, and the model's test prompts read the same ones."""
    import dataclasses

    from llmrec_lite.pipeline import wals_ranks
    from llmrec_lite.wals import history_user_factors

    from llmrec_lite.metrics import target_ranks

    users = np.arange(tiny_run.split.num_users)
    gold = tiny_run.split.target_items("test")
    assert tiny_run.eval_user_factors() is None and tiny_run.eval_wals() is tiny_run.wals
    fitted_scores = (tiny_run.wals.user_factors @ tiny_run.wals.item_factors.T).float()
    assert np.array_equal(wals_ranks(tiny_run, users)[0], target_ranks(fitted_scores, gold))
    tiny_run.profile = dataclasses.replace(tiny_run.profile, eval_user_vectors="folded")
    folded = history_user_factors(tiny_run.wals, tiny_run.split, "test")
    assert not torch.allclose(folded, tiny_run.wals.user_factors.float())  # the validation item is folded in
    assert torch.equal(tiny_run.eval_user_factors(), folded)
    folded_scores = (folded @ tiny_run.wals.item_factors.T).float()
    assert np.array_equal(wals_ranks(tiny_run, users)[0], target_ranks(folded_scores, gold))
    tiny_run.profile = dataclasses.replace(tiny_run.profile, eval_user_vectors="both")
    with pytest.raises(ValueError, match="eval_user_vectors"):
        tiny_run.eval_user_factors()


def test_cpu_profile_fuses_at_the_weight_the_fusion_record_chose():
    import json
    from pathlib import Path

    from lab.catalogue import profile_candidate
    from lab.records import fusion_choice

    records = [json.loads(p.read_text()) for p in sorted(Path(__file__).parents[1].glob("benchmarks/results/fusion_*_cpu.json"))]
    assert {r["dataset"] for r in records} >= {"lastfm", "beauty"}
    assert all(r["steps_back"] == 1 and r["candidate"] == profile_candidate(get_profile("cpu")) for r in records)
    assert get_profile("cpu").cf_weight == fusion_choice(records)


def json_of(path):
    import json

    return json.loads(path.read_text())


def test_distance_record_refuses_the_real_split(tiny_run):
    from lab.runners import distance_tune

    with pytest.raises(ValueError, match="steps_back=1"):
        distance_tune(tiny_run, show_progress=False)


def test_factors_of_another_shift_are_refused(tmp_path):
    from fusion_fixtures import tiny_backbone

    from llmrec_lite.checkpoints import CheckpointMismatchError

    path = tmp_path / "Shop.txt"
    path.write_text("1 10 11 12 13 14\n2 11 12 15 16 10\n3 10 13 15 12 11\n")
    shifted = Run.open(PROFILE, None, tmp_path / "run", path=path, backbone=tiny_backbone(), steps_back=1,
                       show_progress=False)
    assert shifted.split.test_targets.tolist() == LeaveOneOutSplit.from_data(shifted.data).test_targets.tolist()
    assert [len(s) for s in shifted.data.sequences] == [4, 4, 4]  # one item fewer per user
    with pytest.raises(CheckpointMismatchError, match="steps_back"):
        Run.open(PROFILE, None, tmp_path / "run", path=path, backbone=shifted.backbone, show_progress=False)


def test_candidate_matches_reads_both_stages_settings():
    from lab.catalogue import candidate_matches

    cpu = get_profile("cpu")
    same = {"samples_per_task": tuple(cpu.item_token_samples)}
    assert candidate_matches(cpu, same)
    assert not candidate_matches(cpu, {"samples_per_task": (cpu.item_token_samples[0], 7)})
    assert not candidate_matches(cpu, {**same, "stage2": {"lora_lr": 1.234e-4}})
    assert candidate_matches(cpu, {**same, "stage2": {"lora_lr": cpu.lora_lr}})
    # a candidate silent on a setting its record varies means that setting's default
    slow = {**same, "stage2": {"lora_lr": 1.234e-4}}
    assert candidate_matches(cpu, same) and not candidate_matches(cpu, same, [same, slow])
    # LoRA adapters are a backbone entry; a record read back from JSON holds its targets as a list
    import dataclasses

    from llmrec_lite.profiles import Profile

    plain = dataclasses.replace(cpu, lora_r=Profile.lora_r, lora_targets=Profile.lora_targets)
    wide = {**same, "backbone": {"lora_r": 2 * Profile.lora_r, "lora_targets": ("q_proj", "k_proj")}}
    assert not candidate_matches(plain, wide) and candidate_matches(plain, same, [same, wide])
    widened = dataclasses.replace(plain, lora_r=2 * Profile.lora_r, lora_targets=("q_proj", "k_proj"))
    assert candidate_matches(widened, {**wide, "backbone": {**wide["backbone"], "lora_targets": ["q_proj", "k_proj"]}})
    assert not candidate_matches(widened, same, [same, wide])


def test_cpu_profile_trains_the_candidate_the_distance_record_chose():
    import json
    from pathlib import Path

    from lab.catalogue import candidate_matches
    from lab.records import distance_ranking

    records = [json.loads(p.read_text()) for p in sorted(Path(__file__).parents[1].glob("benchmarks/results/distance_*_cpu.json"))]
    assert {r["dataset"] for r in records} >= {"lastfm", "beauty"}
    assert all(r["steps_back"] == 1 for r in records)
    best = distance_ranking(records)[0][0]
    settings = [c["settings"] for c in records[0]["candidates"]]
    chosen = next(c for c in records[0]["candidates"] if c["name"] == best)["settings"]
    assert candidate_matches(get_profile("cpu"), chosen, settings)
    assert [candidate_matches(get_profile("cpu"), s, settings) for s in settings].count(True) == 1


def test_seed_records_are_of_the_cpu_profiles_candidate_and_agree_with_the_distance_record():
    import json
    from pathlib import Path

    from lab.catalogue import profile_candidate
    from lab.records import seed_summary, seed_table

    results = Path(__file__).parents[1] / "benchmarks/results"
    records = [json.loads(p.read_text()) for p in sorted(results.glob("seeds_*_cpu.json"))]
    assert {r["dataset"] for r in records} >= {"lastfm", "beauty"}
    for record in records:
        # a stale record (of a candidate the profile no longer trains) fails here
        assert record["candidate"] == profile_candidate(get_profile("cpu")) and record["steps_back"] == 1
        assert len({r["seed"] for r in record["seeds"]}) == len(record["seeds"]) >= 2
        # the profile's own seed is the distance record's run, scored on the same users
        distance = json.loads((results / f"distance_{record['dataset']}_cpu.json").read_text())
        assert distance["users"] == record["users"]
        own = next(r for r in record["seeds"] if r["name"] == record["candidate"])
        row = next(c for c in distance["candidates"] if c["name"] == record["candidate"])
        assert own["far"] == row["far"] and own["stage1_far"] == row["stage1_far"]
        assert len(seed_table(record)) == len(record["seeds"]) + 1
        assert seed_summary(record)["seeds"] == len(record["seeds"])


def test_training_prompts_carry_their_whole_prefix_and_nothing_else_does(tiny_run):
    enc = tiny_run.encoder(max_history=2)
    prefixes = {(s.user, s.target): tuple(s.history.tolist()) for s in tiny_run.split.train_samples()}
    prompts = enc.training_prompts("sequential", None, seed=0)
    assert prompts and all(p.prefix == prefixes[(p.user, p.target)] for p in prompts)
    assert any(len(p.prefix) > len(p.history_items) for p in prompts)  # more than the 2 items shown
    pad = tiny_run.backbone.tokenizer.pad_token_id
    batch = collate(prompts[:3], pad, with_response=False)
    assert batch.prefix_items.tolist() == [i for p in prompts[:3] for i in p.prefix]
    # validation and evaluation prompts have no prefix: their users keep the fitted vector
    assert enc.for_user(get_template("sequential", 0), 0, "valid", with_target=True).prefix is None
    assert enc.batch(get_template("sequential", 0), [0, 1]).prefix_batch is None


def test_prefix_user_vectors_are_folded_in_from_the_items_before_the_target(tiny_run):
    from llmrec_lite.wals import fold_in

    fitted = tiny_run.build_model(settings(1))
    prefix = tiny_run.build_model(settings(1, user_vectors="prefix"))
    prefix.load_state_dict(fitted.state_dict())
    prompts = tiny_run.encoder().training_prompts("direct", 4, seed=1)
    batch = collate(prompts, tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    is_user = batch.slot_is_user
    config = tiny_run.wals.config
    expected = fold_in(tiny_run.wals.item_factors, [p.prefix for p in prompts], config.regularization, config.alpha)
    with torch.no_grad():
        torch.testing.assert_close(prefix.slot_vectors(batch)[is_user], prefix.projectors.user(expected))
        # the fitted vector was solved with the answer among the user's items: it differs
        assert not torch.allclose(fitted.slot_vectors(batch)[is_user], prefix.slot_vectors(batch)[is_user])
        # without a prefix (evaluation) both models read the fitted vector
        plain = tiny_run.encoder().batch(get_template("direct", 0), [0, 1])
        torch.testing.assert_close(prefix.slot_vectors(plain), fitted.slot_vectors(plain))


def test_user_vectors_setting_is_checked_and_recorded(tiny_run):
    with pytest.raises(ValueError, match="user_vectors"):
        settings(1, user_vectors="future")
    assert tiny_run.config(settings(1))["train"]["user_vectors"] == "fitted"
    assert tiny_run.config(settings(1, user_vectors="prefix"))["train"]["user_vectors"] == "prefix"
    stage1 = tiny_run.train(settings(1, user_vectors="prefix", samples_per_task=8, tasks=("direct",)),
                            show_progress=False)
    assert stage1["steps"] > 0
    assert tiny_run.load("item-token", 1).settings.user_vectors == "prefix"


def test_cf_term_adds_the_learned_multiple_of_the_wals_score(tiny_run, tmp_path):
    from llmrec_lite.evaluate import item_token_scores

    model = tiny_run.build_model(settings(1, cf_term=True))
    plain = tiny_run.build_model(settings(1))
    plain.load_state_dict(model.state_dict(), strict=False)
    batch = tiny_run.encoder().batch(get_template("sequential", 0), [0, 1])
    wals = tiny_run.wals.user_factors[[0, 1]] @ tiny_run.wals.item_factors.T
    with torch.no_grad():
        torch.testing.assert_close(model.score_items(batch), plain.score_items(batch))  # starts at w = 0
        model.item_cf_weight.fill_(2.0)
        torch.testing.assert_close(model.score_items(batch) - plain.score_items(batch), 2.0 * wals)
        # evaluation scores with the same head (it once left the term out)
        torch.testing.assert_close(item_token_scores(model, batch, model.item_matrix()), model.score_items(batch))
    # it trains in both stages, is saved and loaded; models without CF embeddings have no such term
    common = dict(cf_term=True, samples_per_task=8, tasks=("sequential",), lr=1e-2)
    tiny_run.train(settings(1, **common), show_progress=False)
    tiny_run.train(settings(2, **common), show_progress=False)
    trained = tiny_run.load("item-token", 2).model
    assert trained.cf_term and trained.item_cf_weight.item() != 0.0
    assert "cf_weight" in trained.trainable_parameters()
    no_cf = TrainSettings.from_profile(PROFILE, 1, "item-token-text", cf_term=True)
    assert not tiny_run.build_model(no_cf).cf_term
    assert tiny_run.config(settings(1))["train"]["cf_term"] is False


def test_llm_term_alone_is_the_head_without_its_wals_term(tiny_run):
    from llmrec_lite.evaluate import evaluate_item_token, item_token_scores

    model = tiny_run.build_model(settings(1, cf_term=True, known_bias=True))
    encoder = tiny_run.encoder()
    users = np.arange(tiny_run.split.num_users)
    with torch.no_grad():
        model.item_cf_weight.fill_(3.0)
        model.item_known_bias.fill_(-2.0)
        both = evaluate_item_token(model, encoder, users=users, show_progress=False)
        model.item_cf_weight.fill_(0.0)
        without = evaluate_item_token(model, encoder, users=users, show_progress=False)
    # w read as 0 in the same pass: exactly the masked ranks of the same model with w = 0
    np.testing.assert_array_equal(both.llm_alone_ranks, without.other_ranks)
    assert both.metrics["hr@10_llm_alone_masked"] == without.metrics["hr@10_masked"]
    batch = encoder.batch(get_template("sequential", 0), [0, 1])
    wals = tiny_run.wals.user_factors[[0, 1]] @ tiny_run.wals.item_factors.T
    with torch.no_grad():
        model.item_cf_weight.fill_(3.0)
        scores, alone = item_token_scores(model, batch, model.item_matrix(), llm_alone=True)
    torch.testing.assert_close(scores - alone, 3.0 * wals)  # the one term left out
    plain = tiny_run.build_model(settings(1))  # no CF term: nothing to leave out
    assert evaluate_item_token(plain, encoder, users=users, show_progress=False).llm_alone_ranks is None


def test_answer_leak_reads_no_test_target(tiny_run):
    from llmrec_lite.baselines import answer_leak

    got = answer_leak(tiny_run.split, tiny_run.wals, samples=50)
    assert got == answer_leak(_with_other_test_targets(tiny_run).split, tiny_run.wals, samples=50)
    assert got["samples"] == min(50, tiny_run.split.num_train_samples) and 0 <= got["prefix"] <= 1


@needs_real_data
def test_fitted_user_vectors_know_the_training_answers_on_lastfm():
    # the reason for user_vectors="prefix": on LastFM the fitted vector ranks a training
    # prompt's answer in the top 10 far more often than the vector folded in from its prefix
    from llmrec_lite.baselines import answer_leak
    from llmrec_lite.data import load_dataset
    from llmrec_lite.wals import WALS, WALSConfig

    split = LeaveOneOutSplit.from_data(load_dataset("lastfm"))
    wals = WALS(WALSConfig.from_profile(get_profile("cpu"))).fit(split.train_matrix(), show_progress=False)
    got = answer_leak(split, wals, samples=1000)
    assert got["fitted"] > got["prefix"] + 0.05 and got["prefix"] > got["valid"]


def test_record_scripts_refuse_to_replace_or_add_to_the_wrong_record(tmp_path, monkeypatch, capsys):
    """A finished record is never replaced without --overwrite, --add needs a record to add to,
    and the two flags together are a usage error (each before any training starts)."""
    import sys
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "distance", raising=False)
    import distance

    out = tmp_path / "record.json"
    runs = str(tmp_path / "runs")
    for argv, message in [(["--add"], "--add needs an existing record"),
                          (["--add", "--overwrite"], "pass one")]:
        with pytest.raises(SystemExit):
            distance.main(["--out", str(out), "--runs", runs, *argv])
        assert message in capsys.readouterr().err
    out.write_text("{}")
    with pytest.raises(SystemExit):
        distance.main(["--out", str(out), "--runs", runs])
    assert "holds a finished record" in capsys.readouterr().err
    assert out.read_text() == "{}" and not (tmp_path / "runs").exists()


def test_idle_adapters_are_skipped_without_changing_a_bit(tiny_run):
    from contextlib import nullcontext

    enc = tiny_run.encoder()
    prompts = [enc.encode(get_template("sequential", 0), u, [1, 2, 3][: u + 1], target=4) for u in range(3)]
    batch = collate(prompts, tiny_run.backbone.tokenizer.pad_token_id, with_response=False)
    model = tiny_run.build_model(settings(1))
    model.train()
    lora = model._lora_parameters()
    assert lora and not any(p.requires_grad for p in lora.values())
    assert not isinstance(model.idle_adapters_off(), nullcontext)  # stage 1: B = 0 and nothing trains them

    def loss_and_grads(run_adapters: bool):
        if run_adapters:  # the adapters as they ran before: their forward and backward included
            model.idle_adapters_off = lambda: nullcontext()
        torch.manual_seed(0)
        model.zero_grad(set_to_none=True)
        loss = model(batch)["loss"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.__dict__.pop("idle_adapters_off", None)
        return loss.detach(), grads

    skipped, skipped_grads = loss_and_grads(False)
    # peft marks adapters trainable when it switches them back on; stage 1 must not train them
    assert not any(p.requires_grad or p.grad is not None for p in lora.values())
    ran, ran_grads = loss_and_grads(True)
    assert torch.equal(skipped, ran) and skipped_grads.keys() == ran_grads.keys()
    assert all(torch.equal(skipped_grads[n], ran_grads[n]) for n in ran_grads)
    # adapters that train (stage 2) or that learned something (a trained model) always run
    model.set_stage(2)
    assert isinstance(model.idle_adapters_off(), nullcontext)
    model.set_stage(1)
    with torch.no_grad():
        next(p for n, p in lora.items() if "lora_B" in n).add_(0.1)
    try:
        assert isinstance(model.idle_adapters_off(), nullcontext)
        assert not torch.equal(model(batch)["loss"].detach(), skipped)
    finally:
        model.reset_lora(0)  # the tiny backbone is shared with later tests: B back to zero
