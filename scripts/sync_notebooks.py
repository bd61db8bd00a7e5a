"""Writes notebooks/<chapter>.ipynb from book/<chapter>.md (the chapters' source).

Colab opens only .ipynb files, so every MyST chapter has a paired notebook without
outputs. tests/test_notebooks.py fails when a pair has drifted; run `make notebooks`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[Path]:
    return sorted(p for p in (ROOT / "book").glob("[0-9]*.md"))


def to_notebook(md: Path):
    nb = jupytext.read(md)
    nb.metadata.pop("jupytext", None)
    nb.metadata["colab"] = {"provenance": []}
    for index, cell in enumerate(nb.cells):
        # stable cell ids, so that regenerating an unchanged chapter changes nothing
        cell.id = f"{md.stem[:2]}-{index:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def main() -> int:
    out_dir = ROOT / "notebooks"
    out_dir.mkdir(exist_ok=True)
    for md in chapters():
        target = out_dir / f"{md.stem}.ipynb"
        jupytext.write(to_notebook(md), target, fmt="ipynb")
        print(f"{md.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
