"""Reading the records: rankings, the rule each record chooses by, tables and figures.

A record is a JSON file under ``benchmarks/results/`` written by a runner of
:mod:`lab.runners`. The functions here never train or score anything: they read what a
record measured, so the chapters and :mod:`lab.decisions` can show and check it.
"""

from __future__ import annotations

import math

from lab.catalogue import candidate_matches
from llmrec_lite.results import hardware_label
from llmrec_lite.variants import ITEM_TOKEN, ITEM_TOKEN_TEXT

# pandas and plotly are the book's optional extras (pip install llmrec-lite[book]): imported
# where a table or figure is made, so the record scripts and lab.decisions run without them.


# keys whose values depend on the machine's speed, not on the data (left out when two records are compared)
TIMING_KEYS = frozenset({"seconds", "minutes", "users_per_second", "tokens_per_second", "machine", "date",
                         "prompts_per_second", "targets_per_second",
                         "train_minutes", "final_minutes"})


def without_timings(value):
    """``value`` with every machine-speed-dependent entry removed (for comparing records)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def mean_ranking(records: list[dict], rows: str, metrics, missing: str) -> list[tuple[str, float, float]]:
    """``(name, mean HR@10, mean masked HR@10)`` of the rows (``record[rows]``, named by
    ``"name"``) every record has, best first, ties broken by the masked value; ``metrics``
    picks a row's metric dict. ``missing`` ends the error when the records share no row."""
    names = [row["name"] for row in records[0][rows]]
    common = [n for n in names if all(any(row["name"] == n for row in rec[rows]) for rec in records)]
    if not common:
        raise ValueError(f"The records share no {missing}.")

    def score(name):
        found = [metrics(next(row for row in rec[rows] if row["name"] == name)) for rec in records]
        return sum(m["hr@10"] for m in found) / len(found), sum(m["hr@10_masked"] for m in found) / len(found)

    return sorted(((n, *score(n)) for n in common), key=lambda row: (row[1], row[2]), reverse=True)


def ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(name, mean validation HR@10, mean masked HR@10)`` of every candidate all records
    share (one record per dataset), best first; ties broken by the masked value."""
    return mean_ranking(records, "candidates", lambda c: c["valid"],
                        "candidate; tune the same candidates on every dataset")


def choose(records: list[dict]) -> str:
    """The candidate with the best mean validation HR@10 over the records (one per dataset),
    ties broken by the masked value: a setting must serve every dataset, not one."""
    return ranking(records)[0][0]


def record_table(record: dict):
    """One row per candidate of a record: settings, steps, minutes and validation figures."""
    import pandas as pd

    rows = []
    for c in record["candidates"]:
        # records made before targets were counted have no throughput columns
        speed = ({"prompts / s": c["prompts_per_second"], "targets / s": c["targets_per_second"]}
                 if "targets_per_second" in c else {})
        rows.append({"candidate": c["name"], "steps": c["steps"], "train minutes": c["train_minutes"], **speed,
                     "valid HR@10": c["valid"]["hr@10"], "95% CI": "[{:.3f}, {:.3f}]".format(*c["valid_hr@10_ci95"]),
                     "valid HR@10 masked": c["valid"]["hr@10_masked"], "valid NDCG@10": c["valid"]["ndcg@10"],
                     "valid loss": c["valid_loss"], "best": "yes" if c["name"] == record["best"] else ""})
    return pd.DataFrame(rows)


def curve_figure(records: list[dict]):
    """Validation HR@10 against training minutes, one panel per record (dataset)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(records), subplot_titles=[r["dataset"] for r in records])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for col, record in enumerate(records, start=1):
        for k, c in enumerate(record["candidates"]):
            fig.add_trace(go.Scatter(x=[p["minutes"] for p in c["curve"]], y=[p["val_hr@10"] for p in c["curve"]],
                                     mode="lines+markers", name=c["name"], legendgroup=c["name"], showlegend=col == 1,
                                     line=dict(color=palette[k % len(palette)])), row=1, col=col)
    fig.update_xaxes(title_text="training minutes (stage 1, then stage 2)")
    fig.update_yaxes(title_text="validation HR@10 (subset, sequential)")
    return fig


def split_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(split, mean stage-2 validation HR@10, mean masked HR@10)`` of every split all
    stage-split records share (one record per dataset), best first."""
    final = f"{ITEM_TOKEN.label} stage 2"
    return mean_ranking(records, "splits", lambda r: r["valid"][final], "split; run the same --splits on every dataset")


def choose_split(records: list[dict]) -> tuple[int, int]:
    """The ``(stage-1, stage-2)`` prompts per task with the best mean stage-2 validation HR@10
    over the records (ties: masked), as every dataset's profile shares one split."""
    name = split_ranking(records)[0][0]
    return tuple(next(r for r in records[0]["splits"] if r["name"] == name)["samples_per_task"])


