"""Bad and unusual inputs, as a new user meets them: each gets a clear error (exit status 2 and a
JSON line from the command line), and no finished work is lost. Commands run in this process
(``cli_runner``) except where the process itself is tested."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from llmrec_lite.data import DataFormatError, load_dataset
from llmrec_lite.fileio import write_json

from cli_runner import run_cli
from conftest import needs_real_data


def cli(*args, subprocess=False):
    """(exit status, JSON line, stderr) of one command; in this process unless the process is the point."""
    return run_cli(*args, check=False, subprocess=subprocess)


@pytest.fixture
def shop(tmp_path):
    """A data file of one's own in the S3Rec format, not in the registry: 60 users, 40 items."""
    rng = np.random.default_rng(0)
    lines = [" ".join(map(str, [u, *rng.choice(np.arange(1, 41), size=int(rng.integers(5, 12)), replace=False)]))
             for u in range(1, 61)]
    path = tmp_path / "MyShop.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


# 1. your own data end to end ------------------------------------------------------------------


def test_own_file_runs_end_to_end(shop, tmp_path):
    out = tmp_path / "R"
    code, result, err = cli("run", "--path", str(shop), "--name", "MyShop", "--profile", "smoke", "--out", str(out))
    assert code == 0, err[-3000:]
    assert result["rows"] > 0 and (out / "results.json").exists()
    code, ev, err = cli("evaluate", "--run", str(out), "--stage", "2")  # the run reopens its own file
    assert code == 0, err[-3000:]
    assert ev["dataset"] == "MyShop" and ev["users"] == 60
    code, rec, err = cli("recommend", "--run", str(out), "--user", "1")
    assert code == 0, err[-3000:]
    assert len(rec["items"]) == 10 and all(1 <= i <= 40 for i in rec["items"])


