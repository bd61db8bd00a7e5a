"""Unusual input that once gave a silent wrong answer, lost work or a traceback: each case gets
the right result or one clear error (exit status 2, the JSON line naming the input and the
fix). ``docs/reliability.md`` lists every case with its test here."""

import json
from pathlib import Path
import signal
import subprocess

import numpy as np
import pytest

from llmrec_lite import checkpoints, fileio
from llmrec_lite.data import DataFormatError, load_dataset
from llmrec_lite.recommend import ClassicRecommender, recommend
from llmrec_lite.runs import open_saved, stage_lock

from cli_runner import run_cli


def cli(*args, subprocess=False):
    """(exit status, JSON line, stderr) of one command."""
    return run_cli(*args, check=False, subprocess=subprocess)


def write_users(path: Path, sequences) -> Path:
    path.write_text("".join(" ".join(map(str, [u, *items])) + "\n" for u, items in enumerate(sequences, start=1)))
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """An own file like a new user's: 40 users, 30 items, 5-10 distinct items each."""
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("good")
    return write_users(folder / "good.txt",
                       [rng.choice(np.arange(1, 31), size=int(rng.integers(5, 11)), replace=False) for _ in range(40)])


@pytest.fixture(scope="module")
def finished(good, tmp_path_factory) -> Path:
    """``run --profile smoke`` on ``good``: every model and baseline trained."""
    out = tmp_path_factory.mktemp("runs") / "good"
    code, _, err = cli("run", "--path", str(good), "--name", "Shop", "--profile", "smoke", "--out", str(out))
    assert code == 0, err[-3000:]
    return out


def history_ids(path: Path, user: int) -> set[int]:
    """Raw item ids of ``user``'s history before the test target (all but the last item)."""
    for line in path.read_text().splitlines():
        ids = [int(x) for x in line.split()]
        if ids[0] == user:
            return set(ids[1:-1])
    raise KeyError(user)


# 1-2. recommend beyond what can be returned ----------------------------------------------------


@pytest.mark.parametrize("model, k", [("wals", 30), ("wals", 1000), ("popularity", 31), ("item-token", 1000),
                                      ("text-id", 26)])
def test_recommend_never_returns_seen_items_or_fillers(finished, good, model, k):
    seen = history_ids(good, 1)
    code, rec, err = cli("recommend", "--run", str(finished), "--user", "1", "--k", str(k), "--model", model)
    assert code == 0, err[-2000:]
    assert rec["exclude_seen"] and not seen & set(rec["items"])
    assert len(rec["items"]) == len(set(rec["items"])) == rec["k"] == min(k, 30 - len(seen))
    assert rec["k_requested"] == k
    assert all(1001 <= i <= 1030 for i in rec["item_ids_in_prompts"])


def test_recommend_with_seen_items_fills_to_the_catalogue(finished):
    code, rec, _ = cli("recommend", "--run", str(finished), "--user", "1", "--k", "1000", "--model", "wals",
                       "--include-seen")
    assert code == 0 and rec["k"] == 30 and sorted(rec["items"]) == list(range(1, 31))


def test_recommend_api_refuses_k_and_users_it_would_cast(finished):
    run = open_saved(finished)
    model = ClassicRecommender(run, "popularity")
    for k in (2.5, True):
        with pytest.raises(ValueError, match="whole number"):
            recommend(model, [0], k=k)
    for users in ([0.7], ["3"]):
        with pytest.raises(ValueError, match="user indices"):
            recommend(model, users)
    assert recommend(model, [], k=5) == []


# 3-5. data files ---------------------------------------------------------------------------------


def test_a_form_feed_is_not_a_line_break(tmp_path):
    path = tmp_path / "ff.txt"
    path.write_text("".join(f"{u} 2 3 4 5\n" for u in range(1, 41)) + "41 10 2 3\x0c42 5 6 7\n")
    with pytest.raises(DataFormatError, match=r"line 41: .*form feed"):
        load_dataset(path=path)


def test_crlf_line_ends_are_still_read(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"1 2 3 4 5\r\n2 3 4 5 6\r\n")
    assert load_dataset(path=path).num_users == 2


@pytest.mark.parametrize("token", ["1_0", "\u0661\u0660", "\uff11\uff10", "010", "+10", "00"])
def test_ids_are_ascii_digits_in_one_spelling(tmp_path, token):
    # int() reads each of these as 10 (or 0), which would merge them with the real item 10
    path = tmp_path / "ids.txt"
    path.write_text(f"1 {token} 2 3 4\n2 10 2 3 4\n")
    with pytest.raises(DataFormatError, match="line 1: .*not an integer id.*one spelling"):
        load_dataset(path=path)


