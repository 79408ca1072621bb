"""The NB101 table reader, on the shared 30,001-architecture table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nngp_lib import config
from nngp_lib.data import nb101_table
from nngp_lib.data.nb101_table import COLUMNS, load_table, read_table
from nngp_lib.spaces.nb101 import ModelSpec


@pytest.fixture(scope="module")
def table(data_dir):
    return load_table(data_dir)


def test_schema_and_size(table):
    assert len(table) == 30_001  # the count the data README documents
    assert list(table.columns) == list(COLUMNS)
    assert {name: str(dtype) for name, dtype in table.dtypes.items()} == COLUMNS
    assert table["hash"].is_unique
    assert table["hash"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert table["hash"].is_monotonic_increasing
    assert table["num_vertices"].between(2, 7).all()
    accuracies = table[[f"val_acc_{e}" for e in nb101_table.BUDGETS]]
    assert accuracies.notna().all().all() and ((accuracies >= 0) & (accuracies <= 1)).all().all()
    assert (table["train_time_108"] > 0).all() and (table["trainable_parameters"] > 0).all()


def test_floats_are_parsed_exactly(table):
    """NAS-Bench-101 recorded float32 values; read exactly, they stay float32-representable
    (pandas' default CSV float parser misses most of them by an ulp)."""
    for name in [f"val_acc_{e}" for e in nb101_table.BUDGETS] + ["train_time_108"]:
        values = table[name].to_numpy()
        np.testing.assert_array_equal(values.astype(np.float32).astype(np.float64), values)


def test_cells_decode_to_their_hash(table):
    """The JSON columns encode the pruned cell whose official hash is the row's hash."""
    sample = table.sample(200, random_state=0)
    for row in sample.itertuples():
        spec = ModelSpec.from_json(row.adjacency, row.ops)
        assert spec.hash() == row.hash
        assert spec.num_vertices == row.num_vertices == len(json.loads(row.ops))
        # The table's encoding is what adjacency_json / ops_json produce, byte for byte.
        assert nb101_table.adjacency_json(spec.matrix) == row.adjacency
        assert nb101_table.ops_json(spec.ops) == row.ops


def test_load_returns_independent_copies(data_dir):
    first = load_table(data_dir)
    first.loc[0, "val_acc_108"] = -1.0
    first.drop(columns="ops", inplace=True)
    second = load_table(data_dir)
    assert second.loc[0, "val_acc_108"] >= 0 and "ops" in second.columns


@pytest.fixture()
def sample_rows(table):
    return table.head(50)


def _write(table: pd.DataFrame, folder) -> None:
    path = folder / nb101_table.TABLE_FILE
    path.parent.mkdir(parents=True)
    table.to_csv(path, index=False)


def test_round_trip_and_extra_columns(sample_rows, tmp_path):
    _write(sample_rows.assign(note="x"), tmp_path)
    loaded = load_table(tmp_path)
    pd.testing.assert_frame_equal(loaded[list(COLUMNS)], sample_rows, check_exact=True)
    assert list(loaded.columns) == [*COLUMNS, "note"]


def test_missing_column_is_a_one_line_error(sample_rows, tmp_path):
    _write(sample_rows.drop(columns="val_acc_36"), tmp_path)
    with pytest.raises(ValueError, match="'val_acc_36' is missing") as error:
        load_table(tmp_path)
    assert "\n" not in str(error.value)


def test_repeated_hash_is_an_error(sample_rows, tmp_path):
    _write(pd.concat([sample_rows, sample_rows.tail(1)]), tmp_path)
    with pytest.raises(ValueError, match=f"hash {sample_rows['hash'].iloc[-1]} appears more than once"):
        load_table(tmp_path)


def test_malformed_column_is_an_error(sample_rows, tmp_path):
    _write(sample_rows.assign(num_vertices="seven"), tmp_path)
    with pytest.raises(ValueError, match="column 'num_vertices' is not int64"):
        load_table(tmp_path)


def test_parquet_tables_read_the_same(sample_rows, tmp_path):
    pytest.importorskip("pyarrow", exc_type=ImportError)
    sample_rows.to_parquet(tmp_path / "t.parquet", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), sample_rows, check_exact=True)


def test_missing_file_names_the_variable(tmp_path):
    with pytest.raises(config.DataNotFoundError) as error:
        load_table(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert config.DATA_ENV in message and "nb101_cifar10_30k.csv.gz" in message
    assert "nasbench_full.tfrecord" in message
