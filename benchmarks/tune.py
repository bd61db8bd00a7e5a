"""Tuning record: short runs of candidate item-token settings, scored on validation targets only.

    python benchmarks/tune.py --dataset lastfm --profile cpu --budget 0.25 --users 1000

Trains each candidate of lab/candidates.json (tuning) (stage 1 then stage 2, with
``--budget`` times the profile's training prompts), ranks the catalogue for ``--users``
users on their validation target and writes benchmarks/results/tune_<dataset>_<profile>.json
(or --out) with the machine and date. No test target is read (tests/test_learning.py
replaces them all and checks that the record does not change). The candidates' runs are
kept in --runs (default runs/tune/<dataset>) and reused when the script is run again.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys

from llmrec_lite.runs import Run
from lab.catalogue import CANDIDATES
from lab.runners import tune

from record_cli import add_record_args, record_paths, write_record  # benchmarks/record_cli.py


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_record_args(parser, "tune", "folder of the candidates' runs")
    parser.add_argument("--budget", type=float, default=0.25, help="share of the profile's training prompts")
    parser.add_argument("--users", type=int, default=None, help="validation users scored (default: all)")
    parser.add_argument("--eval-every", type=int, default=15, help="steps between the curve's validation points")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    args = parser.parse_args(argv)

    profile, out, runs = record_paths(parser, args, "tune", "tune")
    unknown = [n for n in args.candidates.split(",") if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    run = Run.open(profile, args.dataset, runs)
    record = tune(run, {n: CANDIDATES[n] for n in args.candidates.split(",")}, budget=args.budget, users=args.users,
                  out=runs, eval_every=args.eval_every)
    record = write_record(out, record)
    print(json.dumps({"out": str(out), "best": record["best"],
                      **{c["name"]: {"valid_hr@10": c["valid"]["hr@10"], "valid_hr@10_masked": c["valid"]["hr@10_masked"],
                                     "train_minutes": c["train_minutes"]} for c in record["candidates"]}}))
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
