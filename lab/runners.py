"""The record runners: short or shifted runs of candidate settings, scored on validation targets only.

Every setting the profiles choose is chosen from a record made here, from numbers that
never touch a test target. Candidates train on the training prefixes (as every run does)
and are scored on validation targets: the real split's (:func:`tune`, :func:`stage_split`),
or a shifted run's test target, which is the real validation target, two items past its
training as the real test target is (:func:`distance_tune`, :func:`seed_spread`,
:func:`fusion_sweep`, :func:`user_vectors_sweep`). The scripts under ``benchmarks/`` call
these and store each record under ``benchmarks/results/`` with the machine and date.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from llmrec_lite.backbone import load_backbone
from llmrec_lite.evaluate import evaluate_model, evaluation_users, item_token_batches
from llmrec_lite.late_fusion import cf_scores, check_cf_weight, fuse_scores
from llmrec_lite.metrics import difference_interval, metrics_from_ranks, paired_bootstrap, per_user_values, target_ranks
from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT, Variant
from llmrec_lite.wals import EVAL_USER_VECTORS, user_vectors

from lab.catalogue import (BACKBONE_OVERRIDES, CANDIDATES, DISTANCE_CANDIDATES, FUSION_WEIGHTS, SPREAD_SEEDS,
                           _stage_overrides, profile_candidate, scaled_samples, slug)
from lab.records import distance_best, weight_name


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
    if not splits:
        raise ValueError("No splits: pass at least one (stage-1 prompts, stage-2 prompts) pair.")
    for split in splits:
        if len(split) != 2 or any(int(n) < 1 for n in split):
            raise ValueError(f"split={split!r}: give two positive prompt counts per task, (stage 1, stage 2).")
    out = Path(out) if out is not None else run.out / "split"
    chosen_users = evaluation_users(run.split, users, seed=run.profile.seed)
    variants = (ITEM_TOKEN, ITEM_TOKEN_TEXT) if baseline else (ITEM_TOKEN,)
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
        scored = [(ITEM_TOKEN, 1), (ITEM_TOKEN, 2)] + ([(ITEM_TOKEN_TEXT, 2)] if baseline else [])
        for variant, stage in scored:
            ev = evaluate_model(sub.load(variant, stage), targets="valid", users=chosen_users,
                                show_progress=show_progress)
            models[(variant, stage)] = ev
        pairs = [("stage 2 - stage 1", (ITEM_TOKEN, 2), (ITEM_TOKEN, 1))]
        if baseline:
            pairs += [("stage 1 - no CF", (ITEM_TOKEN, 1), (ITEM_TOKEN_TEXT, 2)),
                      ("stage 2 - no CF", (ITEM_TOKEN, 2), (ITEM_TOKEN_TEXT, 2))]
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


def candidate_run(run, candidate: dict, out: str | Path, loaded: dict | None = None):
    """The run a candidate trains in: ``out`` as its directory, and the run's backbone, or, when the
    candidate has a ``"backbone"`` entry (other LoRA adapters), the same weights loaded again with
    those fields replaced. ``loaded`` caches such backbones by their settings across candidates.

    Raises:
        ValueError: the ``"backbone"`` entry names a field that is not a LoRA setting.
    """
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
    name, candidates, trained, chosen_users = _shifted_candidate_model(run, "user_vectors_sweep", candidate, users,
                                                                       out, candidates, show_progress)
    weight = run.profile.cf_weight
    reading = {way: lambda targets, way=way: user_vectors(way, run.wals, run.split, targets) for way in EVAL_USER_VECTORS}
    scored = {way: _far_and_near_scores(run, trained, chosen_users, fn, show_progress) for way, fn in reading.items()}

    def ranks(way, label, what):

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


# --------------------------------------------------------------------------- the text-id budget curve
# (imported here so that the functions above stay as they were)

from collections import Counter  # noqa: E402
import datetime  # noqa: E402

from llmrec_lite.baselines import popularity_scores  # noqa: E402
from llmrec_lite.checkpoints import read_json  # noqa: E402
from llmrec_lite.device import describe_machine  # noqa: E402
from llmrec_lite.fileio import write_json  # noqa: E402
from llmrec_lite.metrics import bootstrap_interval  # noqa: E402
from llmrec_lite.runs import stage_lock, train_record  # noqa: E402
from llmrec_lite.settings import TrainSettings  # noqa: E402
from llmrec_lite.variants import TEXT_ID, TEXT_ID_TEXT  # noqa: E402

BUDGET_VARIANTS = (TEXT_ID, TEXT_ID_TEXT)


class RecordMismatchError(ValueError):
    """A record to resume was measured under other settings: its points cannot join these."""

BUDGET_KEYS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")
# what must be the same for a record's points to be read together (checked when a record is resumed)
BUDGET_IDENTITY = ("record", "dataset", "data_sha256", "profile", "backbone", "targets", "task", "template",
                   "num_beams", "user_ids", "eval_user_vectors", "budget_rule", "stage_shares", "train_settings")


def budget_stages(profile, variant, budget: int) -> dict[int, int]:
    """``{stage: training prompts per task and epoch}`` of a text-id variant at a total budget.

    ``budget`` counts every training prompt the model sees: both tasks, every epoch and, with
    CF embeddings, both stages, split between them in the profile's ratio
    (``text_id_samples``; half and half where the profile gives no counts). The model without
    CF embeddings has one stage (stage 2), which gets the whole budget, as
    :meth:`~llmrec_lite.settings.TrainSettings.from_profile` gives it both stages' prompts.
    At least one prompt per task and stage.
    """
    variant = Variant.parse(variant)
    if variant.output != "text-id":
        raise ValueError(f"The budget curve is the text-id side's; {variant} answers with {variant.output!r}.")
    budget = int(budget)
    if budget < 1:
        raise ValueError(f"budget={budget!r}: give the training prompts in all, a positive count.")
    settings = TrainSettings.from_profile(profile, 2, variant)
    per_pass = len(settings.tasks) * settings.epochs
    if not variant.use_embeddings:
        return {2: max(1, round(budget / per_pass))}
    shares = _stage_shares(profile)
    return {stage: max(1, round(budget * share / per_pass)) for stage, share in zip((1, 2), shares)}


def _stage_shares(profile) -> list[float]:
    counts = profile.text_id_samples
    if None in counts:
        return [0.5, 0.5]
    return [counts[0] / sum(counts), counts[1] / sum(counts)]


def text_id_budget_curve(run, budgets, users: int | None = 500, record: str | Path | None = None,
                         out: str | Path | None = None, variants=BUDGET_VARIANTS, show_progress: bool = True) -> dict:
    """The text-id side's accuracy against its training budget, with and without CF embeddings,
    scored on validation targets only; resumable point by point.

    For each budget (training prompts in all, see :func:`budget_stages`) and variant, the
    stages train in ``out / "budget-<B>"`` through the run layer (:meth:`Run.ensure
    <llmrec_lite.runs.Run.ensure>`: a finished stage with the same settings is reused, an
    interrupted one continues from its checkpoint), then the final stage answers ``users``
    validation users by the profile's beam search (sequential task, seen template, the user
    vectors of ``eval_user_vectors`` for validation prompts). Popularity (from the training
    parts) is scored on the same users. No test target is read: training reads training
    prefixes and validation targets, the scoring validation targets.

    With ``record``, the record is written (atomically) after every point and read back
    first: points already in it are kept and not measured again, so the curve can be built
    across sessions, budget by budget.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` on the real split (its profile gives every
            setting but the prompts per task).
        budgets: Training prompts in all, one per point.
        users: Validation users scored (a seeded subset; ``None``: all).
        record: The record's JSON file (``None``: nothing written, nothing resumed).
        out: Where the stages are trained (default ``run.out / "text_id_budget"``).
        variants: Text-id variants (default with CF embeddings and without).

    Returns:
        The record: the header (dataset, profile, users and what is scored), ``popularity``
        (HR/NDCG@5/10 with intervals, per-user ranks), ``points`` (per variant and budget:
        prompts per task per stage, steps, training seconds, final training loss, validation
        HR/NDCG@5/10 with bootstrap 95 % intervals, distinct items ranked first, the paired
        interval against popularity, per-user ranks), ``cf - no cf`` (per budget where both
        are measured: paired intervals of HR@10 and NDCG@10) and ``missing`` (points not yet
        measured).

    Raises:
        ValueError: a shifted run, a variant that is not text-id or a non-positive budget.
        RecordMismatchError: ``record`` was made under other settings (another users' subset,
            profile, data, training settings...).
    """
    if run.steps_back:
        raise ValueError("The budget curve scores the run's validation targets; open the real split (steps_back=0).")
    budgets = sorted({int(b) for b in budgets})
    if not budgets:
        raise ValueError("No budgets: pass at least one count of training prompts.")
    variants = [Variant.parse(v) for v in variants]
    plans = {(v.name, b): budget_stages(run.profile, v, b) for v in variants for b in budgets}  # refuses bad input
    out = Path(out) if out is not None else run.out / "text_id_budget"
    record = Path(record) if record is not None else None
    chosen = evaluation_users(run.split, users, seed=run.profile.seed)
    header = _budget_header(run, chosen)
    with stage_lock(out / "curve"):  # one process per curve: two would each write their own points
        return _budget_curve(run, budgets, variants, plans, chosen, header, record, out, show_progress)


def _budget_curve(run, budgets, variants, plans, chosen, header, record, out, show_progress) -> dict:
    """:func:`text_id_budget_curve` once its input is checked and the curve's lock is held."""
    points, requested, named, saved = [], budgets, [v.name for v in variants], None
    if record is not None and record.exists():
        saved = read_json(record, "It is the budget curve's record: pass --overwrite to start it again.")
        changed = [k for k in BUDGET_IDENTITY if json.loads(json.dumps(header[k])) != saved.get(k)]
        if changed:
            raise RecordMismatchError(f"{record} was measured under other settings ({', '.join(changed)} differ): its "
                                      "points cannot be read with these. Pass --overwrite to start it again, or --out "
                                      "elsewhere.")
        points = saved.get("points", [])
        requested = sorted(set(saved.get("budgets", [])) | set(budgets))
        named = list(dict.fromkeys(saved.get("variants", []) + named))
    pop = _popularity_row(run, chosen)
    valid_vectors = run.eval_user_factors("valid")
    order = {v.name: k for k, v in enumerate(BUDGET_VARIANTS)}

    def assemble():
        key = lambda p: (p["budget"], order.get(p["variant"], len(order)), p["variant"])  # noqa: E731
        done = {(p["variant"], p["budget"]) for p in points}
        names = sorted(set(named) | {p["variant"] for p in points}, key=lambda n: (order.get(n, len(order)), n))
        return {**header, "budgets": requested, "variants": names, "popularity": pop,
                "points": sorted(points, key=key), "cf - no cf": _cf_pairs(points),
                "missing": [[n, b] for b in requested for n in names if (n, b) not in done],
                "machine": describe_machine(), "date": datetime.date.today().isoformat()}

    for budget in budgets:
        for variant in variants:
            if any(p["variant"] == variant.name and p["budget"] == budget for p in points):
                continue  # measured in an earlier session
            _measure_point(run, out, variant, budget, plans[(variant.name, budget)], chosen, valid_vectors, pop,
                           points, show_progress)
            if record is not None:
                write_json(record, assemble())
    result = assemble()
    stamps = ("machine", "date")
    if saved is not None and {k: v for k, v in json.loads(json.dumps(result)).items() if k not in stamps} \
            == {k: v for k, v in saved.items() if k not in stamps}:
        return saved  # nothing new: the record stays as it was, its machine and date included
    if record is not None:
        write_json(record, result)
    return result


def _measure_point(run, out, variant, budget, plan, chosen, valid_vectors, pop, points, show_progress) -> None:
    """Trains (or finds finished) one variant at one budget and adds its point to ``points``."""
    sub = run.at(out / f"budget-{budget}")
    stages = []
    for stage, per_task in plan.items():
        result = sub.ensure(run.settings(variant, stage, samples_per_task=per_task), show_progress)
        stages.append({"stage": stage, "prompts_per_task": per_task, "prompts": result["samples"],
                       "steps": result["steps"], "seconds": result["seconds"],
                       "final_loss": result["final_loss"],
                       "final_loss_mean_last_10pct": result["final_loss_mean_last_10pct"],
                       "final_val_loss": result["final_val_loss"]})
    trained = sub.load(variant, max(plan))
    ev = evaluate_model(trained, task="sequential", template="seen", targets="valid", users=chosen,
                        user_factors=valid_vectors, show_progress=show_progress)
    points.append(_budget_point(run, variant, budget, stages, ev, pop))


def _budget_header(run, chosen) -> dict:
    settings = train_record(run.settings(TEXT_ID, 2))
    varying = ("stage", "output", "use_embeddings", "samples_per_task", "sample_ratio")
    return {
        **record_header(run, "text-id budget curve"),
        "data_sha256": run.data.sha256,
        "question": "where does the text-id side pass popularity, and where do CF embeddings separate from none?",
        "targets": "valid",
        "task": "sequential",
        "template": "seen",
        "num_beams": 10,
        "eval_user_vectors": run.profile.eval_user_vectors,
        "users": int(len(chosen)),
        "user_ids": [int(u) for u in chosen],
        "budget_rule": "budget = training prompts in all (both tasks, every epoch, both stages); with CF embeddings "
                       "split between stage 1 and stage 2 in the profile's text_id_samples ratio, without them all "
                       "in its one stage",
        "stage_shares": _stage_shares(run.profile),
        "train_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items() if k not in varying},
        "timings": "seconds and minutes are each point's own machine's (per point: machine, date); reused stages "
                   "keep the seconds of the session that trained them",
    }


def _popularity_row(run, chosen) -> dict:
    """Popularity (training-part counts) on the validation targets of ``chosen``, unmasked (as
    beam search ranks) and masked, with intervals and per-user unmasked ranks."""
    split = run.split
    gold = split.target_items("valid")[chosen]
    scores = torch.as_tensor(popularity_scores(split)).expand(len(chosen), -1)
    plain = target_ranks(scores, gold)
    masked = target_ranks(scores, gold, exclude=[split.history(int(u), "valid") for u in chosen])
    return {**metrics_from_ranks(plain), **metrics_from_ranks(masked, suffix="_masked"),
            "hr@10_ci95": list(bootstrap_interval(plain, "hr@10")),
            "ndcg@10_ci95": list(bootstrap_interval(plain, "ndcg@10")),
            "ranks": [int(r) for r in plain]}


def _budget_point(run, variant, budget: int, stages: list[dict], ev, pop: dict) -> dict:
    first = [int(row[0]) for row in ev.top_items if int(row[0]) >= 0]
    counts = Counter(first)
    common, times = counts.most_common(1)[0] if counts else (None, 0)
    seconds = sum(s["seconds"] for s in stages)
    return {
        "variant": variant.name,
        "label": variant.label,
        "budget": int(budget),
        "prompts": int(sum(s["prompts"] for s in stages)),
        "prompts_per_task": [next((s["prompts_per_task"] for s in stages if s["stage"] == k), None) for k in (1, 2)],
        "steps": int(sum(s["steps"] for s in stages)),
        "train_seconds": seconds,
        "train_minutes": seconds / 60,
        "final_loss": stages[-1]["final_loss"],
        "final_loss_mean_last_10pct": stages[-1]["final_loss_mean_last_10pct"],
        "stages": stages,
        "valid": {k: ev.metrics[k] for k in BUDGET_KEYS},
        "hr@10_ci95": list(ev.bootstrap("hr@10")),
        "ndcg@10_ci95": list(ev.bootstrap("ndcg@10")),
        "distinct_top1": len(counts),
        "top1_share": times / max(len(ev.top_items), 1),
        "most_common_top1": None if common is None else run.data.item_id(common),
        "- popularity": {k: paired_bootstrap(ev.ranks, np.asarray(pop["ranks"]), k) for k in ("hr@10", "ndcg@10")},
        "eval_seconds": ev.metrics["seconds"],
        "ranks": [int(r) for r in ev.ranks],
        "machine": describe_machine(),
        "date": datetime.date.today().isoformat(),
    }


def _cf_pairs(points: list[dict]) -> list[dict]:
    """Per budget where both text-id variants are measured: CF - no CF, paired over the users."""
    by = {(p["variant"], p["budget"]): p for p in points}
    rows = []
    for budget in sorted({p["budget"] for p in points}):
        cf, text = by.get((TEXT_ID.name, budget)), by.get((TEXT_ID_TEXT.name, budget))
        if cf is None or text is None:
            continue
        a, b = np.asarray(cf["ranks"]), np.asarray(text["ranks"])
        rows.append({"budget": budget, **{k: paired_bootstrap(a, b, k) for k in ("hr@10", "ndcg@10")}})
    return rows
