"""The results chapter's tables and figures, on synthetic results.json rows."""

import math

import pytest

pd = pytest.importorskip("pandas")

from llmrec_lite import results as R
from llmrec_lite.batching import training_steps
from llmrec_lite.pipeline import ITEM_TOKEN, ITEM_TOKEN_TEXT, LLM_RUNS, TEXT_ID, TEXT_ID_TEXT
from llmrec_lite.profiles import get_profile
from llmrec_lite.settings import TrainSettings


def llm_row(variant, stage, label, task="sequential", template="seen", hr10=0.05, masked=0.06):
    row = {"model": label, "variant": variant.name, "output": variant.output, "use_embeddings": variant.use_embeddings,
           "stage": stage, "task": task, "template": template, "targets": "test", "users": 100, "hr@5": hr10 / 2,
           "hr@10": hr10, "ndcg@5": hr10 / 4, "ndcg@10": hr10 / 3, "hr@10_ci95": [hr10 - 0.01, hr10 + 0.02],
           "training_samples": 64}
    if variant.output == "item-token":
        row["hr@10_masked"] = masked
    return row


@pytest.fixture
def result():
    rows = [llm_row(v, s, label, hr10=0.01 * (k + 1)) for k, (v, s, label) in enumerate(LLM_RUNS)]
    rows.append(llm_row(ITEM_TOKEN, 2, "item token, CF embeddings, stage 2", template="unseen", hr10=0.2))
    rows.append(llm_row(ITEM_TOKEN, 2, "item token, CF embeddings, stage 2", task="direct", hr10=0.3))
    rows.append({"model": "popularity", "variant": "classic", "output": None, "use_embeddings": None, "stage": None,
                 "task": "no prompt", "template": None, "targets": "test", "users": 100, "hr@5": 0.01, "hr@10": 0.02,
                 "ndcg@5": 0.005, "ndcg@10": 0.008, "hr@10_masked": 0.03})
    training = {f"{v}/stage{s}": {"variant": v.name, "stage": s, "samples": 32 * s, "steps": 8 * s, "seconds": 60.0 * s,
                                  "final_val_loss": 5.0 - s - (0.5 if v.use_embeddings else 0)}
                for v, s in [(ITEM_TOKEN, 1), (ITEM_TOKEN, 2), (ITEM_TOKEN_TEXT, 2), (TEXT_ID_TEXT, 2)]}
    return {"dataset": "lastfm", "profile": "cpu", "backbone": "HuggingFaceTB/SmolLM2-135M", "indexing": "sequential",
            "machine": {"cpu_model": "Some CPU", "torch_threads": 2}, "training": training, "rows": rows}


def test_provenance_is_stated_once(result):
    assert R.provenance(result) == {"dataset": "lastfm", "profile": "cpu", "backbone": "SmolLM2-135M",
                                    "hardware": "Some CPU (2 threads)", "indexing": "sequential"}
    assert R.hardware_label({"gpu": "NVIDIA H100", "cpu_model": "x"}) == "NVIDIA H100"
    assert R.backbone_label("random tiny Llama built in code") == "random tiny Llama built in code"


def test_main_table_is_compact(result):
    table = R.main_table(result["rows"])
    assert list(table.columns) == list(R.MAIN_COLUMNS.values())
    assert not {"profile", "hardware", "backbone"} & set(table.columns)  # stated above the table instead
    # the LLM rows on the main task and template, in table order, then the classic baselines
    assert list(table["model"]) == [label for _, _, label in LLM_RUNS] + ["popularity"]
    assert table["HR@10 95% CI"].iloc[0] == "0.000–0.030"
    assert table["HR@10 95% CI"].iloc[-1] == "-" and table["template"].iloc[-1] == "-"
    assert math.isnan(table.loc[table.model == LLM_RUNS[3][2], "HR@10 masked"].iloc[0])  # text id: no masked metric
    html = R.styled(table).to_html()
    assert "white-space: normal" in html and "0.0100" in html


def test_find_row_and_classic_row(result):
    rows = result["rows"]
    assert R.find_row(rows, ITEM_TOKEN, 2)["hr@10"] == pytest.approx(0.02)
    assert R.find_row(rows, "item-token", 2, template="unseen")["hr@10"] == 0.2
    assert R.find_row(rows, ITEM_TOKEN, 2, task="direct")["hr@10"] == 0.3
    with pytest.raises(KeyError):
        R.find_row(rows, ITEM_TOKEN, 1, template="unseen")  # stage-1 models: the main row only
    assert R.classic_row(rows, "popularity")["hr@10"] == 0.02
    with pytest.raises(KeyError):
        R.classic_row(rows, "SASRec")


