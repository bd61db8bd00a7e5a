"""Seed record: the profile's distance candidate trained under several training seeds, scored on validation targets.

    python benchmarks/seeds.py --dataset lastfm
    python benchmarks/seeds.py --dataset beauty --users 1500

The distance record ranks candidates by one training run each, and the results chapter
compares stage 2 with stage 1 on one run too. This record tells how far a run moves when
only the training seed changes (which prompts each stage samples, the projectors' and
adapters' first values, the batches' order), so that a difference can be read against it.
It takes the distance record's shifted run (see benchmarks/distance.py) and the profile's
candidate, trains both stages under each seed (the profile's own seed reuses the distance
record's run from --runs, default runs/distance/<dataset>) and scores stage 2 and stage 1 on
the far target, the real validation target: no real test target is read. Writes
benchmarks/results/seeds_<dataset>_<profile>.json (or --out) with the machine and date.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json

from llmrec_lite.runs import Run
from lab.catalogue import SPREAD_SEEDS
from lab.runners import seed_spread

from record_cli import add_record_args, record_paths, write_record  # benchmarks/record_cli.py


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_record_args(parser, "distance", "folder of the distance runs")
    parser.add_argument("--users", type=int, default=None, help="users scored (default: all)")
    parser.add_argument("--seeds", default=",".join(map(str, SPREAD_SEEDS)), help="comma-separated training seeds")
    args = parser.parse_args(argv)

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    profile, out, runs = record_paths(parser, args, "seeds", "distance")
    run = Run.open(profile, args.dataset, runs, steps_back=1)
    record = write_record(out, seed_spread(run, seeds, users=args.users, out=runs))
    over = record["over seeds"]["hr@10"]
    print(json.dumps({"out": str(out), "candidate": record["candidate"],
                      "stage2_far_hr@10": [r["far"]["hr@10"] for r in record["seeds"]],
                      "stage1_far_hr@10": [r["stage1_far"]["hr@10"] for r in record["seeds"]],
                      "stage2_minus_stage1": over["stage 2 - stage 1"],
                      "seed_averaged": over["seed-averaged stage 2 - stage 1"]}))
    return record


if __name__ == "__main__":
    main()
