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
- :func:`table_label`: what one dataset's table was made from (users, backbone, profile,
  hardware), stated once above it;
- :func:`paired_table`, :func:`paired_words`: the paired bootstrap comparisons of
  ``results.json``'s ``paired``, and where one interval lies against zero;
- :func:`main_row_only`: which final models a profile's evaluation grid evaluates on the
  main row only (a ``"lean"`` grid leaves rows out);
- :func:`side_of_target`: which side of a published number one of ours lies, at the printed
  precision;
- :func:`paper_comparison`, :func:`sasrec_claim`, :func:`claim_table`: the paper's "stage 2
  beats SASRec" comparison, our rows beside the paper's numbers;
- :func:`sasrec_published`, :func:`sasrec_runs_table`, :func:`sasrec_curve_figure`: our SASRec
  against the published same-file SASRec numbers, how long it trained, and its validation curve;
- :func:`target_distance_figure`: accuracy of fixed models as the target moves from the last
  training item to the validation and the test target;
- :func:`budget_table`: training prompts and optimizer steps per stage under this build's
  profile and under OpenP5's recipe (the ``gpu`` profile), computed by
  :func:`llmrec_lite.settings.training_steps`.

Rows are identified by their fields (``variant``, ``stage``, ``task``, ``template``), never
by taking their labels apart. The functions return tables, numbers and short verdict words
(``"above"``, ``"below zero"``, ``"holds"``); the sentences around them are written in the
chapter's Markdown, which pastes them with ``{glue:text}``.
"""

from __future__ import annotations

import math

from llmrec_lite.pipeline import (LATE_FUSION, LLM_ALONE_VS_WALS, LLM_RUNS, S2_VS_LLM_ALONE, S2_VS_SASREC, SASREC_LABEL,
                                  evaluations_for, llm_runs, stages_to_train)
from llmrec_lite.settings import TrainSettings, prompts_per_task, training_steps
from llmrec_lite.variants import ITEM_TOKEN, Variant

# pandas and plotly are the book's optional extras (pip install llmrec-lite[book]): imported
# where a table or figure is made, so the pipeline writes results.json without them.

MAIN_TASK, MAIN_TEMPLATE = "sequential", "seen"
CLASSIC = "classic"

# columns of the main table: results.json key -> header
MAIN_COLUMNS = {"model": "model", "task": "task", "template": "template", "users": "users", "hr@5": "HR@5",
                "hr@10": "HR@10", "hr@10_ci95": "HR@10 95% CI", "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10",
                "hr@10_masked": "HR@10 masked", "hr@10_masked_ci95": "HR@10 masked 95% CI"}


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


def users_label(result: dict) -> str:
    """Which test users a dataset's rows were evaluated on, in words.

    ``"all 1,090 users"`` or ``"2,000 of 22,363 users: one seeded subset ..."`` (the run's
    ``users_rule``), plus the rows evaluated on fewer users (text-id rows: beam search is the
    slow part), so that a reader of one table knows what its HR@10s average over.

    Args:
        result: A ``results.json`` dictionary (``num_users``, ``evaluated_users``, ``users_rule``;
            results written before those keys fall back to the rows' ``users``).
    """
    rows = result.get("rows", [])
    num, evaluated = result.get("num_users"), result.get("evaluated_users")
    if num is None or evaluated is None:
        counts = sorted({int(r["users"]) for r in rows if r.get("users")}, reverse=True)
        return f"{' or '.join(f'{c:,}' for c in counts) or 'an unrecorded number of'} users (see the users column)"
    if evaluated >= num:
        text = f"all {num:,} users"
    else:
        text = f"{evaluated:,} of {num:,} users: {result.get('users_rule', 'a seeded subset')}"
    fewer = [r for r in rows if r.get("users") is not None and r["users"] < evaluated]
    for output in dict.fromkeys(r.get("output") or r["variant"] for r in fewer):
        users = min(r["users"] for r in fewer if (r.get("output") or r["variant"]) == output)
        text += f"; {output} rows on {users:,} of them"
    return text


def table_label(result: dict, display_name: str | None = None) -> str:
    """The line printed above one dataset's main table: dataset, users evaluated, backbone,
    profile and hardware (the table itself keeps to metrics).

    Args:
        result: A ``results.json`` dictionary.
        display_name: The dataset's name as the book writes it (default: its key).
    """
    made_by = provenance(result)
    return (f"{display_name or result['dataset']}: {users_label(result)}. Backbone {made_by['backbone']}, "
            f"profile {made_by['profile']}, {made_by['hardware']}.")


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


def stage_budget(profile, variant: Variant | str, stage: int, num_train_samples: int) -> dict:
    """Training prompts and optimizer steps of one stage under a profile.
    Args:
        profile: A :class:`~llmrec_lite.profiles.Profile` (``get_profile("gpu")`` is OpenP5's recipe).
        variant, stage: Which model and stage.
        num_train_samples: Training prefixes of the split (``split.num_train_samples``).

    Returns:
        ``{"prompts": ..., "steps": ...}``: prompts over all tasks and epochs, and the steps
        :func:`llmrec_lite.settings.training_steps` counts for them.
    """
    settings = TrainSettings.from_profile(profile, stage, variant)
    prompts = prompts_per_task(settings, num_train_samples) * len(settings.tasks) * settings.epochs
    return {"prompts": prompts, "steps": training_steps(settings, num_train_samples)}


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
    # a published row without HR@10 (the paper's SASRec on Beauty reports HR@5 only) has no marker
    published = [r for r in references if r["rule"] == "unmasked" and r["task"] == MAIN_TASK
                 and r.get("hr@10") is not None]
    fig.add_trace(go.Scatter(x=[r["hr@10"] for r in published], y=[r["model"] for r in published], mode="markers",
                             marker=dict(symbol="diamond", size=9, color="gray"), name="published (see sources)"))
    fig.update_layout(title=title, xaxis_title="HR@10", yaxis=dict(autorange="reversed", automargin=True),
                      legend=dict(orientation="h", y=-0.15))
    return fig



def target_distance_figure(rows: list[dict], title: str):
    """HR@10 of each model at each target of :func:`llmrec_lite.evaluate.accuracy_by_target_distance`,
    oldest target first, one line per model (solid: unmasked; dotted: history masked)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: -r["steps_back"])
        x = [r["target"] for r in mine]
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(x=x, y=[r["hr@10"] for r in mine], mode="lines+markers", name=model,
                                 line=dict(color=color)))
        fig.add_trace(go.Scatter(x=x, y=[r["hr@10_masked"] for r in mine], mode="lines+markers",
                                 name=f"{model}, masked", line=dict(dash="dot", color=color)))
    fig.update_layout(title=title, yaxis_title="HR@10", legend=dict(orientation="h", y=-0.2))
    return fig


