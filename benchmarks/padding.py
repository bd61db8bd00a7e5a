"""Record: how much of the cpu profile's training and evaluation batches is padding.

Training batches are the ones a stage really trains on (``llmrec_lite.batching.epoch_batches``:
prompts sorted by length inside windows of ``bucket_size`` batches); evaluation batches are
the test users' sequential seen-template prompts, sorted by length as
``llmrec_lite.evaluate.item_token_batches`` takes them. Padding is the share of padded
positions among all positions a forward pass computes; it bounds what further length
bucketing or packing could save. No model runs: prompts are only tokenized.

    python benchmarks/padding.py --profile cpu --datasets lastfm,beauty
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from llmrec_lite.batching import epoch_batches
from llmrec_lite.device import describe_machine
from llmrec_lite.evaluate import evaluation_users
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run
from llmrec_lite.templates import get_template

ROWS = (("item-token", 1), ("item-token", 2), ("item-token-text", 2))


def padding_share(batches) -> dict:
    """Real and padded positions of batches of encoded prompts (lists of ``Encoded``)."""
    lengths = [[len(e.input_ids) for e in batch] for batch in batches]
    real = sum(sum(b) for b in lengths)
    padded = sum(max(b) * len(b) for b in lengths)
    return {"batches": len(lengths), "real_tokens": int(real), "padded_positions": int(padded),
            "padding": 1.0 - real / padded}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--datasets", default="lastfm,beauty")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    result = {"benchmark": "padding", "profile": profile.name, "datasets": {}}
    for dataset in args.datasets.split(","):
        run = Run.open(profile, dataset, Path("/tmp") / f"llmrec-bench-{profile.name}-{dataset}", show_progress=False)
        rows = {}
        for variant, stage in ROWS:
            settings = run.settings(variant, stage)
            encoder = run.encoder(with_embeddings=settings.use_embeddings)
            train = padding_share(epoch_batches(encoder, settings, 0))
            users = evaluation_users(run.split, profile.eval_users, seed=profile.seed)
            prompts = [encoder.for_user(get_template("sequential", "seen"), int(u), "test") for u in users]
            prompts = sorted(prompts, key=lambda e: len(e.input_ids))
            size = profile.eval_batch_size
            evaluation = padding_share([prompts[i: i + size] for i in range(0, len(prompts), size)])
            rows[f"{variant}/stage{stage}"] = {"training": train, "evaluation": evaluation,
                                               "mean_prompt_tokens": float(np.mean([len(p.input_ids) for p in prompts]))}
        result["datasets"][dataset] = rows
    result["machine"] = describe_machine()
    result["date"] = datetime.date.today().isoformat()
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"padding_{profile.name}.json"
    write_json(out, result)
    print(json.dumps({"out": str(out), **{d: {k: {"training": round(v["training"]["padding"], 4),
                                                   "evaluation": round(v["evaluation"]["padding"], 4)}
                                               for k, v in rows.items()} for d, rows in result["datasets"].items()}}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
