"""Two-stage training with Hugging Face Accelerate: the training loop.

Stage 1 trains the projectors with the backbone frozen (LoRA adapters attached but
frozen, so they are the identity). Stage 2 starts from stage 1's projectors and trains
them together with the LoRA adapters. Batches alternate between the sequential and the
direct task. The same loop trains both output sides (``text-id``: cross-entropy on the
response tokens; ``item-token``: cross-entropy over the catalogue) and the text-only
baselines (``use_embeddings=False``).

The loop (:func:`fit`) takes a model, its batches and its settings
(:class:`~llmrec_lite.settings.TrainSettings`); it knows nothing about profiles or run
directories (:mod:`llmrec_lite.runs` assembles those). It runs
unchanged on CPU, one GPU or several (``accelerate launch``).
"""

from __future__ import annotations

from contextlib import nullcontext
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from llmrec_lite.checkpoints import load_checkpoint, save_checkpoint
from llmrec_lite.metrics import target_ranks
from llmrec_lite.prompts import Encoded, collate
from llmrec_lite.settings import TrainSettings  # noqa: F401  (re-exported: the loop's settings type)

# accelerate and transformers are imported in the functions that use them: importing them takes
# seconds, and evaluation alone never needs them.

LOGIT_SCALE = "item_logit_log_scale"
HISTORY_BIAS = "item_history_bias"
CF_WEIGHT = "item_cf_weight"
KNOWN_BIAS = "item_known_bias"
SCALARS = (LOGIT_SCALE, HISTORY_BIAS, CF_WEIGHT, KNOWN_BIAS)


