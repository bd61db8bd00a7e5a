"""One dictionary of glued values per section of chapter 7.

Each function takes what a section computed (``results.json`` dictionaries, a distance
table, published numbers) and returns ``{glue name: value}``; the chapter glues it whole in
one hidden cell (``glue_all(R.headline_facts(...))``), and its tests read the same names
back. Where an outcome can flip (a verdict, a side of a number), the dictionary holds the
words or the whole sentence for the outcome the numbers have, so that the prose around it
reads right either way.
"""

from __future__ import annotations

import math

from llmrec_lite.results.provenance import provenance, table_label
from llmrec_lite.results.rows import (FUSED_VS_S2, FUSED_VS_WALS, S1_VS_NOCF, S2_VS_NOCF,
                                      S2_VS_S1, S2_VS_WALS, SASREC_LABEL, classic_row, distance_value, find_paired,
                                      find_row, fusion_row, has_row, main_row_only, stage_result)
from llmrec_lite.results.verdicts import (PAPER_CLAIM_DATASET, PAPER_SASREC, PAPER_STAGE2, paired_words, question_sentence, sasrec_claim,
                                          sasrec_published, side_of_target)
from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT, TEXT_ID, TEXT_ID_TEXT

__all__ = ["training_facts", "table_facts", "grid_facts", "headline_facts", "fusion_facts", "distance_facts",
           "question_facts", "paper_facts", "sasrec_facts"]


def _side_words(side: dict, what: str = "it") -> str:
    """``"above it, by 0.0123"``: a side of :func:`side_of_target` and its printed gap (a level
    pair has no gap to quote)."""
    return f"{side['side']} {what}" + ("" if side["side"] == "level with" else f", by {side['gap']:.4f}")


def _interval(entry: dict) -> str:
    """``+0.0123 [+0.0045, +0.0201]``: one paired comparison as the prose prints it."""
    return f"{entry['difference']:+.4f} [{entry['ci95'][0]:+.4f}, {entry['ci95'][1]:+.4f}]"


def training_facts(results: dict[str, dict], profile, num_items: int) -> dict:
    """7.1: what produced the tables, and the main dataset's stage-2 validation losses.

    Args:
        results: ``{dataset: results.json dictionary}``, main dataset first.
        profile: The build's :class:`~llmrec_lite.profiles.Profile`.
        num_items: The main dataset's catalogue size (a uniform guess's cross-entropy is its log).
    """
    main = results[next(iter(results))]
    facts = {f"made_{key}": value for key, value in provenance(main).items() if key != "dataset"}
    facts.update(cf_term_state="on" if profile.cf_term else "off", known_state="on" if profile.known_bias else "off")
    val_cf, val_nocf = (stage_result(main["training"], v, 2)["final_val_loss"] for v in (ITEM_TOKEN, ITEM_TOKEN_TEXT))
    lower = val_cf < val_nocf
    facts.update(val_cf=val_cf, val_nocf=val_nocf, val_verdict="lower" if lower else "not lower",
                 uniform_nats=math.log(num_items))
    facts["val_sentence"] = (
        f"Stage 2 with CF embeddings ends at {val_cf:.3f} nats, "
        + ("below" if lower else "not below") + f" the same model without them ({val_nocf:.3f}).")
    return facts


def table_facts(results: dict[str, dict], names: dict[str, str]) -> dict:
    """7.2: the line above each dataset's table (``label_<dataset>``)."""
    return {f"label_{dataset}": table_label(result, names[dataset]) for dataset, result in results.items()}


def grid_facts(profile, names: dict[str, str]) -> dict:
    """7.3: the evaluation grid's name and how many final models it evaluates on the main row only."""
    return {"grid_name": profile.evaluation_grid, "grid_main_only": len(main_row_only(profile, names))}


