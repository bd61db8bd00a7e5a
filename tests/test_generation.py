import numpy as np
import pytest
import torch

from llmrec_lite.data import load_dataset
from llmrec_lite.fusion import FusionModel
from llmrec_lite.generation import ItemTrie, constrained_beam_search, exact_item_scores, sequence_item_scores
from llmrec_lite.prompts import collate, encode, render
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.templates import get_template

from fusion_fixtures import random_factors, tiny_backbone


@pytest.fixture
def setup(s3rec_file):
    data = load_dataset(path=s3rec_file)
    split = LeaveOneOutSplit.from_data(data)
    users, items = random_factors(split.num_users, split.num_items)
    model = FusionModel(tiny_backbone(), users, items, output="text-id", projector_config={"hidden_dim": 16})
    tok = model.backbone.tokenizer
    rs = [render(get_template("sequential", 0), data, u, split.history(u), None) for u in range(split.num_users)]
    batch = collate([encode(r, tok) for r in rs], tok.pad_token_id, with_response=False)
    return data, split, model, batch, ItemTrie.from_catalogue(data, tok)


def test_trie_structure():
    trie = ItemTrie.build([[5, 1, 9], [5, 2, 9], [5, 1, 8, 9]])
    root_children = trie.child_tokens[0][trie.child_tokens[0] >= 0].tolist()
    assert root_children == [5]
    assert sorted(trie.leaf_item[trie.leaf_item >= 0].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="prefix"):
        ItemTrie.build([[5, 1], [5, 1, 2]])


def test_beam_search_equals_exact_top_k_on_a_tiny_model(setup):
    """With 10 items and 10 beams no prefix is ever pruned, so beam search must be exact."""
    data, split, model, batch, trie = setup
    items, scores = constrained_beam_search(model, batch, trie, num_beams=10)
    exact = exact_item_scores(model, batch, trie)
    order = exact.argsort(dim=1, descending=True)
    assert torch.equal(items, order[:, :10])
    torch.testing.assert_close(scores, exact.sort(dim=1, descending=True).values[:, :10], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 3, 128])
def test_trie_walk_scores_every_item_as_its_teacher_forced_answer(setup, chunk_size):
    """The level-by-level walk sums the same log-probabilities as scoring each answer whole."""
    data, split, model, batch, trie = setup
    walked = exact_item_scores(model, batch, trie, chunk_size=chunk_size)
    assert walked.shape == (split.num_users, data.num_items) and torch.isfinite(walked).all()
    torch.testing.assert_close(walked, sequence_item_scores(model, batch, trie), atol=1e-4, rtol=1e-5)


def test_beam_search_never_yields_an_invalid_item(setup):
    data, split, model, batch, trie = setup
    for beams in (1, 3, 5):
        items, scores = constrained_beam_search(model, batch, trie, num_beams=beams)
        assert items.shape == (split.num_users, beams)
        assert ((items >= 0) & (items < data.num_items)).all()
        assert all(len(set(row)) == len(row) for row in items.tolist())  # no item twice
        assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


def test_excluded_items_are_never_returned(setup):
    data, split, model, batch, trie = setup
    exclude = [split.history(u) for u in range(split.num_users)]
    items, _ = constrained_beam_search(model, batch, trie, num_beams=4, exclude=exclude)
    for row, banned in zip(items.tolist(), exclude):
        assert not set(row) & set(banned.tolist())


def test_decoding_uses_the_current_name_of_the_cache(setup, recwarn):
    """transformers 5 renamed ``past_key_values`` to ``cache`` and removes the old name in 5.40:
    decoding must not lean on it (it warns while it still works)."""
    import logging

    from transformers.utils import logging as hf_logging

    data, split, model, batch, trie = setup
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    hf_logging.get_logger().addHandler(handler)
    try:
        constrained_beam_search(model, batch, trie, num_beams=3)
        exact_item_scores(model, batch, trie)
        model.greedy_generate(batch, max_new_tokens=2)
    finally:
        hf_logging.get_logger().removeHandler(handler)
    said = [str(w.message) for w in recwarn] + [r.getMessage() for r in records]
    assert not [m for m in said if "past_key_values" in m], said
