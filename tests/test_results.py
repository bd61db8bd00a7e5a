"""The results chapter's tables and figures, on synthetic results.json rows."""

import math

import pytest

pd = pytest.importorskip("pandas")

from llmrec_lite import results as R
from llmrec_lite.batching import training_steps
from llmrec_lite.profiles import get_profile
from llmrec_lite.results.rows import LLM_RUNS
from llmrec_lite.settings import TrainSettings, stage_budget
from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT, TEXT_ID, TEXT_ID_TEXT


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
    assert table["HR@10 masked 95% CI"].iloc[0] == "-"  # the fixture's rows carry no masked interval
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
    pytest.importorskip("plotly")  # a book extra (pip install -e ".[book]")
    pivot = R.template_table(result["rows"])
    assert pivot.loc[LLM_RUNS[1][2], ("sequential", "unseen")] == 0.2
    assert "popularity" not in pivot.index
    refs = [{"model": "X", "task": "sequential", "rule": "unmasked", "hr@10": 0.07, "source": "paper"},
            {"model": "Y", "task": "sequential", "rule": "masked", "hr@10": 0.06, "ndcg@10": 0.03, "source": "s3rec"}]
    published = R.published_table(refs)
    assert list(published.columns) == ["model", "task", "rule", "HR@5", "HR@10", "NDCG@10", "source"]
    assert published["NDCG@10"].isna().tolist() == [True, False]
    refs.append({"model": "Z", "task": "sequential", "rule": "unmasked", "hr@5": 0.04, "source": "paper"})
    fig = R.hr10_figure(result["rows"], refs, "title")
    bars, markers = fig.data
    assert list(bars.y) == [label for _, _, label in LLM_RUNS] + ["popularity"]
    assert bars.error_x.array[0] == pytest.approx(0.02) and bars.error_x.arrayminus[-1] == 0.0
    assert list(markers.y) == ["X"]  # published HR@10s under our rule only (Z published HR@5 only)


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
    budget = stage_budget(gpu, TEXT_ID, 1, n)
    settings = TrainSettings.from_profile(gpu, 1, TEXT_ID)
    assert budget["steps"] == training_steps(settings, n)
    assert budget["prompts"] == int(gpu.sample_ratio * n) * len(settings.tasks) * gpu.epochs
    ours = stage_budget(cpu, TEXT_ID, 1, n)
    assert ours["prompts"] == cpu.text_id_samples[0] * len(settings.tasks) * cpu.epochs
    table = R.budget_table(cpu, gpu, n)
    assert len(table) == 7  # every trained stage: both stages of three variants, stage 2 of the text-id baseline
    assert list(table.columns) == ["model", "stage", "prompts (cpu)", "steps (cpu)", "prompts (gpu)", "steps (gpu)"]
    assert (table["steps (gpu)"] > table["steps (cpu)"]).all()
    lean = R.budget_table(cpu, gpu, n, cpu.results_datasets[0])
    assert lean["trained here"].tolist().count("no") == 1  # the lean grid skips the text-id baseline
    assert R.budget_table(gpu, gpu, n, "lastfm")["trained here"].eq("yes").all()


def test_lean_grid_keeps_the_text_id_row_on_the_main_dataset_only():
    from llmrec_lite.results.rows import evaluations_for, llm_runs
    from llmrec_lite.variants import ITEM_TOKEN, TEXT_ID, TEXT_ID_TEXT
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


# --------------------------------------------------------------------------- the cpu profile's lean, two-dataset shape

NUM_USERS = {"lastfm": 1090, "beauty": 22363}


def classic(model, hr10, ci, masked, masked_ci, users, **extra):
    return {"model": model, "variant": "classic", "output": None, "use_embeddings": None, "stage": None,
            "task": "no prompt", "template": None, "targets": "test", "users": users, "hr@5": hr10 * 0.7,
            "hr@10": hr10, "ndcg@5": hr10 / 3, "ndcg@10": hr10 / 2.5, "hr@5_masked": masked * 0.7,
            "hr@10_masked": masked, "hr@10_ci95": ci, "hr@10_masked_ci95": masked_ci, **extra}


