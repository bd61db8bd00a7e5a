"""Tables and figures of the results chapter, built from a run's ``results.json``.

:func:`llmrec_lite.pipeline.run_pipeline` writes one dictionary per run directory: the
training summary of every stage (``training``) and one row per evaluated model, task and
template (``rows``). This module turns those into what chapter 7 shows, so the chapter
reads as a sequence of results rather than of pandas filters:

- :func:`main_table`: the main comparison (sequential task, seen template, unmasked; the
  classic baselines once), compact enough for a book page;
- :func:`template_table`: HR@10 of the LLM rows on both tasks, seen and unseen templates;
- :func:`published_table`: the published numbers shown beside ours, with their sources;
- :func:`hr10_figure`: the main rows' HR@10 with bootstrap intervals, published numbers as markers;
- :func:`training_table`, :func:`validation_table`: what each stage cost and its final
  validation loss;
- :func:`budget_table`: training prompts and optimizer steps per stage under this build's
  profile and under OpenP5's recipe (the ``gpu`` profile), computed by
  :func:`llmrec_lite.batching.training_steps`.

Rows are identified by their fields (``variant``, ``stage``, ``task``, ``template``), never
by taking their labels apart.
"""

from __future__ import annotations

from llmrec_lite.variants import Variant

MAIN_TASK, MAIN_TEMPLATE = "sequential", "seen"
CLASSIC = "classic"

# columns of the main table: results.json key -> header
MAIN_COLUMNS = {"model": "model", "task": "task", "template": "template", "users": "users", "hr@5": "HR@5",
                "hr@10": "HR@10", "hr@10_ci95": "HR@10 95% CI", "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10",
                "hr@10_masked": "HR@10 masked"}


# --------------------------------------------------------------------------- provenance


def hardware_label(machine: dict) -> str:
    """A short name for the machine a run was made on: its GPU, else its CPU model and threads.

    Args:
        machine: :func:`llmrec_lite.device.describe_machine`'s dictionary (``results.json``'s
            ``machine``).
    """
    if machine.get("gpu"):
        return str(machine["gpu"])
    cpu = machine.get("cpu_model") or machine.get("processor") or "CPU"
    return f"{cpu} ({machine.get('torch_threads', '?')} threads)"


def backbone_label(source: str) -> str:
    """The backbone's name without its hub organisation or local folder (``SmolLM2-135M``)."""
    return str(source).rstrip("/").split("/")[-1]


def provenance(result: dict) -> dict:
    """What produced a results file, stated once above its tables instead of in every row.

    Returns:
        ``{"dataset", "profile", "backbone", "hardware", "indexing"}`` as display strings.
    """
    return {"dataset": result["dataset"], "profile": result["profile"], "backbone": backbone_label(result["backbone"]),
            "hardware": hardware_label(result.get("machine", {})), "indexing": result.get("indexing", "-")}


# --------------------------------------------------------------------------- finding rows


def find_row(rows: list[dict], variant: Variant | str, stage: int, task: str = MAIN_TASK,
             template: str = MAIN_TEMPLATE) -> dict:
    """The results row of one trained model on one task and template.

    Args:
        rows: ``results.json``'s ``rows``.
        variant: The model's :class:`~llmrec_lite.variants.Variant` (or its folder name).
        stage: Its training stage (1 or 2).

    Raises:
        KeyError: no such row (e.g. stage-1 models are evaluated on the main row only).
    """
    name = Variant.parse(variant).name
    for r in rows:
        if r["variant"] == name and r["stage"] == stage and r["task"] == task and r["template"] == template:
            return r
    raise KeyError(f"No results row for {name} stage {stage}, {task} task, {template} template.")


def classic_row(rows: list[dict], model: str) -> dict:
    """The row of a classic baseline by its label (``popularity``, ``WALS (dot product)``, ...)."""
    for r in rows:
        if r["variant"] == CLASSIC and r["model"] == model:
            return r
    raise KeyError(f"No classic baseline {model!r} in the results rows.")


def main_rows(rows: list[dict]) -> list[dict]:
    """The rows of the main comparison: every LLM on the sequential task with the seen
    template, then the classic baselines (they see no prompt, so they appear once)."""
    llm = [r for r in rows if r["variant"] != CLASSIC and r["task"] == MAIN_TASK and r["template"] == MAIN_TEMPLATE]
    return llm + [r for r in rows if r["variant"] == CLASSIC]


def stage_result(training: dict, variant: Variant | str, stage: int) -> dict:
    """The training summary of one stage from ``results.json``'s ``training`` (keyed ``<variant>/stage<k>``)."""
    name = Variant.parse(variant).name
    for r in training.values():
        if r.get("variant") == name and r.get("stage") == stage:
            return r
    return training[f"{name}/stage{stage}"]  # summaries written before they carried their identity


# --------------------------------------------------------------------------- tables


