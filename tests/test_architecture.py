"""How the package is put together: configuration flows down, one definition per default,
typed identities, step counts from one function."""

import ast
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import llmrec_lite
from llmrec_lite.backbone import BackboneSettings
from llmrec_lite.batching import training_steps
from llmrec_lite.profiles import PROFILES, Profile, get_profile
from llmrec_lite.settings import PROFILE_NAMES, TrainSettings
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


def _package_modules() -> list[str]:
    return sorted(f"llmrec_lite.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _package_imports(module: str) -> set[str]:
    """The package modules ``module`` imports, anywhere in its file (module top or inside a function)."""
    path = PACKAGE / (module.split(".", 1)[1] + ".py")
    found = set()
    for name in _imports(path):
        if name == "llmrec_lite":
            continue
        if name.startswith("llmrec_lite."):
            found.add(".".join(name.split(".")[:2]))
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # ``from llmrec_lite import registry``
        if isinstance(node, ast.ImportFrom) and node.module == "llmrec_lite":
            found.update(f"llmrec_lite.{a.name}" for a in node.names)
    return found - {module}


def test_package_imports_have_no_cycle():
    graph = {m: _package_imports(m) for m in _package_modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_cycle_walk_finds_a_cycle(monkeypatch):
    """The walk above can fail: a made-up cycle between two modules is reported."""
    fake = {"llmrec_lite.a": {"llmrec_lite.b"}, "llmrec_lite.b": {"llmrec_lite.a"}}
    monkeypatch.setattr(__import__(__name__), "_package_modules", lambda: sorted(fake))
    monkeypatch.setattr(__import__(__name__), "_package_imports", lambda m: fake[m])
    with pytest.raises(AssertionError, match="import cycle"):
        test_package_imports_have_no_cycle()


def test_package_never_loads_the_lab():
    """Importing every package module loads no module of lab/ (the records live beside the package)."""
    code = ("import importlib, sys\n"
            f"for m in {_package_modules()!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(n for n in sys.modules if n == 'lab' or n.startswith('lab.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for module in _package_modules():
        assert not {n for n in _imports(PACKAGE / (module.split(".", 1)[1] + ".py")) if n == "lab" or n.startswith("lab.")}


def test_settings_import_no_model_code():
    """Configuration is the ground floor: profiles, settings and variants import no model module."""
    ground = {"llmrec_lite.profiles", "llmrec_lite.variants", "llmrec_lite.templates", "llmrec_lite.device"}
    for module in ("llmrec_lite.profiles", "llmrec_lite.variants", "llmrec_lite.settings"):
        assert _package_imports(module) <= ground, module


def test_package_comments_hold_no_dates_or_commit_hashes():
    """History lives in git, CHANGELOG.md and the records, not in the package's comments."""
    pattern = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}|[0-9a-f]{7,} ")
    found = [f"{p.name}:{i}" for p in PACKAGE.glob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


def test_a_training_setting_is_declared_once():
    """from_profile copies every field a profile shares with TrainSettings: a profile value that
    differs from the default reaches the stage's settings without a line of its own."""
    # a field is read from the profile under its own name or the one PROFILE_NAMES gives
    # (TrainSettings.bf16 comes from Profile.train_bf16, not from Profile.bf16)
    shared = [f.name for f in fields(TrainSettings) if hasattr(Profile, PROFILE_NAMES.get(f.name, f.name))
              and f.name not in ("samples_per_task", "sample_ratio", "seed")]
    assert {"lr", "max_history", "cf_term", "known_bias", "user_vectors", "dense_weight"} <= set(shared)
    for value in (True, False):  # "auto" depends on the CPU; an explicit choice does not
        assert TrainSettings.from_profile(Profile(name="changed", train_bf16=value), 1).bf16 is value
    for name in shared:
        profile_name = PROFILE_NAMES.get(name, name)
        default = getattr(Profile, profile_name)
        changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v * 2 if v else 0.5,
                   str: lambda v: v}.get(type(default))
        if changed is None or isinstance(default, str):
            continue
        profile = Profile(name="changed", **{profile_name: changed(default)})
        stage = 2 if name == "lora_lr" else 1
        assert getattr(TrainSettings.from_profile(profile, stage), name) == getattr(profile, profile_name), name