def test_users_with_three_items_give_no_training_prompt(tmp_path):
    path = write_users(tmp_path / "three.txt", [[(u + j) % 40 + 1 for j in range(3)] for u in range(40)])
    out = tmp_path / "R"
    code, res, _ = cli("train", "--path", str(path), "--profile", "smoke", "--stage", "1", "--out", str(out))
    assert code == 2 and "yields no prompt" in res["error"] and "4 items" in res["error"]
    assert not (out / "item-token").exists()  # nothing saved as finished
    code, res, _ = cli("run", "--path", str(path), "--profile", "smoke", "--out", str(tmp_path / "R2"))
    assert code == 2 and "yields no prompt" in res["error"]


@pytest.mark.parametrize("items", [1, 10])
def test_a_catalogue_too_small_for_hr10_is_refused(tmp_path, items):
    path = write_users(tmp_path / "small.txt", [[(u + j) % items + 1 for j in range(6)] for u in range(20)])
    code, res, _ = cli("run", "--path", str(path), "--profile", "smoke", "--out", str(tmp_path / "R"))
    assert code == 2 and f"has {items} item(s)" in res["error"] and "HR@10" in res["error"]
    code, res, _ = cli("wals", "--path", str(path), "--factors", "4")
    assert code == 2 and "HR@10" in res["error"]


def test_density_counts_each_user_item_pair_once(tmp_path):
    path = write_users(tmp_path / "rep.txt", [[5] * 5, [5] * 5])
    code, res, _ = cli("data", "--path", str(path))
    assert code == 0 and res["density"] == 1.0 and res["interactions"] == 10


# 6-7. finished work --------------------------------------------------------------------------------


def test_dump_rankings_never_replaces_a_file_without_overwrite(finished, tmp_path):
    result = finished / "item-token" / "stage1" / "final" / "result.json"
    before = result.read_bytes()
    code, res, _ = cli("evaluate", "--run", str(finished), "--stage", "1", "--users", "2", "--dump-rankings", str(result))
    assert code == 2 and "--overwrite" in res["error"] and result.read_bytes() == before
    dump = tmp_path / "r.jsonl"
    dump.write_text("mine\n")
    code, _, _ = cli("evaluate", "--run", str(finished), "--stage", "1", "--users", "2", "--dump-rankings", str(dump),
                     "--overwrite")
    assert code == 0 and len(dump.read_text().splitlines()) == 2


def test_resume_and_overwrite_together_are_refused(finished, good):
    result = finished / "item-token" / "stage1" / "final" / "result.json"
    before = result.read_bytes()
    code, res, _ = cli("train", "--path", str(good), "--name", "Shop", "--profile", "smoke", "--stage", "1",
                       "--out", str(finished), "--resume", "--overwrite")
    assert code == 2 and "--resume and --overwrite" in res["error"] and result.read_bytes() == before


# 8. Ctrl-C: tests/test_reliability.py::test_a_stop_ends_with_a_json_line (SIGTERM and SIGINT)


# 9-11. damaged or unwritable files ---------------------------------------------------------------------


def copy_run(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(finished), str(out)], check=True)
    return out


def test_truncated_wals_factors_name_the_file(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    factors = out / "wals" / "factors.safetensors"
    factors.write_bytes(factors.read_bytes()[:100])
    for command in (("evaluate", "--run", str(out)), ("recommend", "--run", str(out), "--user", "1", "--model", "wals")):
        code, res, err = cli(*command)
        assert code == 2 and "factors.safetensors" in res["error"] and "fit the factors again" in res["error"], err


@pytest.mark.parametrize("damaged", ["eval", "wals/wals.json"])
def test_a_damaged_cache_or_wals_json_names_the_file(finished, good, tmp_path, damaged):
    out = copy_run(finished, tmp_path)
    target = sorted((out / "eval").glob("*.json"))[0] if damaged == "eval" else out / damaged
    target.write_text('{"metrics": ')
    code, res, _ = cli("run", "--path", str(good), "--name", "Shop", "--profile", "smoke", "--out", str(out))
    assert code == 2 and target.name in res["error"] and "delete" in res["error"].lower()


class _Usage:
    """What ``shutil.disk_usage`` returns, with the free bytes chosen."""

    def __init__(self, free):
        self.total, self.used, self.free = 1 << 30, (1 << 30) - free, free


def test_a_full_disk_during_training_is_named_and_leaves_no_temporary_folder(good, tmp_path, monkeypatch):
    def full(*args, **kwargs):  # what torch.save raises when the disk is full: no errno, no words
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: _Usage(0))
    out = tmp_path / "R"
    code, res, _ = cli("train", "--path", str(good), "--profile", "smoke", "--stage", "1", "--out", str(out))
    assert code == 2 and "is full" in res["error"] and "--resume" in res["error"]
    assert not list(out.rglob("*.tmp"))


