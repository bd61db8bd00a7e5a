"""Device selection, so that the same chapter runs on a laptop CPU or on one GPU."""

from __future__ import annotations

import os
import platform

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turns a device request into a :class:`torch.device`.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, a :class:`torch.device` or ``None`` (same as ``"auto"``).

    Returns:
        The device to use.

    Raises:
        RuntimeError: CUDA was requested but is not available.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device: use cpu, cuda, cuda:N or auto.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "CUDA was requested but torch.cuda.is_available() is False on this machine. "
            "Use --device cpu (or profile 'cpu'), or install a CUDA build of torch on a GPU machine."
        )
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX-512 BF16 or AMX).

    Without either (a CPU with AVX2 only), PyTorch emulates bfloat16 matrix products and they
    run tens of times slower than float32 (benchmarks/results/precision_*.json).
    """
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)
    try:  # a torch without these helpers: read the CPU's flags
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_bf16(bf16: bool | str, device: str | torch.device | None = "auto") -> bool:
    """Turns a precision request into a yes or no.

    Args:
        bf16: ``True``, ``False`` or ``"auto"``: bfloat16 on CUDA and on CPUs with native
            bfloat16 (:func:`cpu_has_fast_bf16`), float32 elsewhere.
        device: The device the work runs on (as for :func:`resolve_device`).

    Raises:
        ValueError: ``bf16`` is none of these.
    """
    if isinstance(bf16, bool):
        return bf16
    if bf16 != "auto":
        raise ValueError(f"bf16={bf16!r}: use True, False or 'auto' (bfloat16 where the hardware has it).")
    if resolve_device(device).type == "cuda":
        return True
    return cpu_has_fast_bf16()


def describe_machine() -> dict:
    """Names the machine a measurement was taken on (for benchmark JSON files)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
    }
    try:  # the CPU model name makes CPU timings comparable across machines
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
