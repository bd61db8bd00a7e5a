"""The candidate catalogue: every setting a record tries, read from ``candidates.json``.

The catalogue is data, not code: each candidate has its settings and a one-line reason
(``why``), so adding a candidate is an edit of the JSON file. The helpers here relate a
candidate to a profile (which candidate does a profile train?) and turn a candidate into
the overrides of one training stage.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path


CATALOGUE_FILE = Path(__file__).with_name("candidates.json")


# the settings whose values are tuples in a Profile (JSON holds them as lists)
_TUPLES = ("samples_per_task", "lora_targets")


def _as_settings(value):
    """A candidate's settings from JSON, with the profile's tuples as tuples again."""
    if isinstance(value, dict):
        return {k: tuple(v) if k in _TUPLES and isinstance(v, list) else _as_settings(v) for k, v in value.items()}
    return value


def load_catalogue(path: str | Path = CATALOGUE_FILE) -> dict:
    """The whole catalogue file, as written."""
    return json.loads(Path(path).read_text())


def candidates(kind: str, path: str | Path = CATALOGUE_FILE) -> dict[str, dict]:
    """``name -> settings`` of one kind of candidate (``"tuning"`` or ``"distance"``), in file order.

    Raises:
        KeyError: unknown kind; the message lists the known ones.
    """
    catalogue = load_catalogue(path)
    kinds = [k for k, v in catalogue.items() if "candidates" in v]
    if kind not in kinds:
        raise KeyError(f"Unknown candidate kind {kind!r}; the catalogue has {', '.join(kinds)}.")
    return {name: _as_settings(entry["settings"]) for name, entry in catalogue[kind]["candidates"].items()}


def reasons(kind: str, path: str | Path = CATALOGUE_FILE) -> dict[str, str]:
    """``name -> why`` of one kind of candidate."""
    return {name: entry["why"] for name, entry in load_catalogue(path)[kind]["candidates"].items()}


_CATALOGUE = load_catalogue()  # read once: the constants below come from the same file
CANDIDATES: dict[str, dict] = candidates("tuning")
DISTANCE_CANDIDATES: dict[str, dict] = candidates("distance")
SPREAD_SEEDS: tuple[int, ...] = tuple(_CATALOGUE["seeds"]["values"])
FUSION_WEIGHTS: tuple[float, ...] = tuple(float(w) for w in _CATALOGUE["fusion_weights"]["values"])


# LoRA fields a candidate's "backbone" entry may set (the rest of the backbone is the run's own)
BACKBONE_OVERRIDES = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def slug(name: str) -> str:
    """A folder name for a candidate (``"cosine + dense"`` -> ``cosine-dense``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def scaled_samples(profile, stage: int, budget: float) -> int | None:
    """The profile's training prompts per task for a stage, times ``budget`` (``None`` stays ``None``)."""
    count = profile.item_token_samples[stage - 1]
    return None if count is None else max(1, round(count * budget))


def _stage_overrides(candidate: dict, stage: int) -> dict:
    both = {k: v for k, v in candidate.items() if k not in ("samples_per_task", "stage2", "backbone")}
    extra = candidate.get("stage2", {}) if stage == 2 else {}
    samples = candidate.get("samples_per_task")
    return {**both, **extra, **({"samples_per_task": int(samples[stage - 1])} if samples else {})}


def candidate_matches(profile, candidate: dict, others: list[dict] = ()) -> bool:
    """Whether a profile trains a distance candidate's settings (its prompts per stage and
    every override, stage 2's included). A setting that ``others`` (the record's other
    candidates) override and this one does not must stay at its default."""
    samples = candidate.get("samples_per_task")
    if samples is not None and tuple(profile.item_token_samples) != tuple(samples):
        return False

    def flat(c):  # every override, stage 2's and the backbone's included; the prompts are compared above
        return {**{k: v for k, v in _stage_overrides(c, 2).items() if k != "samples_per_task"},
                **(c.get("backbone") or {})}

    def same(a, b):  # a record read back from JSON holds lists where the candidates hold tuples
        return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)

    defaults = {f.name: f.default for f in dataclasses.fields(type(profile))}
    overrides = {k: defaults[k] for other in others for k in flat(other) if k in defaults}
    overrides.update(flat(candidate))
    return all(same(getattr(profile, k), v) for k, v in overrides.items())


def profile_candidate(profile, candidates: dict[str, dict] | None = None) -> str:
    """The name of the distance candidate whose settings the profile trains with.

    Raises:
        ValueError: none of them matches the profile.
    """
    candidates = DISTANCE_CANDIDATES if candidates is None else candidates
    for name, candidate in candidates.items():
        if candidate_matches(profile, candidate, candidates.values()):
            return name
    raise ValueError(f"The {profile.name} profile trains none of the distance candidates ({', '.join(candidates)}).")
