"""Device and precision helpers: the same settings run on any CPU, GPU or not."""

import pytest
import torch

from llmrec_lite.device import cpu_has_fast_bf16, describe_machine, resolve_bf16
from llmrec_lite.profiles import get_profile
from llmrec_lite.settings import TrainSettings


def test_explicit_precision_is_kept():
    assert resolve_bf16(True, "cpu") is True and resolve_bf16(False, "cpu") is False


def test_auto_precision_follows_the_cpu(monkeypatch):
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert cpu_has_fast_bf16() is native
        assert resolve_bf16("auto", "cpu") is native
        # the cpu profile trains in bfloat16 only where the CPU has it (emulated, it is tens of times
        # slower), and it trains on the CPU even where a GPU is present: its precision follows the CPU
        assert TrainSettings.from_profile(get_profile("cpu"), 1).bf16 is native


def test_auto_precision_is_recorded_as_a_decision():
    settings = TrainSettings.from_profile(get_profile("cpu"), 2)
    assert isinstance(settings.bf16, bool)  # a run's config says what it ran, not "auto"
    assert describe_machine()["cpu_fast_bf16"] is cpu_has_fast_bf16()


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        resolve_bf16("fp8", "cpu")
    with pytest.raises(ValueError, match="'auto'"):
        TrainSettings(bf16="half")
