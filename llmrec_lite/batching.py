"""Training and validation batches: which prompts a stage sees, in which order, and how many
optimizer steps that makes.

Everything is deterministic in (seed, stage, epoch), so a resumed run rebuilds exactly the
batches the interrupted one had, and :func:`training_steps` can say how long a stage is
before it starts (the chapters' budget tables and the GPU cost benchmark use it).
"""

from __future__ import annotations

import math

import numpy as np

from llmrec_lite.prompts import Encoded, PromptEncoder
from llmrec_lite.templates import get_template

VALIDATION_SEED = 12345


def prompts_per_task(settings, num_train_samples: int) -> int:
    """Training prompts per task and epoch: the settings' count, or ``sample_ratio`` of all
    training prefixes when the count is ``None`` (OpenP5 samples 20 %)."""
    if settings.samples_per_task is not None:
        return int(min(settings.samples_per_task, num_train_samples))
    return max(1, int(settings.sample_ratio * num_train_samples))


def training_steps(settings, num_train_samples: int, num_processes: int = 1) -> int:
    """Optimizer steps of a stage: tasks x batches per task, per epoch, over gradient accumulation
    (and over processes: with ``accelerate launch`` each step takes one batch per process).

    Args:
        settings: The stage's :class:`~llmrec_lite.train.TrainSettings`.
        num_train_samples: Training prefixes of the split (``split.num_train_samples``).
        num_processes: Processes training together.
    """
    per_task = math.ceil(prompts_per_task(settings, num_train_samples) / settings.batch_size)
    per_process = math.ceil(len(settings.tasks) * per_task / num_processes)
    return math.ceil(per_process / settings.grad_accum) * settings.epochs


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


def epoch_batches(encoder: PromptEncoder, settings, epoch: int) -> list[list[Encoded]]:
    """The batches of one epoch: deterministic in (seed, stage, epoch)."""
    per_task = []
    for t, task in enumerate(settings.tasks):
        seed = settings.seed * 1000 + settings.stage * 100 + epoch * 10 + t
        n = settings.samples_per_task
        if n is None:
            n = prompts_per_task(settings, encoder.split.num_train_samples)
        encoded = encoder.training_prompts(task, n, seed=seed)
        per_task.append(build_batches(encoded, settings.batch_size, settings.bucket_size, np.random.default_rng(seed)))
    return interleave(per_task)


def validation_batches(encoder: PromptEncoder, settings) -> list[list[Encoded]]:
    """A fixed validation subset: validation targets, template 0 of each task."""
    split = encoder.split
    rng = np.random.default_rng(VALIDATION_SEED)
    users = sorted(rng.choice(split.num_users, size=min(settings.val_users, split.num_users), replace=False).tolist())
    batches = []
    for task in settings.tasks:
        template = get_template(task, 0)
        encoded = [encoder.for_user(template, u, "valid", with_target=True) for u in users]
        batches += [encoded[k : k + settings.batch_size] for k in range(0, len(encoded), settings.batch_size)]
    return batches
