"""What each chapter must have computed, read back from the values it glued.

``tests/test_notebooks.py`` executes every chapter on the smoke profile, collects its glued
values (:func:`glued_values`) and calls ``check_<chapter stem>(glued, run_root)`` from this
module when one exists. A check compares the glued numbers with what the package computes
for the same settings, or, where recomputing would double the test time, with valid
ranges (the way recommenders' notebook tests read recorded metrics back).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

GLUE_PREFIX = "application/papermill.record/"


def glued_values(nb) -> dict:
    """``{name: value}`` of every ``glue(...)`` call in an executed notebook (plain-text form parsed)."""
    values = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            text = data.get(GLUE_PREFIX + "text/plain", data.get("text/plain"))
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[name] = text
    return values


def close(a: float, b: float, tol: float = 1e-6) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def is_rate(x) -> bool:
    """A hit rate, NDCG or share: a finite number in [0, 1]."""
    return isinstance(x, (int, float)) and 0.0 <= float(x) <= 1.0


# --------------------------------------------------------------------------- per chapter


def _smoke_split():
    from llmrec_lite.data import load_dataset
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.split import LeaveOneOutSplit

    profile = get_profile("smoke")
    data = load_dataset(profile.datasets[0], indexing=profile.indexing, seed=profile.seed)
    return profile, data, LeaveOneOutSplit.from_data(data)