def split_table(record: dict):
    """One row per split of a stage-split record: prompts, minutes, validation HR@10 per model."""
    import pandas as pd

    short = {f"{ITEM_TOKEN.label} stage 1": "stage 1", f"{ITEM_TOKEN.label} stage 2": "stage 2",
             f"{ITEM_TOKEN_TEXT.label} stage 2": "no CF"}
    rows = []
    for row in record["splits"]:
        hr = {f"{short[model]} HR@10": m["hr@10"] for model, m in row["valid"].items()}
        masked = {f"{short[model]} HR@10 masked": m["hr@10_masked"] for model, m in row["valid"].items()
                  if model.endswith("stage 2")}
        rows.append({"prompts per task (stage 1 + 2)": row["name"],
                     "train minutes (CF model)": row["train_minutes"], **hr, **masked,
                     "best": "yes" if row["name"] == record["best"] else ""})
    return pd.DataFrame(rows)


def distance_best(rows: list[dict]) -> str:
    """The distance record's rule: the best stage-2 HR@10 on the far target, then masked."""
    return max(rows, key=lambda r: (r["far"]["hr@10"], r["far"]["hr@10_masked"]))["name"]


def add_to_record(record: dict, new: dict, measured: dict) -> dict:
    """A distance record with ``new``'s candidates added (a candidate of the same name replaced).

    The earlier rows stay as they were measured: a candidate's settings can name profile
    defaults that changed since (the profile now takes a choice of the record itself), so
    running it again would train something else. ``measured`` (machine and date of the new
    rows) is listed under ``"added"``; ``best`` follows the record's rule over every row.

    Raises:
        ValueError: the two records were not measured alike (dataset, profile, backbone,
            shift, users, head).
    """
    same = ("record", "dataset", "profile", "backbone", "steps_back", "users", "head", "targets", "rule")
    differ = [k for k in same if record.get(k) != new.get(k)]
    if differ:
        raise ValueError(f"The new rows were measured differently from the record ({', '.join(differ)} differ); "
                         "make a new record instead (--overwrite).")
    names = [c["name"] for c in new["candidates"]]
    rows = [c for c in record["candidates"] if c["name"] not in names] + new["candidates"]
    added = list(record.get("added", [])) + [{"candidates": names, **measured}]
    return {**record, "candidates": rows, "best": distance_best(rows), "added": added}


def distance_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(candidate, mean far HR@10, mean far masked HR@10)`` of the candidates all distance
    records share (one per dataset), best first."""
    return mean_ranking(records, "candidates", lambda c: c["far"],
                        "candidate; run the same --candidates on every dataset")


def far_ranking_figure(records: list[dict], ranked: list[tuple[str, float, float]], chosen: int | None = None):
    """The distance records' candidates by rank of their mean far HR@10 (black line), each
    dataset's value with its 95% bootstrap interval; ``chosen``: the rank index to mark as
    the profile's candidate."""
    import plotly.graph_objects as go

    names, rank = [n for n, _, _ in ranked], list(range(1, len(ranked) + 1))
    fig = go.Figure(go.Scatter(x=rank, y=[hr for _, hr, _ in ranked], text=names, name="mean over the datasets",
                               line=dict(color="black")))
    for r in records:
        rows = [next(c for c in r["candidates"] if c["name"] == n) for n in names]
        y, ci = [c["far"]["hr@10"] for c in rows], [c["far_hr@10_ci95"] for c in rows]
        fig.add_trace(go.Scatter(x=rank, y=y, text=names, mode="markers", name=r["dataset"], error_y=dict(
            array=[c[1] - v for c, v in zip(ci, y)], arrayminus=[v - c[0] for c, v in zip(ci, y)])))
    if chosen is not None:
        fig.add_annotation(x=rank[chosen], y=ranked[chosen][1], text="the profile's candidate", ax=60, ay=-40)
    fig.update_layout(title="Distance record: stage-2 HR@10 on the far target (bars: 95% bootstrap CI; hover: candidate)",
                      xaxis_title="candidate, by rank of its mean (1: the rule's choice)",
                      yaxis_title="HR@10, two items past training")
    return fig


CF_TERM_TRIALS = ("with the CF term (the base)", "without the CF term", "CF term in stage 1 only")


def _without_off_term(settings: dict) -> dict:
    """A candidate's settings with ``cf_term=False`` dropped: leaving it out means the same."""
    return {k: v for k, v in settings.items() if not (k == "cf_term" and v is False)}


