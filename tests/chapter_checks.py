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


def glued_plain(nb) -> dict:
    """``{name: text/plain}`` of every ``glue(...)`` call in an executed notebook, as MyST-NB pastes it."""
    plain = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            plain[name] = data.get(GLUE_PREFIX + "text/plain", data.get("text/plain"))
    return plain


def glued_values(nb) -> dict:
    """``{name: value}`` of every ``glue(...)`` call in an executed notebook (plain-text form parsed)."""
    values = {}
    for name, text in glued_plain(nb).items():
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
    """Chapter 7: the glued HR@10 values and verdicts are those of ``results.json``'s rows, the
    paired comparisons are recomputed from the cached evaluations' ranks, the side-by-side
    numbers are the rows', SASRec is re-evaluated from its saved model on the same users, the
    budget numbers are :func:`~llmrec_lite.settings.training_steps`'s, the validation losses are
    the recorded ones.

    Works in both shapes of the evaluation grid: rows that a ``"lean"`` grid leaves out (the
    text-id baseline) are checked only where the run has them.
    """
    import json

    import numpy as np

    from llmrec_lite import results as R
    from llmrec_lite.book import reference_results
    from llmrec_lite.evaluate import evaluation_users
    from llmrec_lite.metrics import paired_bootstrap
    from llmrec_lite.results.rows import SASREC_LABEL, llm_runs
    from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT, TEXT_ID, TEXT_ID_TEXT

    profile, data, split = _smoke_split()
    run_dir = Path(run_root) / data.name
    result = json.loads((run_dir / "results.json").read_text())
    rows, training = result["rows"], result["training"]
    assert result["profile"] == "smoke" and glued["made_profile"] == "smoke"
    made_by = R.provenance(result)
    for key in ("backbone", "hardware", "indexing"):
        assert glued[f"made_{key}"] == made_by[key], key
    assert glued["main_name"] == data.display_name

    # the label above the table: the users evaluated are the profile's subset of this split's users
    users = evaluation_users(split, profile.eval_users, seed=profile.seed)
    assert result["num_users"] == data.num_users and result["evaluated_users"] == len(users)
    label = glued[f"label_{data.name}"]
    assert label == R.table_label(result, data.display_name)
    for piece in (data.display_name, f"{len(users):,} of {data.num_users:,} users", made_by["backbone"], "smoke",
                  made_by["hardware"]):
        assert piece in label, piece
    assert all(r["users"] == len(users) for r in rows if r["output"] != "text-id"), "one subset for every row"

    # every glued HR@10 is the matching row's (sequential task, seen template, test targets)
    def matching(variant, stage):
        return [r for r in rows if r["variant"] == variant.name and r["stage"] == stage
                and r["task"] == "sequential" and r["template"] == "seen"]

    def hr10(variant, stage):
        found = matching(variant, stage)
        assert len(found) == 1, (variant, stage)
        assert found[0]["targets"] == "test" and is_rate(found[0]["hr@10"])
        return found[0]["hr@10"]

    present = {(v, s) for v, s, _ in llm_runs(profile, data.name)}
    assert all(len(matching(v, s)) == ((v, s) in present) for v, s in
               [(ITEM_TOKEN, 1), (ITEM_TOKEN, 2), (ITEM_TOKEN_TEXT, 2), (TEXT_ID, 1), (TEXT_ID, 2), (TEXT_ID_TEXT, 2)])
    s1, s2, base = hr10(ITEM_TOKEN, 1), hr10(ITEM_TOKEN, 2), hr10(ITEM_TOKEN_TEXT, 2)
    for name, value in {"it_s1": s1, "it_s2": s2, "it_base": base}.items():
        assert close(glued[name], value), name
    if (TEXT_ID, 2) in present:
        t2 = hr10(TEXT_ID, 2)
        assert glued["tid_s2"] == f"{t2:.4f}"
    if (TEXT_ID, 2) in present and (TEXT_ID_TEXT, 2) in present:
        tbase = hr10(TEXT_ID_TEXT, 2)
        assert glued["tid_base"] == f"{tbase:.4f}"
        assert glued["cf_helps_text"] == ("above" if t2 > tbase else "not above")
    else:  # a lean grid: the prose says the baseline is not in this build, and compares with nothing
        assert glued["tid_base"] == "not trained under this profile" and glued["cf_helps_text"] == "not compared with"
    # the evaluation grid: the smoke profile's full grid evaluates every final model on both tasks and templates
    assert glued["grid_name"] == profile.evaluation_grid == "full"
    assert glued["grid_main_only"] == len(R.main_row_only(profile, {data.name: data.display_name})) == 0
    pop = next(r["hr@10"] for r in rows if r["variant"] == "classic" and r["model"] == "popularity")
    assert close(glued["pop"], pop) and is_rate(glued["pop"])
    target = next(r["hr@10"] for r in reference_results(data.name) if r["model"] == "Llama-Embed-Stage-2 (paper)")
    assert close(glued["paper_target"], target)
    assert glued["order_holds"] == ("holds" if s2 > s1 > base else "does not hold")
    # the side of the target and the gap at the printed precision, from the same row
    def side(value, goal):
        shown, aim = round(value, 4), round(goal, 4)
        return ("above" if shown > aim else "below" if shown < aim else "level with"), abs(shown - aim)

    assert glued["target_side"] == side(s2, target)[0] and close(glued["target_gap"], side(s2, target)[1], 1e-9)

    def words(value, goal, what="it"):  # the side and the gap as one phrase; a level pair has no gap to quote
        where, gap = side(value, goal)
        return f"{where} {what}" + ("" if where == "level with" else f", by {gap:.4f}")

    assert glued["target_words"] == words(s2, target)
    best_masked = max((r for r in reference_results(data.name) if r["rule"] == "masked"), key=lambda r: r["hr@10"])
    assert glued["best_masked"] == best_masked["hr@10"] and glued["best_masked_model"] == best_masked["model"]
    s2_masked = R.find_row(rows, ITEM_TOKEN, 2)["hr@10_masked"]
    assert close(glued["it_s2_masked"], s2_masked)
    masked_side, masked_gap = side(s2_masked, best_masked["hr@10"])
    assert glued["masked_side"] == masked_side and close(glued["masked_gap"], masked_gap, 1e-9)
    assert glued["masked_words"] == words(s2_masked, best_masked["hr@10"])
    fused = R.fusion_row(rows)
    assert glued["fusion_weight"] == profile.cf_weight
    if profile.cf_weight > 0:  # the smoke profile fuses, so the row is there
        assert fused is not None and glued["fused_rows"] == "a"
        assert close(glued["fused_hr10"], fused["hr@10"]) and close(glued["fused_hr10_masked"], fused["hr@10_masked"])
        assert glued["fused_side"] == side(fused["hr@10"], target)[0]
        assert glued["fused_masked_side"] == side(fused["hr@10_masked"], best_masked["hr@10"])[0]
        paper_side = side(fused["hr@10"], target)[0]
        assert f"{fused['hr@10']:.4f}, {paper_side} the paper's number," in glued["fused_clause"]
    else:  # a profile whose fusion record chose the model alone: no row, and no number said of one
        assert fused is None and "fused_hr10" not in glued and glued["fused_rows"] == "no"
        assert glued["fused_clause"] == "the tables have no late-fusion row"
    for glue_name, comparison, rule in (("paired_fused_s2", R.FUSED_VS_S2, "unmasked"),
                                        ("paired_fused_s2_masked", R.FUSED_VS_S2, "masked"),
                                        ("paired_fused_wals_masked", R.FUSED_VS_WALS, "masked")):
        assert glued[glue_name] == R.paired_words(R.find_paired(result["paired"], comparison, rule)), glue_name
        assert (glued[glue_name] == "not computed in this build") == (fused is None), glue_name

    # validation against test: the test-target points are the rows; the verdict follows the numbers
    assert close(glued["dist_s2_test"], s2) and close(glued["dist_s1_test"], s1)
    assert all(is_rate(glued[k]) for k in ("dist_s2_train", "dist_s2_valid", "dist_s1_train", "dist_s1_valid",
                                           "dist_wals_valid", "dist_wals_test", "dist_s2_valid_masked"))
    assert is_rate(glued["dist_s2_test_masked"])
    where, gap = side(glued["dist_s2_test"], glued["dist_s2_valid"])  # the step as printed
    assert glued["dist_valid_vs_test"] == ("does better" if where == "below" else "does no better")
    assert glued["dist_change"] == {"below": f"it loses {gap:.4f}", "above": f"it gains {gap:.4f}"}.get(where, "it stays level")
    # stage 2 against WALS over the same step, both with history masked
    masked_drops = (glued["dist_s2_valid_masked"] - glued["dist_s2_test_masked"],
                    glued["dist_wals_valid"] - glued["dist_wals_test"])
    assert glued["dist_verdict"] == ("worse" if masked_drops[0] > masked_drops[1] else "no worse")
    wals_row = next(r for r in rows if r["variant"] == "classic" and r["model"] == "WALS (dot product)")
    assert close(glued["dist_wals_test"], wals_row["hr@10_masked"])

    # paired comparisons: recomputed from the ranks of the cached evaluations (same users, same order)
    def cached(variant):
        found = list((run_dir / "eval").glob(f"{variant}-sequential-seen-plain-*.json"))
        assert len(found) == 1, variant
        return json.loads(found[0].read_text())

    stage2, stage1, no_cf = cached("item-token-stage2"), cached("item-token-stage1"), cached("item-token-text-stage2")
    for comparison, one, other, glue_name in (("stage 2 - stage 1", stage2, stage1, "paired_s2_s1"),
                                              ("stage 2 - no CF embeddings", stage2, no_cf, "paired_s2_nocf"),
                                              ("stage 1 - no CF embeddings", stage1, no_cf, "paired_s1_nocf")):
        assert one["users"] == other["users"]
        for rule, key in (("unmasked", "ranks"), ("masked", "other_ranks")):
            entry = R.find_paired(result["paired"], comparison, rule)
            again = paired_bootstrap(np.array(one[key]), np.array(other[key]))
            assert close(entry["difference"], again["difference"]) and entry["users"] == len(users)
            assert all(close(a, b) for a, b in zip(entry["ci95"], again["ci95"]))
            lo, hi = entry["ci95"]
            assert lo <= entry["difference"] <= hi
            expected = "above" if lo > 0 else ("below" if hi < 0 else "not separated")
            assert entry["verdict"] == again["verdict"] == expected
        # the main dataset's unmasked entry, as the prose reads it: its numbers and its verdict words
        entry = R.find_paired(result["paired"], comparison, "unmasked")
        assert close(glued[f"{glue_name}_diff"], entry["difference"])
        assert close(glued[f"{glue_name}_lo"], entry["ci95"][0]) and close(glued[f"{glue_name}_hi"], entry["ci95"][1])
        assert glued[glue_name] == R.PAIRED_WORDS[entry["verdict"]], glue_name
    assert glued["paired_users"] == len(users)
    # stage 2 against the WALS dot product, masked: the glued numbers are the results' entry
    entry = R.find_paired(result["paired"], R.S2_VS_WALS, "masked")
    assert entry is not None and entry["users"] == len(users)
    assert close(entry["difference"], float(np.mean(np.array(stage2["other_ranks"]) < 10))
                 - wals_row["hr@10_masked"])
    assert close(glued["paired_s2_wals_masked_diff"], entry["difference"])
    assert close(glued["paired_s2_wals_masked_lo"], entry["ci95"][0])
    assert close(glued["paired_s2_wals_masked_hi"], entry["ci95"][1])
    assert glued["paired_s2_wals_masked"] == R.PAIRED_WORDS[entry["verdict"]]
    # 7.6, the title question: the head's two terms apart, and the words glued from the intervals
    alone = stage2.get("llm_alone_ranks")
    entry = R.find_paired(result["paired"], R.S2_VS_LLM_ALONE, "masked")
    assert (entry is None) == (alone is None) == (not profile.cf_term)
    if alone is not None:
        again = paired_bootstrap(np.array(stage2["other_ranks"]), np.array(alone))
        assert close(entry["difference"], again["difference"]) and entry["verdict"] == again["verdict"]
        share = result["llm_share"]["stage 2"]
        assert close(share["llm_term_alone_hr@10_masked"], float(np.mean(np.array(alone) < 10)))
        assert close(share["wals_term_alone_hr@10_masked"], wals_row["hr@10_masked"])
    assert glued["question_answer"].startswith(R.question_sentence(result, data.display_name))
    assert R.llm_adds_words(result["paired"]) in glued["question_answer"]

    # SASRec: the row's numbers, recomputed from the saved model on the same users
    from llmrec_lite.sasrec import evaluate_sasrec, load_sasrec

    sasrec_row = next(r for r in rows if r["model"] == SASREC_LABEL)
    model, record = load_sasrec(run_dir / "sasrec")
    again = evaluate_sasrec(model, split, users=users)
    for key in ("hr@5", "hr@10", "hr@5_masked", "hr@10_masked"):
        assert close(sasrec_row[key], again[key]), key
    assert close(glued["sasrec_hr10"], again["hr@10"]) and close(glued["sasrec_hr10_masked"], again["hr@10_masked"])
    for rule, suffix in (("unmasked", ""), ("masked", "_masked")):  # 7.6's stage 2 - SASRec, paired on the same users
        entry = R.find_paired(result["paired"], R.S2_VS_SASREC, rule)
        stage2_hits = np.mean(np.array(stage2["ranks" if rule == "unmasked" else "other_ranks"]) < 10)
        assert close(entry["difference"], stage2_hits - again["hr@10" + suffix]) and entry["users"] == len(users)
    assert glued["sasrec_epoch"] == sasrec_row["best_epoch"] == record.best_epoch <= profile.sasrec_max_epochs
    assert sasrec_row["epochs_run"] == record.epochs_run == len(sasrec_row["curve"])  # validated every epoch
    assert sasrec_row["best_epoch"] in [c["epoch"] for c in sasrec_row["curve"]]
    assert close(glued["sasrec_minutes"], record.seconds / 60)
    runs_table = R.sasrec_runs_table({data.name: result})
    assert runs_table[["epoch kept", "epochs run"]].values.tolist() == [[record.best_epoch, record.epochs_run]]
    assert close(runs_table["minutes"].iloc[0], record.seconds / 60)
    from llmrec_lite.sasrec import SASRecConfig

    config = SASRecConfig.from_profile(profile, data.name)
    assert (glued["sasrec_loss"], glued["sasrec_max_epochs"], glued["sasrec_patience"]) == (
        config.loss, config.max_epochs, config.patience)
    assert glued["sasrec_verdict"] == ("above" if s2 > again["hr@10"] else "not above")
    # against the published same-file SASRec numbers (masked): inside our interval or not, as the interval says
    lo, hi = sasrec_row["hr@10_masked_ci95"]
    published = [r for r in reference_results(data.name) if r["model"].startswith("SASRec") and r["rule"] == "masked"]
    assert published, "S3-Rec's and BSARec's SASRec on the same file"
    wheres = ["inside" if lo <= ref["hr@10"] <= hi else ("above" if ref["hr@10"] > hi else "below") for ref in published]
    assert [c["where"] for c in R.sasrec_published(result, reference_results())] == wheres
    assert (glued["sasrec_published_inside"], glued["sasrec_published_count"]) == (wheres.count("inside"), len(wheres))
    inside = wheres.count("inside")
    assert glued["sasrec_reproduced"] == ("none reproduced within noise" if not inside else "reproduced within noise"
                                          if inside == len(wheres) else "those reproduced within noise, the others not")
    # early stopping ends a run `patience` validations after the epoch it keeps; any other run hit its epoch bound
    stopped_early = sum(c["epoch"] > record.best_epoch for c in sasrec_row["curve"]) >= config.patience
    assert glued["sasrec_bound"] == ("by early stopping on every dataset" if stopped_early
                                     else f"at the epoch bound, before early stopping, on {data.display_name}")

    # the paper's comparison side by side: the paper's numbers, our rows, and the verdict from the intervals
    claimed = {r["model"]: r for r in reference_results("beauty") if r["source"] == "paper"}
    assert glued["paper_s2_hr5"] == claimed["Llama-Embed-Stage-2 (paper)"]["hr@5"]
    assert glued["paper_s2_hr10"] == claimed["Llama-Embed-Stage-2 (paper)"]["hr@10"]
    assert glued["paper_sasrec_hr5"] == claimed["SASRec (paper)"]["hr@5"]
    stage2_row = next(r for r in rows if r["variant"] == ITEM_TOKEN.name and r["stage"] == 2
                      and r["task"] == "sequential" and r["template"] == "seen")
    table = R.paper_comparison({data.name: result}, reference_results(), {data.name: data.display_name})
    for row, label in ((stage2_row, "item token, CF embeddings, stage 2"), (sasrec_row, SASREC_LABEL)):
        ours = table[(table.model == label) & (table.source == "this build")].iloc[0]
        for key, header in (("hr@5", "HR@5"), ("hr@10", "HR@10"), ("hr@5_masked", "HR@5 masked"),
                            ("hr@10_masked", "HR@10 masked")):
            assert close(ours[header], row[key]), (label, key)
    paper_row = table[table.model == "Llama-Embed-Stage-2 (paper)"].iloc[0]
    assert close(paper_row["HR@10"], target)
    for rule, suffix, glue_name in (("unmasked", "", f"claim_diff_{data.name}"),
                                    ("masked", "_masked", f"claim_diff_masked_{data.name}")):
        assert close(glued[glue_name], stage2_row["hr@10" + suffix] - sasrec_row["hr@10" + suffix]), rule
    a, b = stage2_row["hr@10_ci95"], sasrec_row["hr@10_ci95"]
    overlap = a[0] <= b[1] and b[0] <= a[1]
    diff = stage2_row["hr@10"] - sasrec_row["hr@10"]
    verdict = glued[f"claim_{data.name}"]
    # decided by the paired masked interval (recomputed above from the saved SASRec and the cached ranks)
    lo, hi = R.find_paired(result["paired"], R.S2_VS_SASREC, "masked")["ci95"]
    assert verdict == R.CLAIM_WORDS["above" if lo > 0 else "below" if hi < 0 else "not separated"]
    # the paper's claim is on Beauty, which the smoke profile does not run: the prose says it is not tested here
    assert glued["paper_claim"] == (verdict if data.name == R.PAPER_CLAIM_DATASET else "is not tested")
    claims = R.claim_table({data.name: R.sasrec_claim(result)}, {data.name: data.display_name})
    assert claims["unmasked intervals"].tolist() == ["do not overlap" if not overlap else "overlap"]
    assert claims["“beats SASRec”"].tolist() == [verdict] and close(claims["unmasked: stage 2 - SASRec"].iloc[0], diff)
    for r in rows:  # every row's rates, and the stage is the training stage (never a target set)
        assert all(is_rate(r[k]) for k in ("hr@5", "hr@10", "ndcg@5", "ndcg@10")), r["model"]
        assert r["stage"] in ((None,) if r["variant"] == "classic" else (1, 2)), r["model"]

    # each section glued one dict of facts: the same functions on the same results.json give
    # every value the chapter glued (the distance facts need the chapter's distance rows, checked above)
    from llmrec_lite import registry
    from llmrec_lite.sasrec import SASRecConfig as Config

    one, shown = {data.name: result}, {data.name: data.display_name}
    facts = {**R.training_facts(one, profile, data.num_items), **R.table_facts(one, shown),
             **R.grid_facts(profile, shown),
             **R.headline_facts(result, reference_results(data.name), data.display_name),
             **R.fusion_facts(result, profile.cf_weight, reference_results(data.name)),
             **R.question_facts(one, shown),
             **R.paper_facts(one, reference_results(), registry.get_info(R.PAPER_CLAIM_DATASET).display_name),
             **R.sasrec_facts(one, {data.name: Config.from_profile(profile, data.name)}, shown, reference_results())}
    for name, value in facts.items():
        assert name in glued, name
        assert (close(glued[name], value) if isinstance(value, float) else glued[name] == value), name

    recorded = {(r["variant"], r["stage"]): r for r in training.values()}

    # validation losses: the recorded ones
    val_cf = recorded[(ITEM_TOKEN.name, 2)]["final_val_loss"]
    val_nocf = recorded[(ITEM_TOKEN_TEXT.name, 2)]["final_val_loss"]
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
        projected = {s: run.load(ITEM_TOKEN, s).model.projectors.item(factors).numpy() for s in (1, 2)}
    tokens = run.backbone.token_embeddings().detach().float().numpy()
    assert close(glued["np_s2"], E.neighbour_popularity(projected[2], popularity[shown]), tol=1e-4)
    assert close(glued["norm_s2"], np.linalg.norm(projected[2], axis=1).mean(), tol=1e-4)
    assert close(glued["token_norm"], np.linalg.norm(tokens, axis=1).mean(), tol=1e-4)
    for s in (1, 2):
        assert close(glued[f"ntc_s{s}"], E.nearest_token_cosine(projected[s], tokens).mean(), tol=1e-4)
    # the layouts are seeded: the same settings give the same trustworthiness
    views = E.build_views({"wals": factors.numpy(), "s2": projected[2]}, n_neighbors=15, seed=profile.seed,
                          n_epochs=profile.umap_epochs)
    assert close(glued["tw_wals"], views["wals"].trustworthiness, tol=1e-4)
    assert close(glued["tw_s2"], views["s2"].trustworthiness, tol=1e-4)


