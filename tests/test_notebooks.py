"""Every chapter executes on the smoke profile; the Colab notebooks match the chapters."""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from sync_notebooks import chapters, to_notebook  # noqa: E402

import chapter_checks  # noqa: E402  (tests/ is on sys.path under pytest's rootdir-relative imports)
from conftest import needs_real_data  # noqa: E402

CHAPTERS = chapters()
# chapters whose every {glue:text} role is checked to name a glued value that takes its format
PROSE_CHECKED = ("05_training", "07_results", "09_records")


def with_profile(nb, profile: str):
    """Papermill-style injection: a cell after the ``parameters`` cell overrides PROFILE."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(f'PROFILE = "{profile}"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    return nb


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_structure(md):
    nb = jupytext.read(md)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one parameters cell"
    assert "PROFILE" in tagged[0].source
    assert text.lstrip().startswith("# "), "a title first"
    for needle in ("**Goal.**", "## Summary", "## Exercises", "colab.research.google.com", "google.colab"):
        assert needle in text or any(needle in c.source for c in nb.cells), needle


@pytest.mark.parametrize("stem", ["05_training", "07_results"])
def test_the_longest_chapters_stay_under_350_lines(stem):
    """Training and results grow with every finding: what a record holds goes to chapter 9.
    Counted as a reader meets them: prose and the code cells the rendered book shows (cells
    tagged remove-cell or remove-input hold bookkeeping no reader sees)."""
    nb = jupytext.read(ROOT / "book" / f"{stem}.md")
    hidden = {"remove-cell", "remove-input"}
    lines = sum(c.source.count("\n") + 1 for c in nb.cells
                if c.cell_type == "markdown" or not hidden & set(c.metadata.get("tags", [])))
    assert lines < 350, f"book/{stem}.md shows {lines} lines: move a record's reading to chapter 9"


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_colab_notebook_in_sync(md):
    paired = ROOT / "notebooks" / f"{md.stem}.ipynb"
    assert paired.exists(), f"{paired} is missing: run `make notebooks`"
    stored = nbformat.read(paired, as_version=4)
    fresh = to_notebook(md)
    strip = lambda nb: [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]
    assert strip(stored) == strip(fresh), f"{paired.name} differs from {md.name}: run `make notebooks`"
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "notebooks are committed without outputs"


@pytest.mark.notebook
@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_on_smoke_profile(md, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUN_DIR", str(tmp_path / "runs"))  # trained models go to a fresh folder
    nb = with_profile(jupytext.read(md), "smoke")
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(md.parent)}})
    client.execute()
    # the smoke profile really was used: the setup banner names it
    banner = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "profile=smoke" in banner
    # the prose pastes only values it glued, in formats they take (chapters whose prose is built that way)
    if md.stem in PROSE_CHECKED:
        prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert not chapter_checks.prose_glue_problems(prose, chapter_checks.glued_plain(nb))
    # and what it computed is right: its glued numbers, read back and checked
    glued = chapter_checks.glued_values(nb)
    check = getattr(chapter_checks, "check_" + md.stem, None)
    assert check is not None, f"tests/chapter_checks.py has no check_{md.stem}: every chapter's numbers are checked"
    check(glued, tmp_path / "runs" / "smoke")


# --------------------------------------------------------------------------- the cpu records, read without training


def run_cells(md: Path, namespace: dict, start: str | None = None, stop: str | None = None) -> dict:
    """Executes a chapter's code cells (the Colab cell left out) in ``namespace``, from the
    Markdown cell holding ``start`` to the one holding ``stop`` when given; returns the namespace."""
    nb = jupytext.read(md)
    running = start is None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            running = (running or (start is not None and start in cell.source)) and not (stop and stop in cell.source)
        elif running and "google.colab" not in cell.source:
            exec(compile(cell.source, str(md), "exec"), namespace)
    return namespace


@pytest.fixture
def captured(monkeypatch):
    """``glue`` and ``show`` captured: ``{"glued": {name: value}, "figures": [...]}``."""
    import llmrec_lite.book
    import llmrec_lite.plots

    got = {"glued": {}, "figures": []}
    monkeypatch.setattr(llmrec_lite.book, "glue", lambda name, value, display=False: got["glued"].__setitem__(name, value))
    monkeypatch.setattr(llmrec_lite.plots, "show", lambda fig, height=None: got["figures"].append(fig))
    return got


def plain_form(value) -> str:
    """The ``text/plain`` form MyST-NB pastes for a glued Python value."""
    return repr(value)


def cpu_records(kind: str) -> list[dict]:
    """The committed cpu records of one kind (read from the repository, whatever the working directory)."""
    import json

    return [json.loads(path.read_text()) for path in sorted((ROOT / "benchmarks" / "results").glob(f"{kind}_*_cpu.json"))]


@needs_real_data
def test_records_appendix_reads_the_cpu_records(captured, monkeypatch, tmp_path):
    """Chapter 9 under the cpu profile, as the book build renders it: it reads the committed
    records (and trains nothing: WALS factors are the one thing it fits where none are stored),
    and every choice it glues is the rule of lab.records applied to those records."""
    import json

    from lab.catalogue import DISTANCE_CANDIDATES
    from lab.records import cf_term_trials, cf_term_words, choose, choose_split, distance_ranking, fusion_choice, \
        more_users_against_test, seed_summary, user_vectors_ranking
    from llmrec_lite import results as R
    from llmrec_lite.profiles import get_profile

    monkeypatch.setenv("LLMREC_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT / "book")
    # chapter 7's results of this build, where it ran: a stand-in paired entry for Beauty's stage 2 - stage 1
    test_entry = {"comparison": R.S2_VS_S1, "rule": "unmasked", "key": "hr@10", "difference": 0.001,
                  "ci95": [-0.009, 0.011], "users": 2000, "verdict": "not separated"}
    (tmp_path / "runs" / "cpu" / "beauty").mkdir(parents=True)
    (tmp_path / "runs" / "cpu" / "beauty" / "results.json").write_text(json.dumps({"paired": [test_entry]}))
    nb = jupytext.read(ROOT / "book" / "09_records.md")
    render = lambda shown, *a, **k: getattr(shown, "_repr_html_", lambda: None)()  # noqa: E731 (tables render)
    namespace = run_cells(ROOT / "book" / "09_records.md", {"display": render, "PROFILE": "cpu"})
    assert namespace["PROFILE"] == "cpu"
    glued = captured["glued"]
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not chapter_checks.prose_glue_problems(prose, {k: plain_form(v) for k, v in glued.items()})

    cpu = get_profile("cpu")
    assert glued["tune_chosen"] == choose(cpu_records("tune")) and glued["tune_profile_matches"] == "matches"
    assert glued["cf_term_trials"] == cf_term_words(cf_term_trials(cpu_records("distance"), cpu))
    assert glued["split_chosen"] == "{} + {}".format(*choose_split(cpu_records("split")))
    ranked = distance_ranking(cpu_records("distance"))
    assert glued["far_chosen"] == ranked[0][0]
    assert glued["far_ranking"]["candidate"].tolist() == [n for n, _, _ in ranked]
    assert glued["far_pending"] == ("; ".join(n for n in DISTANCE_CANDIDATES if n not in {n for n, _, _ in ranked})
                                    or "none")
    assert glued["shift_candidate"] == ranked[0][0]  # the profile trains the record's choice
    assert glued["shift_reading"] == ("supports" if float(glued["shift_far"]) < float(glued["shift_near"])
                                      else "does not support")
    assert glued["vectors_chosen"] == user_vectors_ranking(cpu_records("user_vectors"))[0][0] == cpu.eval_user_vectors
    assert glued["vectors_profile_matches"] == "matches"
    assert glued["fusion_record_weight"] == f"{fusion_choice(cpu_records('fusion')):g}"
    assert glued["fusion_candidate_matches"] == "It re-ranks the model this profile trains."
    # the seed record: the verdict words follow each dataset's seed-averaged interval
    summaries = {r["dataset"]: seed_summary(r) for r in cpu_records("seeds")}
    names = {"lastfm": "LastFM", "beauty": "Beauty"}
    for verdict, name in (("above", "seed_above"), ("not separated", "seed_not_separated"), ("below", "seed_below")):
        assert glued[name] == (", ".join(names[d] for d, s in summaries.items() if s["verdict"] == verdict) or "none")
    assert glued["seed_summary"]["seed-averaged [95% CI]"].tolist() == [
        "{:+.4f} [{:+.4f}, {:+.4f}]".format(s["difference"], *s["ci95"]) for s in summaries.values()]
    assert len(glued["users_to_resolve"]) == len(summaries)
    # more users: Beauty has the record, LastFM needs none (its distance record scores all of its users)
    assert glued["more_users_missing"] == "LastFM"
    more = glued["more_users"].set_index("dataset")
    assert more.loc["LastFM", "users scored"] == more.loc["LastFM", "users in the dataset"] == 1090
    record = next(r for r in cpu_records("more_users") if r["dataset"] == "beauty")
    beside = glued["more_users_reading"]
    assert glued["more_users_beside"] == 1 and beside["dataset"].tolist() == ["Beauty"]
    assert beside["reading"].iloc[0] == more_users_against_test(record, test_entry)["reading"]
    # the sentences the prose pastes say what the words above say
    said = {"above": "lies above zero on", "not separated": "is not separated from zero on", "below": "lies below zero on"}
    for verdict, name in (("above", "seed_above"), ("not separated", "seed_not_separated"), ("below", "seed_below")):
        assert (f"{said[verdict]} {glued[name]}" in glued["seed_sentence"]) == (glued[name] != "none")
    assert glued["shift_reading_sentence"].startswith(f"Accuracy {glued['shift_verdict']} with the extra step")
    assert glued["tune_profile_sentence"].endswith(" matches it.")
    assert glued["vectors_profile_sentence"] == f"They read the {cpu.eval_user_vectors} vectors, the record's choice."
    assert glued["cf_term_sentence"].startswith("For the profile's settings, mean far HR@10 masked")
    assert f"at weight {glued['fusion_record_weight']} " in glued["fusion_sentence"]


@needs_real_data
def test_training_chapter_chooses_on_the_far_target_of_the_cpu_records(captured, monkeypatch):
    """Chapter 5.6 on the cpu records (the section trains nothing; the chapter's run is replaced
    by its split): the choice is the rule's, the profile trains it, and the figure marks it."""
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    from lab.records import distance_ranking
    from llmrec_lite.book import recorded_results
    from llmrec_lite.data import load_dataset
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.split import LeaveOneOutSplit

    monkeypatch.chdir(ROOT / "book")
    cpu = get_profile("cpu")
    split = LeaveOneOutSplit.from_data(load_dataset("lastfm", indexing=cpu.indexing, seed=cpu.seed))
    namespace = {"profile": cpu, "run": SimpleNamespace(split=split), "np": np, "pd": pd, "go": go,
                 "recorded_results": recorded_results}
    exec("from llmrec_lite.book import glue\nfrom llmrec_lite.plots import show", namespace)
    run_cells(ROOT / "book" / "05_training.md", namespace, start="## 5.6", stop="## Summary")
    glued = captured["glued"]
    assert glued["far_is_valid"] is True
    ranked = distance_ranking(cpu_records("distance"))
    assert glued["far_chosen"] == ranked[0][0] and glued["far_profile_matches"] == "trains"
    assert glued["far_spread"] == f"{ranked[0][1] - ranked[-1][1]:.4f}"
    [fig] = captured["figures"]
    assert list(fig.data[0].y) == [hr for _, hr, _ in ranked]  # the mean, best first
    assert sorted(t.name for t in fig.data[1:]) == ["beauty", "lastfm"]
    assert [a.text for a in fig.layout.annotations] == ["the profile's candidate"] and fig.layout.annotations[0].x == 1
