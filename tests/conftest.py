"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from nngp_lib import config


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data folder (``$NNGP_NAS_DATA``). The shared data is present in CI, so its
    absence is a failure, not a skip."""
    path = config.data_dir()
    if not (path / "cifar10").is_dir() or not (path / "nasbench101").is_dir():
        pytest.fail(f"no cifar10/ and nasbench101/ under {path}: set {config.DATA_ENV} to the data folder")
    return path
