"""Benchmark: what the gpu profile's recipe costs on one GPU, measured with random weights.

The gpu profile loads OpenLLaMA-3B from the Hugging Face Hub. Where the Hub cannot be
reached (the GPU machines this project is lent have no internet), this script builds a
randomly initialised Llama with OpenLLaMA-3B's exact shape (``OPENLLAMA_3B_CONFIG``), saves
it with a SentencePiece tokenizer trained on the rendered prompts (digits split, as
OpenLLaMA's), and then runs the gpu profile's own code path on it: 4-bit NF4 loading with
double quantisation, k-bit preparation with gradient checkpointing, LoRA, projectors, both
training stages on both output sides, item-token ranking and trie-constrained beam search.

Time per step, peak GPU memory and evaluation throughput do not depend on the weights'
values, so they are what this measures; accuracy numbers would be meaningless and are not
reported. The memory estimate of ``backbone.estimate_training_memory`` is recorded beside
the measured peak, and the measured step time gives the wall-clock time the profile's full
budget would take.

    python benchmarks/gpu_cost.py --dataset lastfm --steps 30        # on a CUDA machine
    python benchmarks/gpu_cost.py --shape tiny --steps 4 --device cpu  # a dry run of the script

Writes benchmarks/results/gpu_cost_<dataset>_<shape>.json (or --out) and prints it as its
last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmrec_lite import backbone as B
from llmrec_lite.data import load_dataset
from llmrec_lite.device import describe_machine
from llmrec_lite.evaluate import evaluate_model, evaluation_users
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile
from llmrec_lite.batching import training_steps
from llmrec_lite.prompts import render
from llmrec_lite.runs import Run, ensure_wals
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.templates import TASKS, all_templates, get_template
from llmrec_lite.settings import TrainSettings

SHAPES = {
    "openllama-3b": B.OPENLLAMA_3B_CONFIG,
    # a few-MB stand-in with the same code path, for checking the script on a CPU
    "tiny": dict(B.OPENLLAMA_3B_CONFIG, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4),
}


def build_random_model(folder: Path, shape: dict, split, device: str, seed: int) -> None:
    """A random Llama of ``shape`` in bfloat16 plus a SentencePiece tokenizer, saved to ``folder``."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    # tokenizer corpus: every template, and prompts rendered with ids as text for many users
    lines = [t.text for task in TASKS for t in all_templates(task)]
    rng = np.random.default_rng(seed)
    for u in rng.choice(split.num_users, size=min(400, split.num_users), replace=False):
        for task in TASKS:
            lines.append(render(get_template(task, int(rng.integers(10))), split.data, int(u), split.history(int(u)),
                                None, False, 10).as_text())
    (folder / "corpus.txt").write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"), model_prefix=str(folder / "tokenizer"), vocab_size=1000,
        hard_vocab_limit=False, model_type="bpe", split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**shape))
    model.to(torch.bfloat16).save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--shape", default="openllama-3b", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=30, help="training steps per stage and output side")
    parser.add_argument("--eval-users", type=int, default=256, help="users ranked by the item-token model")
    parser.add_argument("--beam-users", type=int, default=64, help="users searched by the text-id model")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here; run with --device cpu --shape tiny for a dry run.")

    profile = dataclasses.replace(get_profile("gpu"), device=args.device)
    shape = SHAPES[args.shape]
    data = load_dataset(args.dataset, indexing=profile.indexing, seed=profile.seed)
    split = LeaveOneOutSplit.from_data(data)
    work = Path(tempfile.mkdtemp(prefix="llmrec-gpu-cost-"))
    folder = work / "model"
    folder.mkdir()
    start = time.perf_counter()
    build_random_model(folder, shape, split, args.device, args.seed)
    build_seconds = time.perf_counter() - start

    start = time.perf_counter()
    backbone = B.load_backbone(B.BackboneSettings.from_profile(profile, model_path=str(folder)), device=args.device)
    load_seconds = time.perf_counter() - start
    wals = ensure_wals(work / "run" / "wals", profile, split, show_progress=False)
    run = Run(work / "run", profile, data, split, wals, backbone)
    cuda = args.device == "cuda"
    samples = args.steps * profile.batch_size // len(TASKS)
    encoder = run.encoder()
    lengths = [len(encoder.for_user(get_template("sequential", 0), u).input_ids) for u in range(min(200, split.num_users))]

    runs = []
    for output in ("item-token", "text-id"):
        for stage in (1, 2):
            settings = run.settings(output, stage, samples_per_task=samples, epochs=1, val_users=32,
                                    eval_every=10**9, checkpoint_every=10**9)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            result = run.ensure(settings, show_progress=False)
            log = run.read_log(output, stage)
            step_seconds = np.diff([r["seconds"] for r in log])[2:]  # the first steps pay one-off costs
            runs.append({
                "output": output, "stage": stage, "steps": result["steps"],
                "seconds_per_step": float(np.median(step_seconds)) if len(step_seconds) else None,
                "tokens_per_second": result["tokens_per_second"],
                "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 1024**3 if cuda else None,
                "trainable_parameters": result["trainable_parameters"],
            })
            print(json.dumps(runs[-1]), file=sys.stderr)

    evals = []
    for output, n in (("item-token", args.eval_users), ("text-id", args.beam_users)):
        trained = run.load(output, 2)
        users = evaluation_users(split, n, seed=args.seed)
        ev = evaluate_model(trained, task="sequential", template="seen", users=users, show_progress=False)
        evals.append({"output": output, "users": int(len(users)), "users_per_second": ev.metrics["users_per_second"],
                      "num_beams": ev.metrics.get("num_beams")})
        print(json.dumps(evals[-1]), file=sys.stderr)
        del trained

    trainable = max(r["trainable_parameters"]["total"] - r["trainable_parameters"].get("lora", 0) for r in runs)
    estimate = B.estimate_training_memory(shape, backbone.settings, profile.batch_size, int(np.percentile(lengths, 95)),
                                          trainable_extra=trainable)
    # the profile's full budget (OpenP5's share of the rendered prompts and epochs, from the profile)
    full_steps = training_steps(TrainSettings.from_profile(profile, 1, "item-token"), split.num_train_samples)
    per_output = {}
    for output in ("item-token", "text-id"):
        s = [r["seconds_per_step"] for r in runs if r["output"] == output]
        per_output[output] = {"stage1_hours": full_steps * s[0] / 3600, "stage2_hours": full_steps * s[1] / 3600}
    result = {
        "benchmark": "gpu_cost",
        "note": "random weights with the model's shape: times and memory only, no accuracy",
        "dataset": args.dataset,
        "shape": args.shape,
        "model_parameters": B.parameter_counts(shape, backbone.settings),
        "load_in_4bit": backbone.settings.load_in_4bit,
        "batch_size": profile.batch_size,
        "prompt_tokens_median": float(np.median(lengths)),
        "prompt_tokens_p95": float(np.percentile(lengths, 95)),
        "build_seconds": build_seconds,
        "load_seconds": load_seconds,
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "training": runs,
        "evaluation": evals,
        "memory_estimate_gib": estimate,
        "full_budget_steps_per_stage": full_steps,
        "full_budget_hours": per_output,
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"gpu_cost_{args.dataset}_{args.shape}.json"
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("training", "evaluation", "machine")} | {"out": str(out)}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