def lean_result(dataset, s2=0.08, sasrec=0.05, sasrec_ci=(0.04, 0.06), sasrec_masked_ci=(0.055, 0.075)):
    """A ``results.json`` shaped as the cpu profile writes it (rows from its lean grid)."""
    from llmrec_lite.results.rows import SASREC_LABEL, evaluations_for, llm_runs

    cpu = get_profile("cpu")
    evaluated = min(cpu.eval_users or NUM_USERS[dataset], NUM_USERS[dataset])
    rows = []
    for variant, stage, label in llm_runs(cpu, dataset):
        for task, template in evaluations_for(stage, variant, cpu, dataset):
            hr10 = s2 if (variant, stage) == (ITEM_TOKEN, 2) else 0.03
            row = llm_row(variant, stage, label, task, template, hr10=hr10, masked=hr10 + 0.01)
            row["users"] = evaluated if variant.output == "item-token" else cpu.text_id_eval_users
            row["hr@10_ci95"] = [hr10 - 0.01, hr10 + 0.01]
            if variant.output == "item-token":
                row["hr@10_masked_ci95"] = [hr10, hr10 + 0.02]
                row["hr@5_masked"] = hr10 / 2
            rows.append(row)
    curve = [{"epoch": e, "train_loss": 9.0 - e, "valid_hr@10": 0.01 * e if e <= 4 else 0.04} for e in range(1, 7)]
    rows += [classic("popularity", 0.02, [0.015, 0.025], 0.02, [0.015, 0.025], evaluated),
             classic(SASREC_LABEL, sasrec, list(sasrec_ci), 0.065, list(sasrec_masked_ci), evaluated,
                     curve=curve, best_epoch=4, epochs_run=6, train_seconds=90.0, seconds_per_epoch=15.0)]
    paired = []
    for comparison in (R.S2_VS_S1, R.S2_VS_NOCF, R.S1_VS_NOCF, R.S2_VS_WALS, R.S2_VS_SASREC):  # as the pipeline writes them
        paired.append({"comparison": comparison, "rule": "unmasked", "key": "hr@10", "difference": 0.05,
                       "ci95": [0.03, 0.07], "users": evaluated, "verdict": "above"})
        masked_ci = [-0.01, 0.01]
        if comparison == R.S2_VS_SASREC:  # stage 2's masked HR@10 against SASRec's, +- 0.005
            gap = (s2 + 0.01) - 0.065
            masked_ci = [gap - 0.005, gap + 0.005]
        paired.append({"comparison": comparison, "rule": "masked", "key": "hr@10", "difference": sum(masked_ci) / 2,
                       "ci95": masked_ci, "users": evaluated, "verdict": R.paired_verdict(masked_ci)})
    trained = {(v, s) for v, stage, _ in llm_runs(cpu, dataset) for s in ((1, 2) if stage == 2 else (stage,))}
    training = {f"{v}/stage{s}": {"variant": v.name, "stage": s, "samples": 32 * s, "steps": 8 * s,
                                  "seconds": 60.0 * s, "final_val_loss": 5.0 - s - (0.5 if v.use_embeddings else 0)}
                for v, s in trained}
    rule = ("every user" if evaluated == NUM_USERS[dataset] else
            f"one seeded subset of {cpu.eval_users} users (seed 0), shared by every item-token and classic row")
    return {"dataset": dataset, "profile": "cpu", "backbone": "HuggingFaceTB/SmolLM2-135M", "indexing": "sequential",
            "machine": {"cpu_model": "Some CPU", "torch_threads": 2}, "training": training, "rows": rows,
            "num_users": NUM_USERS[dataset], "evaluated_users": evaluated, "users_rule": rule, "paired": paired,
            "llm_share": {f"stage {s}": {"head": {"cf_weight": 0.4, "known_bias": -5.0}, "hr@10_masked": 0.06,
                                         "overlap with WALS": {"top_k_jaccard": 0.7}} for s in (1, 2)}}


@pytest.fixture
def lean():
    return {"lastfm": lean_result("lastfm"), "beauty": lean_result("beauty", s2=0.03, sasrec=0.05)}


