"""Device selection, so that the same chapter runs on a laptop CPU or on one GPU."""

from __future__ import annotations

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
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "CUDA was requested but torch.cuda.is_available() is False on this machine. "
            "Use --device cpu (or profile 'cpu'), or install a CUDA build of torch on a GPU machine."
        )
    return device


def describe_machine() -> dict:
    """Names the machine a measurement was taken on (for benchmark JSON files)."""
    import os
    import platform

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
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