def headline_facts(result: dict, references: list[dict], display_name: str) -> dict:
    """7.5: the main dataset's item-token rows against each other, the published numbers and
    popularity; the paired intervals of each step; the text-id rows.

    Args:
        result: The main dataset's ``results.json`` dictionary.
        references: :func:`llmrec_lite.book.reference_results` for that dataset.
        display_name: Its name as the book writes it.
    """
    rows, paired = result["rows"], result.get("paired")
    hr10 = lambda variant, stage: find_row(rows, variant, stage)["hr@10"]  # noqa: E731
    s1, s2, base = hr10(ITEM_TOKEN, 1), hr10(ITEM_TOKEN, 2), hr10(ITEM_TOKEN_TEXT, 2)
    s2_masked = find_row(rows, ITEM_TOKEN, 2)["hr@10_masked"]
    target = next(r["hr@10"] for r in references if r["model"] == PAPER_STAGE2)
    best = max((r for r in references if r["rule"] == "masked"), key=lambda r: r["hr@10"])
    facts = {"main_name": display_name, "pop": classic_row(rows, "popularity")["hr@10"], "it_s1": s1, "it_s2": s2,
             "it_base": base, "it_s2_masked": s2_masked, "paper_target": target, "best_masked": best["hr@10"],
             "best_masked_model": best["model"], "order_holds": "holds" if s2 > s1 > base else "does not hold"}
    for key, value, goal in (("target", s2, target), ("masked", s2_masked, best["hr@10"])):
        side = side_of_target(value, goal)
        facts.update({f"{key}_side": side["side"], f"{key}_gap": side["gap"], f"{key}_words": _side_words(side)})
    facts["order_sentence"] = (
        "The point estimates keep the expected order: stage 2 above stage 1 above the model without CF embeddings."
        if s2 > s1 > base else
        "The point estimates do not keep the expected order (stage 2 above stage 1 above the model without CF "
        "embeddings).")
    steps = []
    for key, comparison, rule, what in (("s2_s1", S2_VS_S1, "unmasked", S2_VS_S1),
                                        ("s2_nocf", S2_VS_NOCF, "unmasked", S2_VS_NOCF),
                                        ("s1_nocf", S1_VS_NOCF, "unmasked", S1_VS_NOCF),
                                        ("s2_wals_masked", S2_VS_WALS, "masked", f"{S2_VS_WALS} (history masked)")):
        entry = find_paired(paired, comparison, rule)
        facts.update({f"paired_{key}": paired_words(entry), f"paired_{key}_diff": entry["difference"],
                      f"paired_{key}_lo": entry["ci95"][0], f"paired_{key}_hi": entry["ci95"][1]})
        steps.append((what, paired_words(entry)))
    facts["paired_users"] = find_paired(paired, S2_VS_S1)["users"]
    wals = find_paired(paired, S2_VS_WALS, "masked")
    facts["s2_wals_sentence"] = (
        f"Stage 2 - WALS is {wals['difference']:+.4f}, and its interval "
        + {"above": "lies above zero: stage 2 ranks better than the vectors it reads.",
           "below": "lies below zero: stage 2 ranks worse than the vectors it reads.",
           "not separated": "holds zero: stage 2 is not told apart from the vectors it reads."}[wals["verdict"]])
    separated = [what for what, words in steps if words != "not separated from zero"]
    facts["paired_sentence"] = (
        "None of the four intervals is separated from zero." if not separated else
        f"Separated from zero: {', '.join(separated)}; the others hold zero." if len(separated) < len(steps) else
        "All four intervals are separated from zero.")
    has_tid, has_base = has_row(rows, TEXT_ID, 2), has_row(rows, TEXT_ID_TEXT, 2)  # as the evaluation grid has them
    facts["tid_s2"] = f"{hr10(TEXT_ID, 2):.4f}" if has_tid else "not evaluated"
    facts["tid_base"] = f"{hr10(TEXT_ID_TEXT, 2):.4f}" if has_base else "not trained under this profile"
    facts["cf_helps_text"] = (("above" if hr10(TEXT_ID, 2) > hr10(TEXT_ID_TEXT, 2) else "not above")
                              if has_tid and has_base else "not compared with")
    if not has_tid:
        facts["tid_sentence"] = "This profile's evaluation grid does not evaluate the text-id side."
    elif not has_base:
        facts["tid_sentence"] = (f"The text-id side scores HR@10 {facts['tid_s2']} at stage 2; this profile "
                                 "trains no text-id model without CF embeddings to compare it with.")
    else:
        facts["tid_sentence"] = (f"The text-id side scores HR@10 {facts['tid_s2']} at stage 2 and {facts['tid_base']} "
                                 f"without CF embeddings: stage 2 is {facts['cf_helps_text']} it.")
    return facts


