"""A reader sees the method: plumbing (glue, formatting, verdict words, record lookups) stays in
hidden cells. Counted by scripts/count_plumbing.py (its docstring says how)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from count_plumbing import MAX_LINES, MAX_SHARE, chapters, count, is_plumbing  # noqa: E402


@pytest.mark.parametrize("md", chapters(), ids=[p.stem for p in chapters()])
def test_visible_code_is_mostly_method(md):
    c = count(md)
    assert c["share"] <= MAX_SHARE, (f"{md.name}: {c['plumbing']} of {c['visible']} visible code lines are plumbing; "
                                     "move them into the section's hidden cell:\n" + "\n".join(c["lines"]))
    if md.stem in MAX_LINES:
        assert c["visible"] <= MAX_LINES[md.stem], f"{md.name} shows {c['visible']} lines of code"


def test_the_counter_tells_plumbing_from_method(tmp_path):
    for line in ('glue("x", 1)', "glue_all(R.facts(results))", 'print(f"{x:.4f}")', "display(R.styled(t))",
                 'word = "above" if d > 0 else "below"', 'found = records("tune")', "show(fig)"):
        assert is_plumbing(line), line
    for line in ("model = run.load(ITEM_TOKEN, 2)", "table = R.main_table(rows)", "import numpy as np"):
        assert not is_plumbing(line), line
    md = tmp_path / "07_x.md"
    md.write_text("---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
                  "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# T\n\n"
                  "```{code-cell} ipython3\nx = 1\nglue('x', x)\n```\n\n"
                  "```{code-cell} ipython3\n:tags: [remove-cell]\n\nglue('y', 2)\n```\n")
    assert {k: count(md)[k] for k in ("visible", "plumbing")} == {"visible": 2, "plumbing": 1}