def test_another_file_under_the_same_name_is_refused(shop, tmp_path):
    out = tmp_path / "R"
    assert cli("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(out))[0] == 0
    other = tmp_path / "other" / "MyShop.txt"  # same name, other content
    other.parent.mkdir()
    other.write_text(shop.read_text().replace("\n1 ", "\n1 40 ", 1) + "61 1 2 3 4 5\n")
    code, out_json, _ = cli("train", "--path", str(other), "--profile", "smoke", "--stage", "2", "--out", str(out))
    assert code == 2 and "another file" in out_json["error"]


@needs_real_data
@pytest.mark.data
def test_a_file_named_like_a_registered_dataset_does_not_mix(tmp_path, shop):
    fake = tmp_path / "lastfm.txt"
    fake.write_text(shop.read_text())
    assert cli("wals", "--path", str(fake), "--factors", "4", "--iterations", "2", "--out", str(tmp_path / "R" / "wals"))[0] == 0
    code, out, _ = cli("train", "--dataset", "lastfm", "--profile", "smoke", "--stage", "1", "--out", str(tmp_path / "R"))
    assert code == 2 and "sha256" in out["error"]


# 2. finished work is never deleted silently ----------------------------------------------------


def test_rerun_and_wals_refuse_to_replace_finished_work(shop, tmp_path):
    out = tmp_path / "R"
    base = ("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(out))
    _, first, _ = cli(*base)
    code, again, _ = cli(*base)
    assert code == 2 and "--overwrite" in again["error"]
    code, reused, _ = cli(*base, "--resume")
    assert code == 0 and reused["reused"] and reused["final_loss"] == first["final_loss"]
    code, typo, _ = cli(*base[:-1], str(tmp_path / "Rr"), "--resume")
    assert code == 2 and "Nothing to resume" in typo["error"]
    code, wals, _ = cli("wals", "--path", str(shop), "--out", str(out / "wals"))
    assert code == 2 and "--overwrite" in wals["error"]
    assert cli("evaluate", "--run", str(out), "--stage", "1")[0] == 0  # the run still evaluates


# 3. output paths are checked before the expensive work -----------------------------------------


def test_output_paths_fail_before_any_work(shop, tmp_path):
    out = tmp_path / "R"
    assert cli("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(out))[0] == 0
    code, res, err = cli("evaluate", "--run", str(out), "--stage", "1", "--dump-rankings", "/no/such/dir/r.jsonl")
    assert code == 2 and "/no/such/dir" in res["error"] and "evaluate" not in err.split("error:")[0]
    code, res, err = cli("wals", "--path", str(shop), "--out", "/proc/llmrec/x")
    assert code == 2 and "/proc" in res["error"]


# 4. corrupt checkpoints -------------------------------------------------------------------------


def test_corrupt_checkpoint_gives_one_clear_error(shop, tmp_path):
    out = tmp_path / "R"
    base = ("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(out))
    cli(*base, "--stop-after-steps", "2")
    state = out / "item-token" / "stage1" / "checkpoint" / "state.json"
    assert state.exists()
    state.write_text('{"step": ')
    code, res, _ = cli(*base, "--resume")
    assert code == 2 and "state.json" in res["error"] and "--resume" in res["error"]


def test_corrupt_finished_stage_names_the_file(shop, tmp_path):
    out = tmp_path / "R"
    cli("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(out))
    (out / "item-token" / "stage1" / "final" / "extra.safetensors").write_bytes(b"garbage")
    code, res, _ = cli("evaluate", "--run", str(out), "--stage", "1")
    assert code == 2 and "extra.safetensors" in res["error"] and "train that stage again" in res["error"]


# 5. file modes ----------------------------------------------------------------------------------


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
        assert (path.stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        assert (write_json(tmp_path / "b.json", {}).stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


# 6. the smaller ones ----------------------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (("--samples", "0"), "samples_per_task=0"),
    (("--samples", "-3"), "samples_per_task=-3"),
])
def test_bad_training_values_name_the_field(shop, tmp_path, args, needle):
    code, res, _ = cli("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(tmp_path / "R"), *args)
    assert code == 2 and needle in res["error"] and "TrainSettings(" not in res["error"]
    assert not (tmp_path / "R" / "item-token" / "stage1" / "final").exists()


def test_bad_evaluation_values(shop, tmp_path):
    out = tmp_path / "R"
    cli("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(out))
    for args, needle in ((("--users", "0"), "--users 0"), (("--users", "-5"), "--users -5"),
                         (("--template", "abc"), "Template 'abc' does not exist")):
        code, res, _ = cli("evaluate", "--run", str(out), "--stage", "1", *args)
        assert code == 2 and needle in res["error"], res


def test_bad_prompt_and_wals_values(shop):
    code, res, _ = cli("prompt", "--path", str(shop), "--user", "1", "--max-history", "-3", "--backbone", "tiny")
    assert code == 2 and "max_history=-3" in res["error"]
    code, res, _ = cli("wals", "--path", str(shop), "--factors", "0")
    assert code == 2 and "num_factors=0" in res["error"] and "WALSConfig(" not in res["error"]


@pytest.mark.parametrize("content, needle", [
    ("1 2 3 100000000000000000000000\n", "too large"),
    ("1 2 3 4\n".encode("utf-16"), "UTF-16"),
    (b"1 2 3 4\n2 \x00\x01\x02 5\n", "line 2"),
])
def test_unusual_files_get_a_named_error(tmp_path, content, needle):
    path = tmp_path / "odd.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFormatError, match=needle) as err:
        load_dataset(path=path)
    assert str(path) in str(err.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf1 2 3 4 5\n2 3 4 5\n")
    assert load_dataset(path=path).num_users == 2


@pytest.mark.parametrize("signum, words", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stop_ends_with_a_json_line(shop, tmp_path, signum, words):
    args = [sys.executable, "-m", "llmrec_lite", "train", "--path", str(shop), "--profile", "smoke", "--stage", "1",
            "--samples", "100000", "--out", str(tmp_path / "R")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "R" / "item-token" / "stage1" / "log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.stat().st_size) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr
    message = json.loads(stdout.strip().splitlines()[-1])["error"]
    assert words in message and "--resume" in message


def test_no_spurious_kernel_message(shop, tmp_path):
    # a fresh process: the message would come from an import
    code, _, err = cli("train", "--path", str(shop), "--profile", "smoke", "--stage", "1", "--out", str(tmp_path / "R"),
                       subprocess=True)
    assert code == 0 and "kernels" not in err