def fusion_facts(result: dict, cf_weight: float, references: list[dict]) -> dict:
    """7.5, late fusion: the fused row against the same published numbers as stage 2, and the
    paired verdicts against stage 2 alone and against WALS; one clause for the prose.

    Args:
        result: The main dataset's ``results.json`` dictionary.
        cf_weight: The profile's late-fusion weight (0: no fused row).
        references: :func:`llmrec_lite.book.reference_results` for that dataset.
    """
    rows, paired = result["rows"], result.get("paired")
    fused = fusion_row(rows)
    facts = {"fusion_weight": cf_weight, "fused_rows": "a" if fused is not None else "no"}
    for key, comparison, rule in (("fused_s2", FUSED_VS_S2, "unmasked"), ("fused_s2_masked", FUSED_VS_S2, "masked"),
                                  ("fused_wals_masked", FUSED_VS_WALS, "masked")):
        facts[f"paired_{key}"] = paired_words(find_paired(paired, comparison, rule))
    if fused is None:
        facts["fused_clause"] = "the tables have no late-fusion row"
        return facts
    target = next(r["hr@10"] for r in references if r["model"] == PAPER_STAGE2)
    best = max((r for r in references if r["rule"] == "masked"), key=lambda r: r["hr@10"])
    facts.update(fused_hr10=fused["hr@10"], fused_hr10_masked=fused["hr@10_masked"])
    for key, value, goal in (("fused", fused["hr@10"], target), ("fused_masked", fused["hr@10_masked"], best["hr@10"])):
        facts[f"{key}_side"] = side_of_target(value, goal)["side"]
    facts["fused_clause"] = (
        f"it reaches HR@10 {fused['hr@10']:.4f}, {facts['fused_side']} the paper's number, and "
        f"{fused['hr@10_masked']:.4f} masked, {facts['fused_masked_side']} the best published one. Late fusion - "
        f"the model alone is {facts['paired_fused_s2']} unmasked and {facts['paired_fused_s2_masked']} masked; "
        f"late fusion - WALS is {facts['paired_fused_wals_masked']} masked")
    return facts


def distance_facts(distance: list[dict], s2: str, s1: str, wals: str) -> dict:
    """7.5, validation against test: fixed models at the last training, validation and test target.

    Args:
        distance: :func:`llmrec_lite.evaluate.accuracy_by_target_distance`'s rows.
        s2, s1, wals: The row labels of stage 2, stage 1 and WALS in ``distance``.
    """
    at = lambda model, k, key="hr@10": distance_value(distance, model, k, key)  # noqa: E731
    facts = {"dist_s2_valid": at(s2, 1), "dist_s2_test": at(s2, 0), "dist_s2_train": at(s2, 2),
             "dist_s2_valid_masked": at(s2, 1, "hr@10_masked"), "dist_s2_test_masked": at(s2, 0, "hr@10_masked"),
             "dist_s1_valid": at(s1, 1), "dist_s1_test": at(s1, 0), "dist_s1_train": at(s1, 2),
             "dist_wals_valid": at(wals, 1, "hr@10_masked"), "dist_wals_test": at(wals, 0, "hr@10_masked")}
    step = side_of_target(at(s2, 0), at(s2, 1))  # validation to test, unmasked, at the printed precision
    masked_drop = {m: at(m, 1, "hr@10_masked") - at(m, 0, "hr@10_masked") for m in (s2, wals)}  # like with like
    facts["dist_change"] = {"below": f"it loses {step['gap']:.4f}",
                            "above": f"it gains {step['gap']:.4f}"}.get(step["side"], "it stays level")
    facts["dist_verdict"] = "worse" if masked_drop[s2] > masked_drop[wals] else "no worse"
    facts["dist_valid_vs_test"] = "does better" if step["side"] == "below" else "does no better"  # as printed
    facts["dist_masked_sentence"] = (
        f"Masked, the rule WALS is ranked by, stage 2 fares {facts['dist_verdict']} than the WALS factors it reads "
        f"over that step (it loses {masked_drop[s2]:.4f}, WALS {masked_drop[wals]:.4f}).")
    return facts


