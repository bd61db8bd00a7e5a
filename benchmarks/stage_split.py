"""Stage-split record: how a profile's item-token training prompts divide between stage 1 and stage 2.

    python benchmarks/stage_split.py --dataset lastfm --splits 400:1200,800:1200
    python benchmarks/stage_split.py --dataset beauty --splits 400:1200,800:1200 --users 1500 --no-baseline

Full-budget runs with the profile's head (chosen by benchmarks/tune.py at a shorter budget),
one per split of prompts per task, scored on the validation targets only: stage 1, stage 2
and (unless --no-baseline) the same model without CF embeddings, with paired bootstrap
intervals between them. Writes benchmarks/results/split_<dataset>_<profile>.json (or --out)
with the machine and date; runs are kept in --runs (default runs/split/<dataset>) and reused
when the script is run again. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json

from llmrec_lite.runs import Run
from lab.runners import stage_split
from llmrec_lite.variants import ITEM_TOKEN

from record_cli import add_record_args, record_paths, write_record  # benchmarks/record_cli.py


def parse_splits(text: str) -> list[tuple[int, int]]:
    """``"400:1200,800:1200"`` -> ``[(400, 1200), (800, 1200)]``."""
    splits = []
    for part in text.split(","):
        try:
            first, second = (int(n) for n in part.split(":"))
        except ValueError:
            raise ValueError(f"--splits {part!r}: write each split as STAGE1:STAGE2 prompts per task, e.g. 400:1200") from None
        splits.append((first, second))
    return splits


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_record_args(parser, "split", "folder of the runs")
    parser.add_argument("--splits", default="400:1200,800:1200", help="STAGE1:STAGE2 prompts per task, comma-separated")
    parser.add_argument("--users", type=int, default=None, help="validation users scored (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the model without CF embeddings")
    args = parser.parse_args(argv)

    profile, out, runs = record_paths(parser, args, "split", "split")
    try:
        splits = parse_splits(args.splits)
    except ValueError as err:
        parser.error(str(err))
    run = Run.open(profile, args.dataset, runs)
    record = stage_split(run, splits, users=args.users, out=runs, baseline=not args.no_baseline)
    record = write_record(out, record)
    final = f"{ITEM_TOKEN.label} stage 2"
    print(json.dumps({"out": str(out), "best": record["best"],
                      **{r["name"]: {"valid_hr@10": r["valid"][final]["hr@10"],
                                     "valid_hr@10_masked": r["valid"][final]["hr@10_masked"]} for r in record["splits"]}}))
    return record


if __name__ == "__main__":
    main()
