"""Why a text-id model ranks as it does: budget or defect.

A text-id model that scores near zero on the test table may not have learned enough, or may
be unable to learn. Three measurements tell the two apart without a test target being used to
change anything:

- its own **training prompts** (the last ones its final stage trained on, as they were
  trained): a working model that saw them should answer them better than prompts it never saw;
- the **ids it answers** for test users: how many distinct top-1 ids, and how often the most
  common one; a model that learned only the answers' marginal frequencies names few ids;
- the **gold item's position under exact scoring** (every item's log-likelihood, no beam
  pruning, :func:`~llmrec_lite.generation.exact_item_scores`): far better than a uniform
  guess's ``(items + 1) / 2`` means the model carries signal the 10 beams do not yet reach.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
import time

import numpy as np
from scipy.stats import fisher_exact
import torch

from llmrec_lite.baselines import popularity_scores
from llmrec_lite.batching import build_batches, epoch_batches
from llmrec_lite.generation import ItemTrie, constrained_beam_search, exact_item_scores
from llmrec_lite.metrics import evaluate_scorer
from llmrec_lite.prompts import collate
from llmrec_lite.runs import Trained
from llmrec_lite.templates import get_template
from llmrec_lite.train import fit


def trained_prompts(trained, task: str = "sequential", num: int = 100) -> list:
    """The last ``num`` ``task`` prompts the model's stage trained on, in training order
    (its last epoch's batches, rebuilt from the stage's seeds; responses included)."""
    settings = trained.settings
    batches = epoch_batches(trained.encoder, settings, settings.epochs - 1)
    prompts = [e for batch in batches for e in batch if e.template.split("-")[0] == task]
    return prompts[-num:]


@torch.no_grad()
def training_prompt_hits(trained, prompts: list, num_beams: int = 10, batch_size: int = 16, trie=None) -> np.ndarray:
    """``(len(prompts),)`` 0-based rank of each prompt's own target in its beams (``num_beams``
    where it is not among them), each prompt read exactly as it was trained."""
    model, encoder = trained.model, trained.encoder
    trie = trie if trie is not None else ItemTrie.from_catalogue(encoder.data, model.backbone.tokenizer)
    device = model.user_factors.device
    ranks = []
    model.eval()
    with model.compute_weights(False, merge_lora=True):
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            batch = collate(chunk, encoder.tokenizer.pad_token_id, with_response=False).to(device)
            items, _ = constrained_beam_search(model, batch, trie, num_beams=num_beams)
            for row, e in zip(items.tolist(), chunk):
                ranks.append(row.index(e.target) if e.target in row else num_beams)
    return np.asarray(ranks)


@torch.no_grad()
def gold_positions(trained, users, targets: str = "test", template: str = "seen", task: str = "sequential",
                   user_factors: torch.Tensor | None = None, trie=None) -> np.ndarray:
    """1-based position of each user's gold item when every catalogue item is scored exactly
    (ties counted in the gold item's favour)."""
    model, encoder = trained.model, trained.encoder
    trie = trie if trie is not None else ItemTrie.from_catalogue(encoder.data, model.backbone.tokenizer)
    gold = encoder.split.target_items(targets)
    device = model.user_factors.device
    positions = []
    model.eval()
    with model.reading_users(user_factors), model.compute_weights(False, merge_lora=True):
        for u in users:
            batch = encoder.batch(get_template(task, template), [int(u)], targets).to(device)
            scores = exact_item_scores(model, batch, trie)[0]
            positions.append(int((scores > scores[int(gold[u])]).sum()) + 1)
    return np.asarray(positions)


def text_id_diagnosis(trained, test, exact_users: int = 10, train_prompts: int = 100) -> dict:
    """Budget or defect: the three measurements of this module for a text-id model.

    Args:
        trained: A text-id model from :meth:`~llmrec_lite.runs.Run.load`.
        test: Its :class:`~llmrec_lite.evaluate.Evaluation` on test targets (beam search, for
            example ``runs.evaluate_cached``); the first ``exact_users`` of its users are
            also scored exactly, reading the same user vectors.
        exact_users: How many users get the (slow) exact scoring.
        train_prompts: How many of its last sequential training prompts to answer.

    Returns:
        ``train_prompts``, ``train_hr@1``, ``train_hr@10``, ``test_users``, ``test_hr@1``,
        ``test_hr@10``, ``popularity_hr@10`` (same users, unmasked), ``distinct_top1``, ``top1_share`` (of the most common top-1 id),
        ``exact_users``, ``gold_position_median``, ``gold_position_mean``, ``gold_top10_exact``
        (share within the exact top 10), ``popularity_position_median`` (the same users' gold
        items in the popularity ranking), ``items``, ``uniform_position`` and ``train_vs_test_p``
        (one-sided Fisher exact test that training prompts hit more often than test users).
    """
    if trained.model.output != "text-id":
        raise ValueError(f"text_id_diagnosis needs a text-id model; this one answers with {trained.model.output!r}.")
    if test.metrics.get("targets", "test") != "test" or test.metrics.get("masked"):
        raise ValueError("text_id_diagnosis reads an unmasked evaluation on test targets; evaluate with "
                         "targets='test', mask_history=False.")
    users = np.asarray(test.users)
    factors = trained.user_vectors("test") if trained.user_vectors else None
    trie = ItemTrie.from_catalogue(trained.encoder.data, trained.model.backbone.tokenizer)  # one for both searches
    own = training_prompt_hits(trained, trained_prompts(trained, num=train_prompts), len(test.top_items[0]), trie=trie)
    top1 = Counter(int(row[0]) for row in test.top_items)
    positions = gold_positions(trained, users[:exact_users], user_factors=factors, trie=trie)
    split = trained.encoder.split
    items = split.num_items
    pop = torch.as_tensor(popularity_scores(split))
    popular, _ = evaluate_scorer(lambda u: pop.expand(len(u), -1), split, users, "test")
    gold = split.target_items("test")[users[:exact_users]]
    by_popularity = np.array([int((pop > pop[int(g)]).sum()) + 1 for g in gold])  # ties in the gold item's favour
    return {"train_prompts": int(len(own)), "train_hr@1": float(np.mean(own < 1)), "train_hr@10": float(np.mean(own < 10)),
            "test_users": int(len(users)), "test_hr@1": float(np.mean(test.ranks < 1)),
            "test_hr@10": float(np.mean(test.ranks < 10)), "popularity_hr@10": float(popular["hr@10"]), "distinct_top1": len(top1),
            "top1_share": max(top1.values()) / len(users), "exact_users": int(len(positions)),
            "gold_position_median": float(np.median(positions)), "gold_position_mean": float(np.mean(positions)),
            "gold_top10_exact": float(np.mean(positions <= 10)),
            "popularity_position_median": float(np.median(by_popularity)), "items": int(items),
            "uniform_position": (items + 1) / 2,
            "train_vs_test_p": one_sided_fisher(int((own < 10).sum()), len(own), int((test.ranks < 10).sum()), len(users))}


def one_sided_fisher(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """P-value of Fisher's exact test that group a's hit rate is above group b's: the chance,
    with the margins fixed, of a's hits being at least ``hits_a``."""
    return float(fisher_exact([[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]], alternative="greater").pvalue)


def diagnosis_words(diagnosis: dict, level: float = 0.05) -> str:
    """What :func:`text_id_diagnosis`'s numbers say, in words: whether it answers its training
    prompts better than test users (at ``level``), and where exact scoring puts the gold item
    against a uniform guess and against popularity (a model that learned only how often each
    item is the answer ranks gold items as popularity does)."""
    seen = ("hits its own training prompts more often than test users" if diagnosis["train_vs_test_p"] < level else
            "hits its own training prompts no more often than test users, within noise")
    gold, uniform, popular = (diagnosis[k] for k in ("gold_position_median", "uniform_position", "popularity_position_median"))
    if gold < popular:
        tail = ("the gold item sits higher than popularity puts it: signal about the user that has not reached the top "
                "10, which points to the budget, not a defect.")
    elif gold < uniform:
        tail = ("the gold item sits above a uniform guess but no higher than popularity puts it: the model has learned "
                "how often each item is the answer, not yet the user, which is what a small budget buys first.")
    else:
        tail = "the gold item sits no higher than a uniform guess: no sign of learning at this budget."
    return f"So the model {seen}, and under exact scoring {tail}"


def diagnosis_facts(diagnosis: dict) -> dict:
    """:func:`text_id_diagnosis`'s numbers under the names chapter 5 glues them by (``tid_``
    and the key without ``@``: ``tid_train_hr10`` is ``diagnosis["train_hr@10"]``), with
    :func:`diagnosis_words` as ``tid_verdict``."""
    facts = {**diagnosis, "verdict": diagnosis_words(diagnosis)}
    return {"tid_" + key.replace("@", ""): value for key, value in facts.items()}


def budget_facts(ours: list[dict], theirs: list[dict], trained_samples: int) -> dict:
    """The text-id side's training budget against OpenP5's recipe, from the two stages' budgets
    of each (``settings.stage_budget``: ``prompts`` and ``steps`` per stage) and the prompts the
    stages really trained on: ``text_samples``, ``text_steps``, ``openp5_samples`` and
    ``openp5_ratio`` (how many times more prompts OpenP5's recipe uses)."""
    openp5 = sum(b["prompts"] for b in theirs)
    return {"text_samples": trained_samples, "text_steps": sum(b["steps"] for b in ours),
            "openp5_samples": openp5, "openp5_ratio": openp5 / max(trained_samples, 1)}


def overfit_text_id(run, num_prompts: int = 32, epochs: int = 60, lr: float | None = None, workdir=None,
                    show_progress: bool = True) -> dict:
    """Can the text-id side learn at all in ``run``'s configuration? Trains a fresh text-id model
    (projectors and LoRA together, as in stage 2, with the profile's settings) on ``num_prompts``
    sequential training prompts for ``epochs`` passes, then answers the same prompts by beam
    search over the whole catalogue. A model that can learn memorises them (HR@1 near 1); near
    0 points at a defect, not at the budget. Reads training prompts only.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` (its profile, data, factors and backbone).
        lr: One learning rate for every part (default: the profile's).
        workdir: Where the training log and checkpoints go (default: ``run.out / "overfit"``).

    Returns:
        ``prompts``, ``distinct_answers``, ``epochs``, ``steps``, ``hr@1_before``, ``hr@10_before``,
        ``hr@1_after``, ``hr@10_after``, ``first_loss``, ``final_loss``, ``train_seconds`` and the
        settings that matter (``batch_size``, ``bf16``, ``user_vectors``, ``lr``).
    """
    overrides = {"epochs": epochs, "eval_every": 10**9, "checkpoint_every": 10**9, "tasks": ("sequential",)}
    if lr is not None:
        overrides.update(lr=lr, lora_lr=lr, projector_lr=lr)
    settings = run.settings("text-id", 2, **overrides)
    model = run.build_model(run.settings("text-id", 1, **overrides))  # no stage 1 to start from: a fresh one
    model.set_stage(2)
    encoder = run.encoder(settings.use_embeddings, settings.max_history)
    prompts = encoder.training_prompts("sequential", num_prompts, seed=settings.seed)
    batches = build_batches(prompts, settings.batch_size, settings.bucket_size, np.random.default_rng(settings.seed))
    trained = Trained(model, settings, encoder, 2)
    before = training_prompt_hits(trained, prompts)
    workdir = Path(workdir or run.out / "overfit")
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    counters = fit(model, [batches] * epochs, batches[:1], settings, run.backbone.tokenizer.pad_token_id,
                   workdir / "log.jsonl", workdir / "checkpoint", show_progress=show_progress)
    seconds = time.perf_counter() - start
    after = training_prompt_hits(trained, prompts)
    losses = [h["loss"] for h in counters["history"]]
    return {"prompts": len(prompts), "distinct_answers": len({p.target for p in prompts}), "epochs": epochs,
            "steps": counters["steps"], "batch_size": settings.batch_size, "bf16": settings.bf16,
            "user_vectors": settings.user_vectors,
            "lr": {"base": settings.lr, "lora": settings.lora_lr, "projectors": settings.projector_lr},
            "hr@1_before": float(np.mean(before == 0)), "hr@10_before": float(np.mean(before < 10)),
            "hr@1_after": float(np.mean(after == 0)), "hr@10_after": float(np.mean(after < 10)),
            "first_loss": float(losses[0]), "final_loss": float(losses[-1]), "train_seconds": seconds}
