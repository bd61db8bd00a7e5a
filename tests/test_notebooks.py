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

CHAPTERS = chapters()


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
    # and what it computed is right: its glued numbers, read back and checked
    glued = chapter_checks.glued_values(nb)
    check = getattr(chapter_checks, "check_" + md.stem, None)
    assert check is not None, f"tests/chapter_checks.py has no check_{md.stem}: every chapter's numbers are checked"
    check(glued, tmp_path / "runs" / "smoke")
