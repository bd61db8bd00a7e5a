import hashlib

import pytest

from llmrec_lite import registry
from llmrec_lite.registry import ChecksumError, DatasetInfo, RemoteFile


def _fake_entry(monkeypatch, source_file, digest):
    entry = DatasetInfo(
        name="fake", display_name="Fake", folder="fake", fmt="s3rec",
        interactions=RemoteFile("Fake.txt", source_file.as_uri(), digest),
    )
    monkeypatch.setitem(registry.DATASETS, "fake", entry)
    return entry


def test_download_verifies_and_caches(tmp_path, monkeypatch, s3rec_file):
    digest = hashlib.sha256(s3rec_file.read_bytes()).hexdigest()
    _fake_entry(monkeypatch, s3rec_file, digest)
    cache = tmp_path / "cache"
    path = registry.fetch("fake", cache)
    assert path == cache / "fake" / "Fake.txt"
    assert path.read_bytes() == s3rec_file.read_bytes()
    assert [p.name for p in (cache / "fake").iterdir()] == ["Fake.txt"]  # no temporary left


def test_checksum_mismatch_leaves_no_file(tmp_path, monkeypatch, s3rec_file):
    _fake_entry(monkeypatch, s3rec_file, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="Checksum mismatch"):
        registry.fetch("fake", cache)
    leftovers = list((cache / "fake").iterdir()) if (cache / "fake").exists() else []
    assert leftovers == []


def test_corrupt_cached_file_is_reported(tmp_path, monkeypatch, s3rec_file):
    digest = hashlib.sha256(s3rec_file.read_bytes()).hexdigest()
    _fake_entry(monkeypatch, s3rec_file, digest)
    cache = tmp_path / "cache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / "Fake.txt").write_text("1 2 3\n")
    with pytest.raises(ChecksumError, match="Delete the file"):
        registry.fetch("fake", cache)


def test_md5_entries_are_checked(tmp_path, monkeypatch, s3rec_file):
    md5 = hashlib.md5(s3rec_file.read_bytes()).hexdigest()
    entry = DatasetInfo(name="fake", display_name="Fake", folder="fake", fmt="s3rec",
                        interactions=RemoteFile("Fake.txt", s3rec_file.as_uri(), None, md5=md5))
    monkeypatch.setitem(registry.DATASETS, "fake", entry)
    assert registry.fetch("fake", tmp_path).exists()


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(KeyError) as err:
        registry.get_info("movielens-20m")
    for name in ("lastfm", "beauty", "ml1m"):
        assert name in str(err.value)


def test_offline_download_failure_says_what_to_do(tmp_path, monkeypatch):
    entry = DatasetInfo(name="fake", display_name="Fake", folder="fake", fmt="s3rec",
                        interactions=RemoteFile("Fake.txt", (tmp_path / "absent.txt").as_uri(), "0" * 64))
    monkeypatch.setitem(registry.DATASETS, "fake", entry)
    with pytest.raises(FileNotFoundError, match=registry.DATA_DIR_ENV):
        registry.fetch("fake", tmp_path / "cache")


def test_data_dir_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(tmp_path))
    assert registry.data_dir() == tmp_path
    assert registry.data_dir(tmp_path / "x") == tmp_path / "x"
