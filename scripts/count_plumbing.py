"""Counts the code a reader sees in each chapter, and how much of it is plumbing.

A chapter should show the method; the bookkeeping that puts numbers into its prose sits in
cells the rendered book removes. This script measures how well a chapter keeps to that.

How it counts:

- **Visible lines**: the non-blank, non-comment lines of every code cell whose input the
  rendered book shows, i.e. every cell *not* tagged ``remove-cell`` or ``remove-input``
  (a ``hide-input`` cell counts as visible: one click opens it). The Colab install cell
  counts too.
- **Plumbing**: a visible line that does one of these (the regular expressions below):
  glues a value (``glue(``, ``glue_all(``); formats or displays (``display(``, ``print(``,
  ``show(``, ``styled(``, ``.style``, ``.format(``, ``.round(``, ``to_string(``, an f-string
  or a format spec like ``:.4f}``);
  chooses between verdict words (a conditional expression between string literals); or
  looks up a record (``records(``, ``recorded_results(``, ``recorded_source(``).
  Everything else (imports, loading data, training, ranking, building a table or a figure)
  is method code.

Usage: ``python scripts/count_plumbing.py [--json]``; ``tests/test_plumbing.py`` holds every
chapter to :data:`MAX_SHARE` and chapters 7 and 9 to :data:`MAX_LINES` visible lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_TAGS = {"remove-cell", "remove-input"}
MAX_SHARE = 0.20
MAX_LINES = {"07_results": 40, "09_records": 40}

PLUMBING = [re.compile(p) for p in (
    r"\bglue(_all)?\(",                                  # glued values
    r"\b(display|print|show)\(", r"\bstyled\(", r"\.style\b", r"\.format\(", r":[+,]?\.?\d*[fdg%]\}",
    r"\bf[\"']", r"\.round\(", r"\bto_(string|markdown|html)\(",    # formatting
    r"""["'][^"']*["']\s+if\s+.+\s+else\s+["']""",       # verdict words chosen by a condition
    r"\w*records\(", r"\brecorded_(results|source)\(",   # record lookups (read_records too)
)]


def is_plumbing(line: str) -> bool:
    return any(p.search(line) for p in PLUMBING)


def count(md: Path) -> dict:
    """``{"chapter", "visible", "plumbing", "share", "lines"}`` for one chapter
    (``lines``: the plumbing lines themselves, for a reader of a failing check)."""
    nb = jupytext.read(md)
    visible, plumbing = 0, []
    for cell in nb.cells:
        if cell.cell_type != "code" or HIDDEN_TAGS & set(cell.metadata.get("tags", [])):
            continue
        for line in cell.source.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            visible += 1
            if is_plumbing(stripped):
                plumbing.append(stripped)
    return {"chapter": md.stem, "visible": visible, "plumbing": len(plumbing),
            "share": len(plumbing) / visible if visible else 0.0, "lines": plumbing}


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("[0-9]*.md"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--lines", action="store_true", help="list each chapter's plumbing lines")
    args = parser.parse_args(argv)
    counts = [count(md) for md in chapters()]
    if args.json:
        print(json.dumps([{k: v for k, v in c.items() if k != "lines"} for c in counts]))
        return 0
    print(f"{'chapter':<16}{'visible':>8}{'plumbing':>10}{'share':>8}")
    for c in counts:
        print(f"{c['chapter']:<16}{c['visible']:>8}{c['plumbing']:>10}{c['share']:>8.0%}")
        if args.lines:
            for line in c["lines"]:
                print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
