"""The NB101 table: NAS-Bench-101 architectures with their CIFAR-10 training results.

One row per architecture (schema :data:`COLUMNS`), read from
``<data>/nasbench101/nb101_cifar10_30k.csv.gz`` (30,001 architectures) or from any
table :func:`nngp_lib.data.tfrecord.convert_tfrecord` wrote from the official
``nasbench_full.tfrecord``. The cell columns stay JSON *strings* exactly as in the file
(``adjacency`` a list of lists, ``ops`` a list of op names, compact separators), so
rows round-trip byte for byte; decode one with
``nngp_lib.nasbench101.ModelSpec.from_json(row.adjacency, row.ops)``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from nngp_lib import config
from nngp_lib.data.download import NB101_FULL_URL

TABLE_FILE = Path("nasbench101") / "nb101_cifar10_30k.csv.gz"
"""Location of the table inside the data folder."""

BUDGETS = (4, 12, 36, 108)
"""NAS-Bench-101's training budgets in epochs."""

COLUMNS: dict[str, str] = {
    "hash": "str",  # official module hash, 32 hex digits, unique
    "num_vertices": "int64",  # vertices of the pruned cell, 2..7
    "adjacency": "str",  # JSON list of lists, the pruned upper-triangular matrix
    "ops": "str",  # JSON list of op names, 'input' first, 'output' last
    "trainable_parameters": "int64",
    **{f"val_acc_{epochs}": "float64" for epochs in BUDGETS},  # validation accuracy, 0..1
    "train_time_108": "float64",  # seconds, the 108-epoch run
}
"""Column name -> dtype of the table, in file order."""

_JSON_SEPARATORS = (",", ":")


def adjacency_json(matrix: np.ndarray | Sequence[Sequence[int]]) -> str:
    """The table's encoding of an adjacency matrix: compact JSON, e.g. ``[[0,1],[0,0]]``."""
    return json.dumps(np.asarray(matrix).astype(int).tolist(), separators=_JSON_SEPARATORS)


def ops_json(ops: Sequence[str]) -> str:
    """The table's encoding of op names: compact JSON, e.g. ``["input","output"]``."""
    return json.dumps(list(ops), separators=_JSON_SEPARATORS)


def table_path(data_dir: str | os.PathLike | None = None) -> Path:
    """Path of the NB101 table under the data folder (:func:`nngp_lib.config.data_dir`)."""
    return config.data_dir(data_dir) / TABLE_FILE


def load_table(data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The NB101 table of the data folder, one row per architecture.

    Columns and dtypes are :data:`COLUMNS` (``hash``, ``adjacency``, ``ops`` as pandas
    strings; extra columns in the file are kept after them), with a default
    ``RangeIndex`` in file order (sorted by hash). The parsed file is cached in-process
    per path and modification time; each call returns a fresh copy, safe to modify.

    Raises:
      DataNotFoundError: the file is missing (one line naming ``NNGP_NAS_DATA``).
      ValueError: a column is missing or malformed, or a hash is repeated.
    """
    path = table_path(data_dir)
    if not path.is_file():
        raise config.DataNotFoundError(
            config.missing_data_message("the NB101 table", path)
            + f"; or build it from the official {NB101_FULL_URL} with "
            "nngp_lib.data.tfrecord.convert_tfrecord(src, dst)"
        )
    stat = path.stat()
    return _read_table_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size).copy()


def sample_rows(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of the table drawn at random without replacement with ``seed``.

    The draw is a prefix of one seeded permutation of the rows (pandas' ``sample``
    with NumPy's ``RandomState``), so the first ``n`` rows of a larger sample with the
    same seed are this sample: runs of different sizes share their architectures.

    Raises:
      ValueError: ``n`` outside ``1..len(table)`` (one line).
    """
    if not 0 < n <= len(table):
        raise ValueError(f"sample size must be in 1..{len(table)}, got {n}")
    return table.sample(n, random_state=seed)


@functools.lru_cache(maxsize=4)
def _read_table_cached(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    del mtime_ns, size  # part of the cache key only: a rewritten file is read again
    return read_table(path)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate an NB101 table file (``.csv``, ``.csv.gz`` or ``.parquet``), uncached.

    See :func:`load_table` for the result and the errors.
    """
    path = Path(path)
    if path.name.lower().endswith(".parquet"):
        table = pd.read_parquet(path)
    else:
        string_columns = {name: "str" for name, dtype in COLUMNS.items() if dtype == "str"}
        # round_trip: pandas' default float parser is off by an ulp for most of these values.
        table = pd.read_csv(path, dtype=string_columns, float_precision="round_trip")
    missing = [name for name in COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(
            f"{path} is not an NB101 table: column {missing[0]!r} is missing "
            f"(expected columns {', '.join(COLUMNS)})"
        )
    for name, dtype in COLUMNS.items():
        try:
            table[name] = table[name].astype(dtype)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: column {name!r} is not {dtype}: {error}") from None
    duplicated = table["hash"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"{path}: hash {table['hash'][duplicated].iloc[0]} appears more than once; "
            "one row per architecture expected"
        )
    extra = [name for name in table.columns if name not in COLUMNS]
    return table[list(COLUMNS) + extra]

