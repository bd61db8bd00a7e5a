"""The whole pipeline for one dataset and profile: WALS, both stages of both output sides,
the text-only baselines, the classic baselines and the evaluation, written to
``results.json`` and ``results.md`` in the run directory.
"""

from __future__ import annotations

from dataclasses import asdict
import json
import math
from pathlib import Path

import numpy as np
import torch

from llmrec_lite.baselines import classic_baselines, classic_scorers
from llmrec_lite.checkpoints import load_tensors, read_json
from llmrec_lite.device import describe_machine
from llmrec_lite.evaluate import Evaluation
from llmrec_lite.fileio import atomic_path, write_json
from llmrec_lite.metrics import bootstrap_interval, check_catalogue_size, paired_bootstrap, target_ranks, top_k
from llmrec_lite.results.rows import (FUSED_VS_S2, FUSED_VS_WALS, LATE_FUSION, LLM_ALONE_VS_WALS, S1_VS_NOCF,
                                      S2_VS_LLM_ALONE, S2_VS_NOCF, S2_VS_S1, S2_VS_SASREC, S2_VS_WALS, SASREC_LABEL,
                                      evaluations_for, late_fusion_label, llm_runs, stages_to_train)
from llmrec_lite.runs import Run, evaluate_cached, table_users
from llmrec_lite.sasrec import SASRecConfig, evaluate_sasrec, fit_sasrec, load_sasrec, sasrec_scorer, save_sasrec
from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT, Variant


def train_all(run, show_progress: bool = True) -> dict:
    """Trains every LLM variant needed by the results table (reusing finished stages)."""
    results = {}
    for variant, stage, _ in llm_runs(run.profile, run.data.name):
        for s in stages_to_train(variant, stage):
            if (variant, s) not in results:
                results[(variant, s)] = run.ensure(run.settings(variant, s), show_progress)
    return results


def evaluate_all(run, show_progress: bool = True) -> list[dict]:
    """Every LLM row (tasks and templates as :func:`evaluations_for` says), plus the classic
    baselines and SASRec on the same users as the item-token rows."""
    rows = []
    profile = run.profile

    def llm_row(ev, label, name, variant, stage, task, template):
        extra = {}
        if ev.other_ranks is not None:  # item-token rows: the masked rule's interval too
            extra["hr@10_masked_ci95"] = list(bootstrap_interval(ev.other_ranks, "hr@10"))
        # identity after the metrics: the evaluation's own keys never overwrite the row's stage
        return {**ev.metrics, "model": label, "variant": name, "output": variant.output,
                "use_embeddings": variant.use_embeddings, "stage": stage, "task": task, "template": template,
                "template_name": ev.metrics["template"], "hr@10_ci95": list(ev.bootstrap("hr@10")),
                **extra, "training_samples": training_samples(run, variant, stage)}

    for variant, stage, label in llm_runs(profile, run.data.name):
        for task, template in evaluations_for(stage, variant, profile, run.data.name):
            ev = evaluate_cached(run, variant, stage, task, template, show_progress=show_progress)
            rows.append(llm_row(ev, label, variant.name, variant, stage, task, template))
    if profile.cf_weight:
        # the stage-2 model's scores late-fused with the WALS score, on the main row only
        ev = evaluate_cached(run, ITEM_TOKEN, 2, "sequential", "seen", show_progress=show_progress,
                             cf_weight=profile.cf_weight)
        rows.append(llm_row(ev, late_fusion_label(profile.cf_weight), LATE_FUSION, ITEM_TOKEN, 2, "sequential", "seen"))
    users = table_users(run)
    classic = classic_baselines(run.split, run.eval_wals(), users=users, seed=profile.seed)
    classic[SASREC_LABEL] = sasrec_metrics(run, show_progress, users=users)
    for name, metrics in classic.items():
        rows.append({**metrics, "model": name, "variant": "classic", "output": None, "use_embeddings": None,
                     "stage": None, "task": "no prompt", "template": None, "targets": "test"})
    return rows


