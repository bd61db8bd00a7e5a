"""How the package is put together: configuration flows down, one definition per default,
typed identities, step counts from one function."""

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import llmrec_lite
from llmrec_lite.backbone import BackboneSettings
from llmrec_lite.batching import training_steps
from llmrec_lite.profiles import PROFILES, Profile, get_profile
from llmrec_lite.settings import TrainSettings
from llmrec_lite.variants import Variant
from llmrec_lite.wals import WALSConfig

from conftest import needs_real_data

PACKAGE = Path(llmrec_lite.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_profiles_import_nothing_from_the_package():
    assert not {m for m in _imports(PACKAGE / "profiles.py") if m.startswith("llmrec_lite")}


@pytest.mark.parametrize("name", list(PROFILES))
def test_settings_build_themselves_from_a_profile(name):
    profile = get_profile(name)
    wals = WALSConfig.from_profile(profile)
    assert (wals.num_factors, wals.iterations, wals.regularization, wals.alpha) == (
        profile.wals_factors, profile.wals_iterations, profile.wals_regularization, profile.wals_alpha)
    backbone = BackboneSettings.from_profile(profile)
    assert (backbone.kind, backbone.lora_r, backbone.lora_targets) == (profile.backbone, profile.lora_r, profile.lora_targets)
    for variant in ("item-token", "text-id"):
        for stage in (1, 2):
            s = TrainSettings.from_profile(profile, stage, variant)
            assert (s.lr, s.batch_size, s.max_history, s.seed) == (profile.lr, profile.batch_size, profile.max_history,
                                                                    profile.seed)


def test_class_defaults_are_the_profile_defaults():
    """One definition per default: the settings classes' defaults are Profile's."""
    base = Profile(name="defaults")
    pairs = {WALSConfig: {"num_factors": "wals_factors", "iterations": "wals_iterations", "alpha": "wals_alpha",
                          "regularization": "wals_regularization", "cg_steps": "wals_cg_steps"},
             BackboneSettings: {"lora_r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"},
             TrainSettings: {"lr": "lr", "batch_size": "batch_size", "max_history": "max_history",
                             "weight_decay": "weight_decay", "val_users": "val_users"}}
    for cls, mapping in pairs.items():
        defaults = {f.name: f.default for f in fields(cls)}
        for field, profile_field in mapping.items():
            assert defaults[field] == getattr(base, profile_field), (cls.__name__, field)


def test_cli_defaults_come_from_the_classes():
    from llmrec_lite.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    wals = {a.dest: a.default for a in sub["wals"]._actions}
    # left out -> the profile's value (None here), never a second copy of the number
    assert wals["factors"] is None and wals["iterations"] is None and wals["backend"] == WALSConfig.backend
    assert {a.dest: a.default for a in sub["prompt"]._actions}["max_history"] == Profile.max_history


def test_variant_names_round_trip():
    for output in ("item-token", "text-id"):
        for emb in (True, False):
            v = Variant(output, emb)
            assert Variant.parse(v.name) == v
    assert Variant("item-token", False).name == "item-token-text"
    with pytest.raises(ValueError, match="Unknown variant"):
        Variant.parse("item-tokens")


@needs_real_data
@pytest.mark.data
def test_gpu_budget_has_real_step_counts():
    """Chapter 5's budget table under PROFILE = "gpu": the step count is OpenP5's 20 % x 2 epochs,
    not 0 (the count is None there and is resolved from the split)."""
    from llmrec_lite.data import load_dataset
    from llmrec_lite.split import LeaveOneOutSplit

    gpu = get_profile("gpu")
    split = LeaveOneOutSplit.from_data(load_dataset("lastfm"))
    s = TrainSettings.from_profile(gpu, 1, "item-token")
    prompts = int(gpu.sample_ratio * split.num_train_samples)
    expected = gpu.epochs * -(-(2 * -(-prompts // gpu.batch_size)) // 1)
    assert training_steps(s, split.num_train_samples) == expected > 0


def test_text_only_text_id_baseline_gets_both_stages_budget():
    """Every variant spends the same total budget, whether counts or shares define it."""
    for name in ("cpu", "gpu"):
        profile = get_profile(name)
        n = 49_281  # LastFM's training prefixes
        with_cf = sum(training_steps(TrainSettings.from_profile(profile, s, "text-id"), n) for s in (1, 2))
        text_only = training_steps(TrainSettings.from_profile(profile, 2, "text-id-text"), n)
        assert abs(text_only - with_cf) <= 2 * profile.epochs, name  # rounding of one batch per task at most
