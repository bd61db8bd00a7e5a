"""Two-stage training with Hugging Face Accelerate.

Stage 1 trains the projectors with the backbone frozen (LoRA adapters attached but
frozen, so they are the identity). Stage 2 starts from stage 1's projectors and trains
them together with the LoRA adapters. Batches alternate between the sequential and the
direct task. The same loop trains both output sides (``text-id``: cross-entropy on the
response tokens; ``item-token``: cross-entropy over the catalogue) and the text-only
baselines (``use_embeddings=False``).

The loop runs unchanged on CPU, one GPU or several (``accelerate launch``). A run
directory holds everything needed to resume or evaluate::

    OUT/wals/                         factors and their fingerprint (fitted once, reused)
    OUT/<variant>/stage<k>/config.json  the full run configuration
    OUT/<variant>/stage<k>/log.jsonl    one JSON object per step / validation
    OUT/<variant>/stage<k>/checkpoint/  latest resumable state (trainable tensors,
                                        optimizer, scheduler, RNG, position in the data)
    OUT/<variant>/stage<k>/final/       projectors/, adapter/, extra.safetensors, result.json

``<variant>`` is the output side, with ``-text`` appended for the text-only baseline.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from llmrec_lite.fileio import atomic_path, write_json
from llmrec_lite.projectors import CheckpointMismatchError, Projectors, check_matches
from llmrec_lite.prompts import Encoded, collate, encode, render, sample_training_prompts
from llmrec_lite.templates import TASKS, get_template

STAGES = (1, 2)


@dataclass
class TrainSettings:
    """Hyper-parameters of one training stage (written into the run's config.json).

    Attributes:
        stage: 1 (projectors only) or 2 (projectors + LoRA).
        output: ``"item-token"`` or ``"text-id"``.
        use_embeddings: ``False`` trains the text-only baseline.
        samples_per_task: Training prompts drawn per task per epoch (``None``: all prefixes
            times ``sample_ratio``).
        sample_ratio: Share of all training prefixes used when ``samples_per_task`` is ``None``
            (OpenP5 samples 20 %).
        epochs, batch_size, grad_accum, lr, weight_decay, warmup_ratio, max_grad_norm: the
            optimisation (AdamW, linear warm-up, cosine decay).
        bf16: bfloat16 autocast (CPU) or mixed precision (GPU).
        val_users: Size of the fixed validation subset (validation targets, template 0).
        eval_every, checkpoint_every: In optimizer steps.
        bucket_size: Prompts sorted by length within windows of this many batches, so a
            batch wastes little compute on padding.
        max_history: History items per sequential prompt.
        tasks: Tasks whose batches alternate (both by default).
        logit_scale_lr: Learning rate of the item-token logit scale (its own parameter group:
            Adam moves a parameter by about one learning rate per step, and the log-scale
            needs to travel a few units, not a few thousandths).
        seed: Seed of sampling, batching, dropout and initialisation.
    """

    stage: int = 1
    output: str = "item-token"
    use_embeddings: bool = True
    samples_per_task: int | None = 1000
    sample_ratio: float = 0.2
    epochs: int = 1
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    bf16: bool = False
    val_users: int = 200
    eval_every: int = 50
    checkpoint_every: int = 50
    bucket_size: int = 20
    max_history: int = 10
    tasks: tuple[str, ...] = TASKS
    logit_scale_lr: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"Unknown stage {self.stage!r}; choose 1 (projectors) or 2 (projectors + LoRA).")
        if self.output not in ("item-token", "text-id"):
            raise ValueError(f"Unknown output side {self.output!r}; choose item-token or text-id.")
        self.tasks = tuple(self.tasks)
        if not self.tasks or set(self.tasks) - set(TASKS):
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks!r}.")

    @property
    def variant(self) -> str:
        return self.output + ("" if self.use_embeddings else "-text")


def stage_dir(out: str | Path, variant: str, stage: int) -> Path:
    return Path(out) / variant / f"stage{stage}"


# --------------------------------------------------------------------------- data


def build_batches(encoded: list[Encoded], batch_size: int, bucket_size: int, rng: np.random.Generator) -> list[list[Encoded]]:
    """Shuffles, sorts by length inside windows of ``bucket_size`` batches, then shuffles batch order."""
    order = rng.permutation(len(encoded))
    window = batch_size * bucket_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(encoded[i].input_ids))
        batches += [[encoded[i] for i in chunk[k : k + batch_size]] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def interleave(per_task: list[list]) -> list:
    """``[s0, d0, s1, d1, ...]``: batches alternate between tasks (leftovers at the end)."""
    out = []
    for k in range(max(len(b) for b in per_task)):
        out += [b[k] for b in per_task if k < len(b)]
    return out


def epoch_batches(split, settings: TrainSettings, tokenizer, add_bos: bool, epoch: int) -> list[list[Encoded]]:
    """The batches of one epoch: deterministic in (seed, stage, epoch)."""
    per_task = []
    for t, task in enumerate(settings.tasks):
        seed = settings.seed * 1000 + settings.stage * 100 + epoch * 10 + t
        n = settings.samples_per_task
        if n is None:
            n = max(1, int(settings.sample_ratio * split.num_train_samples))
        prompts = sample_training_prompts(split, task, n, seed=seed, with_embeddings=settings.use_embeddings,
                                          max_history=settings.max_history)
        encoded = [encode(p, tokenizer, add_bos=add_bos) for p in prompts]
        per_task.append(build_batches(encoded, settings.batch_size, settings.bucket_size, np.random.default_rng(seed)))
    return interleave(per_task)


def validation_batches(split, settings: TrainSettings, tokenizer, add_bos: bool) -> list[list[Encoded]]:
    """A fixed validation subset: validation targets, template 0 of each task."""
    rng = np.random.default_rng(12345)
    users = sorted(rng.choice(split.num_users, size=min(settings.val_users, split.num_users), replace=False).tolist())
    batches = []
    for task in settings.tasks:
        template = get_template(task, 0)
        encoded = [encode(render(template, split.data, u, split.history(u, "valid"), int(split.valid_targets[u]),
                                 settings.use_embeddings, settings.max_history), tokenizer, add_bos=add_bos) for u in users]
        batches += [encoded[k : k + settings.batch_size] for k in range(0, len(encoded), settings.batch_size)]
    return batches


# --------------------------------------------------------------------------- model state


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Every tensor that training changes (projectors, LoRA, free item embeddings, logit scale)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def reset_lora(model, seed: int) -> None:
    """Re-initialises every LoRA adapter (B = 0, so the backbone is unchanged).

    Several models in one process share the backbone object, so each run starts by
    putting the adapters back to their initial state instead of inheriting another run's.
    """
    torch.manual_seed(seed)
    for module in model.model.modules():
        if hasattr(module, "reset_lora_parameters") and hasattr(module, "lora_A"):
            for name in list(module.lora_A.keys()):
                module.reset_lora_parameters(name, True)


def set_trainable(model, stage: int) -> None:
    """Stage 1: projectors (and the item-token extras) only. Stage 2: those plus LoRA."""
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad_(stage == 2)
        elif name.startswith("projectors.") or name.startswith("free_item_embeddings."):
            p.requires_grad_(True)
        elif name == "item_logit_log_scale":
            p.requires_grad_(model.output == "item-token")
        else:
            p.requires_grad_(False)


def save_final(model, folder: Path, result: dict) -> None:
    """Writes the trained parts: projectors/, adapter/ (LoRA), extra.safetensors, result.json."""
    from safetensors.torch import save_file

    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if model.projectors is not None:
        model.projectors.save_pretrained(tmp / "projectors")
    lora_trained = any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    if lora_trained and hasattr(model.model, "peft_config"):
        model.model.save_pretrained(tmp / "adapter")
    extra = {"item_logit_log_scale": model.item_logit_log_scale.detach().cpu().reshape(1)}
    if model.free_item_embeddings is not None:
        extra["free_item_embeddings"] = model.free_item_embeddings.weight.detach().cpu().contiguous()
    save_file(extra, str(tmp / "extra.safetensors"))
    write_json(tmp / "result.json", result)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_final_into(model, folder: Path, load_adapter: bool = True) -> None:
    """Loads a ``final/`` folder's tensors into a freshly built model of the same kind."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if model.projectors is not None:
        loaded = Projectors.from_pretrained(folder / "projectors", expect={
            "hidden_size": model.projectors.config.hidden_size, "cf_dim": model.projectors.config.cf_dim})
        model.projectors.load_state_dict(loaded.state_dict())
    extra = load_file(str(folder / "extra.safetensors"))
    with torch.no_grad():
        model.item_logit_log_scale.copy_(extra["item_logit_log_scale"].reshape(()))
        if model.free_item_embeddings is not None and "free_item_embeddings" in extra:
            model.free_item_embeddings.weight.copy_(extra["free_item_embeddings"])
    if load_adapter and (folder / "adapter").exists():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file as load

        weights = folder / "adapter" / "adapter_model.safetensors"
        set_peft_model_state_dict(model.model, load(str(weights)))


# --------------------------------------------------------------------------- the run


@dataclass
class RunContext:
    """What a stage needs besides its settings (built by :func:`prepare_run`)."""

    profile: object
    data: object
    split: object
    wals: object
    backbone: object
    config: dict = field(default_factory=dict)


def ensure_wals(out: Path, profile, split, show_progress: bool = True):
    """Fits WALS on the training interactions once per run directory; later stages reuse it."""
    from llmrec_lite.wals import WALS

    folder = Path(out) / "wals"
    expected = asdict(profile.wals_config())
    if (folder / "wals.json").exists():
        model, info = WALS.load(folder)
        check_matches(info["config"], expected, f"WALS factors in {folder}")
        check_matches(info, {"dataset": split.data.name, "indexing": split.data.indexing}, f"WALS factors in {folder}")
        return model
    model = WALS(profile.wals_config()).fit(split.train_matrix(), show_progress=show_progress)
    model.save(folder, {"dataset": split.data.name, "indexing": split.data.indexing, "indexing_seed": split.data.seed})
    return model


def run_config(ctx: RunContext, settings: TrainSettings) -> dict:
    """Everything that determines a stage's result: compared on resume and at loading."""
    return {
        "dataset": ctx.data.name,
        "indexing": ctx.data.indexing,
        "profile": ctx.profile.name,
        "backbone": {"kind": ctx.backbone.settings.kind, "source": ctx.backbone.source,
                     "hidden_size": ctx.backbone.hidden_size, **{k: v for k, v in asdict(ctx.backbone.settings).items()
                                                                 if k.startswith("lora") or k == "load_in_4bit"}},
        "projector": ctx.profile.projector_config(),
        "wals_fingerprint": ctx.wals.fingerprint(),
        "wals": asdict(ctx.wals.config),
        "train": asdict(settings),
    }


def build_model(ctx: RunContext, settings: TrainSettings, out: Path):
    """A fresh :class:`FusionModel`; stage 2 starts from stage 1's trained tensors."""
    from llmrec_lite.fusion import FusionModel

    torch.manual_seed(settings.seed + settings.stage)
    model = FusionModel(ctx.backbone, ctx.wals.user_factors, ctx.wals.item_factors, output=settings.output,
                        use_embeddings=settings.use_embeddings, projector_config=ctx.profile.projector_config())
    reset_lora(model, settings.seed)
    if settings.stage == 2:
        previous = stage_dir(out, settings.variant, 1) / "final"
        if previous.exists():
            check_matches(json.loads((stage_dir(out, settings.variant, 1) / "config.json").read_text()),
                          {"wals_fingerprint": ctx.wals.fingerprint(), "dataset": ctx.data.name},
                          f"stage-1 results in {previous}")
            load_final_into(model, previous, load_adapter=False)
        elif settings.use_embeddings:
            raise FileNotFoundError(
                f"Stage 2 starts from stage 1's projectors, but {previous} does not exist: "
                f"run `train --stage 1` with the same --out first."
            )
    set_trainable(model, settings.stage)
    return model


def train_stage(ctx: RunContext, settings: TrainSettings, out: str | Path, resume: bool = False,
                show_progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Trains one stage; returns (and saves) its result summary.

    Args:
        ctx: Data, factors, backbone and profile.
        settings: This stage's hyper-parameters.
        out: Run directory.
        resume: Continue from ``checkpoint/`` when present (else start fresh).
        stop_after_steps: Stop right after saving the checkpoint at this step, as if the
            process had been killed (for tests of resumption).
    """
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    out = Path(out)
    folder = stage_dir(out, settings.variant, settings.stage)
    config = run_config(ctx, settings)
    checkpoint = folder / "checkpoint"
    state = None
    if resume and (checkpoint / "state.json").exists():
        state = json.loads((checkpoint / "state.json").read_text())
        saved = json.loads((folder / "config.json").read_text())
        if saved != json.loads(json.dumps(config)):
            changed = sorted(k for k in config if json.loads(json.dumps(config[k])) != saved.get(k))
            raise CheckpointMismatchError(
                f"Cannot resume {folder}: it was started with other settings ({', '.join(changed)} differ). "
                "Use the same command as the interrupted run, or another --out."
            )
    elif folder.exists():
        shutil.rmtree(folder)  # a fresh start never mixes with an older run's files
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config)

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # stages in one process may differ in precision
    accelerator = Accelerator(mixed_precision="bf16" if settings.bf16 else "no",
                              gradient_accumulation_steps=settings.grad_accum, cpu=not torch.cuda.is_available())
    model = build_model(ctx, settings, out)
    tokenizer, add_bos = ctx.backbone.tokenizer, ctx.backbone.add_bos
    with_response = settings.output == "text-id"
    pad = tokenizer.pad_token_id

    epochs = [epoch_batches(ctx.split, settings, tokenizer, add_bos, e) for e in range(settings.epochs)]
    steps_per_epoch = math.ceil(len(epochs[0]) / settings.grad_accum)
    total_steps = steps_per_epoch * settings.epochs
    val = validation_batches(ctx.split, settings, tokenizer, add_bos)

    params = [p for p in model.parameters() if p.requires_grad]
    scale = [p for n, p in model.named_parameters() if p.requires_grad and n == "item_logit_log_scale"]
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and n != "item_logit_log_scale"]}]
    if scale:
        groups.append({"params": scale, "lr": settings.logit_scale_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(settings.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step, batch_index, seconds, tokens, samples, history = 0, 0, 0.0, 0, 0, []
    if state is not None:
        from safetensors.torch import load_file

        unwrapped = accelerator.unwrap_model(model)
        missing = unwrapped.load_state_dict(load_file(str(checkpoint / "trainable.safetensors")), strict=False)
        if missing.unexpected_keys:
            raise CheckpointMismatchError(f"{checkpoint} holds tensors this model does not have: {missing.unexpected_keys[:3]}")
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=False))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=False))
        step, batch_index, seconds, tokens, samples = (state[k] for k in ("step", "batch_index", "seconds", "tokens", "samples"))
        history = state["history"]
        _set_rng(torch.load(checkpoint / "rng.pt", weights_only=False))
    else:
        _seed_everything(settings.seed * 7 + settings.stage)

    log_mode = "a" if state is not None else "w"
    flat = [(e, b) for e in range(settings.epochs) for b in range(len(epochs[e]))]
    bar = tqdm(total=total_steps, initial=step, desc=f"stage {settings.stage} ({settings.variant})",
               disable=not show_progress or not accelerator.is_main_process)
    model.train()
    with open(folder / "log.jsonl", log_mode) as log:
        while batch_index < len(flat):
            epoch, b = flat[batch_index]
            encoded = epochs[epoch][b]
            batch = collate(encoded, pad, with_response=with_response).to(accelerator.device)
            start = time.perf_counter()
            with accelerator.accumulate(model):
                loss = model(batch)["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            elapsed = time.perf_counter() - start
            batch_index += 1
            seconds += elapsed
            n_tokens = int(batch.attention_mask.sum())
            tokens += n_tokens
            samples += len(batch)
            if not accelerator.sync_gradients:
                continue
            step += 1
            loss_value = float(loss.detach())
            record = {"step": step, "epoch": epoch, "task": encoded[0].template.split("-")[0], "loss": loss_value,
                      "lr": scheduler.get_last_lr()[0], "samples": samples, "seconds": seconds,
                      "tokens_per_second": n_tokens / max(elapsed, 1e-9)}
            history.append({"step": step, "loss": loss_value, "task": record["task"]})
            if step % settings.eval_every == 0 or step == total_steps:
                record["val_loss"] = validation_loss(model, val, pad, with_response, accelerator)
                model.train()
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if step % settings.checkpoint_every == 0 and step < total_steps:
                _save_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler,
                                 {"step": step, "batch_index": batch_index, "seconds": seconds, "tokens": tokens,
                                  "samples": samples, "history": history})
                if stop_after_steps is not None and step >= stop_after_steps:
                    bar.close()
                    return {"stage": settings.stage, "interrupted": True, "steps": step}
    bar.close()

    last = history[-1]["loss"] if history else float("nan")
    tail = [h["loss"] for h in history[-max(1, len(history) // 10):]]
    val_losses = [json.loads(line)["val_loss"] for line in open(folder / "log.jsonl") if "val_loss" in line]
    result = {
        "stage": settings.stage,
        "variant": settings.variant,
        "output": settings.output,
        "use_embeddings": settings.use_embeddings,
        "dataset": ctx.data.name,
        "steps": step,
        "samples": samples,
        "final_loss": last,
        "final_loss_mean_last_10pct": float(np.mean(tail)) if tail else float("nan"),
        "final_val_loss": val_losses[-1] if val_losses else None,
        "seconds": seconds,
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "trainable_parameters": accelerator.unwrap_model(model).trainable_parameters(),
        "wals_fingerprint": ctx.wals.fingerprint(),
        "out": str(folder),
    }
    save_final(accelerator.unwrap_model(model), folder / "final", result)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return result


@torch.no_grad()
@torch.no_grad()
def validation_loss(model, batches, pad: int, with_response: bool, accelerator) -> float:
    model.eval()
    total, count = 0.0, 0
    for encoded in batches:
        batch = collate(encoded, pad, with_response=with_response).to(accelerator.device)
        with accelerator.autocast():
            loss = model(batch)["loss"]
        total += float(loss) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(folder: Path, model, optimizer, scheduler, state: dict) -> None:
    """Writes the resumable state into a temporary folder and swaps it in (never half-written)."""
    from safetensors.torch import save_file

    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    write_json(tmp / "state.json", state)
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- entry points


def ensure_stage(ctx: RunContext, settings: TrainSettings, out: str | Path, show_progress: bool = True) -> dict:
    """The result of a finished stage with exactly these settings, training it if needed.

    Chapters call this so that a later chapter reuses what an earlier one trained in the
    same build (the book's ``make`` target starts from an empty run directory).
    """
    folder = stage_dir(out, settings.variant, settings.stage)
    result = folder / "final" / "result.json"
    if result.exists() and json.loads((folder / "config.json").read_text()) == json.loads(json.dumps(run_config(ctx, settings))):
        return json.loads(result.read_text())
    return train_stage(ctx, settings, out, show_progress=show_progress)


def read_log(out: str | Path, variant: str, stage: int) -> list[dict]:
    """The JSON-lines training log of a stage."""
    with open(stage_dir(out, variant, stage) / "log.jsonl") as fh:
        return [json.loads(line) for line in fh]


def prepare_run(profile, dataset: str, out: str | Path, data_dir=None, show_progress: bool = True) -> RunContext:
    """Loads data, fits (or reloads) WALS in ``out/wals`` and loads the profile's backbone."""
    from llmrec_lite.backbone import load_backbone
    from llmrec_lite.data import load_dataset
    from llmrec_lite.device import resolve_device
    from llmrec_lite.split import LeaveOneOutSplit

    data = load_dataset(dataset, indexing=profile.indexing, seed=profile.seed, data_dir=data_dir)
    split = LeaveOneOutSplit.from_data(data)
    wals = ensure_wals(Path(out), profile, split, show_progress)
    backbone = load_backbone(profile.backbone_settings(), device=resolve_device(profile.device))
    return RunContext(profile, data, split, wals, backbone)


def load_trained(ctx: RunContext, out: str | Path, variant: str, stage: int):
    """A trained model for evaluation, refusing results that do not match ``ctx``.

    Raises:
        FileNotFoundError: the stage has not finished in ``out``.
        CheckpointMismatchError: the saved run used other WALS factors, data or backbone.
    """
    folder = stage_dir(out, variant, stage)
    if not (folder / "final" / "result.json").exists():
        raise FileNotFoundError(f"No finished stage {stage} of {variant} in {out}: train it first.")
    saved = json.loads((folder / "config.json").read_text())
    check_matches(saved, {"wals_fingerprint": ctx.wals.fingerprint(), "dataset": ctx.data.name}, f"results in {folder}")
    check_matches(saved["backbone"], {"kind": ctx.backbone.settings.kind, "hidden_size": ctx.backbone.hidden_size},
                  f"results in {folder} (backbone)")
    settings = TrainSettings(**saved["train"])
    from llmrec_lite.fusion import FusionModel

    model = FusionModel(ctx.backbone, ctx.wals.user_factors, ctx.wals.item_factors, output=settings.output,
                        use_embeddings=settings.use_embeddings, projector_config=saved["projector"], calibrate=False)
    reset_lora(model, settings.seed)  # stage 1 never trained LoRA: identity adapters
    load_final_into(model, folder / "final", load_adapter=stage == 2)
    model.eval()
    return model, settings