def paired_comparisons(run, show_progress: bool = True) -> list[dict]:
    """Stage 2 against stage 1, and stage 2 and stage 1 against the no-CF model (item-token
    side, sequential task, seen template, unmasked and masked): the HR@10 difference over the same users with its
    paired bootstrap 95% interval (from the cached evaluations). With a late-fusion weight
    (``Profile.cf_weight``), also the fused scores against stage 2 alone and against WALS.
    Always stage 2 against the WALS dot product whose vectors it reads (does the LLM add to them?)."""
    def ranks(variant, stage):
        return evaluate_cached(run, variant, stage, "sequential", "seen", show_progress=show_progress)

    out = []

    def add(name, one, other):
        out.append({"comparison": name, "rule": "unmasked", **paired_bootstrap(one[0], other[0])})
        if one[1] is not None and other[1] is not None:
            out.append({"comparison": name, "rule": "masked", **paired_bootstrap(one[1], other[1])})

    for (variant, stage), (other_variant, other_stage), name in (
            ((ITEM_TOKEN, 2), (ITEM_TOKEN, 1), S2_VS_S1),
            ((ITEM_TOKEN, 2), (ITEM_TOKEN_TEXT, 2), S2_VS_NOCF),
            ((ITEM_TOKEN, 1), (ITEM_TOKEN_TEXT, 2), S1_VS_NOCF)):
        one, other = ranks(variant, stage), ranks(other_variant, other_stage)
        if not np.array_equal(one.users, other.users):
            raise ValueError("Paired comparisons need both models evaluated on the same users.")
        add(name, (one.ranks, one.other_ranks), (other.ranks, other.other_ranks))
    alone = ranks(ITEM_TOKEN, 2)
    add(S2_VS_WALS, (alone.ranks, alone.other_ranks), wals_ranks(run, alone.users))
    add(S2_VS_SASREC, (alone.ranks, alone.other_ranks), sasrec_ranks(run, alone.users, show_progress))
    if alone.llm_alone_ranks is not None:  # the head's two terms apart: masked only (the known-item offset is moot)
        for name, one, other in ((S2_VS_LLM_ALONE, alone.other_ranks, alone.llm_alone_ranks),
                                 (LLM_ALONE_VS_WALS, alone.llm_alone_ranks, wals_ranks(run, alone.users)[1])):
            out.append({"comparison": name, "rule": "masked", **paired_bootstrap(one, other)})
    if run.profile.cf_weight:
        fused = evaluate_cached(run, ITEM_TOKEN, 2, "sequential", "seen", show_progress=show_progress,
                                cf_weight=run.profile.cf_weight)
        add(FUSED_VS_S2, (fused.ranks, fused.other_ranks), (alone.ranks, alone.other_ranks))
        add(FUSED_VS_WALS, (fused.ranks, fused.other_ranks), wals_ranks(run, fused.users))
    return out


