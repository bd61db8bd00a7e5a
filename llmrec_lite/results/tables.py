"""The results chapter's tables, as :class:`pandas.DataFrame` objects built from ``results.json``.

pandas is one of the book's optional extras (``pip install llmrec-lite[book]``): imported where
a table is made, so that the pipeline writes ``results.json`` without it.
"""

from __future__ import annotations

from llmrec_lite.results.rows import (CLASSIC, LLM_RUNS, S2_VS_LLM_ALONE, S2_VS_NOCF, S2_VS_S1,
                                      S2_VS_SASREC, S2_VS_WALS, SASREC_LABEL, classic_row, find_paired, find_row,
                                      llm_runs, main_rows, stages_to_train)
from llmrec_lite.results.verdicts import (OVERLAP_WORDS, PAIRED_WORDS, PAPER_SASREC, PAPER_STAGE2, paired_words,
                                          sasrec_published)
from llmrec_lite.settings import stage_budget
from llmrec_lite.variants import ITEM_TOKEN, Variant


# columns of the main table: results.json key -> header
MAIN_COLUMNS = {"model": "model", "task": "task", "template": "template", "users": "users", "hr@5": "HR@5",
                "hr@10": "HR@10", "hr@10_ci95": "HR@10 95% CI", "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10",
                "hr@10_masked": "HR@10 masked", "hr@10_masked_ci95": "HR@10 masked 95% CI"}


def ci_text(ci, digits: int = 3) -> str:
    """A bootstrap interval as ``0.061–0.084`` (``-`` when the row has none)."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "-"
    return f"{ci[0]:.{digits}f}–{ci[1]:.{digits}f}"


def styled(df, precision: int = 4, wrap: tuple[str, ...] = ("model",)):
    """A table styled for the book: fixed precision, ``-`` for missing values, no index,
    long text columns wrapped so the table keeps to the page's width."""
    style = df.style.format(precision=precision, na_rep="-").hide(axis="index")
    columns = [c for c in wrap if c in df.columns]
    if columns:
        style = style.set_properties(subset=columns, **{"white-space": "normal", "min-width": "12em",
                                                        "max-width": "18em", "text-align": "left"})
    return style

__all__ = ["MAIN_COLUMNS", "ci_text", "styled", "main_table", "template_table", "published_table", "training_table",
           "validation_table", "budget_table", "paired_table", "QUESTION_ROWS", "question_table", "THIS_BUILD",
           "COMPARISON_COLUMNS", "paper_comparison", "claim_table", "sasrec_published_table", "sasrec_runs_table"]


def main_table(rows: list[dict]):
    """The main results table: one line per model, metrics only (provenance goes above it).

    Args:
        rows: ``results.json``'s ``rows``.

    Returns:
        A :class:`pandas.DataFrame` with the columns of :data:`MAIN_COLUMNS` (text-id models
        have no masked columns: their beams cannot be re-ranked, see chapter 6).
    """
    import pandas as pd

    records = []
    for r in main_rows(rows):
        record = {header: r.get(key) for key, header in MAIN_COLUMNS.items()}
        record["template"] = r.get("template") or "-"
        record["HR@10 95% CI"] = ci_text(r.get("hr@10_ci95"))
        record["HR@10 masked 95% CI"] = ci_text(r.get("hr@10_masked_ci95"))
        records.append(record)
    return pd.DataFrame(records, columns=list(MAIN_COLUMNS.values()))


def template_table(rows: list[dict]):
    """HR@10 of every LLM row by task and template (models as rows, in table order)."""
    import pandas as pd

    llm = pd.DataFrame([r for r in rows if r["variant"] != CLASSIC])
    return llm.pivot_table(index="model", columns=["task", "template"], values="hr@10", sort=False)


def published_table(references: list[dict]):
    """The published numbers to show beside ours: model, task, rule, HR@5, HR@10, NDCG@10 and source.

    Args:
        references: :func:`llmrec_lite.book.reference_results` for one dataset.
    """
    import pandas as pd

    columns = {"model": "model", "task": "task", "rule": "rule", "hr@5": "HR@5", "hr@10": "HR@10",
               "ndcg@10": "NDCG@10", "source": "source"}
    return pd.DataFrame([{header: r.get(key) for key, header in columns.items()} for r in references],
                        columns=list(columns.values()))


def training_table(results: dict[str, dict]):
    """What every trained stage cost, per dataset: prompts, steps, minutes and final validation loss.

    Args:
        results: ``{dataset: results.json dictionary}``.
    """
    import pandas as pd

    records = []
    for dataset, result in results.items():
        for key, r in result["training"].items():
            variant = Variant.parse(r.get("variant") or key.split("/")[0])
            records.append({"dataset": dataset, "model": variant.label, "stage": r.get("stage"),
                            "prompts": r["samples"], "steps": r["steps"], "minutes": r["seconds"] / 60,
                            "final validation loss": r["final_val_loss"]})
    return pd.DataFrame(records)


