"""The tuning record: short runs of candidate item-token settings, scored on validation targets only.

Every setting the book's profiles choose for the item-token side is chosen here, from
numbers that never touch a test target: candidates train on the training prefixes (as
every run does) and are ranked on the validation targets (each user's second-to-last
item, history = everything before it). :func:`tune` writes what it measured, including the
curve of validation HR@10 against training minutes, and ``benchmarks/tune.py`` /
``python -m llmrec_lite tune`` store it under ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from llmrec_lite.profiles import EVERY_LINEAR_LAYER
from llmrec_lite.variants import Variant

ITEM_TOKEN = Variant("item-token", True)
NO_EMBEDDINGS = Variant("item-token", False)  # the same model without CF embeddings

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


def record_header(run, kind: str) -> dict:
    """What every record says first: its kind, the dataset, profile and backbone it ran with."""
    return {"record": kind, "dataset": run.data.name, "profile": run.profile.name, "backbone": run.backbone.source}


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
        **record_header(run, "tuning"),
        "targets": "valid",
        "users": int(len(chosen_users)),
        "budget": budget,
        "eval_every": eval_every or run.profile.eval_every,
        "samples_per_task": [scaled_samples(run.profile, s, budget) for s in (1, 2)],
        "rule": "validation targets (second-to-last item), full ranking; chosen by validation HR@10, then masked",
        "candidates": rows,
        "best": best["name"],
    }


def stage_split(run, splits: list[tuple[int, int]], users: int | None = None, out: str | Path | None = None,
                baseline: bool = True, show_progress: bool = True) -> dict:
    """Full-budget runs that split training prompts between stage 1 and stage 2 differently,
    scored on the validation targets only.

    The head is the profile's (chosen by :func:`tune` at a shorter budget); this record
    chooses how many prompts per task each stage gets. Per split it trains stage 1 and
    stage 2 of the item-token model (and, with ``baseline``, of the same model without CF
    embeddings), scores stage 1, stage 2 and the baseline's stage 2 on the same users, and
    compares them with paired bootstrap intervals, as chapter 7 does on test targets.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` (its profile gives every other setting).
        splits: ``(stage-1 prompts, stage-2 prompts)`` per task, one pair per candidate.
        users: Users scored on their validation target (``None``: all; else a seeded subset).
        out: Where the runs are kept (default ``run.out / "split"``), one folder per split;
            finished stages with the same settings are reused, never overwritten.
        baseline: Also train and score the model without CF embeddings.

    Returns:
        The record: per split the stages' steps and seconds, validation metrics of each
        scored model, and paired differences (stage 2 - stage 1, stage 1 - baseline,
        stage 2 - baseline; unmasked and masked HR@10); the split with the best stage-2
        validation HR@10 (then masked) is ``best``.
    """
    from llmrec_lite.evaluate import evaluate_model, evaluation_users
    from llmrec_lite.metrics import paired_bootstrap

    if not splits:
        raise ValueError("No splits: pass at least one (stage-1 prompts, stage-2 prompts) pair.")
    for split in splits:
        if len(split) != 2 or any(int(n) < 1 for n in split):
            raise ValueError(f"split={split!r}: give two positive prompt counts per task, (stage 1, stage 2).")
    out = Path(out) if out is not None else run.out / "split"
    chosen_users = evaluation_users(run.split, users, seed=run.profile.seed)
    variants = (ITEM_TOKEN, NO_EMBEDDINGS) if baseline else (ITEM_TOKEN,)
    rows, stage2_ranks = [], {}
    for split in splits:
        name = f"{split[0]} + {split[1]}"
        sub = run.at(out / f"{split[0]}-{split[1]}")
        stages, models = [], {}
        for variant in variants:
            for stage in (1, 2):
                settings = run.settings(variant, stage, samples_per_task=int(split[stage - 1]))
                result = sub.ensure(settings, show_progress)
                stages.append({"model": variant.label, "stage": stage, "steps": result["steps"],
                               "samples": result["samples"], "seconds": result["seconds"]})
        scored = [(ITEM_TOKEN, 1), (ITEM_TOKEN, 2)] + ([(NO_EMBEDDINGS, 2)] if baseline else [])
        for variant, stage in scored:
            ev = evaluate_model(sub.load(variant, stage), targets="valid", users=chosen_users,
                                show_progress=show_progress)
            models[(variant, stage)] = ev
        pairs = [("stage 2 - stage 1", (ITEM_TOKEN, 2), (ITEM_TOKEN, 1))]
        if baseline:
            pairs += [("stage 1 - no CF", (ITEM_TOKEN, 1), (NO_EMBEDDINGS, 2)),
                      ("stage 2 - no CF", (ITEM_TOKEN, 2), (NO_EMBEDDINGS, 2))]
        stage2_ranks[name] = (models[(ITEM_TOKEN, 2)].ranks, models[(ITEM_TOKEN, 2)].other_ranks)
        rows.append({
            "name": name,
            "samples_per_task": [int(n) for n in split],
            "stages": stages,
            "train_minutes": sum(s["seconds"] for s in stages if s["model"] == ITEM_TOKEN.label) / 60,
            "valid": {f"{variant.label} stage {stage}": {k: v for k, v in ev.metrics.items()
                                                        if k.startswith(("hr@", "ndcg@"))}
                      for (variant, stage), ev in models.items()},
            "paired": {label: {"hr@10": paired_bootstrap(models[a].ranks, models[b].ranks),
                               "hr@10_masked": paired_bootstrap(models[a].other_ranks, models[b].other_ranks)}
                       for label, a, b in pairs},
        })
    first = rows[0]["name"]
    for row in rows[1:]:
        # the same users' stage-2 ranks under this split against the first split's
        row["stage 2 - first split"] = {
            "hr@10": paired_bootstrap(stage2_ranks[row["name"]][0], stage2_ranks[first][0]),
            "hr@10_masked": paired_bootstrap(stage2_ranks[row["name"]][1], stage2_ranks[first][1])}
    final = f"{ITEM_TOKEN.label} stage 2"
    best = max(rows, key=lambda r: (r["valid"][final]["hr@10"], r["valid"][final]["hr@10_masked"]))
    return {
        **record_header(run, "stage split"),
        "targets": "valid",
        "users": int(len(chosen_users)),
        "head": {k: getattr(run.profile, k) for k in ("item_logit", "logit_temperature", "dense_weight", "history_bias")},
        "rule": "validation targets (second-to-last item), full ranking; chosen by stage-2 validation HR@10, then masked",
        "splits": rows,
        "best": best["name"],
    }


def _every_layer(samples_per_task: tuple[int, int], lora_lr: float = 1e-3, **backbone) -> dict:
    """A distance candidate with the head of the profile's later rows (prefix user vectors, CF
    term, known offset), LoRA at ``lora_lr`` in stage 2 on every linear layer without dropout;
    ``backbone``: further LoRA settings (rank, alpha)."""
    return {"samples_per_task": samples_per_task, "user_vectors": "prefix", "cf_term": True, "known_bias": True,
            "stage2": {"lora_lr": lora_lr},
            "backbone": {**backbone, "lora_dropout": 0.0, "lora_targets": EVERY_LINEAR_LAYER}}


# name -> {"samples_per_task": (stage 1, stage 2), "stage2": overrides of stage 2 only,
# "backbone": LoRA settings of the backbone (see BACKBONE_OVERRIDES), other keys: both stages}.
# Candidates that curb what stage 2 learns about the end of the training period (chapter 7.5
# measured stage 2 losing accuracy with the target's distance from it): fewer stage-2
# prompts, a slower LoRA. The first is the profile's setting before this record.
DISTANCE_CANDIDATES: dict[str, dict] = {
    "800 + 1200": {"samples_per_task": (800, 1200)},
    "800 + 600": {"samples_per_task": (800, 600)},
    "800 + 1200 at LoRA lr 3e-4": {"samples_per_task": (800, 1200), "stage2": {"lora_lr": 3e-4}},
    # training prompts read a user vector folded in from the items before their target
    # (TrainSettings.user_vectors): the fitted one has seen every training target
    "800 + 1200 at LoRA lr 3e-4 + prefix user vectors": {"samples_per_task": (800, 1200), "user_vectors": "prefix",
                                                        "stage2": {"lora_lr": 3e-4}},
    # the WALS score of the prompt's user vector added to the item scores with a learned weight
    # (TrainSettings.cf_term), with leak-free user vectors so that the weight is learned from
    # WALS scores that have not seen the answer
    "800 + 1200 at LoRA lr 3e-4 + prefix user vectors + CF term": {
        "samples_per_task": (800, 1200), "user_vectors": "prefix", "cf_term": True, "stage2": {"lora_lr": 3e-4}},
    # a second learned offset for every item the user consumed before the target, shown or not
    # (TrainSettings.known_bias): the CF term lifts the older history items the prompt does not
    # show, which the history offset never reaches (added to the record on 2026-11-30).
    "800 + 1200 at LoRA lr 3e-4 + prefix user vectors + known offset": {
        "samples_per_task": (800, 1200), "user_vectors": "prefix", "known_bias": True, "stage2": {"lora_lr": 3e-4}},
    "800 + 1200 at LoRA lr 3e-4 + prefix user vectors + CF term + known offset": {
        "samples_per_task": (800, 1200), "user_vectors": "prefix", "cf_term": True, "known_bias": True,
        "stage2": {"lora_lr": 3e-4}},
    # with the CF term and the known offset, stage 2 did not beat stage 1 on LastFM (far target:
    # equal; test: below): a gentler LoRA rate, or prompts moved from stage 2 to stage 1 at the
    # same total (added to the record on 2026-11-30, third session)
    "800 + 1200 at LoRA lr 1e-4 + prefix user vectors + CF term + known offset": {
        "samples_per_task": (800, 1200), "user_vectors": "prefix", "cf_term": True, "known_bias": True,
        "stage2": {"lora_lr": 1e-4}},
    "1200 + 800 at LoRA lr 3e-4 + prefix user vectors + CF term + known offset": {
        "samples_per_task": (1200, 800), "user_vectors": "prefix", "cf_term": True, "known_bias": True,
        "stage2": {"lora_lr": 3e-4}},
    # stage 2 still added little over stage 1 with that split (far target: +.008 on LastFM, not
    # separated, and +.009 on Beauty; test: +.0055 and +.0005): a faster LoRA rate, alone and with the
    # already-trained projectors slowed in stage 2 (added to the record on 2026-12-03)
    "1200 + 800 at LoRA lr 1e-3 + prefix user vectors + CF term + known offset": {
        "samples_per_task": (1200, 800), "user_vectors": "prefix", "cf_term": True, "known_bias": True,
        "stage2": {"lora_lr": 1e-3}},
    "1200 + 800 at LoRA lr 1e-3 and stage-2 projector lr 3e-4 + prefix user vectors + CF term + known offset": {
        "samples_per_task": (1200, 800), "user_vectors": "prefix", "cf_term": True, "known_bias": True,
        "stage2": {"lora_lr": 1e-3, "projector_lr": 3e-4}},
    # the rate did not separate stage 2 from stage 1 either (far target: +.006 and +.005): LoRA with
    # more room, adapters on every linear layer of every block (attention's four projections and the
    # MLP's three) instead of the query and value projections only, at rank 8 and at rank 16 (alpha
    # twice the rank, as before). Without LoRA's dropout: on the CPU it copies every adapted layer's
    # input, which costs more than the adapters' own products once every layer has one; the first
    # row, LoRA without dropout where it was, tells what dropping it alone does.
    # Added to the record on 2026-12-03, second session.
    "1200 + 800 at LoRA lr 1e-3 without dropout + prefix user vectors + CF term + known offset": {
        "samples_per_task": (1200, 800), "user_vectors": "prefix", "cf_term": True, "known_bias": True,
        "stage2": {"lora_lr": 1e-3}, "backbone": {"lora_dropout": 0.0}},
    "1200 + 800 at LoRA lr 1e-3 on every linear layer without dropout + prefix user vectors + CF term + known offset":
        _every_layer((1200, 800)),
    "1200 + 800 at LoRA lr 1e-3 rank 16 on every linear layer without dropout + prefix user vectors + CF term + known offset":
        _every_layer((1200, 800), lora_r=16, lora_alpha=32),
    # adapters on every layer lifted stage 2 over stage 1 on Beauty's far target (+.013, above zero)
    # but not on LastFM's (+.009), and not on either test target: with those adapters, the earlier
    # split that gives stage 2 more prompts, and a faster LoRA rate at the same split
    # (added to the record on 2026-12-03, third session)
    "800 + 1200 at LoRA lr 1e-3 on every linear layer without dropout + prefix user vectors + CF term + known offset":
        _every_layer((800, 1200)),
    "1200 + 800 at LoRA lr 2e-3 on every linear layer without dropout + prefix user vectors + CF term + known offset":
        _every_layer((1200, 800), lora_lr=2e-3),
    # neither did: half again as many stage-2 prompts on top of the profile's stage 1, to tell
    # whether stage 2's budget is what holds it back (it costs minutes the hour may not have)
    "1200 + 1200 at LoRA lr 1e-3 on every linear layer without dropout + prefix user vectors + CF term + known offset":
        _every_layer((1200, 1200)),
    # the seed record found stage 2's gain over stage 1 on LastFM within training noise (seed-averaged
    # +.003, not separated; Beauty +.011, above zero): more of the sequence for the adapters to read,
    # twice the paper's history in every sequential prompt (both stages; twice the dense targets per
    # prompt too). Added to the record on 2026-12-03, fourth session.
    "1200 + 800 at LoRA lr 1e-3 on every linear layer without dropout + prefix user vectors + CF term + known offset "
    "+ 20 history items": {**_every_layer((1200, 800)), "max_history": 20},
}


def _stage_overrides(candidate: dict, stage: int) -> dict:
    both = {k: v for k, v in candidate.items() if k not in ("samples_per_task", "stage2", "backbone")}
    extra = candidate.get("stage2", {}) if stage == 2 else {}
    samples = candidate.get("samples_per_task")
    return {**both, **extra, **({"samples_per_task": int(samples[stage - 1])} if samples else {})}


# LoRA fields a candidate's "backbone" entry may set (the rest of the backbone is the run's own)
BACKBONE_OVERRIDES = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def candidate_run(run, candidate: dict, out: str | Path, loaded: dict | None = None):
    """The run a candidate trains in: ``out`` as its directory, and the run's backbone, or, when the
    candidate has a ``"backbone"`` entry (other LoRA adapters), the same weights loaded again with
    those fields replaced. ``loaded`` caches such backbones by their settings across candidates.

    Raises:
        ValueError: the ``"backbone"`` entry names a field that is not a LoRA setting.
    """
    import dataclasses

    from llmrec_lite.backbone import load_backbone

    overrides = dict(candidate.get("backbone") or {})
    unknown = sorted(set(overrides) - set(BACKBONE_OVERRIDES))
    if unknown:
        raise ValueError(f"A candidate's backbone entry can set {', '.join(BACKBONE_OVERRIDES)}, not {', '.join(unknown)}.")
    settings = dataclasses.replace(run.backbone.settings, **overrides)  # lora_targets: a tuple again
    if settings == run.backbone.settings:  # no entry, or the run's own settings
        return run.at(out)
    key = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    loaded = {} if loaded is None else loaded
    if key not in loaded:
        loaded[key] = load_backbone(settings, device=next(run.backbone.model.parameters()).device)
    return run.at(out, backbone=loaded[key])


def distance_tune(run, candidates: dict[str, dict] | None = None, users: int | None = None,
                  out: str | Path | None = None, show_progress: bool = True) -> dict:
    """Full-budget runs of candidate settings, scored on targets as far from their training as
    the real test targets are from the real training, without reading a real test target.

    ``run`` must be a shifted run (``Run.open(..., steps_back=1)``): every user's last item
    is cut before WALS and the models are fitted, so the run's own test target is the real
    validation target, two items past the end of its training (the real test target is two
    items past the real training too). Each candidate's stage-2 model is scored there and
    on the run's validation target (one item past training), its stage 1 on the far target,
    with the paired bootstrap interval of stage 2 - stage 1.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` opened with ``steps_back=1`` or more.
        candidates: name -> settings (see :data:`DISTANCE_CANDIDATES`, the default).
        users: Users scored (``None``: all; else a seeded subset).
        out: Where the candidates' runs are kept (default ``run.out / "distance"``); a stage 1
            with the same settings as an earlier candidate's is copied, not trained again.

    Returns:
        The record; ``best`` has the best stage-2 HR@10 on the far target (then masked).

    Raises:
        ValueError: ``run`` is not shifted (its test targets are the real ones).
    """
    from llmrec_lite.evaluate import evaluate_model, evaluation_users
    from llmrec_lite.metrics import paired_bootstrap

    if run.steps_back < 1:
        raise ValueError("distance_tune scores the run's test targets, so it needs a shifted run: "
                         "Run.open(..., steps_back=1), never the real split.")
    candidates = DISTANCE_CANDIDATES if candidates is None else candidates
    if not candidates:
        raise ValueError("No candidates: pass at least one name -> settings.")
    out = Path(out) if out is not None else run.out / "distance"
    chosen_users = evaluation_users(run.split, users, seed=run.profile.seed)
    finished_stage1: dict[str, Path] = {}  # stage-1 configuration -> a folder holding it
    backbones: dict = {}  # candidates with other LoRA adapters share a loaded backbone
    rows = []
    for name, candidate in candidates.items():
        sub = candidate_run(run, candidate, out / slug(name), backbones)
        stages = _train_both_stages(run, sub, candidate, finished_stage1, show_progress)
        final, first = sub.load(ITEM_TOKEN, 2), sub.load(ITEM_TOKEN, 1)
        far = evaluate_model(final, targets="test", users=chosen_users, show_progress=show_progress)
        near = evaluate_model(final, targets="valid", users=chosen_users, show_progress=show_progress)
        far1 = evaluate_model(first, targets="test", users=chosen_users, show_progress=show_progress)
        keep = lambda ev: {k: v for k, v in ev.metrics.items() if k.startswith(("hr@", "ndcg@"))}  # noqa: E731
        rows.append({
            "name": name,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in candidate.items()},
            "stages": stages,
            "train_minutes": sum(s["seconds"] for s in stages) / 60,
            "far": keep(far),
            "near": keep(near),
            "stage1_far": keep(far1),
            "far_hr@10_ci95": list(far.bootstrap("hr@10")),
            "stage 2 - stage 1 (far)": {"hr@10": paired_bootstrap(far.ranks, far1.ranks),
                                        "hr@10_masked": paired_bootstrap(far.other_ranks, far1.other_ranks)},
        })
    return {
        **record_header(run, "distance"),
        "steps_back": run.steps_back,
        "targets": "far: the real validation target (the run's test target, two items past its training); "
                   "near: the item before it (the run's validation target)",
        "users": int(len(chosen_users)),
        "head": {k: getattr(run.profile, k) for k in ("item_logit", "logit_temperature", "dense_weight", "history_bias")},
        "rule": "trained on every sequence less its last item; chosen by stage-2 HR@10 on the far target, then masked",
        "candidates": rows,
        "best": distance_best(rows),
    }


def _train_both_stages(run, sub, candidate: dict, finished_stage1: dict, show_progress: bool) -> list[dict]:
    """Trains (or finds finished) a candidate's stage 1 then stage 2 in ``sub``; returns what each
    stage measured. ``finished_stage1`` maps a stage-1 configuration to a folder that holds it:
    the same stage 1 is copied, not trained again."""
    stages = []
    for stage in (1, 2):
        settings = run.settings(ITEM_TOKEN, stage, **_stage_overrides(candidate, stage))
        folder = sub.stage_dir(ITEM_TOKEN, stage)
        key = json.dumps(sub.config(settings), sort_keys=True)
        if stage == 1 and key in finished_stage1 and not folder.exists():
            shutil.copytree(finished_stage1[key], folder)  # the same stage 1: trained once
        result = sub.ensure(settings, show_progress)
        if stage == 1:
            finished_stage1.setdefault(key, folder)
        stages.append({"stage": stage, "steps": result["steps"], "samples": result["samples"],
                       "targets": result.get("targets", result["samples"]), "seconds": result["seconds"],
                       "final_val_loss": result["final_val_loss"]})
    return stages


def distance_best(rows: list[dict]) -> str:
    """The distance record's rule: the best stage-2 HR@10 on the far target, then masked."""
    return max(rows, key=lambda r: (r["far"]["hr@10"], r["far"]["hr@10_masked"]))["name"]


