"""Evaluation of trained models: leave-one-out ranking over the whole catalogue.

Item-token models score every item in one forward pass per batch of users. Metrics
follow :mod:`llmrec_lite.metrics` (HR@K, NDCG@K with one relevant item), unmasked
(OpenP5's rule) and with each user's history masked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from llmrec_lite.metrics import DEFAULT_KS, metrics_from_ranks, target_ranks, top_k
from llmrec_lite.prompts import collate, encode, render
from llmrec_lite.templates import get_template


@dataclass
class Evaluation:
    """Metrics plus what is needed to check them: per-user top lists and gold items."""

    metrics: dict
    top_items: np.ndarray
    gold: np.ndarray
    users: np.ndarray

    def rankings(self, data) -> list[dict]:
        """One record per user: ranked top-K item ids (as in prompts) and the gold id."""
        return [{"user": data.user_id(u), "gold": data.item_id(g), "top": [data.item_id(i) for i in row]}
                for u, g, row in zip(self.users.tolist(), self.gold.tolist(), self.top_items.tolist())]


def evaluation_users(split, num_users: int | None, seed: int = 0) -> np.ndarray:
    """All users, or a seeded subset (sorted) of ``num_users``."""
    if num_users is None or num_users >= split.num_users:
        return np.arange(split.num_users)
    return np.sort(np.random.default_rng(seed).choice(split.num_users, size=num_users, replace=False))


@torch.no_grad()
def evaluate_item_token(model, split, task: str = "sequential", template: str | int = "seen", stage: str = "test",
                        users=None, batch_size: int = 32, ks=DEFAULT_KS, max_history: int = 10, top: int = 10,
                        bf16: bool = False, show_progress: bool = True) -> Evaluation:
    """Ranks the catalogue for every user with an item-token model.

    Args:
        model: A :class:`~llmrec_lite.fusion.FusionModel` with ``output="item-token"``.
        split: The leave-one-out split.
        task, template: Which prompt (``"seen"`` is training template 0, ``"unseen"`` the held-out one).
        stage: ``"test"`` or ``"valid"`` targets (model selection uses ``"valid"``).
        users: User indices (default: all).
    """
    tok = model.backbone.tokenizer
    users = np.arange(split.num_users) if users is None else np.asarray(users)
    tmpl = get_template(task, template)
    targets = split.targets(stage)
    device = model.user_factors.device
    ranks, masked, tops = [], [], []
    start = time.perf_counter()
    model.eval()
    for b in tqdm(range(0, len(users), batch_size), desc=f"evaluate {task}/{tmpl.name}", disable=not show_progress):
        chunk = users[b : b + batch_size]
        encoded = [encode(render(tmpl, split.data, int(u), split.history(int(u), stage), None, model.use_embeddings,
                                 max_history), tok, add_bos=model.backbone.add_bos) for u in chunk]
        batch = collate(encoded, tok.pad_token_id, with_response=False).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            scores = model.score_items(batch).float().cpu()
        gold = targets[chunk]
        histories = [split.history(int(u), stage) for u in chunk]
        ranks.append(target_ranks(scores, gold))
        masked.append(target_ranks(scores, gold, exclude=histories))
        tops.append(top_k(scores, top))
    seconds = time.perf_counter() - start
    metrics = metrics_from_ranks(np.concatenate(ranks), ks)
    metrics.update(metrics_from_ranks(np.concatenate(masked), ks, "_masked"))
    metrics.update({"users": int(len(users)), "seconds": seconds, "users_per_second": len(users) / max(seconds, 1e-9),
                    "task": task, "template": tmpl.name, "stage": stage})
    return Evaluation(metrics, np.concatenate(tops), targets[users], users)
