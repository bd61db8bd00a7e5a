"""Compute copies of a backbone's frozen weights: cast once, LoRA merged, put back exactly.

Under bfloat16 autocast, every matrix product casts its float32 weight to bfloat16 again,
on every call. On a small model on a CPU that copy costs about as much as the product
itself. A weight that does not train can be cast once instead; the products autocast then
computes are the same, bit for bit, because autocast would have made the very same cast.

In a pass without gradients (evaluation), trained LoRA adapters can also be folded into
the weight they adapt: ``W + s B A`` is added up once, in float32, and each adapted layer
runs one product instead of three. That changes rounding only (one product of the merged
weight instead of the sum of two), not the model.

Both swaps replace a layer's weight *object* and put the original object back on exit.
Nothing is computed back (``W + s B A - s B A`` is not ``W`` in floating point), so the
base weights are restored exactly, and a weight tied to another module stays tied.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import nn


def is_lora_layer(module: nn.Module) -> bool:
    """A peft LoRA layer (checked by its parts, so that this module does not import peft)."""
    return hasattr(module, "base_layer") and hasattr(module, "lora_A") and hasattr(module, "get_delta_weight")


def mergeable_lora_layers(model: nn.Module) -> list[nn.Module]:
    """The model's LoRA layers when every one of them adapts a plain float ``nn.Linear`` and
    none is merged already; else ``[]`` (a 4-bit layer cannot take a float32 sum)."""
    layers = [m for m in model.modules() if is_lora_layer(m)]
    if not layers or not hasattr(model, "disable_adapter"):
        return []
    if any(type(m.base_layer) is not nn.Linear or getattr(m, "merged", False) for m in layers):
        return []
    return layers


def merged_weight(layer: nn.Module) -> torch.Tensor:
    """``W + s B A`` of one LoRA layer in ``W``'s precision (a new tensor; ``W`` is untouched)."""
    weight = layer.base_layer.weight.detach()
    for name in layer.active_adapters:
        if name in layer.lora_A:
            weight = weight + layer.get_delta_weight(name).to(weight.dtype)
    return weight


@contextmanager
def compute_weights(model: nn.Module, bf16: bool, merge_lora: bool = False):
    """Within the block, ``model`` runs on compute copies of its frozen linear weights.

    Args:
        model: A transformers model, with or without peft LoRA adapters.
        bf16: The block runs under bfloat16 autocast: frozen float32 ``nn.Linear`` weights
            are cast to bfloat16 once, up front (the products are unchanged, bit for bit).
            Leave it off where no autocast runs: a bfloat16 weight would then meet
            float32 inputs.
        merge_lora: Fold the active LoRA adapters into their base weights and switch the
            adapters off (only without gradients: a merged adapter cannot train). Skipped,
            with the adapters left running, when a layer cannot be merged (4-bit weights).

    Yields:
        Whether the adapters were merged (and are switched off within the block).

    Raises:
        RuntimeError: ``merge_lora`` while gradients are enabled.
    """
    if merge_lora and torch.is_grad_enabled():
        raise RuntimeError("LoRA adapters can only be merged for a pass without gradients (torch.no_grad()).")
    layers = mergeable_lora_layers(model) if merge_lora else []
    new = {layer.base_layer: merged_weight(layer) for layer in layers}
    if bf16:
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if (type(module) is nn.Linear and "lora_" not in name and weight is not None
                    and not weight.requires_grad and weight.dtype == torch.float32):
                new[module] = new.get(module, weight.detach()).to(torch.bfloat16)
    originals = {module: module.weight for module in new}
    # peft marks the adapters trainable when it switches them back on: their flags are put back
    flags = {p: p.requires_grad for n, p in model.named_parameters() if "lora_" in n}
    try:
        for module, weight in new.items():
            module.weight = nn.Parameter(weight, requires_grad=False)
        with model.disable_adapter() if layers else nullcontext():
            yield bool(layers)
    finally:
        for module, weight in originals.items():
            module.weight = weight
        for p, flag in flags.items():
            p.requires_grad_(flag)
