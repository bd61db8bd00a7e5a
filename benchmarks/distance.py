"""Distance record: candidate settings scored on targets as far from their training as the test targets are.

    python benchmarks/distance.py --dataset lastfm
    python benchmarks/distance.py --dataset beauty --users 1500

Chapter 7.5 measured stage 2 losing accuracy with the target's distance from the end of its
training: the validation target (one item past training) promised more than the test target
(two items past) gave. This record trains on every user's sequence less its last item
(WALS included) and scores each candidate of ``llmrec_lite.tuning.DISTANCE_CANDIDATES`` on
that run's test target, which is the real validation target, two items past its training:
the test target's distance, without reading a real test target. Writes
benchmarks/results/distance_<dataset>_<profile>.json (or --out) with the machine and date;
runs are kept in --runs (default runs/distance/<dataset>) and reused when the script is run
again. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from llmrec_lite.device import describe_machine
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run
from llmrec_lite.tuning import DISTANCE_CANDIDATES, distance_tune


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--users", type=int, default=None, help="users scored (default: all)")
    parser.add_argument("--candidates", default=",".join(DISTANCE_CANDIDATES),
                        help="comma-separated names of DISTANCE_CANDIDATES")
    parser.add_argument("--runs", default=None, help="folder of the runs (default runs/distance/<dataset>)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing record")
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    names = [n.strip() for n in args.candidates.split(",")]
    unknown = [n for n in names if n not in DISTANCE_CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(DISTANCE_CANDIDATES)}")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"distance_{args.dataset}_{profile.name}.json"
    if out.exists() and not args.overwrite:
        parser.error(f"{out} holds a finished record; pass --overwrite to replace it, or --out elsewhere")
    runs = Path(args.runs) if args.runs else Path("runs") / "distance" / args.dataset
    run = Run.open(profile, args.dataset, runs, steps_back=1)
    record = distance_tune(run, {n: DISTANCE_CANDIDATES[n] for n in names}, users=args.users, out=runs)
    record = {**record, "machine": describe_machine(), "date": datetime.date.today().isoformat()}
    write_json(out, record)
    print(json.dumps({"out": str(out), "best": record["best"],
                      **{c["name"]: {"far_hr@10": c["far"]["hr@10"], "far_hr@10_masked": c["far"]["hr@10_masked"],
                                     "near_hr@10": c["near"]["hr@10"], "stage1_far_hr@10": c["stage1_far"]["hr@10"],
                                     "train_minutes": c["train_minutes"]} for c in record["candidates"]}}))
    return record


if __name__ == "__main__":
    main()
