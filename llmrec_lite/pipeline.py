"""The whole pipeline for one dataset and profile: WALS, both stages of both output sides,
the text-only baselines, the classic baselines and the evaluation, written to
``results.json`` and ``results.md`` in the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmrec_lite.fileio import write_json
from llmrec_lite.templates import TASKS

# (variant, stage, label): the LLM rows of the results table
LLM_RUNS = (
    ("item-token", 1, "item token, CF embeddings, stage 1"),
    ("item-token", 2, "item token, CF embeddings, stage 2"),
    ("item-token-text", 2, "item token, ids as text (no CF)"),
    ("text-id", 1, "text id, CF embeddings, stage 1"),
    ("text-id", 2, "text id, CF embeddings, stage 2"),
    ("text-id-text", 2, "text id, ids as text (no CF; OpenP5's Llama-S analogue)"),
)


def evaluations_for(stage: int) -> tuple[tuple[str, str], ...]:
    """(task, template) pairs evaluated for a model: stage-1 models are intermediate, so only
    the main row (sequential, seen); final models on both tasks, seen and unseen templates."""
    if stage == 1:
        return (("sequential", "seen"),)
    return tuple((task, template) for task in TASKS for template in ("seen", "unseen"))


def settings_for(profile, variant: str, stage: int):
    """Training settings of a variant; text-only baselines get the same total budget."""
    output = variant.replace("-text", "")
    text_only = variant.endswith("-text")
    settings = profile.train_settings(stage, output, use_embeddings=not text_only)
    if text_only and output == "text-id":
        # nothing trains in stage 1 without projectors: stage 2 gets both stages' samples
        budget = profile.text_id_samples
        if budget[0] is not None and budget[1] is not None:
            settings.samples_per_task = budget[0] + budget[1]
    return settings


def train_all(ctx, out: str | Path, show_progress: bool = True) -> dict:
    """Trains every LLM variant needed by the results table (reusing finished stages)."""
    from llmrec_lite.train import ensure_stage

    results = {}
    for variant, stage, _ in LLM_RUNS:
        if stage == 2 and not variant == "text-id-text":
            results[(variant, 1)] = ensure_stage(ctx, settings_for(ctx.profile, variant, 1), out, show_progress)
        results[(variant, stage)] = ensure_stage(ctx, settings_for(ctx.profile, variant, stage), out, show_progress)
    return results


def evaluate_cached(ctx, out: str | Path, variant: str, stage: int, task: str, template: str,
                    mask_history: bool = False, show_progress: bool = True):
    """Evaluates a trained model on the profile's test users, caching the result in ``out/eval``.

    The cache key includes the trained model's fingerprint (its result.json), so a retrained
    model is never served an old evaluation.
    """
    import hashlib

    import numpy as np

    from llmrec_lite.evaluate import Evaluation, evaluate_model, evaluation_users
    from llmrec_lite.train import load_trained, stage_dir

    profile = ctx.profile
    output = variant.replace("-text", "")
    n_users = profile.eval_users if output == "item-token" else profile.text_id_eval_users
    trained = (stage_dir(out, variant, stage) / "final" / "result.json").read_bytes()
    key = hashlib.sha256(trained + f"{task}|{template}|{mask_history}|{n_users}".encode()).hexdigest()[:16]
    cache = Path(out) / "eval" / f"{variant}-stage{stage}-{task}-{template}-{'masked' if mask_history else 'plain'}-{key}.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        return Evaluation(saved["metrics"], np.array(saved["top_items"]), np.array(saved["gold"]),
                          np.array(saved["users"]), np.array(saved["ranks"]))
    model, _ = load_trained(ctx, out, variant, stage)
    users = evaluation_users(ctx.split, n_users, seed=profile.seed)
    ev = evaluate_model(model, ctx.split, task=task, template=template, users=users, mask_history=mask_history,
                        max_history=profile.max_history, show_progress=show_progress)
    write_json(cache, {"metrics": ev.metrics, "top_items": ev.top_items.tolist(), "gold": ev.gold.tolist(),
                       "users": ev.users.tolist(), "ranks": ev.ranks.tolist()})
    return ev


def evaluate_all(ctx, out: str | Path, show_progress: bool = True) -> list[dict]:
    """Every LLM row (tasks and templates as :func:`evaluations_for` says), plus the classic baselines."""
    from llmrec_lite.baselines import classic_baselines

    profile = ctx.profile
    rows = []
    for variant, stage, label in LLM_RUNS:
        for task, template in evaluations_for(stage):
            ev = evaluate_cached(ctx, out, variant, stage, task, template, show_progress=show_progress)
            lo, hi = ev.bootstrap("hr@10")
            rows.append({"model": label, "variant": variant, "stage": stage, "task": task, "template": template,
                         **ev.metrics, "hr@10_ci95": [lo, hi], "training_samples": _samples(out, variant, stage)})
    for name, metrics in classic_baselines(ctx.split, ctx.wals, seed=profile.seed).items():
        rows.append({"model": name, "variant": "classic", "stage": None, "task": "no prompt", "template": None, **metrics})
    return rows


def _samples(out, variant, stage) -> int:
    from llmrec_lite.train import stage_dir

    total = 0
    for s in range(1, stage + 1):
        result = stage_dir(out, variant, s) / "final" / "result.json"
        if result.exists():
            total += json.loads(result.read_text())["samples"]
    return total


def results_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| model | task | template | users | HR@5 | HR@10 | NDCG@5 | NDCG@10 | HR@10 masked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        masked = r.get("hr@10_masked")
        lines.append(f"| {r['model']} | {r['task']} | {r['template'] or '-'} | {r['users']} | {r['hr@5']:.4f} | "
                     f"{r['hr@10']:.4f} | {r['ndcg@5']:.4f} | {r['ndcg@10']:.4f} | "
                     f"{'-' if masked is None else f'{masked:.4f}'} |")
    return "\n".join(lines) + "\n"


def run_pipeline(profile, dataset: str, out: str | Path, data_dir=None, show_progress: bool = True, ctx=None) -> dict:
    """Runs everything and writes ``results.json`` and ``results.md`` into ``out``.

    Args:
        ctx: A :class:`~llmrec_lite.train.RunContext` already prepared for this profile,
            dataset and ``out`` (the book passes its own); ``None`` prepares one.
    """
    from llmrec_lite.device import describe_machine
    from llmrec_lite.train import prepare_run

    out = Path(out)
    if ctx is None:
        ctx = prepare_run(profile, dataset, out, data_dir=data_dir, show_progress=show_progress)
    elif ctx.profile.name != profile.name or ctx.data.name != dataset:
        raise ValueError(f"The run context is for {ctx.data.name!r} under profile {ctx.profile.name!r}, "
                         f"not {dataset!r} under {profile.name!r}; pass ctx=None to prepare the right one.")
    training = train_all(ctx, out, show_progress)
    rows = evaluate_all(ctx, out, show_progress)
    result = {
        "dataset": dataset,
        "profile": profile.name,
        "backbone": ctx.backbone.source,
        "indexing": ctx.data.indexing,
        "machine": describe_machine(),
        "rule": "full ranking over the catalogue, one test target per user; plain metrics unmasked (OpenP5)",
        "training": {f"{v}/stage{s}": r for (v, s), r in training.items()},
        "rows": rows,
    }
    write_json(out / "results.json", result)
    header = (f"# Results: {dataset}, profile {profile.name}, backbone {ctx.backbone.source}, "
              f"{ctx.data.indexing} indexing")
    (out / "results.md").write_text(results_markdown(rows, header))
    return result
