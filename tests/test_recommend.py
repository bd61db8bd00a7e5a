"""The inference entry point: ``recommend`` for fusion models and classic baselines, and the
command line's ``recommend``."""

import numpy as np
import pytest

from llmrec_lite.data import load_dataset
from llmrec_lite.evaluate import evaluate_model
from llmrec_lite.metrics import top_k
from llmrec_lite.profiles import get_profile
from llmrec_lite.recommend import ClassicRecommender, recommend
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.settings import TrainSettings
from llmrec_lite.wals import WALS

from cli_runner import run_cli
from conftest import needs_real_data

PROFILE = get_profile("smoke")


@pytest.fixture
def run(tiny_run):
    return tiny_run


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_wals_recommend_is_the_dot_product_top_k(run, exclude_seen):
    users = np.arange(run.split.num_users)
    got = recommend(ClassicRecommender(run, "wals"), users, k=3, exclude_seen=exclude_seen, as_indices=True)
    scores = run.wals.user_factors @ run.wals.item_factors.T
    exclude = [run.split.history(int(u)) for u in users] if exclude_seen else None
    assert got == top_k(scores, 3, exclude=exclude).tolist()
    if exclude_seen:
        assert not any(set(row) & set(run.split.history(int(u)).tolist()) for u, row in zip(users, got))


def test_items_come_back_as_the_dataset_names_them(run):
    indices = recommend(ClassicRecommender(run, "popularity"), [0, 1], k=4, as_indices=True)
    ids = recommend(ClassicRecommender(run, "popularity"), [0, 1], k=4)
    assert ids == [[int(run.data.raw_item_ids[i]) for i in row] for row in indices]


def test_item_token_recommend_matches_evaluation(run):
    run.train(TrainSettings.from_profile(PROFILE, 1, "item-token", samples_per_task=None, sample_ratio=1.0,
                                         val_users=4, eval_every=2, checkpoint_every=2), show_progress=False)
    trained = run.load("item-token", 1)
    users = np.arange(run.split.num_users)
    ev = evaluate_model(trained, users=users, mask_history=True, show_progress=False)
    assert trained.recommend(users, k=10, exclude_seen=True, as_indices=True) == unseen_part(run, users, ev.top_items)


def test_recommend_reads_the_user_vectors_the_results_read(run):
    """Under ``eval_user_vectors="folded"`` the results score test prompts with user vectors
    folded in from the whole history; ``recommend`` (fusion model and WALS) must rank the same way."""
    import dataclasses

    import torch

    from llmrec_lite.wals import history_user_factors

    run.profile = dataclasses.replace(run.profile, eval_user_vectors="folded")
    run.train(TrainSettings.from_profile(PROFILE, 1, "item-token", samples_per_task=None, sample_ratio=1.0,
                                         val_users=4, eval_every=2, checkpoint_every=2), show_progress=False)
    trained = run.load("item-token", 1)
    users = np.arange(run.split.num_users)
    folded = history_user_factors(run.wals, run.split, "test")
    assert torch.equal(trained.user_vectors("test"), folded)
    ev = evaluate_model(trained, users=users, mask_history=True, show_progress=False, user_factors=folded)
    assert trained.recommend(users, k=10, exclude_seen=True, as_indices=True) == unseen_part(run, users, ev.top_items)
    for targets in ("test", "valid"):
        vectors = history_user_factors(run.wals, run.split, targets)
        exclude = [run.split.history(int(u), targets) for u in users]
        got = recommend(ClassicRecommender(run, "wals"), users, k=3, targets=targets, as_indices=True)
        assert got == unseen_part(run, users, top_k(vectors @ run.wals.item_factors.T, 3, exclude=exclude), targets)


def unseen_part(run, users, top, targets="test") -> list[list[int]]:
    """An evaluation's masked top-10 as recommend returns it: on a catalogue this small the
    masked list ends in history items (scored -inf), which recommend leaves out."""
    return [[int(i) for i in row if i not in set(run.split.history(int(u), targets).tolist())]
            for u, row in zip(users, np.asarray(top))]


def test_text_id_recommend_returns_k_distinct_unseen_items(run):
    run.train(TrainSettings.from_profile(PROFILE, 1, "text-id", samples_per_task=None, sample_ratio=1.0,
                                         val_users=4, eval_every=2, checkpoint_every=2), show_progress=False)
    rows = run.load("text-id", 1).recommend([0, 2], k=3, as_indices=True)
    for u, row in zip([0, 2], rows):
        assert len(row) == len(set(row)) == 3 and not set(row) & set(run.split.history(u).tolist())


def test_unknown_user_is_named(run):
    with pytest.raises(ValueError, match="Unknown user index 99"):
        recommend(ClassicRecommender(run, "wals"), [99])
    with pytest.raises(ValueError, match="Unknown baseline"):
        ClassicRecommender(run, "svd")


@needs_real_data
@pytest.mark.data
def test_cli_recommend_prints_ten_item_ids(tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--dataset", "lastfm", "--profile", "smoke", "--stage", "1", "--out", str(out))
    _, got, _ = run_cli("recommend", "--run", str(out), "--user", "42", "--k", "10", "--stage", "1")
    assert len(got["items"]) == len(set(got["items"])) == 10 and got["user"] == "42"
    _, wals, _ = run_cli("recommend", "--run", str(out), "--user", "42", "--k", "10", "--model", "wals")
    # the same as the run's WALS factors ranked by hand, history excluded
    factors = WALS.load(out / "wals")[0]
    data = load_dataset("lastfm")
    split = LeaveOneOutSplit.from_data(data)
    user = int(np.nonzero(data.raw_user_ids == 42)[0][0])
    expected = top_k(factors.user_factors[user : user + 1] @ factors.item_factors.T, 10, exclude=[split.history(user)])
    assert wals["items"] == data.raw_item_ids[expected[0]].tolist()
    code, err, _ = run_cli("recommend", "--run", str(out), "--user", "999999", "--model", "wals", check=False)
    assert code == 2 and "Unknown user" in err["error"]


def test_classic_recommender_has_the_recommend_method(run):
    wals = ClassicRecommender(run, "wals")
    assert wals.recommend([0, 1], k=3, as_indices=True) == recommend(wals, [0, 1], k=3, as_indices=True)
