"""Helpers the chapters share: profile selection, glued numbers, the device banner."""

from __future__ import annotations

from importlib import resources
import json
import os
from pathlib import Path
import random

import numpy as np
import torch

from llmrec_lite.device import resolve_device
from llmrec_lite.profiles import Profile, get_profile

# myst_nb is there only while the book builds: imported where a value is glued.


def glue(name: str, value, display: bool = False) -> None:
    """Records ``value`` under ``name`` for the book's prose (``{glue:text}`name` ``).

    Outside a MyST-NB build (JupyterLab, Colab without the book extra) it does nothing,
    so chapters run everywhere. Returns nothing, so a trailing call prints nothing.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy/torch scalars print as np.float64(...): glue plain numbers
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=display)


def glue_all(facts: dict) -> None:
    """Glues every ``{name: value}`` of a section's facts (one hidden cell per section calls it).

    The chapters' tests read the same names back from the executed notebook.
    """
    for name, value in facts.items():
        glue(name, value)


def setup(profile_name: str) -> Profile:
    """Selects a profile, seeds everything and prints what this run uses."""
    profile = get_profile(profile_name)
    random.seed(profile.seed)
    np.random.seed(profile.seed)
    torch.manual_seed(profile.seed)
    device = resolve_device(profile.device)
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""
    print(f"profile={profile.name}  device={device}{gpu}  torch={torch.__version__}  threads={torch.get_num_threads()}")
    return profile


def run_dir(profile_name: str, dataset: str):
    """Where the chapters keep trained models: ``$LLMREC_RUN_DIR`` or ``<repo>/_build/runs``.

    ``make book`` empties it first, so every model a chapter shows was trained in that build.
    """
    base = os.environ.get("LLMREC_RUN_DIR")
    if base:
        root = Path(base)
    else:
        here = Path.cwd().resolve()
        repo = next((p for p in (here, *here.parents) if (p / "_toc.yml").exists()), here)
        root = repo / "_build" / "runs"
    return root / profile_name / dataset


def recorded_source(record: dict, extra: str = "") -> str:
    """``RECORDED, not run in this build: FILE, DATE, MACHINE (N cores EXTRA)``: the line a
    chapter prints above a record it reads (from :func:`recorded_results`), followed by
    ``; added DATE, MACHINE: CANDIDATES`` for rows added later (``benchmarks/distance.py --add``)."""
    def where(m):
        return f"{m.get('cpu_model') or m.get('gpu') or m['processor']} ({m['cpu_count']} cores{extra})"

    line = f"RECORDED, not run in this build: {record['file']}, {record['date']}, {where(record['machine'])}"
    for added in record.get("added", []):
        line += f"; added {added['date']}, {where(added['machine'])}: {', '.join(added['candidates'])}"
    return line


def recorded_results(pattern: str = "*.json", folder: str = "benchmarks/results") -> list[dict]:
    """Benchmark JSON files committed to the repository (searched upwards from the cwd).

    Returns an empty list where the repository is not around (e.g. on Colab).
    """
    here = Path.cwd().resolve()
    for base in (here, *here.parents):
        results = base / folder
        if results.is_dir():
            out = []
            for path in sorted(results.glob(pattern)):
                record = json.loads(path.read_text())
                record["file"] = str(path.relative_to(base))
                out.append(record)
            return out
    return []


def reference_results(dataset: str | None = None) -> list[dict]:
    """Published numbers (paper, OpenP5, S3-Rec) with their sources, from the package's data file."""
    data = json.loads(resources.files("llmrec_lite").joinpath("resources/reference_results.json").read_text())
    rows = [dict(r, citation=data["sources"][r["source"]]) for r in data["rows"]]
    return [r for r in rows if dataset is None or r["dataset"] == dataset]