NAMES = {"lastfm": "LastFM", "beauty": "Beauty"}


def test_lean_shape_has_no_text_id_baseline(lean):
    rows = lean["lastfm"]["rows"]
    assert R.has_row(rows, TEXT_ID, 2) and not R.has_row(rows, TEXT_ID_TEXT, 2) and not R.has_row(rows, TEXT_ID, 1)
    assert not any(r["output"] == "text-id" for r in lean["beauty"]["rows"])


def test_table_label_states_the_users(lean):
    label = R.table_label(lean["beauty"], "Beauty")
    assert label.startswith("Beauty: all 22,363 users.")  # the cpu profile scores every user
    assert "Backbone SmolLM2-135M, profile cpu, Some CPU (2 threads)." in label
    subset = {**lean["beauty"], "evaluated_users": 2000,
              "users_rule": "one seeded subset of 2000 users (seed 0), shared by every item-token and classic row"}
    assert R.table_label(subset, "Beauty").startswith(
        "Beauty: 2,000 of 22,363 users: one seeded subset of 2000 users (seed 0)")
    lastfm = R.table_label(lean["lastfm"], "LastFM")
    assert lastfm.startswith("LastFM: all 1,090 users; text-id rows on 100 of them.")
    legacy = {k: v for k, v in lean["beauty"].items() if k not in ("num_users", "evaluated_users")}
    assert R.users_label(legacy) == "22,363 users (see the users column)"  # results written before the keys


def test_main_table_shows_the_masked_interval(lean):
    table = R.main_table(lean["beauty"]["rows"])
    assert table["HR@10 masked 95% CI"].iloc[0] == "0.030–0.050"
    assert table["HR@10 masked 95% CI"].iloc[-1] == "0.055–0.075"  # SASRec: classic rows carry it too
    lastfm = R.main_table(lean["lastfm"]["rows"])
    assert lastfm.loc[lastfm.model == LLM_RUNS[4][2], "HR@10 masked 95% CI"].iloc[0] == "-"  # text id


def test_main_row_only_names_what_a_lean_grid_leaves_out():
    assert R.main_row_only(get_profile("cpu"), NAMES) == [("LastFM", "text id, CF embeddings, stage 2"),
                                                          ("Beauty", "item token, CF embeddings, stage 2"),
                                                          ("Beauty", "item token, ids as text (no CF)")]
    assert R.main_row_only(get_profile("smoke"), {"lastfm": "LastFM"}) == []  # a full grid leaves none out
    assert R.main_row_only(get_profile("gpu"), {"lastfm": "LastFM", "beauty": "Beauty"}) == []


def test_side_of_target_reads_the_printed_precision():
    assert R.side_of_target(0.0807339, 0.0807) == {"side": "level with", "gap": 0.0}
    assert R.side_of_target(0.0835, 0.0807) == {"side": "above", "gap": pytest.approx(0.0028)}
    assert R.side_of_target(0.0752, 0.0807) == {"side": "below", "gap": pytest.approx(0.0055)}
    assert R.side_of_target(0.08074, 0.0807, digits=5) == {"side": "above", "gap": pytest.approx(0.00004)}
    # the printed values decide: 0.080651 prints as 0.0807, and 0.08084 against 0.08066 as 0.0808 against 0.0807
    assert R.side_of_target(0.080651, 0.0807)["side"] == "level with"
    assert R.side_of_target(0.080649, 0.0807) == {"side": "below", "gap": pytest.approx(0.0001)}  # prints as 0.0806
    assert R.side_of_target(0.08084, 0.08066) == {"side": "above", "gap": pytest.approx(0.0001)}
    with pytest.raises(ValueError, match="NaN"):
        R.side_of_target(float("nan"), 0.0725)


