"""Budget record: the text-id side's validation accuracy against its training budget, with and without CF embeddings.

    python benchmarks/text_id_budget.py --dataset lastfm --budgets 800 2000 5000 12000 25000 --users 500
    python benchmarks/text_id_budget.py --dataset ml100k --budgets 800 5000 --users 500

A budget counts every training prompt the model sees (both tasks, both stages; with CF
embeddings split between the stages in the profile's text_id_samples ratio, without them all
in its one stage; see ``lab.runners.budget_stages``). Each point trains in its own folder
under --runs (default runs/text_id_budget/<dataset>/budget-<B>) and answers --users
validation users by beam search; popularity is scored on the same users. Only validation
targets are read. Each point carries its training minutes, final training loss, HR@10 and
NDCG@10 with bootstrap intervals, the distinct items ranked first and the paired difference
from popularity; each budget with both variants the paired CF - no CF interval.

The record (benchmarks/results/text_id_budget_<dataset>_<profile>.json, or --out) is written
after every point. Run the same command again, in this session or a later one, and it goes on
where it stopped: measured points are kept, finished stages reused, an interrupted stage
continues from its checkpoint. More budgets added later join the same record. --overwrite
starts the record again (the trained stages under --runs are still reused). Prints one JSON
line last.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lab.budget import budget_readings, budget_words
from lab.runners import RecordMismatchError, text_id_budget_curve
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run
from llmrec_lite.variants import Variant

DEFAULT_BUDGETS = (800, 2000, 5000, 12000, 25000)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(DEFAULT_BUDGETS),
                        help="training prompts in all, one per point")
    parser.add_argument("--users", type=int, default=500, help="validation users scored (a seeded subset)")
    parser.add_argument("--variants", nargs="+", default=["text-id", "text-id-text"],
                        help="text-id (CF embeddings) and/or text-id-text (ids as text, no CF)")
    parser.add_argument("--runs", default=None, help="folder of the runs (default runs/text_id_budget/<dataset>)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true", help="start the record again (trained stages are reused)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    if any(b < 1 for b in args.budgets):
        parser.error(f"--budgets are counts of training prompts, positive: {args.budgets}")
    if args.users < 1:
        parser.error(f"--users {args.users}: score at least one user")
    try:
        variants = [Variant.parse(v) for v in args.variants]
    except ValueError as err:
        parser.error(str(err))
    if any(v.output != "text-id" for v in variants):
        parser.error("--variants are text-id ones: text-id, text-id-text")
    profile = get_profile(args.profile)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"text_id_budget_{args.dataset}_{profile.name}.json"
    runs = Path(args.runs) if args.runs else Path("runs") / "text_id_budget" / args.dataset
    run = Run.open(profile, args.dataset, runs, show_progress=not args.quiet)
    if args.overwrite and out.exists():
        out.unlink()
    try:
        record = text_id_budget_curve(run, args.budgets, users=args.users, record=out, out=runs,
                                      variants=variants, show_progress=not args.quiet)
    except RecordMismatchError as err:
        parser.error(str(err))
    summary = {"out": str(out), "users": record["users"], "popularity_hr@10": record["popularity"]["hr@10"],
               "points": {f"{p['variant']} {p['budget']}": {"hr@10": p["valid"]["hr@10"], "ndcg@10": p["valid"]["ndcg@10"],
                                                            "distinct_top1": p["distinct_top1"],
                                                            "train_minutes": round(p["train_minutes"], 2),
                                                            "final_loss": p["final_loss_mean_last_10pct"]}
                          for p in record["points"]},
               "cf - no cf": {r["budget"]: r["hr@10"]["verdict"] for r in record["cf - no cf"]},
               "missing": record["missing"], "readings": budget_readings(record), "words": budget_words(record)}
    print(json.dumps(summary))
    return record


if __name__ == "__main__":
    main()
