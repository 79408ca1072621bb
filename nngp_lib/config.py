"""Where data, caches and results live. Nothing else belongs here.

Every function that reads data takes an optional ``data_dir``; when it is ``None``
the folder comes from the environment variable ``NNGP_NAS_DATA``, and failing that
from the download cache (``NNGP_NAS_CACHE``, default ``~/.cache/nngp-nas``), where
the official files are fetched and verified when the network is reachable.

The expected layout under the data folder (the official file names)::

    cifar10/cifar-10-batches-py/data_batch_1 .. 5, test_batch, batches.meta
    cifar10/cifar-10-images.zip                (optional, all 60,000 JPEGs)
    cifar10/official_order_labels.json         (with the zip)
    nasbench101/nb101_cifar10_30k.csv.gz       (the NB101 table)
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "NNGP_NAS_DATA"
CACHE_ENV = "NNGP_NAS_CACHE"
RESULTS_ENV = "NNGP_NAS_RESULTS"

_REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Folder for downloads of the official files (created on demand)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "nngp-nas")).expanduser()


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else ``$NNGP_NAS_DATA``, else the download cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir()


def results_dir(results_dir: str | os.PathLike | None = None) -> Path:
    """Folder of computed results: the argument, else ``$NNGP_NAS_RESULTS``, else ``results/``
    at the repository root (where committed full-scale runs live)."""
    if results_dir is not None:
        return Path(results_dir).expanduser()
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    return _REPO_ROOT / "results"


class DataNotFoundError(FileNotFoundError):
    """A data file is missing and could not be downloaded. The message names the fix."""


def missing_data_message(what: str, expected: Path) -> str:
    """One-line explanation of a missing data file and how to provide it."""
    return (
        f"{what} not found at {expected}: set {DATA_ENV} to the folder that holds it "
        f"(layout in nngp_lib/config.py) or pass data_dir=..."
    )