def distance_value(rows: list[dict], model: str, steps_back: int, key: str = "hr@10") -> float:
    """One value of :func:`llmrec_lite.evaluate.accuracy_by_target_distance`'s rows."""
    return next(r[key] for r in rows if r["model"] == model and r["steps_back"] == steps_back)


# --------------------------------------------------------------------------- what the build contains


def fusion_row(rows: list[dict]) -> dict | None:
    """The late-fusion row (stage-2 item-token scores plus the WALS score), ``None`` when the
    build's profile adds none (``cf_weight = 0``)."""
    return next((r for r in rows if r["variant"] == LATE_FUSION), None)


def fusion_figure(records: list[dict], names: dict[str, str] | None = None):
    """HR@10 of the fusion records against the late-fusion weight, one colour per dataset
    (solid: far target, unmasked; dotted: far, history masked; dashed: near, unmasked)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for i, rec in enumerate(records):
        name, color = (names or {}).get(rec["dataset"], rec["dataset"]), qualitative.Plotly[i % len(qualitative.Plotly)]
        x = [r["weight"] for r in rec["weights"]]
        for key, target, dash, what in (("hr@10", "far", "solid", "2 items past training"),
                                        ("hr@10_masked", "far", "dot", "2 items past, masked"),
                                        ("hr@10", "near", "dash", "1 item past")):
            fig.add_trace(go.Scatter(x=x, y=[r[target][key] for r in rec["weights"]], mode="lines+markers",
                                     name=f"{name}, {what}", line=dict(color=color, dash=dash)))
    fig.update_layout(title="Late fusion: validation HR@10 against the weight of the WALS score",
                      xaxis_title="weight of the standardised WALS score (0: the model alone)", yaxis_title="HR@10",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def has_row(rows: list[dict], variant: Variant | str, stage: int, task: str = MAIN_TASK,
            template: str = MAIN_TEMPLATE) -> bool:
    """Whether the results hold this row (a ``"lean"`` evaluation grid leaves some out)."""
    try:
        find_row(rows, variant, stage, task, template)
    except KeyError:
        return False
    return True


def main_row_only(profile, names: dict[str, str]) -> list[tuple[str, str]]:
    """The final models (stage 2 and the baselines) a profile's evaluation grid evaluates on
    the main row only (sequential task, seen template), as ``(dataset name, model label)``;
    the others are evaluated on both tasks with the first training template and the held-out
    one. A ``"full"`` grid leaves none out; the cpu profile's ``"lean"`` grid leaves some.

    Args:
        profile: The build's :class:`~llmrec_lite.profiles.Profile`.
        names: ``{dataset: display name}`` of the build's datasets, main dataset first.
    """
    return [(name, label) for dataset, name in names.items() for variant, stage, label in llm_runs(profile, dataset)
            if stage == 2 and len(evaluations_for(stage, variant, profile, dataset)) == 1]


# --------------------------------------------------------------------------- paired comparisons

# the comparisons :func:`llmrec_lite.pipeline.paired_comparisons` writes
S2_VS_S1, S2_VS_NOCF, S1_VS_NOCF = "stage 2 - stage 1", "stage 2 - no CF embeddings", "stage 1 - no CF embeddings"
S2_VS_WALS = "stage 2 - WALS"
# with a late-fusion weight (Profile.cf_weight), also these two
FUSED_VS_S2, FUSED_VS_WALS = "late fusion - stage 2", "late fusion - WALS"


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


def find_paired(paired: list[dict], comparison: str, rule: str = "unmasked") -> dict | None:
    """One entry of ``results.json``'s ``paired`` (``None`` when the run has none)."""
    return next((p for p in paired or [] if p["comparison"] == comparison and p["rule"] == rule), None)


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