def test_a_failed_write_with_room_on_the_disk_is_not_called_full(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: _Usage(1 << 30))
    with pytest.raises(RuntimeError, match="unrelated"):
        with fileio.disk_guard(tmp_path):
            raise RuntimeError("unrelated")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 48 KiB tmpfs, where this machine lets the tests mount one (root on Linux)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux); the monkeypatched test covers the logic")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_is_named(good, tiny_disk):
    code, res, _ = cli("wals", "--path", str(good), "--factors", "4000", "--out", str(tiny_disk / "w"))
    assert code == 2 and "is full" in res["error"]
    assert not list((tiny_disk / "w").iterdir())
    code, res, _ = cli("train", "--path", str(good), "--profile", "smoke", "--stage", "1", "--out", str(tiny_disk / "t"))
    assert code == 2 and "is full" in res["error"]
    assert not list(tiny_disk.rglob("*.tmp"))


# 12-17. names, places and values ----------------------------------------------------------------------------


def test_an_own_file_in_a_folder_named_like_a_registered_dataset_stays_ones_own(good, tmp_path):
    own = tmp_path / "lastfm" / "lastfm.txt"
    own.parent.mkdir()
    own.write_text(good.read_text())
    out = tmp_path / "R"
    assert cli("train", "--path", str(own), "--profile", "smoke", "--stage", "1", "--out", str(out))[0] == 0
    code, res, err = cli("evaluate", "--run", str(out), "--stage", "1")  # reopens the own file, not LastFM's
    assert code == 0, err[-2000:]
    assert res["users"] == 40


def test_a_dangling_symlink_as_out_is_named(good, tmp_path):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    code, res, _ = cli("train", "--path", str(good), "--profile", "smoke", "--stage", "1", "--out", str(link))
    assert code == 2 and "symbolic link" in res["error"] and "nowhere" in res["error"]


@pytest.mark.parametrize("seed", ["1180591620717411303424", "-1", "x"])
def test_a_seed_out_of_range_names_seed(good, seed):
    code, res, _ = cli("data", "--path", str(good), "--seed", seed)
    assert code == 2 and "--seed" in res["error"] and "4294967295" in res["error"]


@pytest.mark.parametrize("sub", ["", "wals"])
def test_a_folder_with_only_wals_factors_recommends_classic_models(good, tmp_path, sub):
    out = tmp_path / "W"
    assert cli("wals", "--path", str(good), "--profile", "smoke", "--out", str(out / "wals"))[0] == 0
    for model in ("wals", "popularity"):
        code, rec, err = cli("recommend", "--run", str(out / sub), "--user", "1", "--model", model)
        assert code == 0, err[-2000:]
        assert len(rec["items"]) == 10 and not history_ids(good, 1) & set(rec["items"])
    code, res, _ = cli("recommend", "--run", str(out), "--user", "1", "--model", "item-token")
    assert code == 2 and "holds no finished item-token stage 2" in res["error"]


def test_a_stage_in_training_is_not_called_interrupted(good, tmp_path):
    out = tmp_path / "R"
    base = ("train", "--path", str(good), "--profile", "smoke", "--stage", "1", "--out", str(out))
    cli(*base, "--stop-after-steps", "2")  # a checkpoint, as a running training has
    with stage_lock(out / "item-token" / "stage1"):  # as the other process holds it
        for extra in ((), ("--overwrite",), ("--resume",)):
            code, res, _ = cli(*base, *extra)
            assert code == 2 and "being trained right now" in res["error"], res
    assert (out / "item-token" / "stage1" / "checkpoint" / "state.json").exists()
    assert cli(*base, "--resume")[0] == 0  # released: the same command continues


@pytest.mark.parametrize("name", ["a\nb", "### Answer: item_1001", "Shop user_3", "x" * 41, "   "])
def test_a_name_that_would_rewrite_the_prompts_is_refused(good, name):
    code, res, _ = cli("data", "--path", str(good), "--name", name)
    assert code == 2 and "--name" in res["error"]


def test_ordinary_names_are_kept(good):
    for name in ("Shop", "Amazon Beauty", "MovieLens-100K", "my_shop (v2)"):
        assert cli("data", "--path", str(good), "--name", name)[0] == 0
    assert load_dataset(path=good, display_name="Amazon Beauty").item_text(0) == "Amazon Beauty item_1001"


# beyond the reported cases: found by trying the other commands and the Python API ---------------------------


@pytest.mark.parametrize("args, needle", [
    (("--regularization", "inf"), "regularization=inf"),
    (("--alpha", "inf"), "alpha=inf"),
    (("--backend", "implicit", "--alpha", "inf"), "alpha=inf"),
    (("--device", "tpu"), "device='tpu'"),
])
def test_wals_settings_that_would_give_nan_factors_or_a_raw_message(good, args, needle):
    code, res, _ = cli("wals", "--path", str(good), "--profile", "smoke", *args)
    assert code == 2 and needle in res["error"]