def question_facts(results: dict[str, dict], names: dict[str, str]) -> dict:
    """7.6: the title question's answer on every dataset (:func:`question_sentence`), and which
    way the main dataset's known-item offset ``c`` pushes consumed items."""
    c = results[next(iter(results))]["llm_share"]["stage 2"]["head"]["known_bias"]
    push = "down" if c < 0 else "up" if c > 0 else "nowhere along"
    sentence = {"down": "There the learned offset c is negative: it pushes every consumed item down the list, so "
                        "the unmasked column ranks much as the masked one does.",
                "up": "There the learned offset c is positive: it pushes every consumed item up the list, so the "
                      "unmasked column favours items the user already had.",
                "nowhere along": "There the offset c is zero (or off), so consumed items keep their places and "
                                 "the two columns can differ."}[push]
    return {"question_answer": " ".join(question_sentence(result, names[d]) for d, result in results.items()),
            "known_push": push, "known_sentence": sentence}


def paper_facts(results: dict[str, dict], references: list[dict], claim_name: str) -> dict:
    """7.7: the paper's headline numbers and the verdict on "stage 2 beats SASRec" per dataset.

    Args:
        results: ``{dataset: results.json dictionary}``.
        references: :func:`llmrec_lite.book.reference_results` for every dataset.
        claim_name: The display name of the dataset the paper claims it on.
    """
    claimed = {r["model"]: r for r in references if r["dataset"] == PAPER_CLAIM_DATASET and r["source"] == "paper"}
    facts = {"paper_claim_name": claim_name, "paper_s2_hr5": claimed[PAPER_STAGE2]["hr@5"],
             "paper_s2_hr10": claimed[PAPER_STAGE2]["hr@10"], "paper_sasrec_hr5": claimed[PAPER_SASREC]["hr@5"]}
    for d, result in results.items():
        claim = sasrec_claim(result)
        facts.update({f"claim_{d}": claim["verdict"], f"claim_diff_{d}": claim["unmasked"]["difference"],
                      f"claim_diff_masked_{d}": claim["masked"]["difference"]})
    facts["paper_claim"] = facts.get(f"claim_{PAPER_CLAIM_DATASET}", "is not tested")
    return facts


def sasrec_facts(results: dict[str, dict], configs: dict, names: dict[str, str], references: list[dict]) -> dict:
    """7.7, SASRec on the same split: the main dataset's row and run, how its training ended on
    every dataset, and how many published same-file numbers lie inside our interval.

    Args:
        results: ``{dataset: results.json dictionary}``, main dataset first.
        configs: ``{dataset: SASRecConfig}`` the build trained with.
        names: ``{dataset: display name}``.
        references: :func:`llmrec_lite.book.reference_results` for every dataset.
    """
    main = next(iter(results))
    row, config = classic_row(results[main]["rows"], SASREC_LABEL), configs[main]
    s2 = find_row(results[main]["rows"], ITEM_TOKEN, 2)["hr@10"]
    facts = {"sasrec_hr10": row["hr@10"], "sasrec_hr10_masked": row["hr@10_masked"], "sasrec_epoch": row["best_epoch"],
             "sasrec_minutes": row["train_seconds"] / 60, "sasrec_verdict": "above" if s2 > row["hr@10"] else "not above",
             "sasrec_loss": config.loss, "sasrec_max_epochs": config.max_epochs, "sasrec_patience": config.patience}
    checks = [c for d in results for c in sasrec_published(results[d], references)]
    inside = sum(c["where"] == "inside" for c in checks)
    facts.update(sasrec_published_inside=inside, sasrec_published_count=len(checks))
    facts["sasrec_reproduced"] = ("none reproduced within noise" if not inside else "reproduced within noise"
                                  if inside == len(checks) else "those reproduced within noise, the others not")
    # a run ended by early stopping validated `patience` times after its kept epoch; any other hit its epoch bound
    bound = [names[d] for d in results
             if sum(c["epoch"] > r["best_epoch"] for r in [classic_row(results[d]["rows"], SASREC_LABEL)]
                    for c in r.get("curve") or []) < configs[d].patience]
    facts["sasrec_bound"] = (f"at the epoch bound, before early stopping, on {' and '.join(bound)}" if bound
                             else "by early stopping on every dataset")
    return facts
