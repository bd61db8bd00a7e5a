"""Benchmark: one training step of the cpu backbone in float32 against bfloat16 autocast, same process.

    python benchmarks/precision.py --steps 3

The cpu profile trains under ``train_bf16="auto"``: bfloat16 autocast where the CPU
multiplies bfloat16 natively (AVX-512 BF16 or AMX), float32 elsewhere. This measures why:
forward and backward passes of SmolLM2-135M with LoRA on the item-token side's batch shape
(16 prompts of 128 tokens), each precision timed after one warm-up step, plus one
1024 x 1024 matrix product. Writes benchmarks/results/precision_<cpu>.json (or --out) with
the machine named and prints it as its last line.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from llmrec_lite.backbone import BackboneSettings, load_backbone
from llmrec_lite.device import cpu_has_fast_bf16, describe_machine
from llmrec_lite.fileio import write_json


def step_seconds(model, embeds, bf16: bool, steps: int) -> list[float]:
    """Seconds of each of ``steps`` forward + backward passes (after one warm-up)."""
    times = []
    for k in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        hidden.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
        embeds.grad = None
        if k:
            times.append(time.perf_counter() - start)
    return times


def matmul_seconds(dtype, repeats: int = 3) -> float:
    a = torch.randn(1024, 1024).to(dtype)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return (time.perf_counter() - start) / repeats


def step_args(doc: str, argv=None) -> argparse.Namespace:
    """The options of the step-timing benchmarks: ``--steps``, ``--batch``, ``--tokens``, ``--seed``, ``--out``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def machine_record_path(kind: str, machine: dict, out: str | None) -> Path:
    """``out``, else benchmarks/results/<kind>_<cpu model>.json (one record per kind of CPU)."""
    name = re.sub(r"[^a-z0-9]+", "-", machine.get("cpu_model", machine["processor"]).lower()).strip("-")
    return Path(out) if out else Path(__file__).parent / "results" / f"{kind}_{name}.json"


def main(argv=None) -> dict:
    args = step_args(__doc__, argv)

    torch.manual_seed(args.seed)
    backbone = load_backbone(BackboneSettings(kind="cpu"), device="cpu")
    model = backbone.model
    model.train()
    # a leaf tensor: every step's backward reaches it through a fresh graph
    embeds = (torch.randn(args.batch, args.tokens, backbone.hidden_size) * 0.02).requires_grad_()
    decoder = backbone.decoder()  # the item-token side's path: final hidden states, no vocabulary head
    fp32 = step_seconds(decoder, embeds, False, args.steps)
    bf16 = step_seconds(decoder, embeds, True, args.steps)
    machine = describe_machine()
    record = {
        "benchmark": "training step precision",
        "backbone": backbone.source,
        "batch": args.batch, "tokens": args.tokens, "steps": args.steps,
        "float32_seconds_per_step": sum(fp32) / len(fp32), "float32_each": fp32,
        "bf16_seconds_per_step": sum(bf16) / len(bf16), "bf16_each": bf16,
        "bf16_over_float32": (sum(bf16) / len(bf16)) / (sum(fp32) / len(fp32)),
        "matmul_1024_float32_seconds": matmul_seconds(torch.float32),
        "matmul_1024_bf16_seconds": matmul_seconds(torch.bfloat16),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "auto_chooses": "bf16" if cpu_has_fast_bf16() else "float32",
        "machine": machine,
    }
    out = machine_record_path("precision", machine, args.out)
    write_json(out, record)
    print(json.dumps({k: v for k, v in record.items() if not k.endswith("_each") and k != "machine"}))
    return record


if __name__ == "__main__":
    main()
