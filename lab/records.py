"""Reading the records: rankings, the rule each record chooses by, tables and figures.

A record is a JSON file under ``benchmarks/results/`` written by a runner of
:mod:`lab.runners`. The functions here never train or score anything: they read what a
record measured, so the chapters and :mod:`lab.decisions` can show and check it. The last
part holds what chapter 9 shows and glues, section by section (its ``*_facts`` functions).
"""

from __future__ import annotations

import math

from lab.catalogue import DISTANCE_CANDIDATES, candidate_matches
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
    picks a row's metric dict. ``missing`` ends the error when the records share no row.
    No records: an empty ranking."""
    if not records:
        return []
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


def _cf_term_means(trials) -> list[tuple[str, bool, dict]]:
    """For each base of :func:`cf_term_trials` that holds another trial on every dataset:
    ``(base, whether it is the profile's, {trial: mean far HR@10 masked over the datasets})``."""
    datasets = trials["dataset"].nunique()
    found = []
    for base, group in trials.groupby("base", sort=False):
        complete = group.groupby("trial").filter(lambda g: g["dataset"].nunique() == datasets)
        means = complete.groupby("trial")["far HR@10 masked"].mean()
        if CF_TERM_TRIALS[0] in means and len(means) >= 2:
            found.append((base, bool(group["profile's"].iloc[0]), {t: means[t] for t in CF_TERM_TRIALS if t in means}))
    return found


def cf_term_words(trials) -> str:
    """What leaving the CF term out did, in words: for each base, each trial every dataset
    holds, its mean far HR@10 masked over the datasets against the base's (one run each)."""
    said = []
    for base, mine, means in _cf_term_means(trials):
        with_term = means[CF_TERM_TRIALS[0]]
        who = "the profile's settings" if mine else f"“{base}”"
        said.append(f"from {who} ({with_term:.4f}), " + "; ".join(
            f"{label} {means[label]:.4f} ({means[label] - with_term:+.4f})" for label in CF_TERM_TRIALS[1:] if label in means))
    return ". ".join(said) if said else "no record holds these trials on every dataset yet"


def cf_term_sentence(trials) -> str:
    """The same in two sentences: the profile's base (else the first) with and without the CF
    term, then how many of the bases score lower without it."""
    found = _cf_term_means(trials)
    if not found:
        return "No record holds these trials on every dataset yet."
    base, mine, means = next((f for f in found if f[1]), found[0])
    who = "the profile's settings" if mine else f"“{base}”"
    values = [f"{means[label]:.4f} {words}" for label, words in
              zip(CF_TERM_TRIALS, ("with the CF term", "without it", "with it in stage 1 only")) if label in means]
    first = (f"For {who}, mean far HR@10 masked over the datasets is " + ", ".join(values[:-1])
             + f" and {values[-1]}.")
    without = [m for _, _, m in found if CF_TERM_TRIALS[1] in m]
    lower = sum(m[CF_TERM_TRIALS[1]] < m[CF_TERM_TRIALS[0]] for m in without)
    if not without:
        return first
    if lower == len(without):
        return first + " Every base that was also trained without the term scores lower without it."
    return first + f" Without the term, {lower} of the {len(without)} bases that were also trained without it score lower."


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


# --------------------------------------------------------------------------- chapter 9, section by section
#
# book/09_records.md shows each section's method and its table; what its prose pastes comes
# from one ``*_facts`` function below (``{glue name: value}``), glued by one hidden cell with
# :func:`llmrec_lite.book.glue_all`. Every function takes the profile's records as read by
# :func:`read_records` and works on none (the smoke profile has no records): its words then
# say so. The ``*_table`` functions return the table as the chapter shows it (a pandas Styler).

NO_RECORD = "none (no record for this profile)"
NOT_COMPARED = "cannot be compared with"


def read_records(kind: str, profile) -> list[dict]:
    """This profile's records of one kind, one per dataset of the profile.

    Args:
        kind: The file's first word (``benchmarks/results/<kind>_<dataset>_<profile>.json``).
        profile: The profile whose records are read.

    Returns:
        The records (each with its ``"file"``), searched upwards from the working directory;
        empty where there are none (or no repository, e.g. on Colab).
    """
    from llmrec_lite.book import recorded_results

    return [r for r in recorded_results(f"{kind}_*_{profile.name}.json") if r["dataset"] in profile.datasets]


def interval(entry: dict) -> str:
    """A paired entry's difference and 95% interval as the tables print it (``+0.0100 [+0.0020, +0.0180]``)."""
    return "{:+.4f} [{:+.4f}, {:+.4f}]".format(entry["difference"], *entry["ci95"])


def _styled(frame, precision: int = 4, **formats):
    """A table as the chapter shows it: fixed precision, no index; ``None`` (nothing shown) when
    it has no rows (the smoke profile has no records)."""
    return frame.style.format(precision=precision, **formats).hide(axis="index") if len(frame) else None


def _on(flag) -> str:
    return "on" if flag else "off"


def ranking_table(ranked: list[tuple[str, float, float]], columns: list[str]):
    """A ranking (:func:`ranking`, :func:`split_ranking`, :func:`distance_ranking`, ...) as a
    table, best first, four decimals (``None`` for an empty ranking: nothing shown).

    Args:
        ranked: ``(name, mean HR@10, mean masked HR@10)`` rows, best first (empty: no rows).
        columns: The three column names.
    """
    import pandas as pd

    return _styled(pd.DataFrame(ranked, columns=list(columns)))


def tune_facts(tuned: list[dict], profile) -> dict:
    """Section 9.2: the profile's head and whether it is the tuning record's choice.

    Args:
        tuned: The profile's tuning records, one per dataset (may be empty).
        profile: The profile whose head is compared.

    Returns:
        ``head_logit``, ``head_dense``, ``head_history``, ``head_readout`` and
        ``head_projector_lr`` (the profile's head); ``tune_chosen`` (the rule's candidate,
        :func:`choose`); ``tune_profile_matches`` (``"matches"``, ``"does not match"`` or,
        without a record, ``"cannot be compared with"``) and ``tune_profile_sentence``, the
        same as a sentence that names the head.
    """
    head = {"head_logit": profile.item_logit, "head_dense": profile.dense_weight,
            "head_history": _on(profile.history_bias), "head_readout": _on(profile.readout),
            "head_projector_lr": profile.projector_lr or profile.lr}
    described = (f"{head['head_logit']} logits, dense weight {head['head_dense']:g}, history offset "
                 f"{head['head_history']}, readout {head['head_readout']}, projector learning rate "
                 f"{head['head_projector_lr']:g}")
    if not tuned:
        return {**head, "tune_chosen": NO_RECORD, "tune_profile_matches": NOT_COMPARED,
                "tune_profile_sentence": f"With no tuning record for this profile, its head ({described}) "
                                         "cannot be compared with a choice."}
    chosen = choose(tuned)
    settings = next(c for c in tuned[0]["candidates"] if c["name"] == chosen)["settings"]
    word = "matches" if all(getattr(profile, k) == v for k, v in settings.items()) else "does not match"
    return {**head, "tune_chosen": chosen, "tune_profile_matches": word,
            "tune_profile_sentence": f"The profile's head ({described}) {word} it."}


def split_facts(splits: list[dict], profile) -> dict:
    """Section 9.3: the profile's prompts per stage and whether they are the stage-split record's choice.

    Returns:
        ``profile_split`` (``"<stage 1> + <stage 2>"``), ``split_chosen`` (the rule's split,
        :func:`choose_split`, written the same way), ``split_profile_matches`` (as in
        :func:`tune_facts`) and ``split_profile_sentence``.
    """
    mine = f"{profile.item_token_samples[0]} + {profile.item_token_samples[1]}"
    if not splits:
        return {"profile_split": mine, "split_chosen": NO_RECORD, "split_profile_matches": NOT_COMPARED,
                "split_profile_sentence": f"With no stage-split record for this profile, its split ({mine}) cannot "
                                          "be compared with a choice."}
    chosen = choose_split(splits)
    word = "matches" if tuple(profile.item_token_samples) == chosen else "does not match"
    return {"profile_split": mine, "split_chosen": f"{chosen[0]} + {chosen[1]}", "split_profile_matches": word,
            "split_profile_sentence": f"The profile's split, {mine}, {word} it."}


def split_paired(splits: list[dict], names: dict[str, str]):
    """At the split the rule chooses, the paired validation differences (HR@10, 95% interval)
    of every stage-split record that also trained the model without CF embeddings."""
    import pandas as pd

    from llmrec_lite.results import PAIRED_WORDS

    chosen = choose_split(splits)
    return pd.DataFrame([{"dataset": names[r["dataset"]], "comparison": label,
                          "HR@10 difference [95% CI]": interval(p["hr@10"]),
                          "interval": PAIRED_WORDS[p["hr@10"]["verdict"]]}
                         for r in splits if "stage 1 - no CF" in r["splits"][0]["paired"]
                         for row in r["splits"] if tuple(row["samples_per_task"]) == chosen
                         for label, p in row["paired"].items()])


def leak_table(leak: dict):
    """What a training prompt's user vector knows about its answer
    (:func:`llmrec_lite.baselines.answer_leak`), one row per vector, three decimals."""
    import pandas as pd

    return _styled(pd.DataFrame([
        {"user vector": "fitted (has seen the answer)", "targets": "training answers", "HR@10": leak["fitted"]},
        {"user vector": "folded in from the prefix", "targets": "training answers", "HR@10": leak["prefix"]},
        {"user vector": "fitted (has not seen it)", "targets": "validation targets", "HR@10": leak["valid"]}]),
        precision=3)


def leak_facts(leak: dict, dataset: str, profile) -> dict:
    """Section 9.4, the user vector a training prompt reads.

    Args:
        leak: :func:`llmrec_lite.baselines.answer_leak`'s result.
        dataset: The display name of the dataset it was measured on.
        profile: The profile (which user vectors and score terms it trains with).

    Returns:
        ``leak_samples``, ``leak_dataset``, ``leak_fitted``, ``leak_prefix`` and ``leak_valid``
        (the shares, three decimals, as text); ``leak_cue`` (``"stronger"`` or ``"no
        stronger"``) and ``leak_prefix_above`` (``"above"`` or ``"not above"``) with the
        sentences ``leak_cue_sentence`` and ``leak_prefix_sentence``; ``vectors_train``,
        ``cf_term_state`` and ``known_state`` (the profile's training settings).
    """
    stronger, above = leak["fitted"] > leak["valid"], leak["prefix"] > leak["valid"]
    return {"leak_samples": leak["samples"], "leak_dataset": dataset,
            **{f"leak_{key}": f"{leak[key]:.3f}" for key in ("fitted", "prefix", "valid")},
            "leak_cue": "stronger" if stronger else "no stronger",
            "leak_prefix_above": "above" if above else "not above",
            "leak_cue_sentence": "A model trained on fitted vectors learns from a cue that is stronger in training "
                                 "than at test time." if stronger else
                                 "Fitted vectors give a training prompt no stronger cue than a test prompt gets.",
            "leak_prefix_sentence": "It stays above the validation share: the item factors still saw every training "
                                    "item." if above else
                                    "It does not stay above the validation share, although the item factors saw "
                                    "every training item.",
            "vectors_train": profile.user_vectors, "cf_term_state": _on(profile.cf_term),
            "known_state": _on(profile.known_bias)}


FAR_RANKING_COLUMNS = ["candidate", "mean far HR@10", "mean far HR@10 masked"]


def distance_facts(far: list[dict]) -> dict:
    """Section 9.4, the distance record: its choice and what it has not yet scored everywhere.

    Returns:
        ``far_chosen`` (:func:`distance_ranking`'s first), ``far_ranking`` (the ranking as a
        DataFrame; left out without a record) and ``far_pending`` (the candidates of
        ``lab/candidates.json`` not in every dataset's record, ``"; "``-joined, or ``"none"``).
    """
    import pandas as pd

    if not far:
        return {"far_chosen": NO_RECORD, "far_pending": "all of them"}
    ranked = distance_ranking(far)
    in_every = set.intersection(*({c["name"] for c in r["candidates"]} for r in far))
    return {"far_chosen": ranked[0][0], "far_ranking": pd.DataFrame(ranked, columns=FAR_RANKING_COLUMNS),
            "far_pending": "; ".join(n for n in DISTANCE_CANDIDATES if n not in in_every) or "none"}


def far_gap(far: list[dict], names: dict[str, str]):
    """The distance record's choice, one row per dataset: stage-2 HR@10 one and two items past training."""
    import pandas as pd

    best = distance_ranking(far)[0][0]
    return pd.DataFrame([{"dataset": names[r["dataset"]], "HR@10, 1 item past training": row["near"]["hr@10"],
                          "HR@10, 2 items past": row["far"]["hr@10"]}
                         for r in far for row in r["candidates"] if row["name"] == best])


def cf_term_table(far: list[dict], profile, names: dict[str, str]):
    """:func:`cf_term_trials` as a table, four decimals (``None`` where no record holds these rows)."""
    return _styled(cf_term_trials(far, profile, names))


def cf_term_facts(far: list[dict], profile, names: dict[str, str]) -> dict:
    """Section 9.4, without the CF term: ``cf_term_trials`` (:func:`cf_term_words` of the
    trials, every base's numbers) and ``cf_term_sentence`` (:func:`cf_term_sentence`)."""
    trials = cf_term_trials(far, profile, names)
    return {"cf_term_trials": cf_term_words(trials), "cf_term_sentence": cf_term_sentence(trials)}


def profile_row(record: dict, profile) -> dict:
    """The distance record's row of the candidate the profile trains, else its first (the earlier setting)."""
    every = [c["settings"] for c in record["candidates"]]
    return next((c for c in record["candidates"] if candidate_matches(profile, c["settings"], every)),
                record["candidates"][0])


def _record_of(records: list[dict], dataset: str) -> dict | None:
    return next((r for r in records if r["dataset"] == dataset), None)


def shift_source(far: list[dict], dataset: str, profile) -> str:
    """Where the shifted run's row of :func:`shift_facts` was measured (``RECORDED, not run in
    this build: ...``), or that there is no record."""
    record = _record_of(far, dataset)
    if record is None:
        return f"No distance record for {dataset} under the {profile.name} profile (benchmarks/distance.py makes one)."
    row = profile_row(record, profile)
    return (f"RECORDED, not run in this build: {record['file']}, row {row['name']!r} measured on "
            f"{measured_on(record, row['name'])}, {record['users']} users")


def shift_facts(far: list[dict], dataset: str, profile, names: dict[str, str]) -> dict:
    """Section 9.4, is the step onto the far target special: stage 2 of the profile's row
    (:func:`profile_row`) of one dataset's distance record, one and two items past its training.

    Returns:
        ``shift_dataset``, ``shift_candidate``, ``shift_near`` and ``shift_far`` (HR@10, four
        decimals, as text), ``shift_verdict`` (``"falls"`` or ``"does not fall"``) and
        ``shift_reading`` (``"supports"`` or ``"does not support"``), each ``"no record"``
        without one; ``shift_sentence`` and ``shift_reading_sentence`` say the same.
    """
    record, name = _record_of(far, dataset), names[dataset]
    if record is None:
        return {"shift_dataset": name, **dict.fromkeys(("shift_candidate", "shift_near", "shift_far", "shift_verdict",
                                                        "shift_reading"), "no record"),
                "shift_sentence": f"There is no distance record for {name} under this profile.",
                "shift_reading_sentence": "Without one, this build cannot test that reading."}
    row = profile_row(record, profile)
    near, far_ = row["near"]["hr@10"], row["far"]["hr@10"]
    falls = far_ < near
    verdict, reading = ("falls", "supports") if falls else ("does not fall", "does not support")
    return {"shift_dataset": name, "shift_candidate": row["name"], "shift_near": f"{near:.4f}",
            "shift_far": f"{far_:.4f}", "shift_verdict": verdict, "shift_reading": reading,
            "shift_sentence": f"On {name}, with the profile's candidate of the record ({row['name']}), stage 2 "
                              f"reads {near:.4f} one item past its training and {far_:.4f} two items past.",
            "shift_reading_sentence": f"Accuracy {verdict} with the extra step, which {reading} distance from training "
                                      "as the explanation."}


VECTORS_RANKING_COLUMNS = ["user vectors", "mean far HR@10", "mean far HR@10 masked"]


def vectors_facts(vector_records: list[dict], profile) -> dict:
    """Section 9.5: the user-vector record's choice and the vectors chapter 7's test prompts read.

    Returns:
        ``vectors_ranking`` (:func:`user_vectors_ranking` as a DataFrame; left out without a
        record), ``vectors_chosen``, ``vectors_read`` (the profile's ``eval_user_vectors``),
        ``vectors_profile_matches`` (as in :func:`tune_facts`) and ``vectors_profile_sentence``.
    """
    import pandas as pd

    read = profile.eval_user_vectors
    if not vector_records:
        return {"vectors_chosen": NO_RECORD, "vectors_read": read, "vectors_profile_matches": NOT_COMPARED,
                "vectors_profile_sentence": f"They read the {read} vectors; with no user-vector record for this "
                                            "profile, that cannot be compared with a choice."}
    ranked = user_vectors_ranking(vector_records)
    chosen = ranked[0][0]
    same = chosen == read
    return {"vectors_ranking": pd.DataFrame(ranked, columns=VECTORS_RANKING_COLUMNS), "vectors_chosen": chosen,
            "vectors_read": read, "vectors_profile_matches": "matches" if same else "does not match",
            "vectors_profile_sentence": f"They read the {read} vectors, " + (
                "the record's choice." if same else "not the record's choice.")}


def vectors_paired(vector_records: list[dict], names: dict[str, str]):
    """The user-vector records' paired 95% intervals of folded in - fitted, far target: the WALS
    dot product alone (masked) and stage 2 (unmasked and masked), one row per dataset and ranker."""
    import pandas as pd

    from llmrec_lite.results import PAIRED_WORDS

    return pd.DataFrame([
        {"dataset": names[r["dataset"]], "ranker": {"wals": "WALS dot product alone", "model": "stage 2"}[what],
         "rule": rule, "folded - fitted [95% CI]": interval(p), "interval": PAIRED_WORDS[p["verdict"]]}
        for what, key, rule in (("wals", "hr@10_masked", "masked"), ("model", "hr@10", "unmasked"),
                                ("model", "hr@10_masked", "masked"))
        for r in vector_records for p in [r["folded - fitted (far)"][what][key]]])


def seed_overview(seed_records: list[dict], names: dict[str, str]):
    """One row per seed record (dataset) of :func:`seed_summary`: the spread of stage 2 - stage 1
    over the seeds, the seed-averaged difference with its interval, each stage's standard deviation."""
    import pandas as pd

    from llmrec_lite.results import PAIRED_WORDS

    return pd.DataFrame([{
        "dataset": names[r["dataset"]], "users": s["users"], "seeds": s["seeds"],
        "stage 2 - stage 1, smallest": s["min"], "largest": s["max"], "seeds above zero": s["seeds_above"],
        "seeds' own intervals above zero": s["intervals_above"],
        "seed-averaged [95% CI]": interval(s), "interval": PAIRED_WORDS[s["verdict"]],
        "sd of stage 2": s["sd_stage2"], "sd of stage 1": s["sd_stage1"]}
        for r in seed_records for s in [seed_summary(r)]])


def seed_overview_table(seed_records: list[dict], names: dict[str, str]):
    """:func:`seed_overview` as a table, four decimals (``None`` without a seed record)."""
    return _styled(seed_overview(seed_records, names))


def resolve_frame(seed_records: list[dict], names: dict[str, str]):
    """One row per seed record of :func:`users_to_resolve`, with the users needed as a multiple
    of the record's (``None`` for a zero gain)."""
    import pandas as pd

    return pd.DataFrame([{"dataset": names[r["dataset"]], "users": got["users"], "one run's half-width": got["half_width"],
                          "seed-averaged gain": got["gain"], "users needed": got["needed"],
                          "times the record's users": None if got["needed"] is None else got["needed"] / got["users"]}
                         for r in seed_records for got in [users_to_resolve(r)]])


def resolve_table(seed_records: list[dict], names: dict[str, str]):
    """:func:`resolve_frame` as a table (``-``: no number of users resolves a zero gain; ``None``
    without a seed record)."""
    frame = resolve_frame(seed_records, names)
    formats = {"one run's half-width": "{:.4f}", "seed-averaged gain": "{:.4f}", "users needed": "{:,.0f}",
               "times the record's users": "{:.1f}"}
    return frame.style.format(formats, na_rep="-").hide(axis="index") if len(frame) else None


SEED_WORDS = {"above": "lies above zero", "not separated": "is not separated from zero", "below": "lies below zero"}


def seed_facts(seed_records: list[dict], names: dict[str, str]) -> dict:
    """Section 9.6: what the seed records say about stage 2 - stage 1 once the training noise is averaged out.

    Returns:
        ``seed_summary`` (:func:`seed_overview`) and ``users_to_resolve`` (:func:`resolve_frame`);
        ``seed_above``, ``seed_not_separated`` and ``seed_below`` (the datasets whose
        seed-averaged interval lies there, ``", "``-joined, or ``"none"``) and
        ``seed_sentence``, the three in one sentence.
    """
    verdicts = {names[r["dataset"]]: seed_summary(r)["verdict"] for r in seed_records}
    where = {verdict: ", ".join(n for n, v in verdicts.items() if v == verdict) for verdict in SEED_WORDS}
    said = [f"{SEED_WORDS[verdict]} on {found}" for verdict, found in where.items() if found]
    sentence = ("With the training noise averaged out, stage 2's gain over stage 1 "
                + (", ".join(said[:-1]) + " and " if len(said) > 1 else "") + said[-1] + "." if said else
                "There is no seed record for this profile, so this build cannot tell the training run's noise "
                "from a difference.")
    return {"seed_summary": seed_overview(seed_records, names),
            **{f"seed_{verdict.replace(' ', '_')}": found or "none" for verdict, found in where.items()},
            "users_to_resolve": resolve_frame(seed_records, names), "seed_sentence": sentence}


def more_users_records(profile) -> dict[str, dict]:
    """The profile's more-users records (:data:`MORE_USERS_RECORD`), by dataset, for the datasets
    of its results table that have one."""
    from llmrec_lite.book import recorded_results

    found = {d: recorded_results(MORE_USERS_RECORD.format(dataset=d, profile=profile.name))
             for d in profile.results_datasets}
    return {d: records[0] for d, records in found.items() if records}


def more_users_frame(profile, names: dict[str, str]):
    """One row per dataset of the profile's results table: its more-users record's stage 2 and
    stage 1 HR@10 and their paired interval, or, without one, how many users its distance
    record scored beside the users the dataset has (it may already score them all)."""
    import pandas as pd

    from llmrec_lite.book import recorded_results
    from llmrec_lite.data import load_dataset
    from llmrec_lite.results import PAIRED_WORDS
    from llmrec_lite.split import LeaveOneOutSplit

    found, rows = more_users_records(profile), []
    for dataset in profile.results_datasets:
        if dataset in found:
            record = found[dataset]
            row = more_users_row(record)
            entry = row["stage 2 - stage 1 (far)"]["hr@10"]
            rows.append({"dataset": names[dataset], "record": record["file"], "users scored": record["users"],
                         "stage 2 HR@10": row["far"]["hr@10"], "stage 1 HR@10": row["stage1_far"]["hr@10"],
                         "stage 2 - stage 1 [95% CI]": interval(entry), "interval": PAIRED_WORDS[entry["verdict"]]})
            continue
        scored = recorded_results(f"distance_{dataset}_{profile.name}.json")
        have = LeaveOneOutSplit.from_data(load_dataset(dataset, indexing=profile.indexing, seed=profile.seed)).num_users
        rows.append({"dataset": names[dataset], "record": "none", "users scored": scored[0]["users"] if scored else None,
                     "users in the dataset": have})
    return pd.DataFrame(rows)


def more_users_table(frame):
    """:func:`more_users_frame` as a table: users as whole numbers, HR@10 to four decimals, ``-`` where missing."""
    return frame.style.format({k: "{:,.0f}" if k.startswith("users") else "{:.4f}"
                               for k in frame.select_dtypes("number")}, na_rep="-").hide(axis="index")


def beside_frame(profile, names: dict[str, str]):
    """Each more-users record's stage 2 - stage 1 (validation targets) beside chapter 7's test
    comparison of the same dataset (:func:`more_users_against_test`), where chapter 7 has run in
    this build (its ``results.json`` in the run directory)."""
    import json

    import pandas as pd

    from llmrec_lite.book import run_dir
    from llmrec_lite.results import S2_VS_S1, find_paired, paired_words

    rows = []
    for dataset, record in more_users_records(profile).items():
        made = run_dir(profile.name, dataset) / "results.json"
        if not made.exists():
            continue
        got = more_users_against_test(record, find_paired(json.loads(made.read_text()).get("paired"), S2_VS_S1))
        test = got["test"] or {}
        rows.append({"dataset": names[dataset], "validation users": record["users"],
                     "validation [95% CI]": interval(got["valid"]), "test users": test.get("users"),
                     "test [95% CI]": interval(test) if test else "-", "test interval": paired_words(got["test"]),
                     "reading": got["reading"], "standard errors apart": got["apart"]})
    return pd.DataFrame(rows)


def beside_table(frame):
    """:func:`beside_frame` as a table (one decimal), or ``None`` (nothing shown) when it is empty."""
    return frame.style.format(precision=1, na_rep="-").hide(axis="index") if len(frame) else None


def more_users_facts(more, beside) -> dict:
    """Section 9.7.

    Args:
        more: :func:`more_users_frame`.
        beside: :func:`beside_frame`.

    Returns:
        ``more_users`` and ``more_users_reading`` (the two frames), ``more_users_missing`` (the
        datasets without a more-users record, or ``"none"``) and ``more_users_beside`` (how many
        datasets are set beside chapter 7's test table).
    """
    missing = [row["dataset"] for _, row in more.iterrows() if row["record"] == "none"] if len(more) else []
    return {"more_users": more, "more_users_missing": ", ".join(missing) or "none",
            "more_users_reading": beside, "more_users_beside": len(beside)}


def fusion_facts(fusion_records: list[dict], profile, names: dict[str, str]) -> dict:
    """Section 9.8: the fusion record's weight and the profile's.

    Returns:
        ``fusion_profile_weight`` (``cf_weight``), ``fusion_record_weight`` (:func:`fusion_choice`,
        as text), ``fusion_per_dataset`` (each dataset's own best) and
        ``fusion_candidate_matches`` (whether the record re-ranks the model the profile
        trains), each ``"no record"`` / ``"no model"`` without one; ``fusion_sentence`` (what
        the record says) and ``fusion_profile_sentence`` (what the profile fuses at, and whether
        the results then have a late-fusion row).
    """
    weight = profile.cf_weight
    profile_sentence = (f"It is {weight:g}, the model alone, so the results have no late-fusion row." if weight == 0
                        else f"It is {weight:g}, so the results have a late-fusion row.")
    if not fusion_records:
        return {"fusion_profile_weight": weight, "fusion_record_weight": "no record", "fusion_per_dataset": "no record",
                "fusion_candidate_matches": "no model", "fusion_profile_sentence": profile_sentence,
                "fusion_sentence": "There is no fusion record for this profile (benchmarks/fusion.py makes one)."}
    # a setting any distance candidate overrides (a later one too) must match the profile as well
    mine = all(candidate_matches(profile, r["settings"], DISTANCE_CANDIDATES.values()) for r in fusion_records)
    model = ("It re-ranks the model this profile trains." if mine
             else "It re-ranks a model other than the one this profile trains.")
    chosen = f"{fusion_choice(fusion_records):g}"
    per = "; ".join(f"{names.get(r['dataset'], r['dataset'])} {r['best']:g}" for r in fusion_records)
    return {"fusion_profile_weight": weight, "fusion_record_weight": chosen, "fusion_per_dataset": per,
            "fusion_candidate_matches": model, "fusion_profile_sentence": profile_sentence,
            "fusion_sentence": f"{model} Its mean HR@10 two items past training, over its "
                               f"datasets, is highest at weight {chosen} (each dataset's own best: {per})."}


def dropped_frame(tuned: list[dict], far: list[dict]):
    """Every candidate of the tuning and distance records that the rule did not choose: the
    record, why it was tried (``lab/candidates.json``), its mean HR@10 over the datasets
    (``None``: not in every dataset's record, so not ranked) beside the chosen one's."""
    import pandas as pd

    from lab.catalogue import reasons

    dropped = []
    for kind, found, rank in (("tuning", tuned, ranking), ("distance", far, distance_ranking)):
        if not found:
            continue
        means, why = {name: hr for name, hr, _ in rank(found)}, reasons(kind)
        best = next(iter(means))  # the ranking's first: the record's choice
        tried = dict.fromkeys(c["name"] for r in found for c in r["candidates"])  # every candidate, in order
        dropped += [{"record": kind, "candidate": name, "why it was tried": why.get(name, "-"),
                     "mean HR@10": means.get(name), "chosen's mean HR@10": means[best]} for name in tried if name != best]
    return pd.DataFrame(dropped, columns=["record", "candidate", "why it was tried", "mean HR@10", "chosen's mean HR@10"])


def dropped_table(tuned: list[dict], far: list[dict]):
    """:func:`dropped_frame` as a table, long text wrapped (``None`` without a tuning or distance record)."""
    from llmrec_lite.results import styled

    frame = dropped_frame(tuned, far)
    return styled(frame, wrap=("candidate", "why it was tried")) if len(frame) else None


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
