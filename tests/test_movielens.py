"""MovieLens: ``ml100k`` (GroupLens's ``u.data``) and ``ml1m`` (``ml-1m.zip``) through the registry,
the parsers, the 5-core filter, the split and a whole smoke run, on files the tests write."""

import hashlib
import zipfile

import numpy as np
import pytest

from llmrec_lite import registry
from llmrec_lite.data import DataFormatError, load_dataset, parse_ml100k

from cli_runner import run_cli
from conftest import real_data_dir


def ratings(seed: int = 0, users: int = 30, items: int = 25):
    """(user, item, rating, time) rows: every user rates 8-14 items, several within one second."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, users + 1):
        chosen = rng.choice(np.arange(1, items + 1), size=int(rng.integers(8, 15)), replace=False)
        times = 880_000_000 + np.sort(rng.integers(0, 6, size=len(chosen))) * 60  # ties within a user
        rows += [(user, int(i), int(rng.integers(1, 6)), int(t)) for i, t in zip(chosen, times)]
    rng.shuffle(rows)  # u.data is in no particular order
    return rows


def test_ml100k_orders_each_user_by_time_then_item(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("3\t20\t4\t100\n3\t7\t5\t100\n3\t9\t1\t50\n")
    with pytest.raises(DataFormatError, match="5-core"):  # one user of 3 items fails 5-core: nothing is left
        load_dataset(path=path)
    rows = ratings()
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    sequences = parse_ml100k(path)
    for user, items in sequences.items():
        keyed = sorted((t, i) for u, i, _, t in rows if u == user)
        assert items == [i for _, i in keyed if i in items]  # time order, ties by item id


def test_ml100k_names_a_bad_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t4\n1::2::3::4\n")
    with pytest.raises(DataFormatError, match="line 2"):
        parse_ml100k(path)


@pytest.mark.skipif(real_data_dir() is None or not (real_data_dir() / "ml100k" / "u.data").exists(),
                    reason="MovieLens-100K's u.data is not in the data directory")
def test_ml100k_real_file_gives_the_published_5_core():
    data = load_dataset("ml100k")
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1349, 99287)
    assert data.display_name == "MovieLens" and data.registered


def write_ml1m_zip(path, rows) -> str:
    """An archive laid out as GroupLens's ``ml-1m.zip``; returns its md5."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "".join("::".join(map(str, r)) + "\n" for r in rows))
        archive.writestr("ml-1m/movies.dat", "1::Toy Story (1995)::Animation\n")
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_ml1m_zip_runs_to_results_on_the_smoke_profile(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "ml1m").mkdir(parents=True)
    md5 = write_ml1m_zip(cache / "ml1m" / "ml-1m.zip", ratings(seed=1, users=40, items=30))
    real = registry.DATASETS["ml1m"]
    # the registry's own entry, with the digest of the file written here instead of GroupLens's
    monkeypatch.setitem(registry.DATASETS, "ml1m", registry.DatasetInfo(
        name=real.name, display_name=real.display_name, folder=real.folder, fmt=real.fmt, source=real.source,
        interactions=registry.RemoteFile(real.interactions.name, real.interactions.url, sha256=None, md5=md5)))
    code, data, err = run_cli("data", "--dataset", "ml1m", "--data-dir", str(cache), check=False)
    assert code == 0, err[-2000:]
    assert data["users"] == 40 and data["min_sequence_length"] >= 5
    out = tmp_path / "R"
    code, res, err = run_cli("run", "--dataset", "ml1m", "--profile", "smoke", "--data-dir", str(cache),
                             "--out", str(out), check=False)
    assert code == 0, err[-3000:]
    assert (out / "results.json").exists() and res["rows"] > 0
    # a zip that is not GroupLens's (another digest) is refused by name
    (cache / "ml1m" / "ml-1m.zip").write_bytes(b"PK not really")
    code, res, _ = run_cli("data", "--dataset", "ml1m", "--data-dir", str(cache), check=False)
    assert code == 2 and "Checksum mismatch" in res["error"]