def parameter_groups(model, settings: TrainSettings) -> list[dict]:
    """AdamW groups: LoRA at ``lora_lr``, projectors and free item embeddings at ``projector_lr``
    (both default to ``lr``), the logit scale and the score terms (history and known-items
    offsets, CF weight) each at its own rate without decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lora = [p for n, p in named if "lora_" in n]
    scale = [p for n, p in named if n == LOGIT_SCALE]
    bias = [p for n, p in named if n in (HISTORY_BIAS, CF_WEIGHT, KNOWN_BIAS)]  # learned offsets: one rate
    rest = [p for n, p in named if "lora_" not in n and n not in SCALARS]
    groups = []
    if rest:
        groups.append({"params": rest, "lr": settings.projector_lr or settings.lr})
    if lora:
        groups.append({"params": lora, "lr": settings.lora_lr or settings.lr})
    if scale:
        groups.append({"params": scale, "lr": settings.logit_scale_lr, "weight_decay": 0.0})
    if bias:
        groups.append({"params": bias, "lr": settings.history_bias_lr, "weight_decay": 0.0})
    return groups


def fit(model, epochs: list[list[list[Encoded]]], val: list[list[Encoded]], settings: TrainSettings, pad_token_id: int,
        log_path: Path, checkpoint_dir: Path, resume: bool = False, show_progress: bool = True,
        stop_after_steps: int | None = None) -> dict:
    """The training loop of one stage.

    Args:
        model: A :class:`~llmrec_lite.fusion.FusionModel` whose trainable tensors are marked
            (:meth:`~llmrec_lite.fusion.FusionModel.set_stage`).
        epochs: The batches of each epoch (:func:`~llmrec_lite.batching.epoch_batches`).
        val: Validation batches; their mean loss is logged every ``eval_every`` steps.
        settings: The stage's hyper-parameters.
        pad_token_id: The tokenizer's padding id.
        log_path: JSON-lines log, one record per optimizer step.
        checkpoint_dir: Where the resumable state is kept every ``checkpoint_every`` steps.
        resume: Continue from ``checkpoint_dir`` (it must exist).
        stop_after_steps: Stop right after saving the checkpoint at this step, as if the
            process had been killed (for tests of resumption).

    Returns:
        Counters of the run (``steps``, ``samples``, ``seconds``, ``tokens``, ``history`` of
        losses, ``interrupted``) and the trained model, unwrapped (``model``).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from transformers import get_cosine_schedule_with_warmup

    AcceleratorState._reset_state(True)  # stages in one process may differ in precision
    # The model trains where its backbone was loaded: the cpu profile's backbone stays on the CPU on a
    # machine with a GPU too (Accelerate would move it to the GPU, in a precision chosen for the CPU).
    on_gpu = next(model.parameters()).device.type == "cuda"
    accelerator = Accelerator(mixed_precision="bf16" if settings.bf16 else "no",
                              gradient_accumulation_steps=settings.grad_accum, cpu=not on_gpu)
    with_response = settings.output == "text-id"
    # several processes (accelerate launch): each optimizer step takes one batch per process
    world, rank = accelerator.num_processes, accelerator.process_index
    epochs = [shard(batches, world, rank) for batches in epochs]
    total_steps = math.ceil(len(epochs[0]) / settings.grad_accum) * settings.epochs
    main = accelerator.is_main_process

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameter_groups(model, settings), lr=settings.lr, weight_decay=settings.weight_decay)
    # the schedule counts optimizer steps; it is stepped by hand (Accelerate's wrapper would step
    # it once per process)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(settings.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    step, batch_index, seconds, tokens, samples, targets, history = 0, 0, 0.0, 0, 0, 0, []
    if resume:
        state = load_checkpoint(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler)
        step, batch_index, seconds, tokens, samples = (state[k] for k in ("step", "batch_index", "seconds", "tokens", "samples"))
        history = state["history"]
        targets = state.get("targets", samples)  # checkpoints written before targets were counted
        # a kill after the checkpoint leaves log lines for steps that will be trained again
        kept = [r for r in read_log_file(log_path) if r.get("step", 0) <= step] if Path(log_path).exists() else []
        Path(log_path).write_text("".join(json.dumps(r) + "\n" for r in kept))
    else:
        seed_everything(settings.seed * 7 + settings.stage)

    flat = [(e, b) for e in range(settings.epochs) for b in range(len(epochs[e]))]
    bar = tqdm(total=total_steps, initial=step, desc=f"stage {settings.stage} ({settings.variant})",
               disable=not show_progress or not accelerator.is_main_process)
    model.train()
    # frozen weights cast to bfloat16 once instead of at every product: the same numbers, faster
    inner = accelerator.unwrap_model(model)
    fast = inner.compute_weights(settings.bf16) if hasattr(inner, "compute_weights") else nullcontext()
    with fast, open(log_path if main else os.devnull, "a" if resume else "w") as log:
        while batch_index < len(flat):
            epoch, b = flat[batch_index]
            encoded = epochs[epoch][b]
            batch = collate(encoded, pad_token_id, with_response=with_response).to(accelerator.device)
            start = time.perf_counter()
            with accelerator.accumulate(model):
                loss = model(batch)["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            elapsed = time.perf_counter() - start
            batch_index += 1
            seconds += elapsed
            n_tokens = int(batch.attention_mask.sum())
            tokens += n_tokens
            samples += len(batch)
            targets += count_targets(model, batch)
            if not accelerator.sync_gradients:
                continue
            step += 1
            loss_value = float(loss.detach())
            record = {"step": step, "epoch": epoch, "task": encoded[0].template.split("-")[0], "loss": loss_value,
                      "lr": scheduler.get_last_lr()[0], "samples": samples, "seconds": seconds,
                      "tokens_per_second": n_tokens / max(elapsed, 1e-9)}
            history.append({"step": step, "loss": loss_value, "task": record["task"]})
            if step % settings.eval_every == 0 or step == total_steps:
                record.update(validation_record(model, val, pad_token_id, with_response, accelerator))
                model.train()
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if step % settings.checkpoint_every == 0 and step < total_steps:
                if main:
                    save_checkpoint(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                    {"step": step, "batch_index": batch_index, "seconds": seconds, "tokens": tokens,
                                     "samples": samples, "targets": targets, "history": history})
                accelerator.wait_for_everyone()
                if stop_after_steps is not None and step >= stop_after_steps:
                    bar.close()
                    return {"interrupted": True, "steps": step}
    bar.close()
    accelerator.wait_for_everyone()
    return {"interrupted": False, "steps": step, "samples": samples * world, "targets": targets * world,
            "seconds": seconds, "tokens": tokens * world,
            "history": history, "model": accelerator.unwrap_model(model), "main_process": main}


def count_targets(model, batch) -> int:
    """Prediction targets a batch trains on: one answer per prompt, plus (item-token side with
    dense supervision) one next item per history position."""
    model = getattr(model, "module", model)  # unwrapped under several processes
    dense = getattr(model, "dense_weight", 0.0) > 0 and getattr(model, "output", None) == "item-token"
    return len(batch) + (len(batch.next_items) if dense and batch.next_items is not None else 0)


def process_state():
    """Accelerate's view of the processes (one, or several under ``accelerate launch`` / ``torchrun``).

    Without CUDA the processes talk over gloo: ``cpu=True`` is what makes Accelerate see them.
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def shard(batches: list, world: int, rank: int) -> list:
    """This process's batches when ``world`` processes train together: every ``world``-th one,
    the last round filled up from the start so that every process takes the same number of steps."""
    if world == 1:
        return batches
    per_rank = math.ceil(len(batches) / world)
    return [batches[(i * world + rank) % len(batches)] for i in range(per_rank)]


def summarize(counters: dict, log_path: Path) -> dict:
    """The loss and throughput figures of a finished stage (its ``result.json``, less identity)."""
    history = counters["history"]
    last = history[-1]["loss"] if history else None
    tail = [h["loss"] for h in history[-max(1, len(history) // 10):]]
    val_losses = [r["val_loss"] for r in read_log_file(log_path) if "val_loss" in r]
    return {
        "steps": counters["steps"],
        "samples": counters["samples"],
        "final_loss": last,
        "final_loss_mean_last_10pct": float(np.mean(tail)) if tail else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
        "seconds": counters["seconds"],
        "tokens_per_second": counters["tokens"] / max(counters["seconds"], 1e-9),
        "prompts_per_second": counters["samples"] / max(counters["seconds"], 1e-9),
        "targets": counters.get("targets", counters["samples"]),
        "targets_per_second": counters.get("targets", counters["samples"]) / max(counters["seconds"], 1e-9),
        "trainable_parameters": counters["model"].trainable_parameters(),
    }


@torch.no_grad()
def validation_record(model, batches, pad: int, with_response: bool, accelerator) -> dict:
    """Validation figures logged during training.

    ``val_loss``: mean loss of the answer (the target's cross-entropy; dense supervision,
    when on, is left out so that settings with and without it compare). Item-token models
    add ``val_hr@10``: HR@10 of the validation targets on the sequential batches, unmasked,
    from the same scores.
    """
    model.eval()
    total, count, hits, ranked = 0.0, 0, 0, 0
    for encoded in batches:
        batch = collate(encoded, pad, with_response=with_response).to(accelerator.device)
        with accelerator.autocast():
            out = model(batch)
        loss = out.get("answer_loss", out["loss"])
        total += float(loss) * len(batch)
        count += len(batch)
        if "scores" in out and encoded[0].template.startswith("sequential"):
            hits += int((target_ranks(out["scores"], batch.targets.cpu()) < 10).sum())
            ranked += len(batch)
    record = {"val_loss": total / max(count, 1)}
    if ranked:
        record["val_hr@10"] = hits / ranked
    return record


def read_log_file(path: Path) -> list[dict]:
    """A JSON-lines training log (a line cut short by a kill is skipped)."""
    records = []
    with open(path) as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- what chapter 5 glues


def stage_facts(profile, settings: dict, num_train: int) -> dict:
    """Chapter 5.1: the training prefixes (``prefix_total``), each stage's planned optimizer
    steps (``planned_steps``, keyed ``"<output> <stage>"``) and the profile's LoRA placement.

    Args:
        settings: ``{(output, stage): TrainSettings}``.
    """
    return {"prefix_total": num_train,
            "planned_steps": {f"{o} {s}": st.total_steps(num_train) for (o, s), st in settings.items()},
            "lora_r": profile.lora_r, "lora_alpha": profile.lora_alpha, "lora_dropout": profile.lora_dropout,
            "lora_targets": ", ".join(profile.lora_targets)}


def trained_facts(results: dict) -> dict:
    """Chapter 5.2: the compute minutes of every trained stage together (``train_minutes``) and
    the steps each took (``trained_steps``), from ``{(output, stage): result of Run.ensure}``."""
    return {"train_minutes": sum(r["seconds"] / 60 for r in results.values()),
            "trained_steps": {f"{o} {s}": r["steps"] for (o, s), r in results.items()}}


def validation_loss_facts(logs: dict, num_items: int) -> dict:
    """Chapter 5.3: each output side's first and last validation loss over both stages
    (``item_token_val_first``, ``text_id_val_last``, ...) and ``log_items``, the loss of a
    uniform guess over the catalogue.

    Args:
        logs: ``{output: stage 1's log records followed by stage 2's}`` (``Run.read_log``).
    """
    facts = {}
    for output, log in logs.items():
        values = [r["val_loss"] for r in log if "val_loss" in r]
        key = output.replace("-", "_")
        facts[f"{key}_val_first"], facts[f"{key}_val_last"] = values[0], values[-1]
    return {**facts, "log_items": math.log(num_items)}


def far_target_facts(ranked: list, trains: list[bool], far: list[dict]) -> dict:
    """Chapter 5.6: the choice on the far target, read from the distance record.

    Args:
        ranked: The candidates best first, ``(name, mean far HR@10, ...)``
            (``lab.records.distance_ranking``); empty where the profile has no record.
        trains: For each of ``ranked``, whether the profile trains that candidate.
        far: The distance records read (each candidate's ``far_hr@10_ci95``).

    Returns:
        ``far_chosen`` (the best mean), ``far_profile_matches`` (whether the profile trains
        it, as a verb), ``far_spread`` (best mean minus worst) and ``far_halfwidth`` (a
        candidate's mean 95 % half-width on one dataset), both as text; words where there is
        no record.
    """
    if not ranked:
        return {"far_chosen": "none (no record for this profile)", "far_profile_matches": "cannot be compared with",
                "far_spread": "no record", "far_halfwidth": "no record"}
    half = [(c["far_hr@10_ci95"][1] - c["far_hr@10_ci95"][0]) / 2 for r in far for c in r["candidates"]]
    return {"far_chosen": ranked[0][0], "far_profile_matches": "trains" if trains[0] else "does not train",
            "far_spread": f"{ranked[0][1] - ranked[-1][1]:.4f}", "far_halfwidth": f"{sum(half) / len(half):.4f}"}
