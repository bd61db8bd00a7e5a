"""Benchmark: evaluation and training speed with compute weights against without, one process.

``llmrec_lite.weights.compute_weights`` casts the backbone's frozen weights to bfloat16 once
(instead of at every product under autocast) and, for evaluation, merges the LoRA adapters
into them. This script measures what that buys, on the same machine and in the same process,
for the cpu profile's models on the sequential, seen-template prompts:

- evaluation: users per second of the item-token ranking before (adapters running, weights
  cast at every product, 32 prompts per pass: the code as it was) and after
  (``evaluate_item_token`` as it is, at the profile's ``eval_batch_size``; and at other batch sizes),
  for the CF model with trained (non-zero) LoRA adapters and for the model without CF
  embeddings (ids as text, longer prompts); beside them the raw decoder forward pass over
  the same batches and the share of padding in them; and how many users' hit@10 differ
  between before and after (rounding: the merged weight is rounded to bfloat16 once);
- training: non-padding tokens per second of a training step (forward, backward, AdamW) in
  stage 1 and stage 2, before and after, and whether the losses are bit-identical;
- the shared prompt prefix (what a key/value cache of it could save).

    python benchmarks/speed.py --profile cpu --datasets lastfm,beauty --users 1000 --steps 12

Models are freshly built (speed does not depend on training); stage 2's LoRA adapters get
seeded random values so that they run as in a trained model.
"""

from __future__ import annotations

import argparse
import datetime
from contextlib import nullcontext
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmrec_lite.device import describe_machine, resolve_bf16
from llmrec_lite.evaluate import evaluate_item_token, evaluation_users, item_token_scores
from llmrec_lite.fileio import write_json
from llmrec_lite.metrics import target_ranks
from llmrec_lite.profiles import get_profile
from llmrec_lite.prompts import collate
from llmrec_lite.runs import Run
from llmrec_lite.templates import get_template


def trained_adapters(model, seed: int = 0) -> None:
    """Seeded non-zero LoRA B matrices (at the scale of the A matrices), as after stage 2."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)


@torch.no_grad()
def before_scores(model, encoder, users, batch_size, bf16):
    """The evaluation loop without compute weights (as it was): seconds, ranks in ``users``' order."""
    template = get_template("sequential", "seen")
    gold = encoder.split.target_items("test")
    items = model.item_matrix()
    start = time.perf_counter()
    ranks = {}
    for chunk, batch in encoder.batches(template, users, "test", batch_size, show_progress=False, by_length=True):
        scores = item_token_scores(model, batch, items, bf16)
        for u, r in zip(chunk.tolist(), target_ranks(scores, gold[chunk]).tolist()):
            ranks[u] = r
    return time.perf_counter() - start, np.array([ranks[int(u)] for u in users])


@torch.no_grad()
def raw_forward(model, encoder, users, batch_size, bf16) -> dict:
    """The decoder alone over the same batches, on compute weights: seconds, real and padded tokens."""
    template = get_template("sequential", "seen")
    batches = [b for _, b in encoder.batches(template, users, "test", batch_size, show_progress=False, by_length=True)]
    decoder = model.backbone.decoder()
    with model.compute_weights(bf16, merge_lora=True), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        start = time.perf_counter()
        for b in batches:
            decoder(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids, use_cache=False)
        seconds = time.perf_counter() - start
    real = sum(int(b.attention_mask.sum()) for b in batches)
    padded = sum(b.attention_mask.numel() for b in batches)
    return {"seconds": seconds, "users_per_second": len(users) / seconds, "tokens": real,
            "padding_share": 1 - real / padded}


def shared_prefix(encoder, users) -> dict:
    """Tokens every user's prompt starts with (what a key/value cache of the prefix could skip)."""
    template = get_template("sequential", "seen")
    encoded = [encoder.for_user(template, int(u)) for u in users]
    prompts = [e.input_ids[: e.response_start] for e in encoded]
    common = 0
    while all(len(p) > common and p[common] == prompts[0][common] for p in prompts):
        common += 1
    first_slot = min(min(e.slot_positions) if e.slot_positions else len(e.input_ids) for e in encoded)
    common = min(common, first_slot)
    mean = float(np.mean([len(p) for p in prompts]))
    return {"shared_tokens": common, "mean_prompt_tokens": mean, "share": common / mean}


