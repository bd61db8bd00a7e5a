"""The rows of the results table and the names of its comparisons: the one place both are defined.

:func:`llmrec_lite.pipeline.run_pipeline` trains the models of :func:`llm_runs`, evaluates each
on the (task, template) pairs of :func:`evaluations_for`, and names its paired comparisons with
the constants below; the tables, verdicts and chapters find rows and comparisons by the same
fields and names (``variant``, ``stage``, ``task``, ``template``), never by taking labels apart.
"""

from __future__ import annotations

from llmrec_lite.templates import TASKS
from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT, TEXT_ID, TEXT_ID_TEXT, Variant

__all__ = ["MAIN_TASK", "MAIN_TEMPLATE", "CLASSIC", "LLM_RUNS", "SASREC_LABEL", "LATE_FUSION", "late_fusion_label",
           "S2_VS_S1", "S2_VS_NOCF", "S1_VS_NOCF", "S2_VS_WALS", "S2_VS_SASREC", "S2_VS_LLM_ALONE",
           "LLM_ALONE_VS_WALS", "FUSED_VS_S2", "FUSED_VS_WALS", "is_main_dataset", "llm_runs", "evaluations_for",
           "stages_to_train", "evaluation_size", "main_row_only", "find_row", "has_row", "classic_row", "main_rows",
           "fusion_row", "stage_result", "find_paired", "distance_value"]

MAIN_TASK, MAIN_TEMPLATE = "sequential", "seen"
CLASSIC = "classic"  # the variant field of a classic baseline's row

# (variant, stage, label): the LLM rows of the results table
LLM_RUNS = (
    (ITEM_TOKEN, 1, "item token, CF embeddings, stage 1"),
    (ITEM_TOKEN, 2, "item token, CF embeddings, stage 2"),
    (ITEM_TOKEN_TEXT, 2, "item token, ids as text (no CF)"),
    (TEXT_ID, 1, "text id, CF embeddings, stage 1"),
    (TEXT_ID, 2, "text id, CF embeddings, stage 2"),
    (TEXT_ID_TEXT, 2, "text id, ids as text (no CF; OpenP5's Llama-S analogue)"),
)


SASREC_LABEL = "SASRec (full softmax)"

# the late-fusion row (stage-2 item-token scores plus the WALS score; see llmrec_lite.late_fusion):
# its own variant name, so that find_row never mistakes it for the model alone
LATE_FUSION = "item-token-cf+wals"


def late_fusion_label(weight: float) -> str:
    """The results-table label of the late-fusion row."""
    return f"item token, CF embeddings, stage 2 + WALS score (late fusion, weight {weight:g})"


# --------------------------------------------------------------------------- paired comparisons

# the names :func:`llmrec_lite.pipeline.paired_comparisons` writes: the steps of the method ...
S2_VS_S1, S2_VS_NOCF, S1_VS_NOCF = "stage 2 - stage 1", "stage 2 - no CF embeddings", "stage 1 - no CF embeddings"
# ... what the LLM adds to the CF model it reads ...
S2_VS_WALS, S2_VS_SASREC = "stage 2 - WALS", "stage 2 - SASRec"
# ... the head's two terms apart (history masked only: the known-item offset is moot there) ...
S2_VS_LLM_ALONE, LLM_ALONE_VS_WALS = "stage 2 - its LLM term alone", "stage 2's LLM term alone - WALS"
# ... and, with a late-fusion weight (Profile.cf_weight), these two
FUSED_VS_S2, FUSED_VS_WALS = "late fusion - stage 2", "late fusion - WALS"


# --------------------------------------------------------------------------- the evaluation grid


def is_main_dataset(profile, dataset: str) -> bool:
    """The first of the profile's results datasets (or a file of one's own) gets the full grid."""
    return dataset not in profile.results_datasets or dataset == profile.results_datasets[0]


def llm_runs(profile, dataset: str) -> tuple[tuple[Variant, int, str], ...]:
    """The LLM rows of one dataset's table under a profile (see ``Profile.evaluation_grid``)."""
    if profile.evaluation_grid == "full":
        return LLM_RUNS
    if profile.evaluation_grid != "lean":
        raise ValueError(f"Unknown evaluation_grid {profile.evaluation_grid!r}; choose 'full' or 'lean'.")
    keep = {(ITEM_TOKEN, 1), (ITEM_TOKEN, 2), (ITEM_TOKEN_TEXT, 2)}
    if is_main_dataset(profile, dataset):
        keep.add((TEXT_ID, 2))
    return tuple(r for r in LLM_RUNS if (r[0], r[1]) in keep)


def evaluations_for(stage: int, variant: Variant = None, profile=None, dataset: str | None = None
                    ) -> tuple[tuple[str, str], ...]:
    """(task, template) pairs evaluated for a model: stage-1 models are intermediate, so only
    the main row (sequential, seen); final models on both tasks, seen and unseen templates
    (under a ``"lean"`` grid only item-token models of the main dataset)."""
    main_row = (("sequential", "seen"),)
    if stage == 1:
        return main_row
    if profile is not None and profile.evaluation_grid == "lean" and (
            variant is None or variant.output != "item-token" or not is_main_dataset(profile, dataset)):
        return main_row
    return tuple((task, template) for task in TASKS for template in ("seen", "unseen"))


def stages_to_train(variant: Variant, stage: int) -> tuple[int, ...]:
    """The stages a row's model needs: stage 2 builds on stage 1, except for the text-only
    text-id baseline, which has nothing to train in stage 1."""
    if stage == 2 and variant != TEXT_ID_TEXT:
        return (1, 2)
    return (stage,)


def evaluation_size(profile, variant: Variant) -> int | None:
    """Test users a variant is evaluated on under a profile (``None``: all)."""
    return profile.eval_users if variant.output == "item-token" else profile.text_id_eval_users


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


def has_row(rows: list[dict], variant: Variant | str, stage: int, task: str = MAIN_TASK,
            template: str = MAIN_TEMPLATE) -> bool:
    """Whether the results hold this row (a ``"lean"`` evaluation grid leaves some out)."""
    try:
        find_row(rows, variant, stage, task, template)
    except KeyError:
        return False
    return True


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


def fusion_row(rows: list[dict]) -> dict | None:
    """The late-fusion row (stage-2 item-token scores plus the WALS score), ``None`` when the
    build's profile adds none (``cf_weight = 0``)."""
    return next((r for r in rows if r["variant"] == LATE_FUSION), None)


def stage_result(training: dict, variant: Variant | str, stage: int) -> dict:
    """The training summary of one stage from ``results.json``'s ``training`` (keyed ``<variant>/stage<k>``)."""
    name = Variant.parse(variant).name
    for r in training.values():
        if r.get("variant") == name and r.get("stage") == stage:
            return r
    return training[f"{name}/stage{stage}"]  # summaries written before they carried their identity


def find_paired(paired: list[dict], comparison: str, rule: str = "unmasked") -> dict | None:
    """One entry of ``results.json``'s ``paired`` (``None`` when the run has none)."""
    return next((p for p in paired or [] if p["comparison"] == comparison and p["rule"] == rule), None)


def distance_value(rows: list[dict], model: str, steps_back: int, key: str = "hr@10") -> float:
    """One value of :func:`llmrec_lite.evaluate.accuracy_by_target_distance`'s rows."""
    return next(r[key] for r in rows if r["model"] == model and r["steps_back"] == steps_back)
