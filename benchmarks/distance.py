"""Distance record: candidate settings scored on targets as far from their training as the test targets are.

    python benchmarks/distance.py --dataset lastfm
    python benchmarks/distance.py --dataset beauty --users 1500

Chapter 9 (section 9.4) shows stage 2 losing accuracy with the target's distance from the end of its
training: the validation target (one item past training) promised more than the test target
(two items past) gave. This record trains on every user's sequence less its last item
(WALS included) and scores each candidate of lab/candidates.json (distance) on
that run's test target, which is the real validation target, two items past its training:
the test target's distance, without reading a real test target. Writes
benchmarks/results/distance_<dataset>_<profile>.json (or --out) with the machine and date;
runs are kept in --runs (default runs/distance/<dataset>) and reused when the script is run
again. Prints one JSON line last.

    python benchmarks/distance.py --dataset lastfm --add --candidates "<name>"

adds candidates to the existing record (its other rows stay as measured; see
``lab.records.add_to_record``).

    python benchmarks/distance.py --dataset beauty --users 10000 --candidates "<the profile's>" \
        --out benchmarks/results/more_users_beauty_cpu.json

makes a more-users record: the profile's candidate alone on more users than the distance
record scores, for a narrower interval of stage 2 - stage 1 (``lab.records.more_users_row``;
chapter 9, section 9.7, reads it).
"""

from __future__ import annotations

import argparse
import datetime
import json

from llmrec_lite.checkpoints import read_json
from llmrec_lite.device import describe_machine
from llmrec_lite.fileio import write_json
from llmrec_lite.runs import Run
from lab.catalogue import DISTANCE_CANDIDATES
from lab.records import add_to_record
from lab.runners import distance_tune

from record_cli import add_record_args, record_paths, write_record  # benchmarks/record_cli.py


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_record_args(parser, "distance", "folder of the runs")
    parser.add_argument("--users", type=int, default=None, help="users scored (default: all)")
    parser.add_argument("--candidates", default=",".join(DISTANCE_CANDIDATES),
                        help="comma-separated names of DISTANCE_CANDIDATES")
    parser.add_argument("--add", action="store_true", help="add the candidates to the existing record")
    args = parser.parse_args(argv)

    if args.add and args.overwrite:
        parser.error("--add keeps the record's other rows, --overwrite replaces the record: pass one")
    profile, out, runs = record_paths(parser, args, "distance", "distance", adding=args.add)
    names = [n.strip() for n in args.candidates.split(",")]
    unknown = [n for n in names if n not in DISTANCE_CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(DISTANCE_CANDIDATES)}")
    run = Run.open(profile, args.dataset, runs, steps_back=1)
    record = distance_tune(run, {n: DISTANCE_CANDIDATES[n] for n in names}, users=args.users, out=runs)
    if args.add:
        record = add_to_record(read_json(out), record, {"machine": describe_machine(),
                                                        "date": datetime.date.today().isoformat()})
        write_json(out, record)  # the record keeps its own machine and date; the new rows' are under "added"
    else:
        record = write_record(out, record)
    print(json.dumps({"out": str(out), "best": record["best"],
                      **{c["name"]: {"far_hr@10": c["far"]["hr@10"], "far_hr@10_masked": c["far"]["hr@10_masked"],
                                     "near_hr@10": c["near"]["hr@10"], "stage1_far_hr@10": c["stage1_far"]["hr@10"],
                                     "train_minutes": c["train_minutes"]} for c in record["candidates"]}}))
    return record


if __name__ == "__main__":
    main()