def validation_table(training: dict):
    """Final validation loss of every stage of one run, by output side, CF embeddings and stage."""
    import pandas as pd

    records = []
    for key, r in training.items():
        variant = Variant.parse(r.get("variant") or key.split("/")[0])
        records.append({"output side": variant.output, "CF embeddings": variant.use_embeddings,
                        "stage": r.get("stage"), "prompts seen in this stage": r["samples"],
                        "final validation loss (nats)": r["final_val_loss"]})
    return pd.DataFrame(records)


def budget_table(profile, reference, num_train_samples: int, dataset: str | None = None):
    """Prompts and steps per trained stage under this build's profile and under a reference one.

    Args:
        profile: The profile the run used.
        reference: The profile to compare with (``get_profile("gpu")``: OpenP5's recipe).
        num_train_samples: Training prefixes of the split.
        dataset: When given, a column says which stages this profile trains on it (a lean
            evaluation grid skips some rows, and with them their training).
    """
    import pandas as pd

    stages = lambda runs: list(dict.fromkeys((v, s) for v, stage, _ in runs for s in stages_to_train(v, stage)))
    here = set(stages(llm_runs(profile, dataset))) if dataset is not None else None
    records = []
    for variant, stage in stages(LLM_RUNS):
        ours = stage_budget(profile, variant, stage, num_train_samples)
        theirs = stage_budget(reference, variant, stage, num_train_samples)
        records.append({"model": variant.label, "stage": stage,
                        **({} if here is None else {"trained here": "yes" if (variant, stage) in here else "no"}),
                        f"prompts ({profile.name})": ours["prompts"], f"steps ({profile.name})": ours["steps"],
                        f"prompts ({reference.name})": theirs["prompts"], f"steps ({reference.name})": theirs["steps"]})
    return pd.DataFrame(records)


# --------------------------------------------------------------------------- paired comparisons and the title question


def paired_table(results: dict[str, dict], names: dict[str, str] | None = None):
    """The paired comparisons of every dataset: HR@10 difference over the same users and its
    paired bootstrap 95% interval, unmasked and masked.

    Args:
        results: ``{dataset: results.json dictionary}``.
        names: ``{dataset: display name}`` (default: the keys).
    """
    import pandas as pd

    records = []
    for dataset, result in results.items():
        for p in result.get("paired", []):
            records.append({"dataset": (names or {}).get(dataset, dataset), "comparison": p["comparison"],
                            "rule": p["rule"], "HR@10 difference": p["difference"],
                            "paired 95% CI": f"[{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]", "users": p["users"],
                            "interval": PAIRED_WORDS[p["verdict"]]})
    return pd.DataFrame(records, columns=["dataset", "comparison", "rule", "HR@10 difference", "paired 95% CI",
                                          "users", "interval"])


# stage 2 against each ranker that bears on "does the LLM add to the CF model it reads?"
QUESTION_ROWS = ((S2_VS_WALS, "WALS, the CF vectors it reads"), (S2_VS_SASREC, "SASRec"),
                 (S2_VS_S1, "stage 1 (LLM frozen)"), (S2_VS_NOCF, "the same LLM without CF embeddings"),
                 (S2_VS_LLM_ALONE, "its own LLM term read alone (w set to 0: a reading of the trained hybrid, "
                                   "not a model trained without the WALS score)"))


def question_table(results: dict[str, dict], names: dict[str, str] | None = None):
    """Stage 2 against every ranker of :data:`QUESTION_ROWS` on each dataset, over the same
    users: HR@10 differences with paired bootstrap 95% intervals, history masked (the rule
    under which WALS and SASRec are fair rankers), then the unmasked (OpenP5) difference
    beside it. A comparison the build has not made shows ``-``."""
    import pandas as pd

    records = []
    for dataset, result in results.items():
        paired = result.get("paired")
        for comparison, against in QUESTION_ROWS:
            masked, plain = find_paired(paired, comparison, "masked"), find_paired(paired, comparison, "unmasked")
            ci = lambda e: "-" if e is None else f"[{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]"  # noqa: E731
            records.append({"dataset": (names or {}).get(dataset, dataset), "stage 2 against": against,
                            "masked difference": None if masked is None else masked["difference"],
                            "masked paired 95% CI": ci(masked), "masked interval": paired_words(masked),
                            "unmasked difference": None if plain is None else plain["difference"],
                            "unmasked paired 95% CI": ci(plain),
                            "users": (masked or plain or {}).get("users")})
    return pd.DataFrame(records)


# --------------------------------------------------------------------------- the paper's comparison and SASRec


THIS_BUILD = "this build"


COMPARISON_COLUMNS = {"hr@5": "HR@5", "hr@10": "HR@10", "hr@5_masked": "HR@5 masked", "hr@10_masked": "HR@10 masked",
                      "hr@10_ci95": "HR@10 95% CI", "hr@10_masked_ci95": "HR@10 masked 95% CI"}


