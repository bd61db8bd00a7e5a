"""Saving and loading trained tensors: resumable checkpoints, finished stages, and the checks
that a saved file fits what it is loaded into.

Everything here is written into a temporary folder and renamed into place, so a crash
never leaves a half-written checkpoint or result behind. A file that cannot be read
(truncated, corrupt, from another version) raises :class:`CorruptCheckpointError`, whose
message names the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
import random
import shutil

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
import torch

from llmrec_lite.fileio import disk_guard, write_json

# peft is imported where an adapter is loaded: importing it takes seconds, and loading WALS
# factors or projectors never needs it.

ADAPTER_WEIGHTS = "adapter_model.safetensors"


class CheckpointMismatchError(ValueError):
    """A saved checkpoint does not fit the model, factors or dataset it is loaded for."""


class CorruptCheckpointError(ValueError):
    """A saved file cannot be read (truncated, corrupt or of another format)."""


def check_matches(saved: dict, expect: dict, what: str) -> None:
    """Raises :class:`CheckpointMismatchError` naming every field that differs."""
    problems = [f"{key}: checkpoint has {saved.get(key)!r}, expected {value!r}"
                for key, value in expect.items() if value is not None and saved.get(key) != value]
    if problems:
        raise CheckpointMismatchError(
            f"The {what} do not match what they are loaded for ({'; '.join(problems)}). "
            "Load a checkpoint trained with the same backbone, WALS factors and dataset, or train a new one."
        )


def _unreadable(path: Path, err: Exception, fix: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"{path} cannot be read ({type(err).__name__}: {err}). {fix}")


def read_json(path: str | Path, fix: str = "Delete it and run the command again.") -> dict:
    """A JSON file the package wrote, with a clear error when it is damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _unreadable(path, err, fix) from err