NOT_COMPUTED = "not computed in this build"


def paired_words(entry: dict | None) -> str:
    """Where one paired comparison's interval lies, in the words the book prints (``"above
    zero"``, ``"below zero"``, ``"not separated from zero"``), or :data:`NOT_COMPUTED` for an
    entry the build has not (``None``: a comparison with a row the profile does not make)."""
    return NOT_COMPUTED if entry is None else PAIRED_WORDS[entry["verdict"]]


# --------------------------------------------------------------------------- the title question

# stage 2 against each ranker that bears on "does the LLM add to the CF model it reads?"
QUESTION_ROWS = ((S2_VS_WALS, "WALS, the CF vectors it reads"), (S2_VS_SASREC, "SASRec"),
                 (S2_VS_S1, "stage 1 (LLM frozen)"), (S2_VS_NOCF, "the same LLM without CF embeddings"),
                 (S2_VS_LLM_ALONE, "its own LLM term alone (WALS weight set to 0)"))


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


LLM_ADDS = {"above": "adds to", "below": "takes away from", "not separated": "is not shown to add to"}


def llm_adds_words(paired: list[dict]) -> str:
    """The answer to the title question on one dataset, from stage 2 - WALS history masked:
    ``"adds to"`` (interval above zero), ``"takes away from"`` (below) or ``"is not shown to
    add to"`` (the interval holds zero); :data:`NOT_COMPUTED` without that comparison."""
    entry = find_paired(paired, S2_VS_WALS, "masked")
    return NOT_COMPUTED if entry is None else LLM_ADDS[paired_verdict(entry["ci95"])]


def question_sentence(result: dict, name: str) -> str:
    """One dataset's answer to the title question in words, every number read from its
    ``results.json``: the verdict of stage 2 - WALS (masked, paired), the head's learned WALS
    weight and known-item offset, the top-10 overlap with WALS, and the LLM term alone."""
    paired, share = result["paired"], result["llm_share"]["stage 2"]
    head, overlap = share["head"], share["overlap with WALS"]

    def interval(comparison):
        entry = find_paired(paired, comparison, "masked")
        return "not computed" if entry is None else \
            f"{entry['difference']:+.4f} [{entry['ci95'][0]:+.4f}, {entry['ci95'][1]:+.4f}]"

    text = (f"On {name}, stage 2 {llm_adds_words(paired)} the WALS model it reads (stage 2 - WALS, masked: "
            f"{interval(S2_VS_WALS)}); its head weighs the WALS score by w = {head['cf_weight']:.3f}, offsets "
            f"consumed items by c = {head['known_bias']:.2f}, and its top-10 lists share "
            f"{overlap['top_k_jaccard']:.0%} of their items with WALS's (mean Jaccard).")
    alone = share.get("llm_term_alone_hr@10_masked")
    if alone is not None:
        text += (f" Its LLM term alone reaches HR@10 {alone:.4f} masked against {share['hr@10_masked']:.4f} for the "
                 f"whole head (LLM term alone - WALS: {interval(LLM_ALONE_VS_WALS)}).")
    return text


# --------------------------------------------------------------------------- the paper's comparison

# the paper's headline claim: its stage 2 beats SASRec on this dataset
PAPER_CLAIM_DATASET = "beauty"
PAPER_STAGE2 = "Llama-Embed-Stage-2 (paper)"
PAPER_SASREC = "SASRec (paper)"
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