def test_paired_table_and_words(lean):
    table = R.paired_table(lean, NAMES)
    assert len(table) == 20 and list(table["dataset"].unique()) == ["LastFM", "Beauty"]  # 5 comparisons x 2 rules x 2
    assert table["paired 95% CI"].iloc[0] == "[+0.0300, +0.0700]"
    assert table["interval"].tolist()[:2] == ["above zero", "not separated from zero"]
    entry = R.find_paired(lean["lastfm"]["paired"], R.S2_VS_NOCF, "masked")
    assert entry["difference"] == 0.0 and R.find_paired([], R.S2_VS_S1) is None
    assert R.paired_words(R.find_paired(lean["lastfm"]["paired"], R.S2_VS_S1)) == "above zero"
    assert R.paired_words(entry) == "not separated from zero"
    assert R.paired_words(None) == R.NOT_COMPUTED == "not computed in this build"
    assert [R.paired_verdict(ci) for ci in ([0.01, 0.02], [-0.02, -0.01], [-0.01, 0.01], [0.0, 0.01])] == \
        ["above", "below", "not separated", "not separated"]


def test_paired_words_flip_when_the_interval_crosses_zero():
    """The verdict word follows the interval, not the mean: moving the same interval across
    zero turns "above zero" into "not separated from zero" and then into "below zero"."""
    def entry(lo, hi):
        return {"difference": (lo + hi) / 2, "ci95": [lo, hi], "verdict": R.paired_verdict((lo, hi))}

    words = [R.paired_words(entry(lo, lo + 0.02)) for lo in (0.001, -0.001, -0.019, -0.021)]
    assert words == ["above zero", "not separated from zero", "not separated from zero", "below zero"]


def test_question_table_sets_stage_2_against_each_ranker(lean):
    table = R.question_table(lean, NAMES)
    assert len(table) == 2 * len(R.QUESTION_ROWS) and table["dataset"].tolist()[0] == "LastFM"
    wals = table.iloc[0]
    assert wals["stage 2 against"].startswith("WALS") and wals["masked difference"] == 0.0
    assert wals["masked paired 95% CI"] == "[-0.0100, +0.0100]" and wals["unmasked paired 95% CI"] == "[+0.0300, +0.0700]"
    assert wals["masked interval"] == "not separated from zero"
    alone = table.iloc[len(R.QUESTION_ROWS) - 1]  # the fixture has no LLM-alone entry: shown as not computed
    assert alone["masked paired 95% CI"] == "-" and alone["masked interval"] == R.NOT_COMPUTED


def test_the_title_answer_flips_with_its_interval():
    """Stage 2 - WALS (masked) decides the words: above zero "adds to", straddling zero "is
    not shown to add to", below zero "takes away from"; the sentence carries its numbers."""
    def result(lo, hi, alone=None):
        paired = [{"comparison": R.S2_VS_WALS, "rule": "masked", "difference": (lo + hi) / 2, "ci95": [lo, hi],
                   "users": 100, "verdict": R.paired_verdict((lo, hi))}]
        share = {"head": {"cf_weight": 0.5, "known_bias": -3.0}, "overlap with WALS": {"top_k_jaccard": 0.8},
                 "hr@10_masked": 0.1}
        if alone is not None:  # the LLM term alone - WALS interval
            paired.append({"comparison": R.LLM_ALONE_VS_WALS, "rule": "masked", "difference": sum(alone) / 2,
                           "ci95": list(alone), "users": 100, "verdict": R.paired_verdict(alone)})
        return {"paired": paired, "llm_share": {"stage 2": share}}

    words = [R.llm_adds_words(result(lo, lo + 0.02)["paired"]) for lo in (0.001, -0.001, -0.021)]
    assert words == ["adds to", "is not shown to add to", "takes away from"]
    assert R.llm_adds_words([]) == R.NOT_COMPUTED
    sentence = R.question_sentence(result(-0.021, -0.001, alone=(-0.03, -0.01)), "Shop")
    assert sentence.startswith("On Shop, stage 2 takes away from the WALS model it reads")
    assert "-0.0110 [-0.0210, -0.0010]" in sentence
    assert sentence.endswith("Its LLM term alone lies below WALS.")
    assert R.question_sentence(result(-0.021, -0.001, alone=(-0.01, 0.01)), "Shop").endswith(
        "Its LLM term alone lies level, within its interval, with WALS.")
    assert "LLM term alone" not in R.question_sentence(result(0.001, 0.021), "Shop")