def ci_text(ci, digits: int = 3) -> str:
    """A bootstrap interval as ``0.061–0.084`` (``-`` when the row has none)."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "-"
    return f"{ci[0]:.{digits}f}–{ci[1]:.{digits}f}"


def main_table(rows: list[dict]):
    """The main results table: one line per model, metrics only (provenance goes above it).

    Args:
        rows: ``results.json``'s ``rows``.

    Returns:
        A :class:`pandas.DataFrame` with the columns of :data:`MAIN_COLUMNS` (text-id models
        have no masked column: their beams cannot be re-ranked, see chapter 6).
    """
    import pandas as pd

    records = []
    for r in main_rows(rows):
        record = {header: r.get(key) for key, header in MAIN_COLUMNS.items()}
        record["template"] = r.get("template") or "-"
        record["HR@10 95% CI"] = ci_text(r.get("hr@10_ci95"))
        records.append(record)
    return pd.DataFrame(records, columns=list(MAIN_COLUMNS.values()))


def template_table(rows: list[dict]):
    """HR@10 of every LLM row by task and template (models as rows, in table order)."""
    import pandas as pd

    llm = pd.DataFrame([r for r in rows if r["variant"] != CLASSIC])
    return llm.pivot_table(index="model", columns=["task", "template"], values="hr@10", sort=False)


def published_table(references: list[dict]):
    """The published numbers to show beside ours: model, task, rule, HR@10, NDCG@10 and source.

    Args:
        references: :func:`llmrec_lite.book.reference_results` for one dataset.
    """
    import pandas as pd

    columns = {"model": "model", "task": "task", "rule": "rule", "hr@10": "HR@10", "ndcg@10": "NDCG@10",
               "source": "source"}
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


def stage_budget(profile, variant: Variant | str, stage: int, num_train_samples: int) -> dict:
    """Training prompts and optimizer steps of one stage under a profile.

    Args:
        profile: A :class:`~llmrec_lite.profiles.Profile` (``get_profile("gpu")`` is OpenP5's recipe).
        variant, stage: Which model and stage.
        num_train_samples: Training prefixes of the split (``split.num_train_samples``).

    Returns:
        ``{"prompts": ..., "steps": ...}``: prompts over all tasks and epochs, and the steps
        :func:`llmrec_lite.batching.training_steps` counts for them.
    """
    from llmrec_lite.batching import prompts_per_task, training_steps
    from llmrec_lite.settings import TrainSettings

    settings = TrainSettings.from_profile(profile, stage, variant)
    prompts = prompts_per_task(settings, num_train_samples) * len(settings.tasks) * settings.epochs
    return {"prompts": prompts, "steps": training_steps(settings, num_train_samples)}


def budget_table(profile, reference, num_train_samples: int):
    """Prompts and steps per trained stage under this build's profile and under a reference one.

    Args:
        profile: The profile the run used.
        reference: The profile to compare with (``get_profile("gpu")``: OpenP5's recipe).
        num_train_samples: Training prefixes of the split.
    """
    import pandas as pd

    from llmrec_lite.pipeline import LLM_RUNS, stages_to_train

    trained = list(dict.fromkeys((v, s) for v, stage, _ in LLM_RUNS for s in stages_to_train(v, stage)))
    records = []
    for variant, stage in trained:
        ours = stage_budget(profile, variant, stage, num_train_samples)
        theirs = stage_budget(reference, variant, stage, num_train_samples)
        records.append({"model": variant.label, "stage": stage,
                        f"prompts ({profile.name})": ours["prompts"], f"steps ({profile.name})": ours["steps"],
                        f"prompts ({reference.name})": theirs["prompts"], f"steps ({reference.name})": theirs["steps"]})
    return pd.DataFrame(records)


def styled(df, precision: int = 4, wrap: tuple[str, ...] = ("model",)):
    """A table styled for the book: fixed precision, ``-`` for missing values, no index,
    long text columns wrapped so the table keeps to the page's width."""
    style = df.style.format(precision=precision, na_rep="-").hide(axis="index")
    columns = [c for c in wrap if c in df.columns]
    if columns:
        style = style.set_properties(subset=columns, **{"white-space": "normal", "min-width": "12em",
                                                        "max-width": "18em", "text-align": "left"})
    return style


# --------------------------------------------------------------------------- figures


def hr10_figure(rows: list[dict], references: list[dict], title: str):
    """HR@10 of the main rows as bars with their 95% bootstrap intervals, published numbers
    (sequential task, unmasked rule) as grey diamonds.

    Args:
        rows: ``results.json``'s ``rows``.
        references: :func:`llmrec_lite.book.reference_results` for the same dataset.
        title: Figure title.
    """
    import plotly.graph_objects as go

    shown = main_rows(rows)
    values = [r["hr@10"] for r in shown]
    cis = [r.get("hr@10_ci95") for r in shown]
    err_hi = [ci[1] - v if isinstance(ci, (list, tuple)) else 0.0 for ci, v in zip(cis, values)]
    err_lo = [v - ci[0] if isinstance(ci, (list, tuple)) else 0.0 for ci, v in zip(cis, values)]
    fig = go.Figure(go.Bar(x=values, y=[r["model"] for r in shown], orientation="h", name="this build",
                           error_x=dict(type="data", array=err_hi, arrayminus=err_lo)))
    published = [r for r in references if r["rule"] == "unmasked" and r["task"] == MAIN_TASK]
    fig.add_trace(go.Scatter(x=[r["hr@10"] for r in published], y=[r["model"] for r in published], mode="markers",
                             marker=dict(symbol="diamond", size=9, color="gray"), name="published (see sources)"))
    fig.update_layout(title=title, xaxis_title="HR@10", yaxis=dict(autorange="reversed", automargin=True),
                      legend=dict(orientation="h", y=-0.15))
    return fig