def intervals_overlap(a, b) -> bool | None:
    """Whether two intervals share a point (``None`` when either is missing)."""
    if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def sasrec_claim(result: dict) -> dict:
    """Does "stage 2 beats SASRec" hold on one dataset of this build?
    It holds when stage 2's HR@10 is above SASRec's and their bootstrap 95% intervals do not
    overlap. For two models evaluated on the same users this test is conservative (a paired
    interval would be narrower): passing it is strong evidence, while overlapping intervals
    alone do not show the models equal; the verdict then says "is not shown".

    Args:
        result: A ``results.json`` dictionary.

    Returns:
        ``{"unmasked": {...}, "masked": {...}, "verdict"}``; each rule holds ``stage2``,
        ``sasrec``, ``difference`` (stage 2 - SASRec), their intervals and ``overlap``.
    """
    s2, sas = find_row(result["rows"], ITEM_TOKEN, 2), classic_row(result["rows"], SASREC_LABEL)
    out = {}
    for rule, suffix in (("unmasked", ""), ("masked", "_masked")):
        a, b = s2[f"hr@10{suffix}"], sas[f"hr@10{suffix}"]
        ca, cb = s2.get(f"hr@10{suffix}_ci95"), sas.get(f"hr@10{suffix}_ci95")
        out[rule] = {"stage2": a, "sasrec": b, "difference": a - b, "stage2_ci95": ca, "sasrec_ci95": cb,
                     "overlap": intervals_overlap(ca, cb)}
    u = out["unmasked"]
    if u["difference"] <= 0:
        out["verdict"] = "does not hold"
    elif u["overlap"] is False:
        out["verdict"] = "holds"
    else:
        out["verdict"] = "is not shown (stage 2 is above, but the intervals overlap)"

    return out


OVERLAP_WORDS = {True: "overlap", False: "do not overlap", None: "not recorded"}


def claim_table(claims: dict[str, dict], names: dict[str, str] | None = None):
    """:func:`sasrec_claim` of every dataset as a table: stage 2 - SASRec under both rules,
    whether the two 95% intervals overlap, and the verdict on "beats SASRec".

    Args:
        claims: ``{dataset: sasrec_claim(...)}``.
        names: ``{dataset: display name}`` (default: the keys).
    """
    import pandas as pd

    records = []
    for dataset, claim in claims.items():
        u, m = claim["unmasked"], claim["masked"]
        records.append({"dataset": (names or {}).get(dataset, dataset), "stage 2 - SASRec": u["difference"],
                        "intervals": OVERLAP_WORDS[u["overlap"]], "“beats SASRec”": claim["verdict"],
                        "masked: stage 2 - SASRec": m["difference"], "masked intervals": OVERLAP_WORDS[m["overlap"]]})
    return pd.DataFrame(records, columns=["dataset", "stage 2 - SASRec", "intervals", "“beats SASRec”",
                                          "masked: stage 2 - SASRec", "masked intervals"])


# --------------------------------------------------------------------------- SASRec against published runs


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


def sasrec_curve_figure(results: dict[str, dict], names: dict[str, str] | None = None):
    """SASRec's validation HR@10 per epoch on every dataset (from its row's ``curve``), the
    epoch early stopping kept marked.

    Args:
        results: ``{dataset: results.json dictionary}``.
        names: ``{dataset: display name}`` (default: the keys).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for dataset, result in results.items():
        row = classic_row(result["rows"], SASREC_LABEL)
        curve = row.get("curve") or []
        name = (names or {}).get(dataset, dataset)
        fig.add_trace(go.Scatter(x=[c["epoch"] for c in curve], y=[c["valid_hr@10"] for c in curve], mode="lines",
                                 name=name))
        kept = [c for c in curve if c["epoch"] == row.get("best_epoch")]
        if kept:
            fig.add_trace(go.Scatter(x=[kept[0]["epoch"]], y=[kept[0]["valid_hr@10"]], mode="markers",
                                     marker=dict(size=10, symbol="star"), name=f"{name}: epoch kept"))
    fig.update_layout(title="SASRec: validation HR@10 per epoch (star: the epoch early stopping kept)",
                      xaxis_title="epoch", yaxis_title="validation HR@10 (unmasked)",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def sasrec_runs_table(results: dict[str, dict], names: dict[str, str] | None = None):
    """How long SASRec trained on each dataset: the epoch early stopping kept, the epochs run, minutes."""
    import pandas as pd

    records = []
    for dataset, result in results.items():
        row = classic_row(result["rows"], SASREC_LABEL)
        records.append({"dataset": (names or {}).get(dataset, dataset), "epoch kept": row.get("best_epoch"),
                        "epochs run": row.get("epochs_run"), "minutes": row.get("train_seconds", 0.0) / 60})
    return pd.DataFrame(records, columns=["dataset", "epoch kept", "epochs run", "minutes"])