def test_paper_comparison_puts_our_rows_beside_the_papers(lean):
    from llmrec_lite.book import reference_results
    from llmrec_lite.results.rows import SASREC_LABEL

    table = R.paper_comparison(lean, reference_results(), NAMES)
    assert list(table.columns) == ["dataset", "model", "source", *R.COMPARISON_COLUMNS.values()]
    beauty = table[table.dataset == "Beauty"].set_index("model")
    ours = beauty.loc["item token, CF embeddings, stage 2"]
    row = R.find_row(lean["beauty"]["rows"], ITEM_TOKEN, 2)
    assert (ours["HR@10"], ours["HR@5"], ours["HR@10 masked"], ours["HR@5 masked"]) == \
        (row["hr@10"], row["hr@5"], row["hr@10_masked"], row["hr@5_masked"])
    assert ours["source"] == R.THIS_BUILD and ours["HR@10 95% CI"] == "0.0200–0.0400"
    sasrec = beauty.loc[SASREC_LABEL]
    assert sasrec["HR@10"] == 0.05 and sasrec["HR@10 masked 95% CI"] == "0.0550–0.0750"
    # the paper's claim: stage 2 HR@5 .0642 and HR@10 .0744 against SASRec's HR@5 .0387 (unmasked)
    assert (beauty.loc[R.PAPER_STAGE2, "HR@5"], beauty.loc[R.PAPER_STAGE2, "HR@10"]) == (0.0642, 0.0744)
    assert beauty.loc[R.PAPER_SASREC, "HR@5"] == 0.0387 and math.isnan(beauty.loc[R.PAPER_SASREC, "HR@10"])
    assert math.isnan(beauty.loc[R.PAPER_STAGE2, "HR@10 masked"])  # the paper's numbers are unmasked
    lastfm = table[table.dataset == "LastFM"]
    assert R.PAPER_SASREC not in set(lastfm.model) and R.PAPER_STAGE2 in set(lastfm.model)
    assert len(R.paper_comparison({"beauty": lean["beauty"]}, reference_results(), NAMES)) == 4


def test_sasrec_claim_verdicts(lean):
    """"Beats SASRec" is decided by the paired masked interval, not by the rows' own intervals."""
    holds = R.sasrec_claim(lean["lastfm"])  # masked: 0.09 against 0.065, paired [+0.020, +0.030]
    assert holds["verdict"] == "holds" and holds["unmasked"]["overlap"] is False
    assert holds["unmasked"]["difference"] == pytest.approx(0.03)
    below = R.sasrec_claim(lean["beauty"])  # masked: 0.04 against 0.065
    assert below["verdict"].startswith("does not hold") and below["unmasked"]["difference"] == pytest.approx(-0.02)
    close = R.sasrec_claim(lean_result("beauty", s2=0.058))  # paired masked [-0.002, +0.008]
    assert close["verdict"].startswith("is not shown") and close["paired"]["ci95"][0] < 0 < close["paired"]["ci95"][1]
    assert R.intervals_overlap(None, [0, 1]) is None
    table = R.claim_table({"lastfm": holds, "beauty": below}, NAMES)
    assert table["dataset"].tolist() == ["LastFM", "Beauty"]
    assert table["“beats SASRec”"].tolist() == ["holds", R.CLAIM_WORDS["below"]]
    assert table["unmasked intervals"].tolist() == ["do not overlap", "overlap"]
    assert table["unmasked: stage 2 - SASRec"].tolist() == pytest.approx([0.03, -0.02])
    assert table["masked: stage 2 - SASRec"].tolist() == pytest.approx([0.025, -0.025])
    # the verdict flips with the paired interval, whatever the unmasked rows' intervals say
    unmasked_apart = lean_result("lastfm")
    for p in unmasked_apart["paired"]:
        if p["comparison"] == R.S2_VS_SASREC and p["rule"] == "masked":
            p.update(difference=0.002, ci95=[-0.003, 0.007], verdict="not separated")
    assert R.sasrec_claim(unmasked_apart)["unmasked"]["overlap"] is False
    assert R.sasrec_claim(unmasked_apart)["verdict"].startswith("is not shown")
    without = dict(lean["lastfm"], paired=[])
    assert R.sasrec_claim(without)["verdict"] == R.NOT_COMPUTED