def check_01_data(glued, run_root):
    _, data, split = _smoke_split()
    assert (glued["main_users"], glued["main_items"], glued["main_interactions"]) == (
        data.num_users, data.num_items, data.num_interactions)
    assert close(glued["main_density"], 100 * data.num_interactions / (data.num_users * data.num_items))
    assert glued["main_name"] == data.display_name
    assert 0 < glued["top10_share_main"] <= 100


def check_02_wals(glued, run_root):
    import torch

    from llmrec_lite.metrics import evaluate_dot_product
    from llmrec_lite.wals import WALS, WALSConfig

    profile, data, split = _smoke_split()
    config = WALSConfig.from_profile(profile)
    assert (glued["k"], glued["iters"], glued["alpha"]) == (config.num_factors, config.iterations, config.alpha)
    torch.manual_seed(profile.seed)
    model = WALS(config).fit(split.train_matrix(), show_progress=False)
    metrics = evaluate_dot_product(model.user_factors, model.item_factors, split)
    # the same fit in this process; a few users of slack for another thread count's rounding
    slack = 3 / data.num_users
    assert abs(glued["main_hr10"] - metrics["hr@10"]) <= slack
    assert abs(glued["main_hr10_masked"] - metrics["hr@10_masked"]) <= slack
    assert is_rate(glued["hr_torch"]) and is_rate(glued["hr_implicit"])


