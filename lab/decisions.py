"""The decisions table: every setting the cpu profile chose, with the record and rule behind it.

``python -m lab.decisions`` writes ``lab/DECISIONS.md`` from the committed records under
``benchmarks/results/``; ``python -m lab.decisions --check`` exits 1 when the file is not
what the records and the profile give (the test-suite runs that check). Each chosen value
is read from the profile and compared with what its record's rule picks: a profile that
disagrees with its record stops the table from being written.

A setting that no record chooses (a budget that fits the book's hour, or the paper's value)
has a row too, with its reason, so that every value of the profile is accounted for.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from llmrec_lite.profiles import CHOSEN_HEAD, Profile, get_profile

from lab.catalogue import CANDIDATES, DISTANCE_CANDIDATES, _stage_overrides
from lab.records import choose, distance_ranking, fusion_choice, measured_on, user_vectors_ranking

DECISIONS_FILE = Path(__file__).with_name("DECISIONS.md")
RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@dataclass(frozen=True)
class Decision:
    """One row of the table: the settings, the profile's values, where they come from.

    Attributes:
        settings: Profile fields the row decides.
        record: Record files (a glob under ``benchmarks/results/``), or ``""`` for a budget or a
            published value.
        rule: How the value was chosen.
        chosen: What the record's rule picks, as the profile's field values (``None`` for a row
            without a record).
        measured: Machine, precision and date of the rows that decided.
    """

    settings: tuple[str, ...]
    record: str
    rule: str
    chosen: dict | None = None
    measured: str = ""


def _records(pattern: str, profile: Profile) -> list[dict]:
    found = [json.loads(path.read_text()) for path in sorted(RESULTS.glob(pattern.format(profile=profile.name)))]
    if not found:
        raise FileNotFoundError(f"No record {pattern.format(profile=profile.name)} under {RESULTS}: make it with the "
                                "script that benchmarks/README.md names, or drop its row from lab/decisions.py.")
    return found


def _measured(records: list[dict], name: str = "") -> str:
    """Where and when the deciding rows were measured (``name``: the row of a record that grew
    by added batches), one entry per dataset."""
    return "; ".join(f"{r['dataset']}: {measured_on(r, name)}" for r in records)


def _distance_fields(candidate: dict) -> dict:
    """The profile fields a distance candidate sets (stage 2's LoRA rate and the backbone's LoRA included)."""
    flat = {k: v for k, v in _stage_overrides(candidate, 2).items() if k != "samples_per_task"}
    flat.update(candidate.get("backbone") or {})
    if "samples_per_task" in candidate:
        flat["item_token_samples"] = tuple(candidate["samples_per_task"])
    return flat


def _distance_choice(name: str) -> dict:
    """Every profile field some distance candidate varies, at the value the chosen one trains with
    (its own, or Profile's default where it sets none: a setting the record tried and did not take)."""
    varied = {k for c in DISTANCE_CANDIDATES.values() for k in _distance_fields(c) if k != "seed"}
    chosen = _distance_fields(DISTANCE_CANDIDATES[name])
    return {k: chosen.get(k, getattr(Profile, k)) for k in sorted(varied, key=list(_PROFILE_ORDER).index)}


_PROFILE_ORDER = [f.name for f in fields(Profile)]


def fastest_eval_batch(speed: dict) -> int:
    """The evaluation batch size with the most users per second summed over the speed record's
    rows (every dataset, both prompt kinds); a speed setting: scores move by rounding only."""
    totals: dict[int, float] = {}
    for rows in speed["datasets"].values():
        for row in rows["evaluation"]:
            for size, rate in row["after_users_per_second_by_batch"].items():
                totals[int(size)] = totals.get(int(size), 0.0) + rate
    return max(totals, key=totals.get)


def decisions(profile: Profile) -> list[Decision]:
    """The rows of the table for ``profile`` (the cpu profile's records decide its values)."""
    tune = _records("tune_*_{profile}.json", profile)
    head_name = choose(tune)
    distance = _records("distance_*_{profile}.json", profile)
    far_name = distance_ranking(distance)[0][0]
    vectors = _records("user_vectors_*_{profile}.json", profile)
    fusion = _records("fusion_*_{profile}.json", profile)
    way = user_vectors_ranking(vectors)[0][0]
    weight = fusion_choice(fusion)
    far_fields = _distance_choice(far_name)
    speed = _records("speed_{profile}.json", profile)
    return [
        Decision(tuple(CHOSEN_HEAD), "tune_*_{profile}.json",
                 "short runs; best mean validation HR@10 over the datasets, then masked",
                 {**{k: getattr(Profile, k) for k in CHOSEN_HEAD}, **CANDIDATES[head_name]},
                 _measured(tune)),
        Decision(tuple(far_fields), "distance_*_{profile}.json",
                 "shifted run; best mean stage-2 HR@10 two items past training (the real validation target), "
                 "then masked", far_fields, _measured(distance, far_name)),
        Decision(("eval_user_vectors",), "user_vectors_*_{profile}.json",
                 "the distance choice's model read both ways; best mean far HR@10, then masked",
                 {"eval_user_vectors": way}, _measured(vectors)),
        Decision(("cf_weight",), "fusion_*_{profile}.json",
                 "the distance choice's model re-ranked at each weight; best mean far HR@10, then masked",
                 {"cf_weight": weight}, _measured(fusion)),
        Decision(("eval_batch_size",), "speed_{profile}.json",
                 "most evaluation users per second over the batch sweep (both datasets, both prompt kinds)",
                 {"eval_batch_size": fastest_eval_batch(speed[0])},
                 measured_on(speed[0], "")),
        Decision(("results_datasets", "val_users", "text_id_samples", "text_id_eval_users",
                  "sasrec_max_positions", "evaluation_grid"), "",
                 "budget: the whole book within the hour on a 2-core CPU (benchmarks/README.md, build times)"),
        Decision(("eval_users",), "",
                 "every test user, set after the 2,000-user Beauty test table had been read (a change "
                 "after a look; chapter 9.7 and CHANGELOG); it took the book past the hour"),
        Decision(("wals_factors", "wals_regularization", "wals_alpha", "lr", "weight_decay",
                  "sample_ratio"), "",
                 "published values (the paper's WALS settings; OpenP5's Llama recipe), not tuned here"),
        Decision(("wals_iterations", "projector_hidden", "batch_size", "warmup_ratio", "epochs"), "",
                 "set by hand for the CPU (a first working run), not tuned by a record"),
    ]


def _value(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def check_profile(profile: Profile, rows: list[Decision]) -> list[str]:
    """Every place where the profile's value differs from what its record chose."""
    problems = []
    for row in rows:
        for name, value in (row.chosen or {}).items():
            if name not in {f.name for f in fields(Profile)}:
                problems.append(f"{name}: not a profile setting")
            elif _value(getattr(profile, name)) != _value(tuple(value) if isinstance(value, list) else value):
                problems.append(f"{name}: the profile has {getattr(profile, name)!r}, {row.record} chose {value!r}")
    return problems


def render(profile_name: str = "cpu") -> str:
    """The Markdown table of ``lab/DECISIONS.md``.

    Raises:
        ValueError: the profile disagrees with a record's choice (the message lists where).
    """
    profile = get_profile(profile_name)
    rows = decisions(profile)
    problems = check_profile(profile, rows)
    if problems:
        raise ValueError(f"The {profile.name} profile does not take its records' choices: " + "; ".join(problems))
    lines = [
        f"# Decisions behind the `{profile.name}` profile",
        "",
        "Generated by `python -m lab.decisions` from the records under `benchmarks/results/`; do not edit by hand",
        "(`tests/test_decisions.py` checks that this file is current and that the profile takes every choice).",
        "Every record scores validation targets only; appendix chapter 9 of the book shows each one.",
        "",
        "| setting | value | record | rule | measured on |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        record = f"`benchmarks/results/{row.record.format(profile=profile.name)}`" if row.record else "none"
        for k, name in enumerate(row.settings):
            rest = (record, row.rule, row.measured or "-") if k == 0 else ("\u2033", "\u2033", "\u2033")
            lines.append(f"| `{name}` | `{_value(getattr(profile, name))}` | " + " | ".join(rest) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if lab/DECISIONS.md is not current")
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    text = render(args.profile)
    if args.check:
        current = DECISIONS_FILE.read_text() if DECISIONS_FILE.exists() else ""
        if current != text:
            print(f"{DECISIONS_FILE} is not current: run python -m lab.decisions", file=sys.stderr)
            return 1
        print(f"{DECISIONS_FILE} is current")
        return 0
    tmp = DECISIONS_FILE.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(DECISIONS_FILE)
    print(f"wrote {DECISIONS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
