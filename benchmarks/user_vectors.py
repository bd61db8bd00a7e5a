"""User-vector record: the fitted WALS user vectors against vectors folded in from each prompt's whole history, scored on validation targets.

    python benchmarks/user_vectors.py --dataset lastfm
    python benchmarks/user_vectors.py --dataset beauty --users 1500

WALS solves each user's vector from the training part alone, so a prompt for a later target
reads a vector that never saw the items between the training part and that target (a real
test prompt: the validation item, which the prompt shows). Takes the distance record's
shifted run (see benchmarks/distance.py) and its stage-2 model under the profile's own
settings, and scores the sequential task's seen template on the far target (the real
validation target: its prompt shows one item the fitted vector never saw, as a test prompt
does) and the near one, once with the fitted vectors and once with vectors folded in from
every item before the target (``llmrec_lite.wals.history_user_factors``); the WALS dot
product alone and the profile's late fusion both ways beside it. No real test target is
read. Writes benchmarks/results/user_vectors_<dataset>_<profile>.json (or --out) with the
machine and date; the runs in --runs (default runs/distance/<dataset>) are reused, or
trained when absent. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json

from llmrec_lite.runs import Run
from lab.runners import user_vectors_sweep

from record_cli import add_record_args, record_paths, write_record  # benchmarks/record_cli.py


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_record_args(parser, "distance", "folder of the distance runs")
    parser.add_argument("--users", type=int, default=None, help="users scored (default: all)")
    args = parser.parse_args(argv)

    profile, out, runs = record_paths(parser, args, "user_vectors", "distance")
    run = Run.open(profile, args.dataset, runs, steps_back=1)
    record = write_record(out, user_vectors_sweep(run, users=args.users, out=runs))
    print(json.dumps({"out": str(out), "best": record["best"],
                      **{r["name"]: {"far_hr@10": r["far"]["hr@10"], "far_hr@10_masked": r["far"]["hr@10_masked"],
                                     "near_hr@10": r["near"]["hr@10"],
                                     "wals_far_hr@10_masked": r["wals"]["far"]["hr@10_masked"]}
                         for r in record["vectors"]}}))
    return record


if __name__ == "__main__":
    main()