def check_03_projectors(glued, run_root):
    from llmrec_lite.backbone import BackboneSettings, load_backbone
    from llmrec_lite.projectors import ProjectorConfig, Projectors

    profile, _, _ = _smoke_split()
    hidden = load_backbone(BackboneSettings.from_profile(profile)).hidden_size
    config = ProjectorConfig.from_profile(profile, cf_dim=profile.wals_factors, hidden_size=hidden)
    assert (glued["k"], glued["d"], glued["h"]) == (config.cf_dim, config.hidden_size, config.hidden_dim)
    assert glued["proj_params"] == Projectors(config).num_parameters()["total"]
    # calibration puts the projected items at the token embeddings' mean norm
    assert close(glued["cal_mean"], glued["tok_mean"], tol=1e-3)


def check_04_prompts(glued, run_root):
    profile, data, _ = _smoke_split()
    assert glued["max_history"] == profile.max_history and glued["num_items"] == data.num_items
    # a slot is one position; an id as text is several tokens
    assert 0 < glued["seq_slots_len"] < glued["seq_text_len"]
    assert glued["target_tokens"] > 1
    # 4.5: the head's switches are the profile's (the smoke profile keeps the plain dot head)
    used = lambda on: "used" if on else "not used"  # noqa: E731
    assert glued["head_logit"] == profile.item_logit and glued["head_dense"] == profile.dense_weight
    assert (glued["head_cf"], glued["head_history"], glued["head_known"], glued["head_readout"]) == (
        used(profile.cf_term), used(profile.history_bias), used(profile.known_bias), used(profile.readout))
    assert glued["head_temperature"] == (profile.logit_temperature if profile.item_logit == "cosine"
                                         else "not used: dot logits")
    assert glued["score_users"] == 16 and glued["score_seconds"] > 0