def test_sasrec_against_published_numbers(lean):
    from llmrec_lite.book import reference_results

    refs = reference_results()
    lastfm = R.sasrec_published(lean["lastfm"], refs)  # our masked interval [0.055, 0.075]
    assert {c["source"]: c["where"] for c in lastfm} == {"s3rec": "inside", "bsarec": "inside"}
    far = lean_result("beauty", sasrec_masked_ci=(0.07, 0.08))  # S3-Rec's Beauty 0.0605 falls below it
    [check] = R.sasrec_published(far, refs)
    assert check["where"] == "below" and check["published"] == 0.0605
    assert check["ours"] == 0.065 and check["ci95"] == [0.07, 0.08]
    table = R.sasrec_published_table({"lastfm": lean["lastfm"], "beauty": far}, refs, NAMES)
    assert table["published number"].tolist() == ["inside our interval", "inside our interval", "below our interval"]
    assert R.sasrec_published({**far, "dataset": "ml1m"}, refs) == []


def test_sasrec_curve_and_runs(lean):
    pytest.importorskip("plotly")  # a book extra (pip install -e ".[book]")
    fig = R.sasrec_curve_figure(lean, NAMES)
    assert [t.name for t in fig.data] == ["LastFM", "LastFM: epoch kept", "Beauty", "Beauty: epoch kept"]
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5, 6] and list(fig.data[1].x) == [4]
    runs = R.sasrec_runs_table(lean, NAMES)
    assert runs.values.tolist() == [["LastFM", 4, 6, 1.5], ["Beauty", 4, 6, 1.5]]


def test_reference_results_carry_the_compared_facts():
    from llmrec_lite.book import reference_results

    refs = {(r["dataset"], r["model"]): r for r in reference_results()}
    paper, s3rec = refs[("beauty", "SASRec (paper)")], refs[("beauty", "SASRec (S3-Rec paper)")]
    assert (paper["hr@5"], paper["rule"]) == (0.0387, "unmasked")
    assert (s3rec["hr@10"], s3rec["ndcg@10"], s3rec["rule"]) == (0.0605, 0.0318, "masked")
    bsarec = refs[("lastfm", "SASRec (BSARec paper)")]
    assert (bsarec["hr@10"], bsarec["ndcg@10"], bsarec["rule"]) == (0.0633, 0.0355, "masked")
    assert all(r["citation"] for r in refs.values())  # every number names its source


