"""Benchmark: item-token ranking speed against the raw forward pass of the same backbone.

For each dataset, the same users and the same token batches (the evaluation's own
length-sorted batches of the sequential, seen-template prompts) go through

1. the raw backbone: the decoder's forward pass on the batches' token ids, nothing else
   (no CF slots, no catalogue, no ranking) -- the physical limit of this machine;
2. ``llmrec_lite.evaluate.evaluate_item_token``: slots, the catalogue projected once,
   scores as one matrix product per batch, unmasked and masked ranks, top-10 lists.

Both run in the same process, at the precision the cpu profile trains in (bfloat16
autocast). It writes users per second of each and their ratio (the goal: evaluation at
80 % or more of the raw forward pass), with the machine named.

    python benchmarks/item_token_eval.py --profile cpu --datasets lastfm,beauty --users 2000

The model is freshly initialised (speed does not depend on training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from llmrec_lite.device import describe_machine, resolve_bf16
from llmrec_lite.evaluate import evaluate_item_token, evaluation_users
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run
from llmrec_lite.templates import get_template


@torch.no_grad()
def raw_forward_seconds(model, encoder, users, batch_size: int, bf16: bool) -> float:
    """Seconds of the backbone's forward pass alone over the evaluation's batches."""
    decoder = model.backbone.decoder()
    template = get_template("sequential", "seen")
    batches = [b for _, b in encoder.batches(template, users, "test", batch_size, show_progress=False, by_length=True)]
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                    use_cache=False)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--datasets", default="lastfm,beauty")
    parser.add_argument("--users", type=int, default=2000, help="users per dataset (all when fewer)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    bf16 = resolve_bf16(profile.train_bf16, profile.device)  # as the profile's models are trained here
    backbone, rows = None, []
    for dataset in args.datasets.split(","):
        run = Run.open(profile, dataset, Path("/tmp") / f"llmrec-bench-{profile.name}-{dataset}", backbone=backbone,
                       show_progress=False)
        backbone = run.backbone
        model = run.build_model(run.settings("item-token", 1)).eval()
        encoder = run.encoder()
        users = evaluation_users(run.split, args.users, seed=profile.seed)
        evaluate_item_token(model, encoder, users=users[: args.batch], bf16=bf16, show_progress=False)  # warm-up
        raw = raw_forward_seconds(model, encoder, users, args.batch, bf16)
        start = time.perf_counter()
        ev = evaluate_item_token(model, encoder, users=users, batch_size=args.batch, bf16=bf16, show_progress=False)
        full = time.perf_counter() - start
        rows.append({"dataset": dataset, "users": int(len(users)), "items": run.split.num_items, "batch": args.batch,
                     "bf16": bf16, "raw_forward": {"seconds": raw, "users_per_second": len(users) / raw},
                     "evaluation": {"seconds": full, "users_per_second": len(users) / full},
                     "evaluation_share_of_raw_speed": raw / full})
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"benchmark": "item_token_eval", "profile": profile.name, "backbone": backbone.source,
              "task": "sequential", "template": "seen", "rows": rows, "machine": describe_machine()}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"item_token_eval_{profile.name}.json"
    write_json(out, result)
    print(json.dumps({"out": str(out), **{r["dataset"]: {"users_per_second": r["evaluation"]["users_per_second"],
                                                         "share_of_raw": r["evaluation_share_of_raw_speed"]}
                                          for r in rows}}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