def test_template_and_published_tables(result):
    pivot = R.template_table(result["rows"])
    assert pivot.loc[LLM_RUNS[1][2], ("sequential", "unseen")] == 0.2
    assert "popularity" not in pivot.index
    refs = [{"model": "X", "task": "sequential", "rule": "unmasked", "hr@10": 0.07, "source": "paper"},
            {"model": "Y", "task": "sequential", "rule": "masked", "hr@10": 0.06, "ndcg@10": 0.03, "source": "s3rec"}]
    published = R.published_table(refs)
    assert list(published.columns) == ["model", "task", "rule", "HR@10", "NDCG@10", "source"]
    assert published["NDCG@10"].isna().tolist() == [True, False]
    fig = R.hr10_figure(result["rows"], refs, "title")
    bars, markers = fig.data
    assert list(bars.y) == [label for _, _, label in LLM_RUNS] + ["popularity"]
    assert bars.error_x.array[0] == pytest.approx(0.02) and bars.error_x.arrayminus[-1] == 0.0
    assert list(markers.y) == ["X"]  # published numbers under our rule only


def test_training_and_validation_tables(result):
    training = result["training"]
    table = R.training_table({"lastfm": result})
    assert len(table) == 4 and table["minutes"].tolist() == [1.0, 2.0, 2.0, 2.0]
    assert table["model"].iloc[0] == ITEM_TOKEN.label
    val = R.validation_table(training)
    assert val[["output side", "CF embeddings", "stage"]].values.tolist()[2] == ["item-token", False, 2]
    assert R.stage_result(training, ITEM_TOKEN_TEXT, 2)["final_val_loss"] == 3.0
    legacy = {"item-token/stage2": {"samples": 1}}  # summaries without their identity
    assert R.stage_result(legacy, ITEM_TOKEN, 2) == {"samples": 1}


def test_budget_comes_from_training_steps():
    gpu, cpu = get_profile("gpu"), get_profile("cpu")
    n = 10_000
    budget = R.stage_budget(gpu, TEXT_ID, 1, n)
    settings = TrainSettings.from_profile(gpu, 1, TEXT_ID)
    assert budget["steps"] == training_steps(settings, n)
    assert budget["prompts"] == int(gpu.sample_ratio * n) * len(settings.tasks) * gpu.epochs
    ours = R.stage_budget(cpu, TEXT_ID, 1, n)
    assert ours["prompts"] == cpu.text_id_samples[0] * len(settings.tasks) * cpu.epochs
    table = R.budget_table(cpu, gpu, n)
    assert len(table) == 7  # every trained stage: both stages of three variants, stage 2 of the text-id baseline
    assert list(table.columns) == ["model", "stage", "prompts (cpu)", "steps (cpu)", "prompts (gpu)", "steps (gpu)"]
    assert (table["steps (gpu)"] > table["steps (cpu)"]).all()


def test_lean_grid_keeps_the_text_id_row_on_the_main_dataset_only():
    from llmrec_lite.pipeline import ITEM_TOKEN, TEXT_ID, TEXT_ID_TEXT, evaluations_for, llm_runs
    from llmrec_lite.profiles import get_profile

    cpu, gpu = get_profile("cpu"), get_profile("gpu")
    main, other = cpu.results_datasets
    rows = lambda p, d: {(v, s) for v, s, _ in llm_runs(p, d)}
    assert (TEXT_ID, 2) in rows(cpu, main) and (TEXT_ID, 1) not in rows(cpu, main)
    assert (TEXT_ID_TEXT, 2) not in rows(cpu, main)
    assert all(v.output == "item-token" for v, _ in rows(cpu, other))
    assert len(llm_runs(gpu, other)) == 6
    assert len(evaluations_for(2, ITEM_TOKEN, cpu, main)) == 4
    assert evaluations_for(2, ITEM_TOKEN, cpu, other) == (("sequential", "seen"),)
    assert evaluations_for(2, TEXT_ID, cpu, main) == (("sequential", "seen"),)
    assert len(evaluations_for(2, TEXT_ID, gpu, main)) == 4