def load_tensors(path: str | Path, fix: str) -> dict[str, torch.Tensor]:
    """A safetensors file, with a clear error when it is damaged."""
    path = Path(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise _unreadable(path, err, fix) from err


def load_pickle(path: str | Path, fix: str):
    """A ``torch.save`` file (optimizer, scheduler, RNG state), with a clear error when damaged."""
    path = Path(path)
    try:
        return torch.load(path, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError... on damaged files
        raise _unreadable(path, err, fix) from err


# --------------------------------------------------------------------------- model state


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Every tensor that training changes (projectors, LoRA, free item embeddings, logit scale)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replaces ``folder`` by the finished ``tmp`` folder (the old one is removed after the swap)."""
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _fresh_tmp(folder: Path) -> Path:
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _own_adapters(model) -> None:
    """The shared backbone's LoRA adapters must be ``model``'s before they are read or written
    (see :meth:`~llmrec_lite.fusion.FusionModel.claim_backbone`)."""
    claim = getattr(model, "claim_backbone", None)
    if claim is not None:
        claim()


# --------------------------------------------------------------------------- resumable checkpoints


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: dict) -> None:
    """Writes the resumable state (trainable tensors, optimizer, scheduler, RNG, position)."""
    folder = Path(folder)
    _own_adapters(model)
    tmp = _fresh_tmp(folder)
    with disk_guard(folder.parent, cleanup=tmp):
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        write_json(tmp / "state.json", state)
    _swap_in(tmp, folder)


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restores what :func:`save_checkpoint` wrote into ``model``, ``optimizer`` and ``scheduler``.

    Returns:
        The saved position (``state.json``), with the RNG state already restored.

    Raises:
        CorruptCheckpointError: a file of the checkpoint cannot be read.
        CheckpointMismatchError: the checkpoint holds tensors this model does not have.
    """
    folder = Path(folder)
    fix = (f"The checkpoint is damaged: delete {folder} (training restarts from the beginning of the stage), "
           "or run the command again without --resume.")
    _own_adapters(model)
    state = read_json(folder / "state.json", fix)
    tensors = load_tensors(folder / "trainable.safetensors", fix)
    missing = model.load_state_dict(tensors, strict=False)
    if missing.unexpected_keys:
        raise CheckpointMismatchError(f"{folder} holds tensors this model does not have: {missing.unexpected_keys[:3]}")
    optimizer.load_state_dict(load_pickle(folder / "optimizer.pt", fix))
    scheduler.load_state_dict(load_pickle(folder / "scheduler.pt", fix))
    set_rng_state(load_pickle(folder / "rng.pt", fix))
    return state


# --------------------------------------------------------------------------- finished stages


def save_final(model, folder: Path, result: dict) -> None:
    """Writes a finished stage's trained parts: projectors/, adapter/ (LoRA), extra.safetensors, result.json."""
    folder = Path(folder)
    _own_adapters(model)
    tmp = _fresh_tmp(folder)
    with disk_guard(folder.parent, cleanup=tmp):
        _write_final(model, tmp, result)
    _swap_in(tmp, folder)


def _write_final(model, tmp: Path, result: dict) -> None:
    if model.projectors is not None:
        model.projectors.save_pretrained(tmp / "projectors")
    lora_trained = any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    if lora_trained and hasattr(model.model, "peft_config"):
        model.model.save_pretrained(tmp / "adapter")
    extra = {"item_logit_log_scale": model.item_logit_log_scale.detach().cpu().reshape(1),
             "item_history_bias": model.item_history_bias.detach().cpu().reshape(1),
             "item_known_bias": model.item_known_bias.detach().cpu().reshape(1),
             "item_cf_weight": model.item_cf_weight.detach().cpu().reshape(1)}
    if model.free_item_embeddings is not None:
        extra["free_item_embeddings"] = model.free_item_embeddings.weight.detach().cpu().contiguous()
    if model.readout is not None:
        extra["readout"] = model.readout.weight.detach().cpu().contiguous()
    save_file(extra, str(tmp / "extra.safetensors"))
    write_json(tmp / "result.json", result)


def load_final_into(model, folder: Path, load_adapter: bool = True) -> None:
    """Loads a ``final/`` folder's tensors into a freshly built model of the same kind.

    Raises:
        CorruptCheckpointError: a saved file cannot be read.
        CheckpointMismatchError: the projectors map other dimensions than the model's.
    """
    folder = Path(folder)
    fix = f"The saved stage is damaged: delete {folder.parent} and train that stage again."
    if model.projectors is not None:
        try:
            # the model's own projector class: this module stays below projectors.py (which uses its checks)
            loaded = type(model.projectors).from_pretrained(folder / "projectors", expect={
                "hidden_size": model.projectors.config.hidden_size, "cf_dim": model.projectors.config.cf_dim})
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _unreadable(folder / "projectors", err, fix) from err
        model.projectors.load_state_dict(loaded.state_dict())
    extra = load_tensors(folder / "extra.safetensors", fix)
    with torch.no_grad():
        model.item_logit_log_scale.copy_(extra["item_logit_log_scale"].reshape(()))
        if "item_history_bias" in extra:  # (stages saved before the history term have none: 0)
            model.item_history_bias.copy_(extra["item_history_bias"].reshape(()))
        if "item_cf_weight" in extra:  # (nor the CF term: 0)
            model.item_cf_weight.copy_(extra["item_cf_weight"].reshape(()))
        if "item_known_bias" in extra:  # (nor the known-items offset: 0)
            model.item_known_bias.copy_(extra["item_known_bias"].reshape(()))
        if model.free_item_embeddings is not None and "free_item_embeddings" in extra:
            model.free_item_embeddings.weight.copy_(extra["free_item_embeddings"])
        if model.readout is not None:
            if "readout" not in extra:
                raise CheckpointMismatchError(f"{folder} has no readout weights, but the model was built with "
                                              "readout=True: load it with the settings it was trained with.")
            model.readout.weight.copy_(extra["readout"])
    _own_adapters(model)
    if load_adapter and (folder / "adapter").exists():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.model, load_tensors(folder / "adapter" / ADAPTER_WEIGHTS, fix))