def cf_term_trials(records: list[dict], profile, names: dict[str, str] | None = None):
    """Every distance candidate with the head's CF term that the records also hold without it
    (``cf_term=False``) or with it in stage 1 only (stage 2's ``cf_term=False``), beside those
    rows: far HR@10 per dataset (``CF_TERM_TRIALS``); ``profile's`` says whether the base is the
    candidate the profile trains."""
    import pandas as pd

    rows = []
    for r in records:
        every = [c["settings"] for c in r["candidates"]]
        for base in r["candidates"]:
            settings = base["settings"]
            if settings.get("cf_term") is not True or "cf_term" in settings.get("stage2", {}):
                continue
            variants = ({**settings, "cf_term": False}, {**settings, "stage2": {**settings.get("stage2", {}), "cf_term": False}})
            found = [next((c for c in r["candidates"] if _without_off_term(c["settings"]) == _without_off_term(v)), None)
                     for v in variants]
            if not any(found):
                continue
            mine = candidate_matches(profile, settings, every)
            for label, row in zip(CF_TERM_TRIALS, [base, *found]):
                if row is not None:
                    rows.append({"dataset": (names or {}).get(r["dataset"], r["dataset"]), "base": base["name"],
                                 "profile's": mine, "trial": label, "far HR@10": row["far"]["hr@10"],
                                 "far HR@10 masked": row["far"]["hr@10_masked"],
                                 "stage 1 far HR@10": row["stage1_far"]["hr@10"]})
    return pd.DataFrame(rows, columns=["dataset", "base", "profile's", "trial", "far HR@10", "far HR@10 masked",
                                       "stage 1 far HR@10"])


def cf_term_words(trials) -> str:
    """What leaving the CF term out did, in words: for each base, each trial every dataset
    holds, its mean far HR@10 masked over the datasets against the base's (one run each)."""
    datasets = trials["dataset"].nunique()
    said = []
    for base, group in trials.groupby("base", sort=False):
        complete = group.groupby("trial").filter(lambda g: g["dataset"].nunique() == datasets)
        means = complete.groupby("trial")["far HR@10 masked"].mean()
        if CF_TERM_TRIALS[0] not in means or len(means) < 2:
            continue
        mine = means[CF_TERM_TRIALS[0]]
        who = "the profile's settings" if group["profile's"].iloc[0] else f"“{base}”"
        said.append(f"from {who} ({mine:.4f}), " + "; ".join(
            f"{label} {means[label]:.4f} ({means[label] - mine:+.4f})" for label in CF_TERM_TRIALS[1:] if label in means))
    return ". ".join(said) if said else "no record holds these trials on every dataset yet"


def measured_on(record: dict, name: str) -> str:
    """``"<machine>, <precision>, <date>"`` of a record's row: the last ``added`` batch that
    holds it, else the record's own (a row added later can come from another machine, and
    the training precision, bfloat16 where the CPU multiplies it natively, changes the numbers)."""
    batch = next((b for b in reversed(record.get("added", [])) if name in b["candidates"]), {})
    machine = batch.get("machine", record.get("machine", {}))
    precision = "bfloat16" if machine.get("cuda") or machine.get("cpu_fast_bf16", True) else "float32"
    return f"{hardware_label(machine)}, {precision}, {batch.get('date', record.get('date'))}"


def distance_table(record: dict):
    """One row per candidate of a distance record: minutes, stage-2 HR@10 near and far, stage 1 far,
    and where it was measured."""
    import pandas as pd

    return pd.DataFrame([{
        "candidate": c["name"], "measured on": measured_on(record, c["name"]),
        "train minutes": c["train_minutes"],
        "stage 2 HR@10, 1 item past training": c["near"]["hr@10"],
        "stage 2 HR@10, 2 items past (as test)": c["far"]["hr@10"],
        "same, masked": c["far"]["hr@10_masked"],
        "stage 1 HR@10, 2 items past": c["stage1_far"]["hr@10"],
        "stage 2 - stage 1": "{:+.4f} [{:+.4f}, {:+.4f}]".format(c["stage 2 - stage 1 (far)"]["hr@10"]["difference"],
                                                             *c["stage 2 - stage 1 (far)"]["hr@10"]["ci95"]),
        "best": "yes" if c["name"] == record["best"] else ""} for c in record["candidates"]])