def check_05_training(glued, run_root):
    import math

    from llmrec_lite.settings import TrainSettings

    profile, data, split = _smoke_split()
    expected = {f"{o} {s}": TrainSettings.from_profile(profile, s, o).total_steps(split.num_train_samples)
                for o in ("item-token", "text-id") for s in (1, 2)}
    assert glued["planned_steps"] == glued["trained_steps"] == expected
    assert close(glued["log_items"], math.log(data.num_items))
    for key in ("item_token_val_first", "item_token_val_last", "text_id_val_first", "text_id_val_last"):
        assert 0 < glued[key] < 50, key
    gpu = __import__("llmrec_lite.profiles", fromlist=["get_profile"]).get_profile("gpu")
    assert glued["gpu_steps"] == TrainSettings.from_profile(gpu, 1, "item-token").total_steps(split.num_train_samples) > 0
    assert glued["prefix_total"] == split.num_train_samples
    assert (glued["lora_r"], glued["lora_alpha"], glued["lora_dropout"]) == (
        profile.lora_r, profile.lora_alpha, profile.lora_dropout)
    assert glued["lora_targets"] == ", ".join(profile.lora_targets)
    # 5.6: the shifted run's test target is the real validation target, for every user
    assert glued["far_is_valid"] is True
    assert (split.earlier(1).test_targets == split.valid_targets).all()
    # the smoke profile has no distance record: the chapter says so instead of choosing
    assert glued["far_chosen"] == "none (no record for this profile)"
    assert glued["far_profile_matches"] == "cannot be compared with" and glued["far_spread"] == "no record"
    # the text-id diagnosis: its numbers in range, its verdict from them, its budget as training_steps counts it
    from llmrec_lite.diagnose import diagnosis_words
    from llmrec_lite.evaluate import evaluation_users
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.settings import stage_budget
    from llmrec_lite.settings import training_steps

    assert glued["tid_items"] == data.num_items and close(glued["tid_uniform_position"], (data.num_items + 1) / 2)
    assert glued["tid_exact_users"] == 2 and 1 <= glued["tid_gold_position_median"] <= data.num_items
    assert glued["tid_test_users"] == len(evaluation_users(split, profile.text_id_eval_users, seed=profile.seed))
    assert 1 <= glued["tid_distinct_top1"] <= glued["tid_test_users"] and is_rate(glued["tid_top1_share"])
    assert is_rate(glued["tid_train_hr10"]) and is_rate(glued["tid_test_hr10"]) and glued["tid_train_prompts"] > 0
    assert is_rate(glued["tid_popularity_hr10"])
    assert 0 <= glued["tid_train_vs_test_p"] <= 1 and 1 <= glued["tid_popularity_position_median"] <= data.num_items
    assert glued["tid_verdict"] == diagnosis_words({"train_vs_test_p": glued["tid_train_vs_test_p"],
                                                   "gold_position_median": glued["tid_gold_position_median"],
                                                   "popularity_position_median": glued["tid_popularity_position_median"],
                                                   "uniform_position": glued["tid_uniform_position"]})
    n = split.num_train_samples
    ours = [stage_budget(profile, "text-id", s, n) for s in (1, 2)]
    assert glued["text_samples"] == sum(b["prompts"] for b in ours) and glued["text_steps"] == sum(b["steps"] for b in ours)
    assert glued["text_steps"] == sum(glued["trained_steps"][f"text-id {s}"] for s in (1, 2))
    gpu = get_profile("gpu")
    openp5_steps = sum(training_steps(TrainSettings.from_profile(gpu, s, "text-id"), n) for s in (1, 2))
    assert openp5_steps > glued["text_steps"]
    per_task = int(gpu.sample_ratio * n)  # OpenP5: a share of every task's training prefixes, per epoch
    assert glued["openp5_samples"] == 2 * per_task * len(TrainSettings.from_profile(gpu, 1, "text-id").tasks) * gpu.epochs
    assert close(glued["openp5_ratio"], glued["openp5_samples"] / max(glued["text_samples"], 1))