def evaluation_row(run, variant: str, users, batch_size: int, bf16: bool, after_batch: int | None = None,
                   sweep=(8, 16, 32, 64)) -> dict:
    """Before: the old path at ``batch_size`` (the old default, 32); after: ``evaluate_item_token``
    at ``after_batch`` (the profile's ``eval_batch_size``), plus the after path at each batch
    size of ``sweep`` (users per second), the record the profile's setting is read from."""
    after_batch = after_batch or batch_size
    model = run.build_model(run.settings(variant, 1))
    model.set_stage(2)
    trained_adapters(model)
    model.eval()
    encoder = run.encoder(with_embeddings=model.use_embeddings)
    evaluate_item_token(model, encoder, users=users[:batch_size], bf16=bf16, show_progress=False)  # warm-up
    before_scores(model, encoder, users[:batch_size], batch_size, bf16)  # warm-up too
    old_seconds, old_ranks = before_scores(model, encoder, users, batch_size, bf16)
    start = time.perf_counter()
    ev = evaluate_item_token(model, encoder, users=users, batch_size=after_batch, bf16=bf16, show_progress=False)
    new_seconds = time.perf_counter() - start
    raw = raw_forward(model, encoder, users, after_batch, bf16)
    by_batch = {}
    for size in sweep:
        start = time.perf_counter()
        evaluate_item_token(model, encoder, users=users, batch_size=size, bf16=bf16, show_progress=False)
        by_batch[str(size)] = len(users) / (time.perf_counter() - start)
    return {"variant": variant, "users": int(len(users)), "batch": batch_size, "after_batch": after_batch,
            "bf16": bf16, "after_users_per_second_by_batch": by_batch,
            "before": {"seconds": old_seconds, "users_per_second": len(users) / old_seconds},
            "after": {"seconds": new_seconds, "users_per_second": len(users) / new_seconds},
            "speedup": old_seconds / new_seconds, "raw_forward": raw,
            "after_share_of_raw_speed": raw["seconds"] / new_seconds,
            "hits_before": int((old_ranks < 10).sum()), "hits_after": int((ev.ranks < 10).sum()),
            "users_whose_hit_differs": int(((old_ranks < 10) != (ev.ranks < 10)).sum())}


def training_row(run, variant: str, stage: int, steps: int, bf16: bool) -> dict:
    """Tokens per second of ``steps`` training steps, without and with compute weights."""
    settings = run.settings(variant, stage)
    encoder = run.encoder(with_embeddings=settings.use_embeddings)
    prompts = encoder.training_prompts("sequential", settings.batch_size * (steps + 1), seed=0)
    batches = [collate(prompts[i: i + settings.batch_size], encoder.tokenizer.pad_token_id, with_response=False)
               for i in range(0, len(prompts), settings.batch_size)]
    out = {"variant": variant, "stage": stage, "steps": steps, "batch": settings.batch_size, "bf16": bf16}
    losses = {}
    for label, fast in (("before", False), ("after", True)):
        model = run.build_model(run.settings(variant, 1))
        model.set_stage(stage)
        if stage == 2:
            trained_adapters(model)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        losses[label] = []
        with model.compute_weights(bf16) if fast else nullcontext():
            seconds, tokens = 0.0, 0
            for i, batch in enumerate(batches):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = model(batch)["loss"]
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if i:  # the first step warms up
                    seconds += time.perf_counter() - start
                    tokens += int(batch.attention_mask.sum())
                losses[label].append(float(loss.detach()))
        out[label] = {"seconds": seconds, "tokens_per_second": tokens / seconds}
        padded = sum(b.attention_mask.numel() for b in batches[1:])
        out["padding_share"] = 1 - tokens / padded
    out["speedup"] = out["after"]["tokens_per_second"] / out["before"]["tokens_per_second"]
    out["losses_identical"] = losses["before"] == losses["after"]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--datasets", default="lastfm,beauty")
    parser.add_argument("--users", type=int, default=1000, help="evaluation users per dataset (all when fewer)")
    parser.add_argument("--batch", type=int, default=32, help="the before path's batch (the old default)")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per stage")
    parser.add_argument("--bf16", choices=("profile", "off"), default="profile",
                        help="'off': float32, as on a CPU without native bfloat16")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    bf16 = resolve_bf16(profile.train_bf16, profile.device) if args.bf16 == "profile" else False
    backbone, result = None, {"benchmark": "speed", "profile": profile.name, "bf16": bf16, "datasets": {}}
    for dataset in args.datasets.split(","):
        run = Run.open(profile, dataset, Path("/tmp") / f"llmrec-bench-{profile.name}-{dataset}", backbone=backbone,
                       show_progress=False)
        backbone = run.backbone
        users = evaluation_users(run.split, args.users, seed=profile.seed)
        rows = {"evaluation": [evaluation_row(run, v, users, args.batch, bf16, profile.eval_batch_size)
                               for v in ("item-token", "item-token-text")],
                "training": [training_row(run, v, s, args.steps, bf16)
                             for v, s in (("item-token", 1), ("item-token", 2), ("item-token-text", 2))],
                "prefix": {v: shared_prefix(run.encoder(with_embeddings=v == "item-token"), users)
                           for v in ("item-token", "item-token-text")}}
        result["datasets"][dataset] = rows
        print(json.dumps({dataset: {"evaluation": [r["speedup"] for r in rows["evaluation"]],
                                    "training": [r["speedup"] for r in rows["training"]]}}), file=sys.stderr)
    result["backbone"] = backbone.source
    result["machine"] = describe_machine()
    result["date"] = datetime.date.today().isoformat()
    suffix = "" if args.bf16 == "profile" else "_float32"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"speed_{profile.name}{suffix}.json"
    write_json(out, result)
    summary = {d: {"evaluation_speedup": {r["variant"]: round(r["speedup"], 2) for r in rows["evaluation"]},
                   "training_speedup": {f"{r['variant']}/stage{r['stage']}": round(r["speedup"], 2)
                                        for r in rows["training"]}}
               for d, rows in result["datasets"].items()}
    print(json.dumps({"out": str(out), **summary}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
