import io
import zipfile

import numpy as np
import pytest

from llmrec_lite import data as D
from llmrec_lite.data import DataFormatError, load_dataset

from conftest import needs_real_data


def test_parse_s3rec_keeps_order(s3rec_file):
    raw = D.parse_s3rec(s3rec_file)
    assert list(raw) == [1, 2, 3, 4]
    assert raw[3] == [10, 13, 15, 17, 18, 19]


@pytest.mark.parametrize(
    "content, line, needle",
    [
        ("1 2 3 4\n2 5 x 7\n", 2, "'x' is not an integer"),
        ("1 2 3 4\n2 5 6.5 7\n", 2, "'6.5' is not an integer"),
        ("1 2 3 4\n\n3 0 1 2\n", 3, "positive"),
        ("1 2 3 4\n1 5 6 7\n", 2, "appears a second time"),
        ("1 2 3\n7\n", 2, "has no items"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, content, line, needle):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DataFormatError) as err:
        D.parse_s3rec(path)
    assert str(path) in str(err.value)
    assert f"line {line}" in str(err.value)
    assert needle in str(err.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="No such data file"):
        D.parse_s3rec("/nonexistent/file.txt")


def test_too_short_user_is_an_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("1 1 2 3 4\n2 5 6\n")
    with pytest.raises(DataFormatError, match="fewer than 3 interactions"):
        load_dataset(path=path)


def test_sequential_indexing_follows_training_parts(s3rec_file):
    data = load_dataset(path=s3rec_file)
    # Training parts seq[:-2]: [10 11 12] [11 12] [10 13 15 17] [19]; then the rest in order.
    assert list(data.raw_item_ids) == [10, 11, 12, 13, 15, 17, 19, 14, 16, 18]
    assert data.item_id(0) == 1001 and data.user_id(0) == 1
    assert data.item_text(3) == "Tiny item_1004"
    # sequences are re-expressed in indices, same order
    assert list(data.raw_item_ids[data.sequences[2]]) == [10, 13, 15, 17, 18, 19]


def test_random_indexing_is_seeded_and_a_permutation(s3rec_file):
    a = load_dataset(path=s3rec_file, indexing="random", seed=1)
    b = load_dataset(path=s3rec_file, indexing="random", seed=1)
    c = load_dataset(path=s3rec_file, indexing="random", seed=2)
    s = load_dataset(path=s3rec_file)
    assert list(a.raw_item_ids) == list(b.raw_item_ids)
    assert list(a.raw_item_ids) != list(c.raw_item_ids)
    assert sorted(a.raw_item_ids) == sorted(s.raw_item_ids)
    for sa, ss in zip(a.sequences, s.sequences):  # same raw sequences
        assert list(a.raw_item_ids[sa]) == list(s.raw_item_ids[ss])


def test_stats(s3rec_file):
    stats = load_dataset(path=s3rec_file).stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (4, 10, 18)


def _ml1m_zip(tmp_path, lines):
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "\n".join(lines) + "\n")
    return path


def test_ml1m_five_core_and_time_order(tmp_path):
    lines = []
    # users 1..5 rate items 1..5 (every count is 5); timestamps run backwards for user 1
    for u in range(1, 6):
        for i in range(1, 6):
            ts = 100 - i if u == 1 else i
            lines.append(f"{u}::{i}::4::{ts}")
    # item 9 has one rating (dropped), user 7 has four ratings (dropped)
    lines.append("2::9::5::50")
    lines += [f"7::{i}::3::{i}" for i in range(1, 5)]
    path = _ml1m_zip(tmp_path, lines)
    data = load_dataset(path=path)
    assert data.num_users == 5 and data.num_items == 5 and data.num_interactions == 25
    assert list(data.raw_user_ids) == [1, 2, 3, 4, 5]
    assert list(data.raw_item_ids[data.sequences[0]]) == [5, 4, 3, 2, 1]  # sorted by time
    assert list(data.raw_item_ids[data.sequences[1]]) == [1, 2, 3, 4, 5]


def test_five_core_is_iterative():
    # item 3 has 5 ratings but one of them is by user 9, who has only that rating;
    # removing user 9 drops item 3 below 5, which must then go too.
    triples = [(u, i, 0) for u in range(1, 6) for i in (1, 2, 4, 5, 6)]
    triples += [(u, 3, 0) for u in (1, 2, 3, 4)] + [(9, 3, 0)]
    kept = D.five_core(triples)
    assert {t[1] for t in kept} == {1, 2, 4, 5, 6}
    assert 9 not in {t[0] for t in kept}


def test_ml1m_malformed_line(tmp_path):
    path = _ml1m_zip(tmp_path, ["1::2::3::4", "1::x::3::4"])
    with pytest.raises(DataFormatError, match="line 2"):
        load_dataset(path=path)


@needs_real_data
@pytest.mark.data
@pytest.mark.parametrize("name, users, items, interactions", [
    ("lastfm", 1090, 3646, 52551),
    ("beauty", 22363, 12101, 198502),
])
def test_real_dataset_counts(name, users, items, interactions):
    data = load_dataset(name)
    assert (data.num_users, data.num_items, data.num_interactions) == (users, items, interactions)


@needs_real_data
@pytest.mark.data
def test_attributes_follow_item_indexing():
    data = load_dataset("lastfm", indexing="random", seed=3)
    attrs = D.load_attributes(data)
    assert len(attrs) == data.num_items
    import json
    from llmrec_lite import registry
    raw = json.loads(registry.fetch("lastfm", which="attributes").read_text())
    item = 5
    assert attrs[item] == sorted(set(raw[str(data.raw_item_ids[item])]))