def test_chapter_runs_on_the_lean_two_dataset_shape(lean, monkeypatch, tmp_path):
    """Chapter 7's code on hand-made cpu-profile results (no model is trained): every value its
    prose reads is glued, whichever rows the lean grid left out."""
    import re
    from pathlib import Path
    from types import SimpleNamespace

    jupytext = pytest.importorskip("jupytext")
    import llmrec_lite.book
    import llmrec_lite.evaluate
    import llmrec_lite.pipeline
    import llmrec_lite.plots
    import llmrec_lite.runs
    from llmrec_lite.runs import Run

    chapter = Path(__file__).resolve().parents[1] / "book" / "07_results.md"
    nb = jupytext.read(chapter)
    glued = {}
    fake_runs = {}

    def fake_open(profile, dataset, out, backbone=None, **kwargs):
        split = SimpleNamespace(num_train_samples=20_000 if dataset == "lastfm" else 150_000,
                                num_items=3646 if dataset == "lastfm" else 12101,
                                num_users=1090 if dataset == "lastfm" else 22363)
        fake_runs[dataset] = SimpleNamespace(data=SimpleNamespace(name=dataset, display_name=NAMES[dataset]),
                                             split=split, backbone=object(), out=tmp_path / dataset, wals=None,
                                             profile=get_profile("cpu"), load=lambda variant, stage: stage)
        return fake_runs[dataset]

    def fake_distance(models, split, wals=None, users=None, **kwargs):
        # the test-target points must be the table's rows (the chapter checks); earlier ones are made up
        rows = lean["lastfm"]["rows"]
        now = {label: R.find_row(rows, "item-token", stage)["hr@10"] for label, stage in models.items()}
        now["WALS (dot product)"] = 0.03  # the hand-made rows have popularity only
        return [{"model": m, "steps_back": k, "target": str(k), "hr@10": v * (1 + k), "hr@10_masked": v * (1.1 + k),
                 "users": 1090} for m, v in now.items() for k in (2, 1, 0)]

    monkeypatch.setattr(Run, "open", staticmethod(fake_open))
    monkeypatch.setattr(llmrec_lite.pipeline, "run_pipeline", lambda profile, dataset, out, run=None: lean[dataset])
    monkeypatch.setattr(llmrec_lite.book, "glue", lambda name, value, display=False: glued.__setitem__(name, value))
    monkeypatch.setattr(llmrec_lite.plots, "show", lambda fig, height=None: None)
    monkeypatch.setattr(llmrec_lite.evaluate, "accuracy_by_target_distance", fake_distance)
    monkeypatch.setattr(llmrec_lite.runs, "table_users", lambda run: None)
    namespace = {"display": lambda *args, **kwargs: None}
    for cell in nb.cells:
        if cell.cell_type == "code" and "google.colab" not in cell.source:
            exec(compile(cell.source, str(chapter), "exec"), namespace)
    assert namespace["PROFILE"] == "cpu" and list(namespace["results"]) == ["lastfm", "beauty"]
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    used = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", prose))
    assert used and not used - set(glued), sorted(used - set(glued))
    # the lean grid has no text-id baseline: the prose says so instead of comparing with a missing row
    assert glued["tid_s2"] == "0.0300" and glued["tid_base"] == "not trained under this profile"
    assert glued["cf_helps_text"] == "not compared with"
    assert glued["grid_name"] == "lean" and glued["grid_main_only"] == 3
    assert glued["label_beauty"].startswith("Beauty: all 22,363 users")
    assert glued["claim_lastfm"] == "holds" and glued["claim_beauty"] == R.CLAIM_WORDS["below"]
    assert glued["paper_claim"] == R.CLAIM_WORDS["below"]  # the paper's own dataset, Beauty
    # the main dataset's paired numbers and words; every dataset's are in the table
    assert glued["paired_s2_s1"] == glued["paired_s1_nocf"] == "above zero"
    assert (glued["paired_s2_s1_diff"], glued["paired_s2_s1_lo"], glued["paired_s2_s1_hi"]) == (0.05, 0.03, 0.07)
    assert glued["paired_users"] == 1090
    assert glued["paired_s2_wals_masked"] == "not separated from zero"
    assert glued["paired_fused_s2"] == "not computed in this build"
    assert glued["fused_rows"] == "no" and "fused_hr10" not in glued  # the cpu profile does not fuse
    assert glued["target_side"] == "above" and glued["target_gap"] == pytest.approx(0.08 - 0.0725)
    assert glued["paper_claim_name"] == "Beauty" and glued["paper_sasrec_hr5"] == 0.0387
    assert (glued["sasrec_published_inside"], glued["sasrec_published_count"]) == (3, 3)


def test_recorded_source_names_the_record_and_every_later_addition():
    from llmrec_lite.book import recorded_source

    intel = {"cpu_model": "Intel Xeon", "cpu_count": 2, "processor": "x86_64"}
    amd = {"cpu_model": "AMD EPYC", "cpu_count": 2, "processor": "x86_64"}
    record = {"file": "distance_lastfm_cpu.json", "date": "2026-11-28", "machine": intel}
    assert recorded_source(record, ", bfloat16") == ("RECORDED, not run in this build: distance_lastfm_cpu.json, "
                                                     "2026-11-28, Intel Xeon (2 cores, bfloat16)")
    record["added"] = [{"date": "2026-11-29", "machine": amd, "candidates": ["a", "b"]}]
    assert recorded_source(record).endswith("2026-11-28, Intel Xeon (2 cores); added 2026-11-29, AMD EPYC (2 cores): a, b")
