"""What each chapter must have computed, read back from the values it glued.

``tests/test_notebooks.py`` executes every chapter on the smoke profile, collects its glued
values (:func:`glued_values`) and calls ``check_<chapter stem>(glued, run_root)`` from this
module when one exists. A check compares the glued numbers with what the package computes
for the same settings, or, where recomputing would double the test time, with valid
ranges (the way recommenders' notebook tests read recorded metrics back).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

GLUE_PREFIX = "application/papermill.record/"


def glued_values(nb) -> dict:
    """``{name: value}`` of every ``glue(...)`` call in an executed notebook (plain-text form parsed)."""
    values = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            text = data.get(GLUE_PREFIX + "text/plain", data.get("text/plain"))
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[name] = text
    return values


def close(a: float, b: float, tol: float = 1e-6) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def is_rate(x) -> bool:
    """A hit rate, NDCG or share: a finite number in [0, 1]."""
    return isinstance(x, (int, float)) and 0.0 <= float(x) <= 1.0


# --------------------------------------------------------------------------- per chapter


def _smoke_split():
    from llmrec_lite.data import load_dataset
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.split import LeaveOneOutSplit

    profile = get_profile("smoke")
    data = load_dataset(profile.datasets[0], indexing=profile.indexing, seed=profile.seed)
    return profile, data, LeaveOneOutSplit.from_data(data)


def check_07_results(glued: dict, run_root: Path) -> None:
    """Chapter 7: the glued HR@10 values and verdicts are those of ``results.json``'s rows,
    the budget numbers are :func:`~llmrec_lite.batching.training_steps`'s, the validation
    losses are the recorded ones."""
    import json

    from llmrec_lite import results as R
    from llmrec_lite.book import reference_results
    from llmrec_lite.pipeline import ITEM_TOKEN, ITEM_TOKEN_TEXT, TEXT_ID, TEXT_ID_TEXT
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.results import stage_budget

    profile, data, split = _smoke_split()
    result = json.loads((Path(run_root) / data.name / "results.json").read_text())
    rows, training = result["rows"], result["training"]
    assert result["profile"] == "smoke" and glued["made_profile"] == "smoke"
    made_by = R.provenance(result)
    for key in ("backbone", "hardware", "indexing"):
        assert glued[f"made_{key}"] == made_by[key], key
    assert glued["main_name"] == data.display_name

    # every glued HR@10 is the matching row's (sequential task, seen template, test targets)
    def hr10(variant, stage):
        matching = [r for r in rows if r["variant"] == variant.name and r["stage"] == stage
                    and r["task"] == "sequential" and r["template"] == "seen"]
        assert len(matching) == 1, (variant, stage)
        assert matching[0]["targets"] == "test" and is_rate(matching[0]["hr@10"])
        return matching[0]["hr@10"]

    s1, s2, base = hr10(ITEM_TOKEN, 1), hr10(ITEM_TOKEN, 2), hr10(ITEM_TOKEN_TEXT, 2)
    t2, tbase = hr10(TEXT_ID, 2), hr10(TEXT_ID_TEXT, 2)
    for name, value in {"it_s1": s1, "it_s2": s2, "it_base": base, "tid_s2": t2, "tid_base": tbase}.items():
        assert close(glued[name], value), name
    pop = next(r["hr@10"] for r in rows if r["variant"] == "classic" and r["model"] == "popularity")
    assert close(glued["pop"], pop) and is_rate(glued["pop"])
    target = next(r["hr@10"] for r in reference_results(data.name) if r["model"] == "Llama-Embed-Stage-2 (paper)")
    assert close(glued["paper_target"], target)
    assert glued["order_holds"] == ("holds" if s2 > s1 > base else "does not hold")
    assert glued["target_verdict"] == ("reaches" if s2 >= target else "falls short of")
    assert glued["cf_helps_text"] == ("above" if t2 > tbase else "not above")
    for r in rows:  # every row's rates, and the stage is the training stage (never a target set)
        assert all(is_rate(r[k]) for k in ("hr@5", "hr@10", "ndcg@5", "ndcg@10")), r["model"]
        assert r["stage"] in ((None,) if r["variant"] == "classic" else (1, 2)), r["model"]

    # budget: recorded prompts, and steps as training_steps counts them (here and under OpenP5's recipe)
    n = split.num_train_samples
    recorded = {(r["variant"], r["stage"]): r for r in training.values()}
    assert glued["text_samples"] == sum(recorded[(TEXT_ID.name, s)]["samples"] for s in (1, 2))
    ours = [stage_budget(profile, TEXT_ID, s, n) for s in (1, 2)]
    assert glued["text_steps"] == sum(b["steps"] for b in ours) == sum(recorded[(TEXT_ID.name, s)]["steps"] for s in (1, 2))
    assert glued["text_samples"] == sum(b["prompts"] for b in ours)
    from llmrec_lite.batching import training_steps
    from llmrec_lite.train import TrainSettings

    gpu = get_profile("gpu")
    openp5_steps = sum(training_steps(TrainSettings.from_profile(gpu, s, TEXT_ID), n) for s in (1, 2))
    assert glued["openp5_steps"] == openp5_steps > glued["text_steps"]
    per_task = int(gpu.sample_ratio * n)  # OpenP5: a share of every task's training prefixes, per epoch
    assert glued["openp5_samples"] == 2 * per_task * len(TrainSettings.from_profile(gpu, 1, TEXT_ID).tasks) * gpu.epochs
    assert close(glued["openp5_ratio"], glued["openp5_samples"] / max(glued["text_samples"], 1))
    assert glued["openp5_share"] == gpu.sample_ratio and glued["openp5_epochs"] == gpu.epochs
    assert glued["lr"] == profile.lr and glued["openp5_lr"] == gpu.lr

    # validation losses: the recorded ones
    val_cf, val_nocf = recorded[(ITEM_TOKEN.name, 2)]["final_val_loss"], recorded[(ITEM_TOKEN_TEXT.name, 2)]["final_val_loss"]
    assert close(glued["val_cf"], val_cf) and close(glued["val_nocf"], val_nocf)
    assert glued["val_verdict"] == ("lower" if val_cf < val_nocf else "not lower")
    assert close(glued["uniform_nats"], math.log(data.num_items))


def check_08_explorer(glued: dict, run_root: Path) -> None:
    """Chapter 8: the glued counts are the profile's and the catalogue's; the measures of the
    WALS and stage-2 spaces are recomputed from the run's factors and trained model."""
    import numpy as np
    import torch

    from llmrec_lite import explorer as E
    from llmrec_lite.pipeline import ITEM_TOKEN
    from llmrec_lite.runs import Run

    profile, data, split = _smoke_split()
    assert glued["all_items"] == data.num_items
    assert glued["shown_items"] == min(profile.explorer_items, data.num_items) < data.num_items
    for name in ("tw_wals", "tw_s2"):
        assert is_rate(glued[name]), name
    for name in ("np_wals", "np_s2", "ntc_s1", "ntc_s2"):
        assert -1.0 <= glued[name] <= 1.0, name
    assert glued["np_k"] == E.POPULARITY_NEIGHBOURS
    assert glued["token_norm"] > 0 and close(glued["norm_ratio"], glued["norm_s2"] / glued["token_norm"])

    # recompute from what the chapter trained: the most popular items (ties by index), their
    # WALS factors and stage-2 projections, and the backbone's token embeddings
    run = Run.open(profile, data.name, Path(run_root) / data.name, show_progress=False)
    popularity = data.item_popularity(split.train)
    shown = np.sort(np.argsort(-popularity, kind="stable")[: profile.explorer_items])
    assert popularity[shown].min() >= np.delete(popularity, shown).max()  # really the most popular
    factors = run.wals.item_factors[torch.as_tensor(shown)]
    assert close(glued["np_wals"], E.neighbour_popularity(factors.numpy(), popularity[shown]), tol=1e-4)
    with torch.no_grad():
        projected = run.load(ITEM_TOKEN, 2).model.projectors.item(factors).numpy()
    tokens = run.backbone.token_embeddings().detach().float().numpy()
    assert close(glued["np_s2"], E.neighbour_popularity(projected, popularity[shown]), tol=1e-4)
    assert close(glued["norm_s2"], np.linalg.norm(projected, axis=1).mean(), tol=1e-4)
    assert close(glued["token_norm"], np.linalg.norm(tokens, axis=1).mean(), tol=1e-4)
    assert close(glued["ntc_s2"], E.nearest_token_cosine(projected, tokens).mean(), tol=1e-4)