def check_06_evaluation(glued, run_root):
    import json

    import numpy as np

    from llmrec_lite.metrics import metrics_from_ranks

    from llmrec_lite.evaluate import evaluation_users

    profile, _, split = _smoke_split()
    assert glued["eval_users"] == len(evaluation_users(split, profile.eval_users, seed=profile.seed))
    cached = [json.loads(p.read_text()) for p in (run_root / "lastfm" / "eval").glob("item-token-stage2-sequential-seen-plain-*.json")]
    assert len(cached) == 1
    recomputed = metrics_from_ranks(np.array(cached[0]["ranks"]))
    assert glued["eval_hr10"] == recomputed["hr@10"] == cached[0]["metrics"]["hr@10"]
    assert glued["rec_matches_eval"] is True
    repeats = np.mean([int(split.test_targets[u]) in set(split.history(u).tolist()) for u in range(split.num_users)])
    assert close(glued["repeat_share"], repeats)
    assert is_rate(glued["beam_overlap"]) and is_rate(glued["beam_top1"]) and is_rate(glued["eval_hr10_masked"])


def check_09_records(glued, run_root):
    """Chapter 9 on the smoke profile, which has no records: every section says so instead of
    choosing, and the one number it computes (what a training prompt's user vector knows about
    its answer) is recomputed from the WALS factors it read. The cpu records themselves are
    checked by ``tests/test_notebooks.py::test_records_appendix_reads_the_cpu_records``."""
    from llmrec_lite.baselines import answer_leak
    from llmrec_lite.wals import WALS

    profile, data, split = _smoke_split()
    for name in ("tune_chosen", "split_chosen", "far_chosen", "vectors_chosen"):
        assert glued[name] == "none (no record for this profile)", name
    for name in ("tune_profile_matches", "split_profile_matches", "vectors_profile_matches"):
        assert glued[name] == "cannot be compared with", name
    assert glued["far_pending"] == "all of them" and glued["shift_reading"] == "no record"
    assert glued["fusion_record_weight"] == "no record" and glued["fusion_profile_weight"] == profile.cf_weight
    assert glued["seed_above"] == glued["seed_not_separated"] == glued["seed_below"] == "none"
    assert glued["more_users_missing"] == data.display_name and glued["more_users_beside"] == 0
    assert (glued["head_logit"], glued["head_dense"]) == (profile.item_logit, profile.dense_weight)
    assert glued["head_history"] == ("on" if profile.history_bias else "off")
    assert glued["profile_split"] == f"{profile.item_token_samples[0]} + {profile.item_token_samples[1]}"
    assert (glued["vectors_read"], glued["vectors_train"]) == (profile.eval_user_vectors, profile.user_vectors)
    # the answer leak: recomputed from the factors the chapter fitted (or reused) in the run directory
    wals, _ = WALS.load(Path(run_root) / data.name / "wals")
    leak = answer_leak(split, wals, samples=2000, seed=profile.seed)
    assert glued["leak_samples"] == leak["samples"] and glued["leak_dataset"] == data.display_name
    for key in ("fitted", "prefix", "valid"):
        assert glued[f"leak_{key}"] == f"{leak[key]:.3f}", key
    assert glued["leak_cue"] == ("stronger" if leak["fitted"] > leak["valid"] else "no stronger")
    assert glued["leak_prefix_above"] == ("above" if leak["prefix"] > leak["valid"] else "not above")
    # every section glued its facts dictionary as lab.records computes it from the same (no) records
    for name, value in _records_facts(profile, data, leak).items():
        if not hasattr(value, "columns"):  # a glued table reads back as its text form only
            assert glued[name] == value, name