def add_to_record(record: dict, new: dict, measured: dict) -> dict:
    """A distance record with ``new``'s candidates added (a candidate of the same name replaced).

    The earlier rows stay as they were measured: a candidate's settings can name profile
    defaults that changed since (the profile now takes a choice of the record itself), so
    running it again would train something else. ``measured`` (machine and date of the new
    rows) is listed under ``"added"``; ``best`` follows the record's rule over every row.

    Raises:
        ValueError: the two records were not measured alike (dataset, profile, backbone,
            shift, users, head).
    """
    same = ("record", "dataset", "profile", "backbone", "steps_back", "users", "head", "targets", "rule")
    differ = [k for k in same if record.get(k) != new.get(k)]
    if differ:
        raise ValueError(f"The new rows were measured differently from the record ({', '.join(differ)} differ); "
                         "make a new record instead (--overwrite).")
    names = [c["name"] for c in new["candidates"]]
    rows = [c for c in record["candidates"] if c["name"] not in names] + new["candidates"]
    added = list(record.get("added", [])) + [{"candidates": names, **measured}]
    return {**record, "candidates": rows, "best": distance_best(rows), "added": added}


def distance_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(candidate, mean far HR@10, mean far masked HR@10)`` of the candidates all distance
    records share (one per dataset), best first."""
    return mean_ranking(records, "candidates", lambda c: c["far"],
                        "candidate; run the same --candidates on every dataset")


def measured_on(record: dict, name: str) -> str:
    """``"<machine>, <precision>, <date>"`` of a record's row: the last ``added`` batch that
    holds it, else the record's own (a row added later can come from another machine, and
    the training precision, bfloat16 where the CPU multiplies it natively, changes the numbers)."""
    from llmrec_lite.results import hardware_label

    batch = next((b for b in reversed(record.get("added", [])) if name in b["candidates"]), {})
    machine = batch.get("machine", record.get("machine", {}))
    precision = "bfloat16" if machine.get("cuda") or machine.get("cpu_fast_bf16", True) else "float32"
    return f"{hardware_label(machine)}, {precision}, {batch.get('date', record.get('date'))}"


def distance_table(record: dict):
    """One row per candidate of a distance record: minutes, stage-2 HR@10 near and far, stage 1 far,
    and where it was measured."""
    import pandas as pd

    return pd.DataFrame([{
        "candidate": c["name"], "measured on": measured_on(record, c["name"]),
        "train minutes": c["train_minutes"],
        "stage 2 HR@10, 1 item past training": c["near"]["hr@10"],
        "stage 2 HR@10, 2 items past (as test)": c["far"]["hr@10"],
        "same, masked": c["far"]["hr@10_masked"],
        "stage 1 HR@10, 2 items past": c["stage1_far"]["hr@10"],
        "stage 2 - stage 1": "{:+.4f} [{:+.4f}, {:+.4f}]".format(c["stage 2 - stage 1 (far)"]["hr@10"]["difference"],
                                                             *c["stage 2 - stage 1 (far)"]["hr@10"]["ci95"]),
        "best": "yes" if c["name"] == record["best"] else ""} for c in record["candidates"]])


# Training seeds of the seed record (the profile's own, 0, first: its run is the distance record's)
SPREAD_SEEDS: tuple[int, ...] = (0, 1, 2)


def seed_label(name: str, seed: int, profile_seed: int) -> str:
    """A seed run's name: the candidate's own under the profile's seed (the distance record's
    run, reused), else ``"<candidate>, seed <seed>"``."""
    return name if seed == profile_seed else f"{name}, seed {seed}"


def seed_spread(run, seeds=SPREAD_SEEDS, candidate: str | None = None, users: int | None = None,
                out: str | Path | None = None, candidates: dict[str, dict] | None = None,
                show_progress: bool = True) -> dict:
    """One distance candidate (default: the profile's) trained under several training seeds and
    scored as the distance record scores it: how much of stage 2 - stage 1 is training noise.

    A training seed draws the prompts each stage samples, the projectors' and adapters'
    initial values and the batches' order; the data, split and WALS factors stay the run's.
    Every seed's stage 1 and stage 2 are scored on the far target of the shifted run (the
    real validation target), never a real test target. Under the profile's own seed the
    distance record's run is reused.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` opened with ``steps_back=1`` or more.
        seeds: Training seeds (at least two).
        candidate: Name of a :data:`DISTANCE_CANDIDATES` entry (default: the profile's own).
        users: Users scored (``None``: all; else a seeded subset, the same for every seed).
        out: Where the runs are kept (default ``run.out / "distance"``, the distance record's).
        candidates: Where ``candidate`` is looked up (default :data:`DISTANCE_CANDIDATES`).

    Returns:
        The record: per seed the stages' steps and seconds, stage 2's and stage 1's far
        HR/NDCG@5/10 (unmasked and ``_masked``) and the paired interval of stage 2 - stage 1;
        ``"over seeds"``: each figure's mean, standard deviation, minimum and maximum, how many
        seeds put stage 2 - stage 1 above zero, and the paired interval of the per-user
        difference averaged over the seeds (training noise averaged out; the interval is the
        users' spread).

    Raises:
        ValueError: ``run`` is not shifted, fewer than two seeds, or an unknown candidate.
    """
    import numpy as np

    from llmrec_lite.evaluate import evaluate_model, evaluation_users
    from llmrec_lite.metrics import difference_interval, paired_bootstrap, per_user_values

    if run.steps_back < 1:
        raise ValueError("seed_spread scores the run's test targets, so it needs a shifted run: "
                         "Run.open(..., steps_back=1), never the real split.")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) < 2:
        raise ValueError(f"A spread needs at least two different seeds, not {seeds}.")
    candidates = DISTANCE_CANDIDATES if candidates is None else candidates
    name = candidate or profile_candidate(run.profile, candidates)
    if name not in candidates:
        raise ValueError(f"Unknown distance candidate {name!r}; known: {', '.join(candidates)}.")
    out = Path(out) if out is not None else run.out / "distance"
    chosen_users = evaluation_users(run.split, users, seed=run.profile.seed)
    keep = lambda ev: {k: v for k, v in ev.metrics.items() if k.startswith(("hr@", "ndcg@"))}  # noqa: E731
    rows, diffs, backbones = [], {"hr@10": [], "hr@10_masked": []}, {}
    for seed in seeds:
        settings = dict(candidates[name]) if seed == run.profile.seed else {**candidates[name], "seed": seed}
        label = seed_label(name, seed, run.profile.seed)
        sub = candidate_run(run, settings, out / slug(label), backbones)
        stages = _train_both_stages(run, sub, settings, {}, show_progress)
        far = evaluate_model(sub.load(ITEM_TOKEN, 2), targets="test", users=chosen_users, show_progress=show_progress)
        far1 = evaluate_model(sub.load(ITEM_TOKEN, 1), targets="test", users=chosen_users, show_progress=show_progress)
        for key, (a, b) in (("hr@10", (far.ranks, far1.ranks)), ("hr@10_masked", (far.other_ranks, far1.other_ranks))):
            diffs[key].append(per_user_values(a, "hr@10") - per_user_values(b, "hr@10"))
        rows.append({"seed": seed, "name": label, "stages": stages,
                     "train_minutes": sum(s["seconds"] for s in stages) / 60,
                     "far": keep(far), "stage1_far": keep(far1),
                     "stage 2 - stage 1 (far)": {"hr@10": paired_bootstrap(far.ranks, far1.ranks),
                                                 "hr@10_masked": paired_bootstrap(far.other_ranks, far1.other_ranks)}})

    def spread(values):
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "min": float(values.min()),
                "max": float(values.max())}

    over = {}
    for key in ("hr@10", "hr@10_masked"):
        over[key] = {"stage 2": spread([r["far"][key] for r in rows]),
                     "stage 1": spread([r["stage1_far"][key] for r in rows]),
                     "stage 2 - stage 1": spread([r["stage 2 - stage 1 (far)"][key]["difference"] for r in rows]),
                     "seeds above zero": sum(r["stage 2 - stage 1 (far)"][key]["difference"] > 0 for r in rows),
                     "intervals above zero": sum(r["stage 2 - stage 1 (far)"][key]["verdict"] == "above" for r in rows),
                     "seed-averaged stage 2 - stage 1": difference_interval(np.mean(diffs[key], axis=0))}
    return {
        **_shifted_record_header(run, "seed spread", name, candidates, chosen_users),
        "targets": "far: the real validation target (the run's test target, two items past its training)",
        "rule": "the same settings trained under each seed; nothing is chosen",
        "seeds": rows,
        "over seeds": over,
    }


def seed_table(record: dict):
    """One row per seed of a seed record: stage 2's and stage 1's far HR@10 and their paired difference
    (unmasked and masked), and a last row of the means, its difference the seed-averaged one."""
    import pandas as pd

    cell = lambda d: "{:+.4f} [{:+.4f}, {:+.4f}]".format(d["difference"], *d["ci95"])  # noqa: E731
    rows = [{"seed": r["seed"], "stage 2 HR@10": r["far"]["hr@10"], "stage 1 HR@10": r["stage1_far"]["hr@10"],
             "stage 2 - stage 1": cell(r["stage 2 - stage 1 (far)"]["hr@10"]),
             "same, masked": cell(r["stage 2 - stage 1 (far)"]["hr@10_masked"])} for r in record["seeds"]]
    pooled = record["over seeds"]["hr@10"]
    rows.append({"seed": "mean", "stage 2 HR@10": pooled["stage 2"]["mean"], "stage 1 HR@10": pooled["stage 1"]["mean"],
                 "stage 2 - stage 1": cell(pooled["seed-averaged stage 2 - stage 1"]),
                 "same, masked": cell(record["over seeds"]["hr@10_masked"]["seed-averaged stage 2 - stage 1"])})
    return pd.DataFrame(rows)


def seed_sentence(record: dict, display_name: str | None = None) -> str:
    """What a seed record says about stage 2 - stage 1 (HR@10, unmasked), in one sentence."""
    from llmrec_lite.results import PAIRED_WORDS

    rows, over = record["seeds"], record["over seeds"]["hr@10"]
    spread, pooled = over["stage 2 - stage 1"], over["seed-averaged stage 2 - stage 1"]
    verdict = PAIRED_WORDS[pooled["verdict"]]
    return (f"on {display_name or record['dataset']} ({record['users']:,} users, {len(rows)} seeds) stage 2 - stage 1 "
            f"ranged from {spread['min']:+.4f} to {spread['max']:+.4f} (above zero under {over['seeds above zero']} of "
            f"{len(rows)} seeds; one seed's own interval above zero under {over['intervals above zero']}), and the "
            f"per-user difference averaged over the seeds is {pooled['difference']:+.4f} "
            f"[{pooled['ci95'][0]:+.4f}, {pooled['ci95'][1]:+.4f}], {verdict}; stage 2's HR@10 itself moved between "
            f"seeds by a standard deviation of {over['stage 2']['sd']:.4f}, stage 1's by {over['stage 1']['sd']:.4f}")


def _half_width(ci) -> float:
    """Half the width of an interval ``[low, high]``."""
    return (ci[1] - ci[0]) / 2


def users_to_resolve(record: dict, key: str = "hr@10") -> dict:
    """How many users one run would need for its paired interval of stage 2 - stage 1 to
    resolve the seed-averaged gain of a seed record.

    A paired bootstrap interval narrows as one over the square root of the users, so a run
    whose interval has half-width ``h`` over ``n`` users resolves a gain ``g`` from about
    ``n * (h / g) ** 2`` users. ``h`` is the mean half-width of the seeds' own intervals (one
    run's), ``g`` the size of the per-user difference averaged over the seeds.

    Returns:
        ``{"users", "half_width", "gain", "needed"}``; ``needed`` is ``None`` for a zero gain.
    """
    rows = record["seeds"]
    half = sum(_half_width(r["stage 2 - stage 1 (far)"][key]["ci95"]) for r in rows) / len(rows)
    gain = abs(record["over seeds"][key]["seed-averaged stage 2 - stage 1"]["difference"])
    users = int(record["users"])
    # rounded before the ceiling: a ratio one rounding error above a whole number stays that number
    needed = int(math.ceil(round(users * (half / gain) ** 2, 6))) if gain > 0 else None
    return {"users": users, "half_width": half, "gain": gain, "needed": needed}


def users_to_resolve_sentence(record: dict, display_name: str | None = None) -> str:
    """:func:`users_to_resolve` in words, for one dataset."""
    got = users_to_resolve(record)
    name = display_name or record["dataset"]
    if got["needed"] is None:
        return f"on {name} the seeds' gains average to zero, which no number of users resolves"
    more = (f"{got['needed'] / got['users']:.1f} times as many" if got["needed"] > got["users"]
            else f"fewer than the record's {got['users']:,}")
    return (f"on {name} one run's interval is about \u00b1{got['half_width']:.4f} over {got['users']:,} users, so the "
            f"seed-averaged gain of {got['gain']:.4f} would need about {got['needed']:,} users ({more})")


MORE_USERS_RECORD = "more_users_{dataset}_{profile}.json"


def more_users_row(record: dict) -> dict:
    """The one candidate of a more-users record.

    A more-users record is a distance record of the profile's own candidate alone, scored on
    more users than the distance record could afford to score every candidate on
    (``benchmarks/distance.py --users N --candidates NAME --out
    benchmarks/results/more_users_<dataset>_<profile>.json``): the same run under the same seed,
    a narrower interval of stage 2 - stage 1 two items past training, still no real test target.

    Raises:
        ValueError: the record holds more or fewer than one candidate.
    """
    rows = record["candidates"]
    if len(rows) != 1:
        raise ValueError(f"A more-users record scores one candidate, the profile's; this one holds {len(rows)}. "
                         "Make it with benchmarks/distance.py --candidates NAME.")
    return rows[0]


def more_users_sentence(record: dict, display_name: str | None = None) -> str:
    """What a more-users record says about stage 2 - stage 1 (HR@10, unmasked), in one sentence."""
    from llmrec_lite.results import PAIRED_WORDS

    row = more_users_row(record)
    entry = row["stage 2 - stage 1 (far)"]["hr@10"]
    lo, hi = entry["ci95"]
    return (f"on {display_name or record['dataset']}, {record['users']:,} users scored two items past training, stage 2 "
            f"reaches HR@10 {row['far']['hr@10']:.4f} and stage 1 {row['stage1_far']['hr@10']:.4f}: stage 2 - stage 1 "
            f"is {entry['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}], {PAIRED_WORDS[entry['verdict']]}")


def more_users_reading(record: dict, test_entry: dict | None, display_name: str | None = None) -> str:
    """A more-users record's stage 2 - stage 1 (validation targets) beside the test table's
    paired comparison of the same two stages on the same dataset, in one sentence.

    Args:
        record: The more-users record.
        test_entry: The build's paired entry (``results.json``'s ``paired``) of stage 2 -
            stage 1, unmasked; ``None`` when the build has none.
        display_name: The dataset's name in the sentence.
    """
    from llmrec_lite.results import PAIRED_WORDS

    name = display_name or record["dataset"]
    if test_entry is None:
        return f"this build has no test comparison of the two stages on {name}"
    valid = more_users_row(record)["stage 2 - stage 1 (far)"]["hr@10"]
    lo, hi = test_entry["ci95"]
    test = (f"the test table's {test_entry['users']:,} users on {name} give {test_entry['difference']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], {PAIRED_WORDS[test_entry['verdict']]}")
    if test_entry["verdict"] == valid["verdict"]:
        return test + ": the test targets agree with the validation targets"
    if lo <= valid["difference"] <= hi:
        return (test + f", an interval that holds the validation estimate ({valid['difference']:+.4f}): the test "
                "table has too few users to resolve a gain of that size")
    # two independent estimates: how many standard errors apart (a 95% half-width is 1.96 of them)
    apart = abs(valid["difference"] - test_entry["difference"]) / math.hypot(
        _half_width(valid["ci95"]) / 1.96, _half_width(test_entry["ci95"]) / 1.96)
    side = "below" if hi < valid["difference"] else "above"
    return (test + f", an interval wholly {side} the validation estimate ({valid['difference']:+.4f}); the two "
            f"estimates are about {apart:.1f} standard errors apart, so either the test table drew unlucky users or "
            "the gain is smaller on test targets than on validation targets, and only more test users, their number "
            "fixed before looking, could tell which")


def candidate_matches(profile, candidate: dict, others: list[dict] = ()) -> bool:
    """Whether a profile trains a distance candidate's settings (its prompts per stage and
    every override, stage 2's included). A setting that ``others`` (the record's other
    candidates) override and this one does not must stay at its default."""
    import dataclasses

    samples = candidate.get("samples_per_task")
    if samples is not None and tuple(profile.item_token_samples) != tuple(samples):
        return False

    def flat(c):  # every override, stage 2's and the backbone's included; the prompts are compared above
        return {**{k: v for k, v in _stage_overrides(c, 2).items() if k != "samples_per_task"},
                **(c.get("backbone") or {})}

    def same(a, b):  # a record read back from JSON holds lists where the candidates hold tuples
        return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)

    defaults = {f.name: f.default for f in dataclasses.fields(type(profile))}
    overrides = {k: defaults[k] for other in others for k in flat(other) if k in defaults}
    overrides.update(flat(candidate))
    return all(same(getattr(profile, k), v) for k, v in overrides.items())


def split_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(split, mean stage-2 validation HR@10, mean masked HR@10)`` of every split all
    stage-split records share (one record per dataset), best first."""
    final = f"{ITEM_TOKEN.label} stage 2"
    return mean_ranking(records, "splits", lambda r: r["valid"][final], "split; run the same --splits on every dataset")


def choose_split(records: list[dict]) -> tuple[int, int]:
    """The ``(stage-1, stage-2)`` prompts per task with the best mean stage-2 validation HR@10
    over the records (ties: masked), as every dataset's profile shares one split."""
    name = split_ranking(records)[0][0]
    return tuple(next(r for r in records[0]["splits"] if r["name"] == name)["samples_per_task"])


def split_table(record: dict):
    """One row per split of a stage-split record: prompts, minutes, validation HR@10 per model."""
    import pandas as pd

    short = {f"{ITEM_TOKEN.label} stage 1": "stage 1", f"{ITEM_TOKEN.label} stage 2": "stage 2",
             f"{NO_EMBEDDINGS.label} stage 2": "no CF"}
    rows = []
    for row in record["splits"]:
        hr = {f"{short[model]} HR@10": m["hr@10"] for model, m in row["valid"].items()}
        masked = {f"{short[model]} HR@10 masked": m["hr@10_masked"] for model, m in row["valid"].items()
                  if model.endswith("stage 2")}
        rows.append({"prompts per task (stage 1 + 2)": row["name"],
                     "train minutes (CF model)": row["train_minutes"], **hr, **masked,
                     "best": "yes" if row["name"] == record["best"] else ""})
    return pd.DataFrame(rows)


def without_timings(value):
    """``value`` with every machine-speed-dependent entry removed (for comparing records)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


# --------------------------------------------------------------------------- reading records


def mean_ranking(records: list[dict], rows: str, metrics, missing: str) -> list[tuple[str, float, float]]:
    """``(name, mean HR@10, mean masked HR@10)`` of the rows (``record[rows]``, named by
    ``"name"``) every record has, best first, ties broken by the masked value; ``metrics``
    picks a row's metric dict. ``missing`` ends the error when the records share no row."""
    names = [row["name"] for row in records[0][rows]]
    common = [n for n in names if all(any(row["name"] == n for row in rec[rows]) for rec in records)]
    if not common:
        raise ValueError(f"The records share no {missing}.")

    def score(name):
        found = [metrics(next(row for row in rec[rows] if row["name"] == name)) for rec in records]
        return sum(m["hr@10"] for m in found) / len(found), sum(m["hr@10_masked"] for m in found) / len(found)

    return sorted(((n, *score(n)) for n in common), key=lambda row: (row[1], row[2]), reverse=True)


def ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(name, mean validation HR@10, mean masked HR@10)`` of every candidate all records
    share (one record per dataset), best first; ties broken by the masked value."""
    return mean_ranking(records, "candidates", lambda c: c["valid"],
                        "candidate; tune the same candidates on every dataset")


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


# Late-fusion weights the fusion record scores (0: the model alone); see llmrec_lite.late_fusion.
FUSION_WEIGHTS: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)


def profile_candidate(profile, candidates: dict[str, dict] | None = None) -> str:
    """The name of the distance candidate whose settings the profile trains with.

    Raises:
        ValueError: none of them matches the profile.
    """
    candidates = DISTANCE_CANDIDATES if candidates is None else candidates
    for name, candidate in candidates.items():
        if candidate_matches(profile, candidate, candidates.values()):
            return name
    raise ValueError(f"The {profile.name} profile trains none of the distance candidates ({', '.join(candidates)}).")


def fusion_sweep(run, weights=FUSION_WEIGHTS, candidate: str | None = None, users: int | None = None,
                 out: str | Path | None = None, candidates: dict[str, dict] | None = None,
                 show_progress: bool = True) -> dict:
    """Scores one trained model at every late-fusion weight, without reading a real test target.

    ``run`` is a shifted run as for :func:`distance_tune` (``steps_back=1``): its models and
    WALS factors never saw a user's last item, its test target is the real validation target
    ("far", as far from training as the real test target is), its validation target the item
    before ("near"). The model is the distance candidate the profile trains (trained here
    if the distance record's run is not on disk). One forward pass per target gives the
    model's scores; every weight re-ranks them (:func:`llmrec_lite.late_fusion.fuse_scores`).

    Args:
        run: A :class:`~llmrec_lite.runs.Run` opened with ``steps_back=1`` or more.
        weights: Late-fusion weights; 0 (the model alone) is always scored.
        candidate: Name of a :data:`DISTANCE_CANDIDATES` entry (default: the profile's own).
        users: Users scored (``None``: all; else a seeded subset).
        out: Folder of the distance record's runs (default ``run.out / "distance"``).
        candidates: Where ``candidate`` is looked up (default :data:`DISTANCE_CANDIDATES`).

    Returns:
        The record: per weight HR/NDCG@5/10 (unmasked and ``_masked``) on the far and near
        targets, the WALS dot product alone, and the paired bootstrap interval of the best
        weight against 0 on the far target; ``best`` has the best far HR@10 (then masked).
    """
    import numpy as np

    from llmrec_lite.late_fusion import check_cf_weight, fuse_scores
    from llmrec_lite.metrics import metrics_from_ranks, paired_bootstrap, target_ranks

    weights = sorted({0.0, *(check_cf_weight(w) for w in weights)})
    name, candidates, trained, chosen_users = _shifted_candidate_model(run, "fusion_sweep", candidate, users, out,
                                                                       candidates, show_progress)
    scored = _far_and_near_scores(run, trained, chosen_users, None, show_progress)

    def ranks(label, weight):
        scores, wals, gold, histories, order = scored[label]
        fused = wals if weight is None else fuse_scores(scores, wals, weight)
        back = np.argsort(order, kind="stable")  # user order, so paired rows line up
        return target_ranks(fused, gold)[back], target_ranks(fused, gold, exclude=histories)[back]

    def metrics(label, weight):
        plain, masked = ranks(label, weight)
        return {**metrics_from_ranks(plain), **metrics_from_ranks(masked, suffix="_masked")}

    rows = [{"name": weight_name(w), "weight": w, "far": metrics("far", w), "near": metrics("near", w)} for w in weights]
    best = max(rows, key=lambda r: (r["far"]["hr@10"], r["far"]["hr@10_masked"]))
    far_best, far_alone = ranks("far", best["weight"]), ranks("far", 0.0)
    return {
        **_shifted_record_header(run, "late fusion", name, candidates, chosen_users),
        "targets": "far: the real validation target (the run's test target, two items past its training); "
                   "near: the item before it (the run's validation target)",
        "head": {k: getattr(run.profile, k) for k in ("item_logit", "logit_temperature", "dense_weight", "history_bias")},
        "rule": "one trained stage-2 model (sequential task, seen template) re-ranked at every weight; "
                "chosen by HR@10 on the far target, then masked",
        "weights": rows,
        "wals": {"far": metrics("far", None), "near": metrics("near", None)},
        "best": best["weight"],
        "best - model alone (far)": {"hr@10": paired_bootstrap(far_best[0], far_alone[0]),
                                     "hr@10_masked": paired_bootstrap(far_best[1], far_alone[1])},
    }


def _shifted_candidate_model(run, caller: str, candidate, users, out, candidates, show_progress):
    """``(name, candidates, trained stage-2 model, users)`` of a distance candidate on a shifted
    run (trained here if the distance record's run is not on disk): what the records that
    re-score the distance record's model start from."""
    from llmrec_lite.evaluate import evaluation_users

    if run.steps_back < 1:
        raise ValueError(f"{caller} scores the run's test targets, so it needs a shifted run: "
                         "Run.open(..., steps_back=1), never the real split.")
    candidates = DISTANCE_CANDIDATES if candidates is None else candidates
    name = candidate or profile_candidate(run.profile, candidates)
    if name not in candidates:
        raise ValueError(f"Unknown distance candidate {name!r}; known: {', '.join(candidates)}.")
    sub = candidate_run(run, candidates[name], (Path(out) if out is not None else run.out / "distance") / slug(name))
    for stage in (1, 2):
        sub.ensure(run.settings(ITEM_TOKEN, stage, **_stage_overrides(candidates[name], stage)), show_progress)
    return name, candidates, sub.load(ITEM_TOKEN, 2), evaluation_users(run.split, users, seed=run.profile.seed)


def _shifted_record_header(run, kind: str, name: str, candidates: dict, users) -> dict:
    """What a record that re-scores a distance candidate's model says first (see
    :func:`record_header`): the shift, the candidate, its settings, how many users."""
    return {**record_header(run, kind), "steps_back": run.steps_back, "candidate": name,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in candidates[name].items()},
            "users": int(len(users))}


def _far_and_near_scores(run, trained, users, user_factors, show_progress) -> dict:
    """``{"far"|"near": (model scores, WALS scores, gold, histories, users in scoring order)}``
    of a trained item-token model on a shifted run's test ("far") and validation ("near")
    targets, sequential task, seen template. ``user_factors``: ``None`` (the fitted vectors)
    or a function of the targets giving the ``(users, k)`` vectors the prompts read."""
    import numpy as np
    import torch

    from llmrec_lite.evaluate import item_token_batches
    from llmrec_lite.late_fusion import cf_scores

    model, encoder, split = trained.model, trained.encoder, run.split
    scored = {}
    for label, targets in (("far", "test"), ("near", "valid")):
        order, scores = [], []
        with model.reading_users(None if user_factors is None else user_factors(targets)):
            for chunk, batch_scores in item_token_batches(model, encoder, "sequential", "seen", targets, users,
                                                          bf16=trained.settings.bf16, show_progress=show_progress):
                order.append(chunk)
                scores.append(batch_scores)
            order = np.concatenate(order)
            wals = cf_scores(model.user_factors, model.item_factors, order)
        gold = split.target_items(targets)[order]
        histories = [split.history(int(u), targets) for u in order]
        scored[label] = (torch.cat(scores), wals, gold, histories, order)
    return scored


USER_VECTORS_AT_INFERENCE = ("fitted", "folded")


def user_vectors_sweep(run, candidate: str | None = None, users: int | None = None, out: str | Path | None = None,
                       candidates: dict[str, dict] | None = None, show_progress: bool = True) -> dict:
    """Scores one trained model with the fitted user vectors and with vectors folded in from
    each prompt's whole history, without reading a real test target.

    The fitted WALS vectors are solved from the training part alone. A prompt for a later
    target shows items after it (a test prompt: the validation item), which its fitted
    vector never saw; :func:`~llmrec_lite.wals.history_user_factors` folds every item
    before the target into the vector instead (one exact user step, item factors fixed).
    ``run`` is a shifted run as for :func:`fusion_sweep`: on the far target (the real
    validation target) the prompt shows one item the fitted vector missed, as a real test
    prompt does; on the near target none. The model, the WALS dot product alone, and the
    late fusion at the profile's weight are each scored both ways.

    Returns:
        The record: per way of reading (``"fitted"``, ``"folded"``) HR/NDCG@5/10 (unmasked
        and ``_masked``) of the model, WALS and the fused scores on the far and near
        targets; paired bootstrap intervals folded - fitted on the far target; ``best`` has
        the model's best far HR@10 (then masked).
    """
    from llmrec_lite.late_fusion import fuse_scores
    from llmrec_lite.metrics import metrics_from_ranks, paired_bootstrap, target_ranks
    from llmrec_lite.wals import EVAL_USER_VECTORS, user_vectors

    name, candidates, trained, chosen_users = _shifted_candidate_model(run, "user_vectors_sweep", candidate, users,
                                                                       out, candidates, show_progress)
    weight = run.profile.cf_weight
    reading = {way: lambda targets, way=way: user_vectors(way, run.wals, run.split, targets) for way in EVAL_USER_VECTORS}
    scored = {way: _far_and_near_scores(run, trained, chosen_users, fn, show_progress) for way, fn in reading.items()}

    def ranks(way, label, what):
        import numpy as np

        scores, wals, gold, histories, order = scored[way][label]
        ranked = {"model": scores, "wals": wals, "fused": fuse_scores(scores, wals, weight) if weight else None}[what]
        back = np.argsort(order, kind="stable")  # user order, so paired rows line up
        return target_ranks(ranked, gold)[back], target_ranks(ranked, gold, exclude=histories)[back]

    def metrics(way, label, what):
        plain, masked = ranks(way, label, what)
        return {**metrics_from_ranks(plain), **metrics_from_ranks(masked, suffix="_masked")}

    whats = ("model", "wals", "fused") if weight else ("model", "wals")
    rows = [{"name": way, **{label: metrics(way, label, "model") for label in ("far", "near")},
             "wals": {label: metrics(way, label, "wals") for label in ("far", "near")},
             **({"fused": {label: metrics(way, label, "fused") for label in ("far", "near")}} if weight else {})}
            for way in reading]
    best = max(rows, key=lambda r: (r["far"]["hr@10"], r["far"]["hr@10_masked"]))

    def paired(what):
        folded, fitted = ranks("folded", "far", what), ranks("fitted", "far", what)
        return {"hr@10": paired_bootstrap(folded[0], fitted[0]), "hr@10_masked": paired_bootstrap(folded[1], fitted[1])}

    return {
        **_shifted_record_header(run, "user vectors at inference", name, candidates, chosen_users),
        "targets": "far: the real validation target (the run's test target, two items past its training; its "
                   "prompt shows one item the fitted vector never saw); near: the item before it",
        "cf_weight": weight,
        "rule": "one trained stage-2 model (sequential task, seen template) scored with each way of reading the "
                "user vectors; chosen by the model's HR@10 on the far target, then masked",
        "vectors": rows,
        "best": best["name"],
        "folded - fitted (far)": {what: paired(what) for what in whats},
    }


def user_vectors_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(way, mean far HR@10, mean far masked HR@10)`` of the model in the user-vector
    records (one per dataset), best first."""
    return mean_ranking(records, "vectors", lambda r: r["far"], "way of reading the user vectors")


def user_vectors_table(records: list[dict], names: dict[str, str] | None = None):
    """One row per dataset, way of reading the user vectors and ranker (the model, WALS alone,
    the late fusion) of the user-vector records: HR@10 two items past training, unmasked and
    masked, and the paired interval folded - fitted."""
    import pandas as pd

    labels = {"model": "stage 2 alone", "wals": "WALS dot product alone", "fused": "late fusion"}
    rows = []
    for rec in records:
        dataset = (names or {}).get(rec["dataset"], rec["dataset"])
        for what, label in labels.items():
            if what not in rec["folded - fitted (far)"]:
                continue
            by_way = {r["name"]: (r if what == "model" else r[what])["far"] for r in rec["vectors"]}
            paired = rec["folded - fitted (far)"][what]
            rows.append({"dataset": dataset, "ranker": label,
                         "HR@10 fitted": by_way["fitted"]["hr@10"], "HR@10 folded": by_way["folded"]["hr@10"],
                         "masked fitted": by_way["fitted"]["hr@10_masked"],
                         "masked folded": by_way["folded"]["hr@10_masked"],
                         "folded - fitted, masked": "{:+.4f} [{:+.4f}, {:+.4f}]".format(
                             paired["hr@10_masked"]["difference"], *paired["hr@10_masked"]["ci95"])})
    return pd.DataFrame(rows)


def weight_name(weight: float) -> str:
    """A fusion record row's name (``0.25`` -> ``"0.25"``)."""
    return f"{float(weight):g}"


def fusion_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(weight, mean far HR@10, mean far masked HR@10)`` of the weights all fusion records
    share (one per dataset), best first."""
    return mean_ranking(records, "weights", lambda r: r["far"], "weight; sweep the same --weights on every dataset")


def fusion_choice(records: list[dict]) -> float:
    """The late-fusion weight with the best mean far HR@10 over the records (then masked)."""
    return float(fusion_ranking(records)[0][0])


def fusion_table(records: list[dict], names: dict[str, str] | None = None):
    """One row per dataset and weight of the fusion records: HR@10 one and two items past
    training (unmasked and masked), the WALS dot product alone as the last row of each dataset."""
    import pandas as pd

    rows = []
    for rec in records:
        dataset = (names or {}).get(rec["dataset"], rec["dataset"])
        for r in [*rec["weights"], {"name": "WALS alone", **rec["wals"]}]:
            rows.append({"dataset": dataset, "weight": r["name"],
                         "HR@10, 1 item past training": r["near"]["hr@10"],
                         "HR@10, 2 items past (as test)": r["far"]["hr@10"],
                         "same, masked": r["far"]["hr@10_masked"],
                         "best": "yes" if r.get("weight") == rec["best"] else ""})
    return pd.DataFrame(rows)