def seed_table(record: dict):
    """One row per seed of a seed record: stage 2's and stage 1's far HR@10 and their paired difference
    (unmasked and masked), and a last row of the means, its difference the seed-averaged one."""
    import pandas as pd

    cell = lambda d: "{:+.4f} [{:+.4f}, {:+.4f}]".format(d["difference"], *d["ci95"])  # noqa: E731
    rows = [{"seed": r["seed"], "stage 2 HR@10": r["far"]["hr@10"], "stage 1 HR@10": r["stage1_far"]["hr@10"],
             "stage 2 - stage 1": cell(r["stage 2 - stage 1 (far)"]["hr@10"]),
             "same, masked": cell(r["stage 2 - stage 1 (far)"]["hr@10_masked"])} for r in record["seeds"]]
    pooled = record["over seeds"]["hr@10"]
    rows.append({"seed": "mean", "stage 2 HR@10": pooled["stage 2"]["mean"], "stage 1 HR@10": pooled["stage 1"]["mean"],
                 "stage 2 - stage 1": cell(pooled["seed-averaged stage 2 - stage 1"]),
                 "same, masked": cell(record["over seeds"]["hr@10_masked"]["seed-averaged stage 2 - stage 1"])})
    return pd.DataFrame(rows)


def seed_summary(record: dict, key: str = "hr@10") -> dict:
    """What a seed record says about stage 2 - stage 1, as numbers and one verdict word.

    Returns:
        ``{"users", "seeds", "min", "max", "seeds_above", "intervals_above", "difference",
        "ci95", "verdict", "sd_stage2", "sd_stage1"}``: the users scored, the number of seeds,
        the smallest and largest of the seeds' differences, how many of them lie above zero
        and how many seeds' own intervals do, the per-user difference averaged over the seeds
        with its paired interval and verdict (``"above"``, ``"below"`` or ``"not separated"``),
        and how far stage 2's and stage 1's HR@10 moved between seeds (standard deviations).
    """
    over = record["over seeds"][key]
    spread, pooled = over["stage 2 - stage 1"], over["seed-averaged stage 2 - stage 1"]
    return {"users": int(record["users"]), "seeds": len(record["seeds"]), "min": spread["min"], "max": spread["max"],
            "seeds_above": over["seeds above zero"], "intervals_above": over["intervals above zero"],
            "difference": pooled["difference"], "ci95": tuple(pooled["ci95"]), "verdict": pooled["verdict"],
            "sd_stage2": over["stage 2"]["sd"], "sd_stage1": over["stage 1"]["sd"]}


def _half_width(ci) -> float:
    """Half the width of an interval ``[low, high]``."""
    return (ci[1] - ci[0]) / 2


def users_to_resolve(record: dict, key: str = "hr@10") -> dict:
    """How many users one run would need for its paired interval of stage 2 - stage 1 to
    resolve the seed-averaged gain of a seed record.

    A paired bootstrap interval narrows as one over the square root of the users, so a run
    whose interval has half-width ``h`` over ``n`` users resolves a gain ``g`` from about
    ``n * (h / g) ** 2`` users. ``h`` is the mean half-width of the seeds' own intervals (one
    run's), ``g`` the size of the per-user difference averaged over the seeds.

    Returns:
        ``{"users", "half_width", "gain", "needed"}``; ``needed`` is ``None`` for a zero gain.
    """
    rows = record["seeds"]
    half = sum(_half_width(r["stage 2 - stage 1 (far)"][key]["ci95"]) for r in rows) / len(rows)
    gain = abs(record["over seeds"][key]["seed-averaged stage 2 - stage 1"]["difference"])
    users = int(record["users"])
    # rounded before the ceiling: a ratio one rounding error above a whole number stays that number
    needed = int(math.ceil(round(users * (half / gain) ** 2, 6))) if gain > 0 else None
    return {"users": users, "half_width": half, "gain": gain, "needed": needed}


MORE_USERS_RECORD = "more_users_{dataset}_{profile}.json"


def more_users_row(record: dict) -> dict:
    """The one candidate of a more-users record.

    A more-users record is a distance record of the profile's own candidate alone, scored on
    more users than the distance record could afford to score every candidate on
    (``benchmarks/distance.py --users N --candidates NAME --out
    benchmarks/results/more_users_<dataset>_<profile>.json``): the same run under the same seed,
    a narrower interval of stage 2 - stage 1 two items past training, still no real test target.

    Raises:
        ValueError: the record holds more or fewer than one candidate.
    """
    rows = record["candidates"]
    if len(rows) != 1:
        raise ValueError(f"A more-users record scores one candidate, the profile's; this one holds {len(rows)}. "
                         "Make it with benchmarks/distance.py --candidates NAME.")
    return rows[0]


