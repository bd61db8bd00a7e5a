"""Record: can the text-id side learn at all, in the cpu profile's own configuration?

A model that can learn memorises a handful of prompts: trained again and again on 32 LastFM
training prompts (SmolLM2's tokenizer, the profile's LoRA targets, precision, user vectors
and head; projectors and LoRA trained together, as in stage 2), beam search over the whole
catalogue on those same 32 prompts should name each prompt's own answer first (HR@1 near 1).
Near 0 would point at a defect, not at the budget. Only training prompts are read: no
validation or test target is used.

    python benchmarks/overfit_text_id.py --prompts 32 --epochs 60
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import sys
import tempfile
import time

import numpy as np

from llmrec_lite.batching import build_batches
from llmrec_lite.device import describe_machine
from llmrec_lite.diagnose import training_prompt_hits
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run, Trained
from llmrec_lite.train import fit


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=None, help="default: the profile's stage-2 rates")
    parser.add_argument("--out", default=None, help="JSON record (default: benchmarks/results/overfit_text_id_<profile>.json)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.open(profile, args.dataset, Path(tmp) / "run", show_progress=False)
        overrides = {"epochs": args.epochs, "eval_every": 10**9, "checkpoint_every": 10**9, "tasks": ("sequential",)}
        if args.lr is not None:
            overrides.update(lr=args.lr, lora_lr=args.lr, projector_lr=args.lr)
        first = run.settings("text-id", 1, **overrides)
        settings = run.settings("text-id", 2, **overrides)
        # stage 2's trainable parts from a fresh stage-1 model: there is no stage 1 to start from here
        model = run.build_model(first)
        model.set_stage(2)
        encoder = run.encoder(settings.use_embeddings, settings.max_history)
        prompts = encoder.training_prompts("sequential", args.prompts, seed=settings.seed)
        batches = build_batches(prompts, settings.batch_size, settings.bucket_size, np.random.default_rng(settings.seed))
        trained = Trained(model, settings, encoder, 2)
        before = training_prompt_hits(trained, prompts)
        start = time.perf_counter()
        counters = fit(model, [batches] * args.epochs, batches[:1], settings, run.backbone.tokenizer.pad_token_id,
                       Path(tmp) / "log.jsonl", Path(tmp) / "checkpoint", show_progress=True)
        seconds = time.perf_counter() - start
        after = training_prompt_hits(trained, prompts)
    losses = [h["loss"] if isinstance(h, dict) else h for h in counters["history"]]
    result = {
        "benchmark": "overfit_text_id",
        "question": "does the text-id side memorise a few prompts in the profile's configuration?",
        "profile": profile.name, "dataset": args.dataset, "prompts": len(prompts), "epochs": args.epochs,
        "steps": counters["steps"], "batch_size": settings.batch_size, "bf16": settings.bf16,
        "lora_targets": list(profile.lora_targets), "user_vectors": settings.user_vectors,
        "lr": {"base": settings.lr, "lora": settings.lora_lr, "projectors": settings.projector_lr},
        "hr@1_before": float(np.mean(before == 0)), "hr@10_before": float(np.mean(before < 10)),
        "hr@1_after": float(np.mean(after == 0)), "hr@10_after": float(np.mean(after < 10)),
        "distinct_answers": int(len({p.target for p in prompts})),
        "first_loss": float(losses[0]) if losses else None, "final_loss": float(losses[-1]) if losses else None,
        "train_seconds": seconds,
        "machine": describe_machine(), "date": datetime.date.today().isoformat(),
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"overfit_text_id_{profile.name}.json")
    write_json(out, result)
    print({k: v for k, v in result.items() if k != "machine"}, file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
