"""Training and validation batches: which prompts a stage sees, in which order, and how many
optimizer steps that makes.

Everything is deterministic in (seed, stage, epoch), so a resumed run rebuilds exactly the
batches the interrupted one had, and :func:`~llmrec_lite.settings.training_steps` can say how long a stage is
before it starts (the chapters' budget tables and the GPU cost benchmark use it).
"""

from __future__ import annotations

import numpy as np

from llmrec_lite.prompts import Encoded, PromptEncoder
from llmrec_lite.settings import prompts_per_task, training_steps  # noqa: F401  (training_steps: re-exported)
from llmrec_lite.templates import get_template

VALIDATION_SEED = 12345


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
