"""Verdicts on the results: where an interval lies against zero, which side of a published
number one of ours lies, whether "stage 2 beats SASRec" holds, and the title question's answer.

Every function returns words or a sentence computed from ``results.json``; a chapter pastes
them whole, so that a sentence whose outcome can flip is written for the outcome it has.
"""

from __future__ import annotations

import math

from llmrec_lite.results.rows import (LLM_ALONE_VS_WALS, S2_VS_SASREC, S2_VS_WALS, SASREC_LABEL, classic_row, find_paired,
                                      find_row)
from llmrec_lite.variants import ITEM_TOKEN

__all__ = ["side_of_target", "PAIRED_WORDS", "paired_verdict", "NOT_COMPUTED", "paired_words", "LLM_ADDS",
           "llm_adds_words", "ALONE_WORDS", "question_sentence", "PAPER_CLAIM_DATASET", "PAPER_STAGE2", "PAPER_SASREC",
           "intervals_overlap", "CLAIM_WORDS", "sasrec_claim", "OVERLAP_WORDS", "sasrec_published"]


def side_of_target(value: float, target: float, digits: int = 4) -> dict:
    """Which side of a target a number lies, at the precision the book prints.
    Returns:
        ``{"side", "gap"}``: ``side`` is ``"above"``, ``"below"`` or ``"level with"`` (the two
        print the same: a gap of ``0.0000`` says nothing); ``gap`` is the distance of the
        printed values, so it adds up with what the reader sees.

    Raises:
        ValueError: ``value`` or ``target`` is NaN (a row that was not measured has no side).
    """
    if math.isnan(value) or math.isnan(target):
        raise ValueError(f"side_of_target({value}, {target}): a NaN has no side; "
                         "leave the missing row out instead.")
    shown, goal = round(value, digits), round(target, digits)
    side = "level with" if shown == goal else ("above" if shown > goal else "below")
    return {"side": side, "gap": round(abs(shown - goal), digits)}


PAIRED_WORDS = {"above": "above zero", "below": "below zero", "not separated": "not separated from zero"}


def paired_verdict(ci) -> str:
    """``"above"``, ``"below"`` or ``"not separated"``: where a difference's interval lies
    against zero (the rule of :func:`llmrec_lite.metrics.paired_bootstrap`)."""
    lo, hi = ci
    return "above" if lo > 0 else ("below" if hi < 0 else "not separated")


NOT_COMPUTED = "not computed in this build"


def paired_words(entry: dict | None) -> str:
    """Where one paired comparison's interval lies, in the words the book prints (``"above
    zero"``, ``"below zero"``, ``"not separated from zero"``), or :data:`NOT_COMPUTED` for an
    entry the build has not (``None``: a comparison with a row the profile does not make)."""
    return NOT_COMPUTED if entry is None else PAIRED_WORDS[entry["verdict"]]


# --------------------------------------------------------------------------- the title question


LLM_ADDS = {"above": "adds to", "below": "takes away from", "not separated": "is not shown to add to"}


def llm_adds_words(paired: list[dict]) -> str:
    """The answer to the title question on one dataset, from stage 2 - WALS history masked:
    ``"adds to"`` (interval above zero), ``"takes away from"`` (below) or ``"is not shown to
    add to"`` (the interval holds zero); :data:`NOT_COMPUTED` without that comparison."""
    entry = find_paired(paired, S2_VS_WALS, "masked")
    return NOT_COMPUTED if entry is None else LLM_ADDS[paired_verdict(entry["ci95"])]


# where the head's LLM term alone lies against WALS, by its paired interval
ALONE_WORDS = {"above": "above", "below": "below", "not separated": "level, within its interval, with"}


def question_sentence(result: dict, name: str) -> str:
    """One dataset's answer to the title question in words, read from its ``results.json``:
    the verdict of stage 2 - WALS (masked, paired) with its interval, then where the head's LLM
    term alone lies against WALS (masked, paired), where the run measured it. The head's
    learned scalars stay in ``results.json``'s ``llm_share`` (one number per sentence is
    enough for a reader to follow)."""
    paired = result["paired"]
    entry = find_paired(paired, S2_VS_WALS, "masked")
    interval = "not computed" if entry is None else \
        f"{entry['difference']:+.4f} [{entry['ci95'][0]:+.4f}, {entry['ci95'][1]:+.4f}]"
    text = f"On {name}, stage 2 {llm_adds_words(paired)} the WALS model it reads (masked: {interval})."
    alone = find_paired(paired, LLM_ALONE_VS_WALS, "masked")
    if alone is not None:
        text += f" Its LLM term alone lies {ALONE_WORDS[paired_verdict(alone['ci95'])]} WALS."
    return text


