"""Benchmark: the torch WALS fast path against the `implicit` library, same process.

Both backends get the same confidences (c = 1 + alpha * r), the same initial factors,
the same number of iterations and the same thread count. Seconds per iteration count
solver time only (the loss is computed outside the timed region, by one shared function).

    python benchmarks/wals.py --dataset beauty --factors 64 --iterations 15

Writes benchmarks/results/wals_<dataset>_<device>.json (or --out) and prints it as
its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from llmrec_lite.data import load_dataset
from llmrec_lite.device import describe_machine, resolve_device
from llmrec_lite.fileio import write_json
from llmrec_lite.metrics import evaluate_dot_product
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.wals import WALS, WALSConfig


def run(backend: str, solver: str, device: str, matrix, split, args) -> dict:
    config = WALSConfig(
        num_factors=args.factors, regularization=args.regularization, alpha=args.alpha,
        iterations=args.iterations, backend=backend, solver=solver, seed=args.seed, device=device,
    )
    model = WALS(config).fit(matrix, show_progress=False)
    metrics = evaluate_dot_product(model.user_factors, model.item_factors, split)
    return {
        "backend": backend, "solver": solver, "device": device,
        "seconds_per_iteration": model.seconds_per_iteration,
        "seconds_per_iteration_each": [h["seconds"] for h in model.history],
        "final_loss": model.final_loss,
        "loss_history": [h["loss"] for h in model.history],
        "hr@10": metrics["hr@10"], "hr@10_masked": metrics["hr@10_masked"],
        "ndcg@10": metrics["ndcg@10"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="device of the torch runs: cpu, cuda or auto")
    parser.add_argument("--exact", action="store_true", help="also time the exact batched solver")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    device = resolve_device(args.device).type
    split = LeaveOneOutSplit.from_data(load_dataset(args.dataset))
    matrix = split.train_matrix()

    runs = []
    # warm-up: the first call of each path pays one-off costs (allocations, CUDA context)
    warm = argparse.Namespace(**{**vars(args), "iterations": 1})
    run("implicit", "cg", "cpu", matrix, split, warm)
    run("torch", "cg", device, matrix, split, warm)
    runs.append(run("implicit", "cg", "cpu", matrix, split, args))
    runs.append(run("torch", "cg", device, matrix, split, args))
    if device != "cpu":
        runs.append(run("torch", "cg", "cpu", matrix, split, args))
    if args.exact:
        runs.append(run("torch", "batched", device, matrix, split, args))

    baseline, fast = runs[0], runs[1]
    result = {
        "benchmark": "wals",
        "dataset": args.dataset,
        "users": split.num_users,
        "items": split.num_items,
        "train_interactions": int(matrix.nnz),
        "factors": args.factors,
        "iterations": args.iterations,
        "regularization": args.regularization,
        "alpha": args.alpha,
        "machine": describe_machine(),
        "runs": runs,
        "torch_over_implicit_seconds_per_iteration": fast["seconds_per_iteration"] / baseline["seconds_per_iteration"],
        "torch_minus_implicit_final_loss": fast["final_loss"] - baseline["final_loss"],
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"wals_{args.dataset}_{device}.json"
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"} | {"out": str(out)}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
