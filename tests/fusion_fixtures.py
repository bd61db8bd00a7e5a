"""Small objects for the fusion tests: a toy dataset, random CF factors, the tiny backbone."""

from __future__ import annotations

import functools

import torch

from llmrec_lite.backbone import BackboneSettings, load_backbone


@functools.lru_cache(maxsize=None)
def tiny_backbone(lora_r: int = 8):
    return load_backbone(BackboneSettings(kind="tiny", lora_r=lora_r))


def random_factors(num_users: int, num_items: int, k: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_users, k, generator=gen) * 0.3, torch.randn(num_items, k, generator=gen) * 0.3