def _records_facts(profile, data, leak) -> dict:
    """Chapter 9's fact dictionaries (``lab.records.*_facts``) for a profile without records."""
    import pandas as pd

    from lab import records as L

    names = {data.name: data.display_name}
    main = profile.results_datasets[0]
    return {**L.tune_facts([], profile), **L.split_facts([], profile), **L.leak_facts(leak, data.display_name, profile),
            **L.distance_facts([]), **L.cf_term_facts([], profile, names), **L.shift_facts([], main, profile, names),
            **L.vectors_facts([], profile), **L.seed_facts([], names),
            **L.more_users_facts(pd.DataFrame([{"dataset": data.display_name, "record": "none"}]), pd.DataFrame()),
            **L.fusion_facts([], profile, names)}


def prose_glue_problems(markdown: str, plain: dict) -> list[str]:
    """What would fail to paste in a chapter's prose: every ``{glue:text}`name:spec``` role must
    name a glued value whose ``text/plain`` form (``plain``) formats with its spec, as MyST-NB
    formats it (a string under a float spec, say, fails only at build time)."""
    import re

    from myst_nb.core.variables import format_plain_text

    problems = []
    for name, spec in re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)(?::([^`]*))?`", markdown):
        if name not in plain:
            problems.append(f"{name}: not glued")
            continue
        try:
            format_plain_text(plain[name], spec or "s")
        except Exception as exc:  # noqa: BLE001 (any failure is a broken paste)
            problems.append(f"{name}:{spec}: {exc}")
    return problems
