"""SASRec on the book's split: it learns, it never trains on a held-out target, it ranks like
every other model here."""

import numpy as np
import pytest
import torch

from llmrec_lite.data import build
from llmrec_lite.sasrec import PAD, SASRec, SASRecConfig, fit_sasrec, left_pad, training_pairs, evaluate_sasrec
from llmrec_lite.split import LeaveOneOutSplit


def small_split(num_users=12, length=8, num_items=30, seed=0):
    rng = np.random.default_rng(seed)
    raw = {u + 1: [int(i) + 1 for i in rng.choice(num_items, size=length, replace=False)] for u in range(num_users)}
    return LeaveOneOutSplit.from_data(build(raw, "toy", "Toy"))


def test_training_batches_hold_no_held_out_target():
    split = small_split()
    inputs, targets = training_pairs(split.train, max_length=6)
    for u in range(split.num_users):
        held_out = {int(split.valid_targets[u]) + 1, int(split.test_targets[u]) + 1}
        seen = set(inputs[u][inputs[u] != PAD].tolist()) | set(targets[u][targets[u] != PAD].tolist())
        # every id in the user's row comes from the training part seq[:-2]
        assert seen <= set((split.train[u] + 1).tolist())
        # the held-out items appear only if they also occur earlier in the training part
        assert not (held_out - set((split.train[u] + 1).tolist())) & seen


def test_left_padding_keeps_the_last_items():
    out = left_pad([np.array([0, 1, 2, 3]), np.array([5])], 3)
    assert out.tolist() == [[2, 3, 4], [PAD, PAD, 6]]


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_overfits_a_handful_of_sequences(loss):
    # four users repeat fixed sequences: after training, each training position predicts its next item
    raw = {u + 1: [((u * 3 + k) % 9) + 1 for k in range(7)] for u in range(4)}
    split = LeaveOneOutSplit.from_data(build(raw, "toy", "Toy"))
    config = SASRecConfig(hidden=32, blocks=1, max_length=8, dropout=0.0, lr=1e-2, batch_size=4, loss=loss,
                          max_epochs=300, patience=300, eval_every=300)
    model, result = fit_sasrec(split, config, show_progress=False)
    inputs, targets = training_pairs(split.train, config.max_length)
    with torch.no_grad():
        scores = model.item_scores(model.hidden_states(torch.as_tensor(inputs)))
    mask = targets != PAD
    predicted = scores.argmax(-1)[torch.as_tensor(mask)] + 1
    assert predicted.tolist() == targets[mask].tolist()
    assert result.epochs_run == 300


def test_early_stopping_keeps_the_best_validation_epoch():
    split = small_split()
    config = SASRecConfig(hidden=16, blocks=1, max_length=8, dropout=0.2, batch_size=4, max_epochs=12, patience=3)
    model, result = fit_sasrec(split, config, show_progress=False)
    best = max(result.curve, key=lambda r: (r["valid_hr@10"], -r["epoch"]))
    assert result.best_epoch == best["epoch"] and result.best_valid_hr10 == best["valid_hr@10"]
    assert evaluate_sasrec(model, split, targets="valid")["hr@10"] == result.best_valid_hr10


def test_same_seed_same_model():
    split = small_split()
    config = SASRecConfig(hidden=16, blocks=1, max_length=8, batch_size=4, max_epochs=3, patience=3)
    a, _ = fit_sasrec(split, config, show_progress=False)
    b, _ = fit_sasrec(split, config, show_progress=False)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="bpr")
    with pytest.raises(ValueError, match="hidden=10 must be a multiple of heads=4"):
        SASRecConfig(hidden=10, heads=4)
    assert isinstance(SASRec(5, SASRecConfig()), torch.nn.Module)


def test_saved_model_scores_the_same(tmp_path):
    from llmrec_lite.sasrec import load_sasrec, save_sasrec

    split = small_split()
    config = SASRecConfig(hidden=16, blocks=1, max_length=8, batch_size=4, max_epochs=2, patience=2)
    model, record = fit_sasrec(split, config, show_progress=False)
    save_sasrec(model, record, tmp_path / "s")
    loaded, again = load_sasrec(tmp_path / "s")
    assert again == record
    assert evaluate_sasrec(loaded, split) == evaluate_sasrec(model, split)


def test_profile_recipe():
    from llmrec_lite.profiles import get_profile

    cpu = get_profile("cpu")
    assert SASRecConfig.from_profile(cpu, "lastfm").lr == 1e-3 and SASRecConfig.from_profile(cpu, "beauty").lr == 5e-4
    assert SASRecConfig.from_profile(cpu, "lastfm").max_epochs == cpu.sasrec_max_epochs


def test_a_batch_cut_to_its_longest_sequence_is_seen_as_full_width():
    # positions are right-aligned, so trimming left padding changes nothing
    model = SASRec(30, SASRecConfig(max_length=12)).eval()
    seqs = torch.as_tensor(left_pad([np.array([3, 4, 5]), np.array([7, 8])], 12))
    with torch.no_grad():
        full = model.hidden_states(seqs)[:, -3:]
        cut = model.hidden_states(seqs[:, -3:])
    torch.testing.assert_close(full, cut)
    with pytest.raises(ValueError, match="at most 12"):
        model.hidden_states(torch.ones(1, 13, dtype=torch.long))


def test_epoch_bound_from_training_positions():
    from llmrec_lite.sasrec import epoch_bound, length_batches

    assert epoch_bound(SASRecConfig(max_epochs=200), 1000) == 200
    assert epoch_bound(SASRecConfig(max_epochs=200, max_positions=10_500), 1000) == 11
    assert epoch_bound(SASRecConfig(max_epochs=5, max_positions=10_500), 1000) == 5
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    batches = length_batches(lengths, 64, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))  # every row once
