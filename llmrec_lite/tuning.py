"""The tuning record: short runs of candidate item-token settings, scored on validation targets only.

Every setting the book's profiles choose for the item-token side is chosen here, from
numbers that never touch a test target: candidates train on the training prefixes (as
every run does) and are ranked on the validation targets (each user's second-to-last
item, history = everything before it). :func:`tune` writes what it measured, including the
curve of validation HR@10 against training minutes, and ``benchmarks/tune.py`` /
``python -m llmrec_lite tune`` store it under ``benchmarks/results/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmrec_lite.variants import Variant

ITEM_TOKEN = Variant("item-token", True)

# name -> TrainSettings overrides. "dot" is the head the book trained before this record.
CANDIDATES: dict[str, dict] = {
    "dot": {"item_logit": "dot", "dense_weight": 0.0},
    "dot + dense": {"item_logit": "dot", "dense_weight": 0.5},
    "cosine": {"item_logit": "cosine", "dense_weight": 0.0},
    "cosine + dense": {"item_logit": "cosine", "dense_weight": 0.5},
    "cosine + dense + history": {"item_logit": "cosine", "dense_weight": 0.5, "history_bias": True},
    "cosine + dense + history + readout": {"item_logit": "cosine", "dense_weight": 0.5, "history_bias": True,
                                           "readout": True},
    "cosine + dense + history + readout + projector lr 3e-3": {
        "item_logit": "cosine", "dense_weight": 0.5, "history_bias": True, "readout": True, "projector_lr": 3e-3},
}

# keys whose values depend on the machine's speed, not on the data (left out when two records are compared)
TIMING_KEYS = frozenset({"seconds", "minutes", "users_per_second", "tokens_per_second", "machine", "date",
                         "prompts_per_second", "targets_per_second",
                         "train_minutes", "final_minutes"})


def slug(name: str) -> str:
    """A folder name for a candidate (``"cosine + dense"`` -> ``cosine-dense``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def scaled_samples(profile, stage: int, budget: float) -> int | None:
    """The profile's training prompts per task for a stage, times ``budget`` (``None`` stays ``None``)."""
    count = profile.item_token_samples[stage - 1]
    return None if count is None else max(1, round(count * budget))


def curve(run, variant: Variant = ITEM_TOKEN) -> list[dict]:
    """Validation HR@10 (the training log's fixed validation subset, sequential template 0)
    against cumulative training minutes over stage 1 then stage 2."""
    points, offset = [], 0.0
    for stage in (1, 2):
        log = run.read_log(variant, stage)
        for record in log:
            if "val_hr@10" in record:
                points.append({"stage": stage, "step": record["step"], "minutes": (offset + record["seconds"]) / 60,
                               "val_hr@10": record["val_hr@10"], "val_loss": record["val_loss"]})
        offset += log[-1]["seconds"] if log else 0.0
    return points


def tune(run, candidates: dict[str, dict] | None = None, budget: float = 1.0, users: int | None = None,
         out: str | Path | None = None, eval_every: int | None = None, show_progress: bool = True) -> dict:
    """Trains every candidate (stage 1, then stage 2) and scores it on the validation targets.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` (its profile gives every setting a candidate
            does not override).
        candidates: name -> :class:`~llmrec_lite.settings.TrainSettings` overrides
            (default: :data:`CANDIDATES`).
        budget: Share of the profile's training prompts each stage uses (short runs: < 1).
        users: Users scored on their validation target (``None``: all; else a seeded subset).
        out: Where the candidates' runs are kept (default: ``run.out / "tune"``); a finished
            candidate with the same settings is reused, never overwritten.
        eval_every: Steps between the validation points of the curve (default: the profile's).

    Returns:
        The record: per candidate its settings, steps, samples, seconds, validation
        HR@5/10 and NDCG@5/10 (unmasked and ``_masked``), validation loss and curve.
    """
    from llmrec_lite.evaluate import evaluate_model, evaluation_users

    candidates = CANDIDATES if candidates is None else candidates
    if not candidates:
        raise ValueError("No candidates to tune: pass at least one name -> settings overrides.")
    if not 0 < budget <= 1:
        raise ValueError(f"budget={budget!r}: it is a share of the profile's training prompts, in (0, 1].")
    out = Path(out) if out is not None else run.out / "tune"
    chosen_users = evaluation_users(run.split, users, seed=run.profile.seed)
    rows = []
    for name, overrides in candidates.items():
        sub = run.at(out / slug(name))
        stages = []
        for stage in (1, 2):
            extra = {} if eval_every is None else {"eval_every": eval_every}
            settings = run.settings(ITEM_TOKEN, stage, samples_per_task=scaled_samples(run.profile, stage, budget),
                                    **extra, **overrides)
            result = sub.ensure(settings, show_progress)
            stages.append({"stage": stage, "steps": result["steps"], "samples": result["samples"],
                           "targets": result.get("targets", result["samples"]), "seconds": result["seconds"],
                           "final_val_loss": result["final_val_loss"]})
        ev = evaluate_model(sub.load(ITEM_TOKEN, 2), targets="valid", users=chosen_users, show_progress=show_progress)
        valid = {k: v for k, v in ev.metrics.items() if k.startswith(("hr@", "ndcg@"))}
        rows.append({
            "name": name,
            "settings": overrides,
            "stages": stages,
            "steps": sum(s["steps"] for s in stages),
            "samples": sum(s["samples"] for s in stages),
            "train_minutes": sum(s["seconds"] for s in stages) / 60,
            "targets": sum(s["targets"] for s in stages),
            "prompts_per_second": sum(s["samples"] for s in stages) / max(sum(s["seconds"] for s in stages), 1e-9),
            "targets_per_second": sum(s["targets"] for s in stages) / max(sum(s["seconds"] for s in stages), 1e-9),
            "valid": valid,
            "valid_hr@10_ci95": list(ev.bootstrap("hr@10")),
            "valid_loss": stages[-1]["final_val_loss"],
            "curve": curve(sub),
        })
    best = max(rows, key=lambda r: (r["valid"]["hr@10"], r["valid"]["hr@10_masked"]))
    return {
        "record": "tuning",
        "dataset": run.data.name,
        "profile": run.profile.name,
        "backbone": run.backbone.source,
        "targets": "valid",
        "users": int(len(chosen_users)),
        "budget": budget,
        "eval_every": eval_every or run.profile.eval_every,
        "samples_per_task": [scaled_samples(run.profile, s, budget) for s in (1, 2)],
        "rule": "validation targets (second-to-last item), full ranking; chosen by validation HR@10, then masked",
        "candidates": rows,
        "best": best["name"],
    }


def without_timings(value):
    """``value`` with every machine-speed-dependent entry removed (for comparing records)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


# --------------------------------------------------------------------------- reading records


def ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(name, mean validation HR@10, mean masked HR@10)`` of every candidate all records
    share (one record per dataset), best first; ties broken by the masked value."""
    names = [c["name"] for c in records[0]["candidates"]]
    common = [n for n in names if all(any(c["name"] == n for c in r["candidates"]) for r in records)]
    if not common:
        raise ValueError("The records share no candidate; tune the same candidates on every dataset.")

    def score(name):
        rows = [next(c for c in r["candidates"] if c["name"] == name) for r in records]
        return (sum(c["valid"]["hr@10"] for c in rows) / len(rows), sum(c["valid"]["hr@10_masked"] for c in rows) / len(rows))

    return sorted(((n, *score(n)) for n in common), key=lambda row: (row[1], row[2]), reverse=True)


def choose(records: list[dict]) -> str:
    """The candidate with the best mean validation HR@10 over the records (one per dataset),
    ties broken by the masked value: a setting must serve every dataset, not one."""
    return ranking(records)[0][0]


def record_table(record: dict):
    """One row per candidate of a record: settings, steps, minutes and validation figures."""
    import pandas as pd

    rows = []
    for c in record["candidates"]:
        # records made before targets were counted have no throughput columns
        speed = ({"prompts / s": c["prompts_per_second"], "targets / s": c["targets_per_second"]}
                 if "targets_per_second" in c else {})
        rows.append({"candidate": c["name"], "steps": c["steps"], "train minutes": c["train_minutes"], **speed,
                     "valid HR@10": c["valid"]["hr@10"], "95% CI": "[{:.3f}, {:.3f}]".format(*c["valid_hr@10_ci95"]),
                     "valid HR@10 masked": c["valid"]["hr@10_masked"], "valid NDCG@10": c["valid"]["ndcg@10"],
                     "valid loss": c["valid_loss"], "best": "yes" if c["name"] == record["best"] else ""})
    return pd.DataFrame(rows)


def curve_figure(records: list[dict]):
    """Validation HR@10 against training minutes, one panel per record (dataset)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(records), subplot_titles=[r["dataset"] for r in records])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for col, record in enumerate(records, start=1):
        for k, c in enumerate(record["candidates"]):
            fig.add_trace(go.Scatter(x=[p["minutes"] for p in c["curve"]], y=[p["val_hr@10"] for p in c["curve"]],
                                     mode="lines+markers", name=c["name"], legendgroup=c["name"], showlegend=col == 1,
                                     line=dict(color=palette[k % len(palette)])), row=1, col=col)
    fig.update_xaxes(title_text="training minutes (stage 1, then stage 2)")
    fig.update_yaxes(title_text="validation HR@10 (subset, sequential)")
    return fig