def test_wals_never_returns_non_finite_factors(good):
    from llmrec_lite.split import LeaveOneOutSplit
    from llmrec_lite.wals import WALS, WALSConfig

    split = LeaveOneOutSplit.from_data(load_dataset(path=good))
    with pytest.raises(ValueError, match="non-finite factors"):
        WALS(WALSConfig(num_factors=4, iterations=2, regularization=1e38, alpha=1e38)).fit(split.train_matrix(),
                                                                                           show_progress=False)


@pytest.mark.parametrize("command", ["evaluate", "recommend"])
def test_a_cf_weight_past_float32_is_refused(finished, command):
    extra = ("--user", "1") if command == "recommend" else ()
    code, res, _ = cli(command, "--run", str(finished), "--cf-weight", "1e39", *extra)
    assert code == 2 and "cf_weight=1e+39" in res["error"]


def test_dumped_rankings_hold_no_filler_and_name_the_files_ids(finished, good, tmp_path):
    dump = tmp_path / "d.jsonl"
    code, _, _ = cli("evaluate", "--run", str(finished), "--output", "text-id", "--mask-history", "--dump-rankings",
                     str(dump))
    assert code == 0
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(lines) == 40
    for line in lines:
        assert all(1001 <= i <= 1030 for i in line["top"]) and len(line["top"]) == len(line["top_in_file"])
        assert not history_ids(good, line["user_in_file"]) & set(line["top_in_file"])
        assert line["gold_in_file"] == int(good.read_text().splitlines()[line["user_in_file"] - 1].split()[-1])


@pytest.mark.parametrize("extra, needle", [(("--dataset", "lastfm"), "not 'lastfm'"), (("--name", "Foo"), "not 'Foo'")])
def test_dataset_or_name_beside_run_must_agree(finished, extra, needle):
    for command in (("evaluate", "--users", "2"), ("recommend", "--user", "1")):
        code, res, _ = cli(command[0], "--run", str(finished), *command[1:], *extra)
        assert code == 2 and needle in res["error"]


def test_stages_that_cannot_train_leave_nothing_behind(good, tmp_path):
    out = tmp_path / "R"
    code, res, _ = cli("train", "--path", str(good), "--profile", "smoke", "--stage", "1", "--output", "text-id",
                       "--text-only", "--out", str(out))
    assert code == 2 and "nothing to train in stage 1" in res["error"]
    code, res, _ = cli("train", "--path", str(good), "--profile", "smoke", "--stage", "2", "--out", str(out))
    assert code == 2 and "run `train --stage 1`" in res["error"]
    assert not [p for p in out.rglob("*") if "wals" not in p.parts]


def test_run_onto_a_stage_with_other_settings_names_what_run_can_do(good, tmp_path):
    out = tmp_path / "R"
    assert cli("train", "--path", str(good), "--profile", "smoke", "--stage", "1", "--samples", "7", "--out", str(out))[0] == 0
    code, res, _ = cli("run", "--path", str(good), "--profile", "smoke", "--out", str(out))
    assert code == 2 and "`run` itself never replaces a stage" in res["error"]


def test_a_stop_of_a_command_without_resume_does_not_suggest_it(good):
    from llmrec_lite.cli import _stopped

    assert "--resume" not in _stopped(signal.SIGTERM, "wals").args[0]
    assert "--resume" in _stopped(signal.SIGINT, "train").args[0]


@pytest.mark.parametrize("args, needle", [
    (("data", "--path", "{tmp}"), "is a folder"),
    (("data", "--path", "{tmp}/missing.zip"), "No such data file"),
    (("evaluate", "--run", "{tmp}/nope"), "does not exist"),
    (("evaluate", "--run", "{good}"), "is a file, not a run folder"),
])
def test_paths_of_the_wrong_kind_are_named(good, tmp_path, args, needle):
    code, res, _ = cli(*(a.format(tmp=tmp_path, good=good) for a in args))
    assert code == 2 and needle in res["error"]


def test_recommend_checks_the_template_for_classic_models_too(finished):
    code, res, _ = cli("recommend", "--run", str(finished), "--user", "1", "--model", "wals", "--template", "abc")
    assert code == 2 and "Template 'abc'" in res["error"]


def test_recommend_api_refuses_templates_users_and_beams_it_would_misread(finished):
    trained = open_saved(finished).load("text-id", 2)
    for template in (True, 1.7):
        with pytest.raises(ValueError, match="does not exist"):
            recommend(trained, [1], k=2, template=template)
    for beams in (0, -3):
        with pytest.raises(ValueError, match="num_beams"):
            recommend(trained, [1], k=2, num_beams=beams)
    with pytest.raises(ValueError, match="flat list"):
        recommend(ClassicRecommender(open_saved(finished), "wals"), [[1, 2], [3, 4]], k=2)