def sasrec_ranks(run, users, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The test target's rank under the run's SASRec for each of ``users``: unmasked, masked
    (trained first if the run has none yet, as :func:`sasrec_metrics` does)."""
    users = np.asarray(users)
    if not (run.out / "sasrec" / "sasrec.json").exists():
        sasrec_metrics(run, show_progress, users=table_users(run))
    model, _ = load_sasrec(run.out / "sasrec")
    scorer, gold = sasrec_scorer(model, run.split, "test"), run.split.target_items("test")
    plain, masked = [], []
    for b in range(0, len(users), 512):
        chunk = users[b: b + 512]
        scores = torch.as_tensor(scorer(chunk), dtype=torch.float32)
        plain.append(target_ranks(scores, gold[chunk]))
        masked.append(target_ranks(scores, gold[chunk], exclude=[run.split.history(int(u), "test") for u in chunk]))
    return np.concatenate(plain), np.concatenate(masked)


def wals_scores(run, users) -> torch.Tensor:
    """The WALS dot product of ``users`` with every item, with the vectors the results read."""
    users = np.asarray(users)
    return torch.as_tensor(classic_scorers(run.split, run.eval_wals(), names=("wals",))["wals"](users),
                           dtype=torch.float32)


def wals_ranks(run, users) -> tuple[np.ndarray, np.ndarray]:
    """The test target's rank under the WALS dot product for each of ``users``: unmasked, masked."""
    users = np.asarray(users)
    scores = wals_scores(run, users)
    gold = run.split.target_items("test")[users]
    return target_ranks(scores, gold), target_ranks(scores, gold, exclude=[run.split.history(int(u), "test")
                                                                            for u in users])


def head_scalars(run, variant: Variant, stage: int) -> dict:
    """The learned scalars of a trained item-token head (its ``extra.safetensors``): the logit
    scale (and, for cosine logits, the temperature ``1 / scale``), the history and known-item
    offsets ``b`` and ``c``, and the weight ``w`` of the WALS score (0 where the head has none)."""
    saved = load_tensors(run.stage_dir(variant, stage) / "final" / "extra.safetensors",
                         "The saved stage is damaged: train it again.")
    value = lambda key: float(saved[key].reshape(())) if key in saved else 0.0  # noqa: E731
    scale = math.exp(value("item_logit_log_scale"))
    settings = read_json(run.stage_dir(variant, stage) / "config.json")["train"]
    out = {"item_logit": settings["item_logit"], "logit_scale": scale, "history_bias": value("item_history_bias"),
           "known_bias": value("item_known_bias"), "cf_weight": value("item_cf_weight")}
    if settings["item_logit"] == "cosine":
        out["temperature"] = 1.0 / scale
    return out


def overlap_with_wals(run, ev: Evaluation, k: int = 10) -> dict:
    """How far a model's ranking is the WALS ranking it reads, over the users of ``ev``.

    ``top_k_jaccard``: the mean Jaccard overlap of the two top-``k`` lists (unmasked);
    ``same_hit``: the share of users whose hit@``k`` is the same under both (unmasked and
    masked); ``hits_in_common``: users hit by both over users hit by either.
    """
    scores = wals_scores(run, ev.users)
    wals_top = top_k(scores, k)
    model_top = np.asarray(ev.top_items)[:, :k]
    jaccard = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(model_top.tolist(), wals_top.tolist())]
    plain, masked = wals_ranks(run, ev.users)
    out = {"users": int(len(ev.users)), "k": k, "top_k_jaccard": float(np.mean(jaccard))}
    for rule, model_ranks, wals_rank in (("unmasked", ev.ranks, plain), ("masked", ev.other_ranks, masked)):
        if model_ranks is None:
            continue
        a, b = np.asarray(model_ranks) < k, np.asarray(wals_rank) < k
        out[rule] = {"same_hit": float(np.mean(a == b)),
                     "hits_in_common": float((a & b).sum() / max(int((a | b).sum()), 1))}
    return out


def llm_share(run, show_progress: bool = True) -> dict:
    """What the LLM adds beyond the WALS model it reads, as measured on the main row (item-token
    side, sequential task, seen template): each stage's learned head scalars and its overlap
    with the WALS ranking on the table's users."""
    out = {}
    for stage in (1, 2):
        ev = evaluate_cached(run, ITEM_TOKEN, stage, "sequential", "seen", show_progress=show_progress)
        entry = {"head": head_scalars(run, ITEM_TOKEN, stage), "overlap with WALS": overlap_with_wals(run, ev),
                 "hr@10_masked": float(np.mean(np.asarray(ev.other_ranks) < 10))}
        if ev.llm_alone_ranks is not None:  # each term of the head alone, history masked
            entry["llm_term_alone_hr@10_masked"] = float(np.mean(ev.llm_alone_ranks < 10))
            entry["wals_term_alone_hr@10_masked"] = float(np.mean(wals_ranks(run, ev.users)[1] < 10))
        out[f"stage {stage}"] = entry
    return out


