"""Benchmark: SASRec on this machine, full-softmax cross-entropy against the original
one-negative binary loss, same process, same split, same seed.

For each loss: seconds per epoch, the epoch early stopping chose (validation HR@10), and
the test HR@10 / NDCG@10 under the book's rule, unmasked and with history masked.

    python benchmarks/sasrec.py --dataset lastfm --lr 1e-3

Writes benchmarks/results/sasrec_<dataset>_<device>.json (or --out) and prints it as its
last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from llmrec_lite.data import load_dataset
from llmrec_lite.device import describe_machine
from llmrec_lite.fileio import write_json
from llmrec_lite.sasrec import SASRecConfig, evaluate_sasrec, fit_sasrec
from llmrec_lite.split import LeaveOneOutSplit


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 (LastFM), 5e-4 (others), as published")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--losses", default="ce,bce")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    split = LeaveOneOutSplit.from_data(load_dataset(args.dataset))
    lr = args.lr if args.lr is not None else (1e-3 if args.dataset == "lastfm" else 5e-4)
    runs = []
    for loss in args.losses.split(","):
        config = SASRecConfig(lr=lr, loss=loss, max_epochs=args.max_epochs, patience=args.patience, seed=args.seed,
                              device=args.device)
        model, record = fit_sasrec(split, config)
        test = evaluate_sasrec(model, split)
        runs.append({"loss": loss, "config": asdict(config), **record.to_dict(), "test": test})
        print(json.dumps({k: v for k, v in runs[-1].items() if k not in ("curve", "config")}), file=sys.stderr)
    result = {
        "benchmark": "sasrec",
        "dataset": args.dataset,
        "users": split.num_users,
        "items": split.num_items,
        "machine": describe_machine(),
        "rule": "full ranking, last item held out; test metrics unmasked and _masked (history removed)",
        "runs": runs,
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"sasrec_{args.dataset}_{args.device}.json"
    write_json(out, result)
    print(json.dumps({"out": str(out), **{r["loss"]: {"hr@10_masked": r["test"]["hr@10_masked"],
                                                      "seconds_per_epoch": r["seconds_per_epoch"]} for r in runs}}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