def paper_comparison(results: dict[str, dict], reference: list[dict], names: dict[str, str] | None = None):
    """The paper's comparison, side by side: per dataset of the build, our item-token stage 2
    and our SASRec (HR@5 and HR@10, unmasked and masked, with intervals) next to the paper's
    stage-2 and SASRec numbers where it published them.

    Args:
        results: ``{dataset: results.json dictionary}``.
        reference: :func:`llmrec_lite.book.reference_results` (every dataset; filtered here).
        names: ``{dataset: display name}`` (default: the keys).

    Returns:
        A :class:`pandas.DataFrame`: dataset, model, source, then :data:`COMPARISON_COLUMNS`'
        headers (a published number under the masked rule goes to the masked columns).
    """
    import pandas as pd

    records = []
    for dataset, result in results.items():
        name = (names or {}).get(dataset, dataset)
        ours = [(find_row(result["rows"], ITEM_TOKEN, 2), "item token, CF embeddings, stage 2"),
                (classic_row(result["rows"], SASREC_LABEL), SASREC_LABEL)]
        for row, label in ours:
            record = {"dataset": name, "model": label, "source": THIS_BUILD}
            record.update({header: row.get(key) for key, header in COMPARISON_COLUMNS.items()})
            for key in ("hr@10_ci95", "hr@10_masked_ci95"):
                record[COMPARISON_COLUMNS[key]] = ci_text(row.get(key), 4)
            records.append(record)
        for ref in reference:
            if ref["dataset"] != dataset or ref["model"] not in (PAPER_STAGE2, PAPER_SASREC):
                continue
            suffix = "" if ref["rule"] == "unmasked" else "_masked"
            record = {"dataset": name, "model": ref["model"], "source": ref["source"]}
            record.update({COMPARISON_COLUMNS[k + suffix]: ref.get(k) for k in ("hr@5", "hr@10")})
            records.append(record)
    return pd.DataFrame(records, columns=["dataset", "model", "source", *COMPARISON_COLUMNS.values()])


def claim_table(claims: dict[str, dict], names: dict[str, str] | None = None):
    """:func:`sasrec_claim` of every dataset as a table: stage 2 - SASRec masked and paired (the
    interval that decides), the verdict on "beats SASRec", then the unmasked difference and
    whether the models' own intervals overlap, for the reader who compares rows by eye.

    Args:
        claims: ``{dataset: sasrec_claim(...)}``.
        names: ``{dataset: display name}`` (default: the keys).
    """
    import pandas as pd

    records = []
    for dataset, claim in claims.items():
        u, paired = claim["unmasked"], claim.get("paired")
        records.append({"dataset": (names or {}).get(dataset, dataset),
                        "masked: stage 2 - SASRec": None if paired is None else paired["difference"],
                        "paired 95% CI": "-" if paired is None else
                        f"[{paired['ci95'][0]:+.4f}, {paired['ci95'][1]:+.4f}]",
                        "“beats SASRec”": claim["verdict"], "unmasked: stage 2 - SASRec": u["difference"],
                        "unmasked intervals": OVERLAP_WORDS[u["overlap"]]})
    return pd.DataFrame(records, columns=["dataset", "masked: stage 2 - SASRec", "paired 95% CI", "“beats SASRec”",
                                          "unmasked: stage 2 - SASRec", "unmasked intervals"])


def sasrec_published_table(results: dict[str, dict], reference: list[dict], names: dict[str, str] | None = None):
    """:func:`sasrec_published` of every dataset as a table."""
    import pandas as pd

    records = []
    for dataset, result in results.items():
        for c in sasrec_published(result, reference):
            records.append({"dataset": (names or {}).get(dataset, dataset), "published": c["model"],
                            "source": c["source"], "published HR@10 masked": c["published"],
                            "our HR@10 masked": c["ours"], "our 95% CI": ci_text(c["ci95"], 4),
                            "published number": "no interval" if c["where"] is None else f"{c['where']} our interval"})
    return pd.DataFrame(records, columns=["dataset", "published", "source", "published HR@10 masked",
                                          "our HR@10 masked", "our 95% CI", "published number"])


def sasrec_runs_table(results: dict[str, dict], names: dict[str, str] | None = None):
    """How long SASRec trained on each dataset: the epoch early stopping kept, the epochs run, minutes."""
    import pandas as pd

    records = []
    for dataset, result in results.items():
        row = classic_row(result["rows"], SASREC_LABEL)
        records.append({"dataset": (names or {}).get(dataset, dataset), "epoch kept": row.get("best_epoch"),
                        "epochs run": row.get("epochs_run"), "minutes": row.get("train_seconds", 0.0) / 60})
    return pd.DataFrame(records, columns=["dataset", "epoch kept", "epochs run", "minutes"])