def sasrec_metrics(run, show_progress: bool = True, users=None) -> dict:
    """SASRec trained on the run's split (once; kept in ``out/sasrec``) and evaluated on the test
    targets of ``users`` (default: all) under the same rule, with its training record (epochs,
    seconds, validation curve; early stopping on the same users' validation targets)."""
    folder = run.out / "sasrec"
    config = SASRecConfig.from_profile(run.profile, run.data.name)
    info = read_json(folder / "sasrec.json") if (folder / "sasrec.json").exists() else None
    if info is not None and info["config"] == json.loads(json.dumps(asdict(config))) \
            and info["num_items"] == run.split.num_items:
        model, record = load_sasrec(folder)
    else:
        # early stopping reads the validation targets of the same users the table evaluates
        model, record = fit_sasrec(run.split, config, show_progress=show_progress, valid_users=users)
        save_sasrec(model, record, folder)
    return {**evaluate_sasrec(model, run.split, users=users), "best_epoch": record.best_epoch,
            "epochs_run": record.epochs_run, "train_seconds": record.seconds, "seconds_per_epoch": record.seconds_per_epoch,
            "valid_hr@10": record.best_valid_hr10, "curve": record.to_dict().get("curve")}


def training_samples(run, variant: Variant, stage: int) -> int:
    """Prompts a row's model was trained on, over all of its stages."""
    return sum(run.result(variant, s)["samples"] for s in range(1, stage + 1) if run.is_finished(variant, s))


def results_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| model | task | template | users | HR@5 | HR@10 | NDCG@5 | NDCG@10 | HR@10 masked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        masked = r.get("hr@10_masked")
        lines.append(f"| {r['model']} | {r['task']} | {r['template'] or '-'} | {r['users']} | {r['hr@5']:.4f} | "
                     f"{r['hr@10']:.4f} | {r['ndcg@5']:.4f} | {r['ndcg@10']:.4f} | "
                     f"{'-' if masked is None else f'{masked:.4f}'} |")
    return "\n".join(lines) + "\n"


def run_pipeline(profile, dataset: str | None, out: str | Path, data_dir=None, show_progress: bool = True, run=None,
                 path=None, display_name: str | None = None) -> dict:
    """Runs everything and writes ``results.json`` and ``results.md`` into ``out``.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` already opened for this profile, dataset and
            ``out`` (the book passes its own); ``None`` opens one.
        path: Your own S3Rec-format file instead of ``dataset``.
    """
    out = Path(out)
    if run is None:
        run = Run.open(profile, dataset, out, data_dir=data_dir, path=path, show_progress=show_progress,
                       display_name=display_name)
    elif run.profile.name != profile.name or (dataset is not None and run.data.name != dataset):
        raise ValueError(f"The run is for {run.data.name!r} under profile {run.profile.name!r}, "
                         f"not {dataset!r} under {profile.name!r}; pass run=None to open the right one.")
    # both refusals come before any training: a run that cannot be scored is not worth training
    check_catalogue_size(run.split.num_items, name=run.data.name)
    run.split.check_has_training_prompts()
    training = train_all(run, show_progress)
    rows = evaluate_all(run, show_progress)
    evaluated = len(table_users(run))
    result = {
        "dataset": run.data.name,
        "profile": profile.name,
        "backbone": run.backbone.source,
        "indexing": run.data.indexing,
        "machine": describe_machine(),
        "rule": "full ranking over the catalogue, one test target per user; plain metrics unmasked (OpenP5)",
        "training": {f"{v}/stage{s}": r for (v, s), r in training.items()},
        "num_users": run.split.num_users,
        "evaluated_users": int(evaluated),
        "users_rule": ("every user" if evaluated == run.split.num_users
                       else f"one seeded subset of {profile.eval_users} users (seed {profile.seed}), shared by every "
                            "item-token and classic row"),
        "rows": rows,
        "paired": paired_comparisons(run, show_progress),
        "llm_share": llm_share(run, show_progress),
    }
    write_json(out / "results.json", result)
    header = (f"# Results: {run.data.name}, profile {profile.name}, backbone {run.backbone.source}, "
              f"{run.data.indexing} indexing")

    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(results_markdown(rows, header))
    return result