def more_users_against_test(record: dict, test_entry: dict | None) -> dict:
    """A more-users record's stage 2 - stage 1 (validation targets) beside the test table's
    paired comparison of the same two stages on the same dataset.

    Args:
        record: The more-users record.
        test_entry: The build's paired entry (``results.json``'s ``paired``) of stage 2 -
            stage 1, unmasked; ``None`` when the build has none.

    Returns:
        ``{"valid", "test", "reading", "apart"}``: the two paired entries, one reading word and,
        where the two disagree, how many standard errors apart the two independent estimates
        lie (a 95% half-width is 1.96 of them; else ``None``). ``reading`` is ``"agree"`` (the
        same verdict), ``"holds"`` (the test interval holds the validation estimate: too few
        test users to resolve a gain of that size), ``"below"`` or ``"above"`` (the test
        interval lies wholly below or above the validation estimate), or ``"no test"``.
    """
    valid = more_users_row(record)["stage 2 - stage 1 (far)"]["hr@10"]
    out = {"valid": valid, "test": test_entry, "reading": "no test", "apart": None}
    if test_entry is None:
        return out
    lo, hi = test_entry["ci95"]
    if test_entry["verdict"] == valid["verdict"]:
        return {**out, "reading": "agree"}
    if lo <= valid["difference"] <= hi:
        return {**out, "reading": "holds"}
    apart = abs(valid["difference"] - test_entry["difference"]) / math.hypot(
        _half_width(valid["ci95"]) / 1.96, _half_width(test_entry["ci95"]) / 1.96)
    return {**out, "reading": "below" if hi < valid["difference"] else "above", "apart": apart}


def user_vectors_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(way, mean far HR@10, mean far masked HR@10)`` of the model in the user-vector
    records (one per dataset), best first."""
    return mean_ranking(records, "vectors", lambda r: r["far"], "way of reading the user vectors")


def user_vectors_table(records: list[dict], names: dict[str, str] | None = None):
    """One row per dataset, way of reading the user vectors and ranker (the model, WALS alone,
    the late fusion) of the user-vector records: HR@10 two items past training, unmasked and
    masked, and the paired interval folded - fitted."""
    import pandas as pd

    labels = {"model": "stage 2 alone", "wals": "WALS dot product alone", "fused": "late fusion"}
    rows = []
    for rec in records:
        dataset = (names or {}).get(rec["dataset"], rec["dataset"])
        for what, label in labels.items():
            if what not in rec["folded - fitted (far)"]:
                continue
            by_way = {r["name"]: (r if what == "model" else r[what])["far"] for r in rec["vectors"]}
            paired = rec["folded - fitted (far)"][what]
            rows.append({"dataset": dataset, "ranker": label,
                         "HR@10 fitted": by_way["fitted"]["hr@10"], "HR@10 folded": by_way["folded"]["hr@10"],
                         "masked fitted": by_way["fitted"]["hr@10_masked"],
                         "masked folded": by_way["folded"]["hr@10_masked"],
                         "folded - fitted, masked": "{:+.4f} [{:+.4f}, {:+.4f}]".format(
                             paired["hr@10_masked"]["difference"], *paired["hr@10_masked"]["ci95"])})
    return pd.DataFrame(rows)


def weight_name(weight: float) -> str:
    """A fusion record row's name (``0.25`` -> ``"0.25"``)."""
    return f"{float(weight):g}"


def fusion_ranking(records: list[dict]) -> list[tuple[str, float, float]]:
    """``(weight, mean far HR@10, mean far masked HR@10)`` of the weights all fusion records
    share (one per dataset), best first."""
    return mean_ranking(records, "weights", lambda r: r["far"], "weight; sweep the same --weights on every dataset")


def fusion_choice(records: list[dict]) -> float:
    """The late-fusion weight with the best mean far HR@10 over the records (then masked)."""
    return float(fusion_ranking(records)[0][0])


def fusion_table(records: list[dict], names: dict[str, str] | None = None):
    """One row per dataset and weight of the fusion records: HR@10 one and two items past
    training (unmasked and masked), the WALS dot product alone as the last row of each dataset."""
    import pandas as pd

    rows = []
    for rec in records:
        dataset = (names or {}).get(rec["dataset"], rec["dataset"])
        for r in [*rec["weights"], {"name": "WALS alone", **rec["wals"]}]:
            rows.append({"dataset": dataset, "weight": r["name"],
                         "HR@10, 1 item past training": r["near"]["hr@10"],
                         "HR@10, 2 items past (as test)": r["far"]["hr@10"],
                         "same, masked": r["far"]["hr@10_masked"],
                         "best": "yes" if r.get("weight") == rec["best"] else ""})
    return pd.DataFrame(rows)
