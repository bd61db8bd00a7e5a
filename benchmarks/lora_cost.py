"""Benchmark: what LoRA's adapters cost a training step of the cpu backbone, same process.

    python benchmarks/lora_cost.py --steps 3

Each LoRA setting of the distance record (the paper's rank 8 on the query and value
projections with dropout 0.05; without dropout; rank 8 and 16 on every linear layer) is
timed three ways on the item-token side's batch shape (16 prompts of 128 tokens, final
hidden states, no vocabulary head), each after one warm-up step:

- ``skipped``: the adapters switched off (what stage 1 runs while they are zero and frozen,
  ``FusionModel.idle_adapters_off``);
- ``frozen``: the adapters run but do not train (what stage 1 ran before);
- ``trained``: the adapters train (stage 2).

Ratios are against the paper's setting in the same process: ``frozen`` for stage 1,
``trained`` for stage 2. Precision as the cpu profile trains: bfloat16 autocast where the
CPU multiplies it natively, float32 elsewhere. Writes
benchmarks/results/lora_cost_<cpu>.json (or --out) with the machine named and prints a
summary as its last line.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext

import torch

from llmrec_lite.backbone import BackboneSettings, load_backbone
from llmrec_lite.device import cpu_has_fast_bf16, describe_machine
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import EVERY_LINEAR_LAYER, get_profile

from precision import machine_record_path, step_args, step_seconds  # benchmarks/precision.py

SETTINGS = {
    "the paper's: rank 8 on q_proj and v_proj, dropout 0.05": {},
    "rank 8 on q_proj and v_proj, no dropout": {"lora_dropout": 0.0},
    "rank 8 on every linear layer, dropout 0.05": {"lora_targets": EVERY_LINEAR_LAYER},
    "rank 8 on every linear layer, no dropout": {"lora_targets": EVERY_LINEAR_LAYER, "lora_dropout": 0.0},
    "rank 16 on every linear layer, no dropout": {"lora_r": 16, "lora_alpha": 32, "lora_targets": EVERY_LINEAR_LAYER,
                                                  "lora_dropout": 0.0},
}


def timed(backbone, embeds, bf16: bool, steps: int, way: str) -> float:
    """Mean seconds of a forward + backward pass with the adapters ``skipped``, ``frozen`` or ``trained``."""
    lora = [p for name, p in backbone.model.named_parameters() if "lora_" in name]
    for p in lora:
        p.requires_grad_(way == "trained")
    with backbone.model.disable_adapter() if way == "skipped" else nullcontext():
        seconds = step_seconds(backbone.decoder(), embeds, bf16, steps)
    return sum(seconds) / len(seconds)


def main(argv=None) -> dict:
    args = step_args(__doc__, argv)

    base = dataclasses.replace(BackboneSettings.from_profile(get_profile("cpu")), lora_r=8, lora_alpha=16,
                               lora_dropout=0.05, lora_targets=("q_proj", "v_proj"))
    bf16 = cpu_has_fast_bf16()
    rows = []
    for name, overrides in SETTINGS.items():
        torch.manual_seed(args.seed)
        backbone = load_backbone(dataclasses.replace(base, **overrides), device="cpu")
        backbone.model.train()
        embeds = (torch.randn(args.batch, args.tokens, backbone.hidden_size) * 0.02).requires_grad_()
        row = {"setting": name, **{k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}}
        for way in ("skipped", "frozen", "trained"):
            row[f"{way}_seconds_per_step"] = timed(backbone, embeds, bf16, args.steps, way)
        rows.append(row)
        del backbone
    paper = rows[0]
    for row in rows:
        row["stage1_over_paper_frozen"] = row["skipped_seconds_per_step"] / paper["frozen_seconds_per_step"]
        row["stage2_over_paper_trained"] = row["trained_seconds_per_step"] / paper["trained_seconds_per_step"]
    machine = describe_machine()
    record = {
        "benchmark": "LoRA cost per training step",
        "batch": args.batch, "tokens": args.tokens, "steps": args.steps,
        "precision": "bfloat16 autocast" if bf16 else "float32",
        "rows": rows,
        "machine": machine,
    }
    out = machine_record_path("lora_cost", machine, args.out)
    write_json(out, record)
    print(json.dumps({r["setting"]: {"stage 1": round(r["stage1_over_paper_frozen"], 3),
                                     "stage 2": round(r["stage2_over_paper_trained"], 3)} for r in rows}))
    return record


if __name__ == "__main__":
    main()
