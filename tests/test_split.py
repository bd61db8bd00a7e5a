import pytest
import numpy as np

from llmrec_lite.data import load_dataset
from llmrec_lite.split import LeaveOneOutSplit


def test_leave_one_out(s3rec_file):
    data = load_dataset(path=s3rec_file)
    split = LeaveOneOutSplit.from_data(data)
    raw = lambda idx: list(data.raw_item_ids[np.asarray(idx)])
    assert raw(split.train[0]) == [10, 11, 12]
    assert raw([split.valid_targets[0]]) == [13] and raw([split.test_targets[0]]) == [14]
    assert raw(split.history(0, "test")) == [10, 11, 12, 13]
    assert raw(split.history(0, "valid")) == [10, 11, 12]
    # user 4 (3 items) has a training part of one item and no training sample
    assert raw(split.train[3]) == [19]
    samples = list(split.train_samples())
    assert len(samples) == split.num_train_samples == 2 + 1 + 3 + 0
    first = samples[0]
    assert first.user == 0 and raw(first.history) == [10] and raw([first.target]) == [11]
    assert all(s.target == split.train[s.user][len(s.history)] for s in samples)


def test_train_matrix_excludes_valid_and_test(s3rec_file):
    split = LeaveOneOutSplit.from_data(load_dataset(path=s3rec_file))
    m = split.train_matrix().toarray()
    assert m.sum() == sum(len(t) for t in split.train)
    for u in range(split.num_users):
        assert m[u, split.valid_targets[u]] == 0 and m[u, split.test_targets[u]] == 0
        assert set(np.flatnonzero(m[u])) == set(split.train[u])


def test_repeated_items_are_counted(tmp_path):
    path = tmp_path / "rep.txt"
    path.write_text("1 5 5 6 7 8\n")
    split = LeaveOneOutSplit.from_data(load_dataset(path=path))
    m = split.train_matrix()
    assert m.toarray().max() == 2  # r_ui = 2 for the item seen twice


def test_earlier_targets_step_back_through_the_sequence(s3rec_file):
    split = LeaveOneOutSplit.from_data(load_dataset(path=s3rec_file))
    assert split.earlier(0) is split
    one = split.earlier(1)  # its test target is the validation target, predicted from the same history
    assert one.test_targets.tolist() == split.valid_targets.tolist()
    for u in range(split.num_users):
        assert one.history(u, "test").tolist() == split.history(u, "valid").tolist()
    assert split.data.sequences[0].tolist() != one.data.sequences[0].tolist()  # a copy; the split is unchanged
    with pytest.raises(ValueError, match="at most 1"):
        split.earlier(2)  # a 3-item user would have no history left