# --------------------------------------------------------------------------- the paper's comparison


# the paper's headline claim: its stage 2 beats SASRec on this dataset
PAPER_CLAIM_DATASET = "beauty"


PAPER_STAGE2 = "Llama-Embed-Stage-2 (paper)"


PAPER_SASREC = "SASRec (paper)"


def intervals_overlap(a, b) -> bool | None:
    """Whether two intervals share a point (``None`` when either is missing)."""
    if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
        return None
    return a[0] <= b[1] and b[0] <= a[1]


# the verdict on "stage 2 beats SASRec", by where the paired masked interval lies
CLAIM_WORDS = {"above": "holds", "below": "does not hold (stage 2 is below SASRec)",
               "not separated": "is not shown (the paired masked interval holds zero)"}


def sasrec_claim(result: dict) -> dict:
    """Does "stage 2 beats SASRec" hold on one dataset of this build?

    Decided by the paired bootstrap interval of stage 2 - SASRec on the same users with
    history masked (``results.json``'s ``paired``): the rule under which SASRec is a fair
    ranker, and the interval that reflects how consistently one model beats the other. The
    unmasked rule would hand stage 2 its known-item offset, which SASRec has no counterpart of.
    Whether the two models' own intervals overlap is kept beside it, unmasked and masked.

    Args:
        result: A ``results.json`` dictionary.

    Returns:
        ``{"unmasked": {...}, "masked": {...}, "paired": entry or None, "verdict"}``; each rule
        holds ``stage2``, ``sasrec``, ``difference`` (stage 2 - SASRec), their intervals and
        ``overlap``; ``verdict`` is one of :data:`CLAIM_WORDS` (or :data:`NOT_COMPUTED`).
    """
    s2, sas = find_row(result["rows"], ITEM_TOKEN, 2), classic_row(result["rows"], SASREC_LABEL)
    out = {}
    for rule, suffix in (("unmasked", ""), ("masked", "_masked")):
        a, b = s2[f"hr@10{suffix}"], sas[f"hr@10{suffix}"]
        ca, cb = s2.get(f"hr@10{suffix}_ci95"), sas.get(f"hr@10{suffix}_ci95")
        out[rule] = {"stage2": a, "sasrec": b, "difference": a - b, "stage2_ci95": ca, "sasrec_ci95": cb,
                     "overlap": intervals_overlap(ca, cb)}
    entry = find_paired(result.get("paired"), S2_VS_SASREC, "masked")
    out["paired"] = entry
    out["verdict"] = NOT_COMPUTED if entry is None else CLAIM_WORDS[paired_verdict(entry["ci95"])]
    return out


OVERLAP_WORDS = {True: "overlap", False: "do not overlap", None: "not recorded"}


def sasrec_published(result: dict, references: list[dict]) -> list[dict]:
    """Our SASRec's masked HR@10 against every published SASRec number on the same file under
    the masked rule (S3-Rec's, BSARec's): is the published number inside our bootstrap 95%
    interval, above it or below it?

    Args:
        result: A ``results.json`` dictionary.
        references: :func:`llmrec_lite.book.reference_results` (filtered to the dataset here).

    Returns:
        One dictionary per published number: ``model``, ``source``, ``published`` (HR@10),
        ``ours``, ``ci95`` and ``where`` (``"inside"``, ``"above"`` or ``"below"`` our interval).
    """
    row = classic_row(result["rows"], SASREC_LABEL)
    ci = row.get("hr@10_masked_ci95")
    out = []
    for ref in references:
        if (ref["dataset"] != result["dataset"] or ref["rule"] != "masked" or ref.get("hr@10") is None
                or not ref["model"].startswith("SASRec")):
            continue
        value = ref["hr@10"]
        where = None
        if ci is not None:
            where = "inside" if ci[0] <= value <= ci[1] else ("above" if value > ci[1] else "below")
        out.append({"model": ref["model"], "source": ref["source"], "published": value, "ours": row["hr@10_masked"],
                    "ci95": ci, "where": where})
    return out
