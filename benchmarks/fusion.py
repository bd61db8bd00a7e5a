"""Late-fusion record: the model's item scores plus a weight times the WALS score, weights scored on validation targets.

    python benchmarks/fusion.py --dataset lastfm
    python benchmarks/fusion.py --dataset beauty --users 1500

Takes the distance record's shifted run (trained on every user's sequence less its last
item, WALS included; see benchmarks/distance.py) and its stage-2 model under the profile's
own settings, scores the sequential task's seen template once on the far target (the real
validation target, two items past that training: the test target's distance) and the near
one, and re-ranks those scores at every weight of lab/candidates.json (fusion_weights)
(``llmrec_lite.late_fusion``). No real test target is read. Writes
benchmarks/results/fusion_<dataset>_<profile>.json (or --out) with the machine and date;
the runs in --runs (default runs/distance/<dataset>) are reused, or trained when absent.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json

from llmrec_lite.runs import Run
from lab.catalogue import FUSION_WEIGHTS
from lab.runners import fusion_sweep

from record_cli import add_record_args, record_paths, write_record  # benchmarks/record_cli.py


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_record_args(parser, "distance", "folder of the distance runs")
    parser.add_argument("--users", type=int, default=None, help="users scored (default: all)")
    parser.add_argument("--weights", default=",".join(f"{w:g}" for w in FUSION_WEIGHTS),
                        help="comma-separated late-fusion weights (0, the model alone, is always scored)")
    args = parser.parse_args(argv)

    profile, out, runs = record_paths(parser, args, "fusion", "distance")
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        parser.error(f"--weights {args.weights!r}: give comma-separated numbers, e.g. 0,0.25,0.5")
    run = Run.open(profile, args.dataset, runs, steps_back=1)
    record = fusion_sweep(run, weights, users=args.users, out=runs)
    record = write_record(out, record)
    print(json.dumps({"out": str(out), "best": record["best"],
                      **{r["name"]: {"far_hr@10": r["far"]["hr@10"], "far_hr@10_masked": r["far"]["hr@10_masked"],
                                     "near_hr@10": r["near"]["hr@10"]} for r in record["weights"]},
                      "wals_far_hr@10_masked": record["wals"]["far"]["hr@10_masked"]}))
    return record


if __name__ == "__main__":
    main()
