import numpy as np
import pytest
import torch

from llmrec_lite import templates as T
from llmrec_lite.data import load_dataset
from llmrec_lite.prompts import IGNORE_INDEX, RESPONSE, collate, encode, render, sample_training_prompts
from llmrec_lite.split import LeaveOneOutSplit

from fusion_fixtures import tiny_backbone


@pytest.fixture
def split(s3rec_file):
    return LeaveOneOutSplit.from_data(load_dataset(path=s3rec_file))


def test_eleven_templates_per_task_and_one_unseen():
    for task in T.TASKS:
        assert len(T.all_templates(task)) == 11
        assert len(T.training_templates(task)) == 10
        assert T.unseen_template(task).unseen and not any(t.unseen for t in T.training_templates(task))
        texts = [t.text for t in T.all_templates(task)]
        assert len(set(texts)) == 11
        for t in T.all_templates(task):
            assert t.text.count("{user}") == 1 and "{dataset}" in t.text
            assert ("{history}" in t.text) == (task == "sequential")
    with pytest.raises(ValueError, match="use 0-9 or 'unseen'"):
        T.get_template("direct", 10)


def test_sequential_slots(split):
    data = split.data
    history = list(split.history(0))
    r = render(T.get_template("sequential", 0), data, 0, history, int(split.test_targets[0]))
    slots = r.slots()
    assert [s.kind for s in slots] == ["user"] + ["item"] * len(history)
    assert [s.value for s in slots[1:]] == history
    assert r.target_text == data.item_text(split.test_targets[0])
    assert r.segments[-1].value.endswith(RESPONSE)


def test_history_is_truncated_to_the_last_items(split):
    history = list(range(10)) * 2
    r = render(T.get_template("sequential", 1), split.data, 2, history, 3, max_history=10)
    assert [s.value for s in r.slots()[1:]] == history[-10:]
    r_all = render(T.get_template("sequential", 1), split.data, 2, history, 3, max_history=None)
    assert len(r_all.slots()) == 21


def test_direct_has_one_slot_and_text_only_has_none(split):
    r = render(T.get_template("direct", 4), split.data, 1, None, 2)
    assert [s.kind for s in r.slots()] == ["user"]
    text = render(T.get_template("sequential", 0), split.data, 1, [0, 1], 2, with_embeddings=False)
    assert text.slots() == [] and "user_2" in text.as_text() and "item_1001, item_1002" in text.as_text()


def test_bad_inputs(split):
    with pytest.raises(ValueError, match="empty one"):
        render(T.get_template("sequential", 0), split.data, 0, [], 1)
    with pytest.raises(ValueError, match="Unknown user"):
        render(T.get_template("direct", 0), split.data, 99, None, 1)


def test_labels_cover_only_the_response(split):
    tok = tiny_backbone().tokenizer
    r = render(T.get_template("direct", 0), split.data, 0, None, 5)
    enc = encode(r, tok)
    batch = collate([enc], tok.pad_token_id)
    labelled = (batch.labels[0] != IGNORE_INDEX).nonzero().squeeze(1).tolist()
    assert labelled == list(range(enc.response_start, len(enc.input_ids)))
    response = tok(" " + split.data.item_text(5), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert batch.labels[0, enc.response_start:].tolist() == response


def test_left_padding_masks_and_positions(split):
    tok = tiny_backbone().tokenizer
    short = encode(render(T.get_template("direct", 0), split.data, 0, None, 5), tok)
    long = encode(render(T.get_template("sequential", 0), split.data, 2, split.history(2), 5), tok)
    batch = collate([short, long], tok.pad_token_id)
    width = len(long.input_ids)
    pad = width - len(short.input_ids)
    assert batch.input_ids.shape == (2, width)
    assert batch.attention_mask[0].tolist() == [0] * pad + [1] * len(short.input_ids)
    assert batch.attention_mask[1].tolist() == [1] * width
    assert torch.all(batch.input_ids[0, :pad] == tok.pad_token_id)
    assert batch.input_ids[0, pad:].tolist() == short.input_ids
    assert batch.position_ids[0, pad:].tolist() == list(range(len(short.input_ids)))
    assert torch.all(batch.labels[0, :pad] == IGNORE_INDEX)
    # slot positions shift with the padding
    assert batch.slot_pos[batch.slot_batch == 0].tolist() == [pad + p for p in short.slot_positions]
    # generation batches stop at "Response:" and keep the right edge aligned
    gen = collate([short, long], tok.pad_token_id, with_response=False)
    assert gen.input_ids.shape[1] == long.response_start
    assert torch.all(gen.labels == IGNORE_INDEX)


def test_training_prompts_never_use_the_unseen_template(split, monkeypatch):
    used = []
    import llmrec_lite.prompts as P

    real_render = P.render

    def spy(template, *args, **kwargs):
        used.append(template)
        return real_render(template, *args, **kwargs)

    monkeypatch.setattr(P, "render", spy)
    for task in T.TASKS:
        for seed in range(20):
            prompts = sample_training_prompts(split, task, None, seed=seed)
            assert all("unseen" not in p.template for p in prompts)
    assert used and not any(t.unseen for t in used)
    assert {t.index for t in used} == set(range(10))  # every training template gets used
