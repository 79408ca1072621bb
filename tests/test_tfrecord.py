"""NAS-Bench-101 TFRecords: CRC32C, framing, the record payload, conversion to the NB101 table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nngp_lib.data import nb101_table, tfrecord
from nngp_lib.data.tfrecord import (
    EvaluationData,
    ModelMetrics,
    NasbenchRecord,
    TFRecordError,
    convert_tfrecord,
    crc32c,
    crc32c_many,
)

# Written by tf.io.TFRecordWriter (TensorFlow 2.17.1) for the records below: the reference
# implementation of the framing, so these bytes pin down lengths, CRC32C and its masking.
TF_WRITTEN_RECORDS = (b"abc", b"", b"NAS-Bench-101 " * 3)
TF_WRITTEN_BYTES = bytes.fromhex(
    "0300000000000000b099490e6162636e57f121000000000000000029039807d8ea82a22a00000000000000ae8d"
    "91f54e41532d42656e63682d313031204e41532d42656e63682d313031204e41532d42656e63682d313031203a"
    "beaacb"
)


# -- CRC32C and framing -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [  # the check value of CRC-32C and the test vectors of RFC 3720, appendix B.4
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
        (b"", 0),
    ],
)
def test_crc32c_vectors(data, expected):
    assert crc32c(data) == expected
    assert crc32c_many([data]).tolist() == [expected]


def test_vectorized_crc_equals_scalar():
    rng = np.random.default_rng(0)
    buffers = [rng.bytes(int(n)) for n in rng.integers(0, 300, size=200)] + [b""]
    assert crc32c_many(buffers).tolist() == [crc32c(b) for b in buffers]
    assert crc32c_many([]).shape == (0,)


def test_framing_matches_tensorflow(tmp_path):
    assert b"".join(map(tfrecord.frame_record, TF_WRITTEN_RECORDS)) == TF_WRITTEN_BYTES
    path = tmp_path / "tf.tfrecord"
    path.write_bytes(TF_WRITTEN_BYTES)
    assert list(tfrecord.read_records(path)) == list(TF_WRITTEN_RECORDS)


def test_read_records_across_blocks(tmp_path):
    records = [bytes([i]) * i for i in range(25)]
    assert tfrecord.write_records(tmp_path / "r.tfrecord", records) == 25
    assert list(tfrecord.read_records(tmp_path / "r.tfrecord", block_size=4)) == records


# -- the NAS-Bench-101 payload ------------------------------------------------------------
def _metrics(parameters: int, epochs: int, final_val: float, final_time: float, rng) -> ModelMetrics:
    """Plausible metrics: evaluations at initialization, half-way and the end of training."""
    evaluations = []
    for fraction in (0.0, 0.5, 1.0):
        val = final_val if fraction == 1.0 else 0.1 + fraction * (final_val - 0.1) * rng.uniform(0.5, 1.0)
        evaluations.append(
            EvaluationData(
                current_epoch=fraction * epochs,
                training_time=final_time if fraction == 1.0 else fraction * final_time,
                train_accuracy=min(1.0, val + rng.uniform(0.0, 0.08)),
                validation_accuracy=val,
                test_accuracy=val - rng.uniform(0.0, 0.01),
                checkpoint_path=f"gs://nasbench/model.ckpt-{int(fraction * epochs)}",
            )
        )
    return ModelMetrics(
        evaluation_data=evaluations, trainable_parameters=parameters, total_time=final_time * 1.1
    )


def _nasbench_records(rows: pd.DataFrame, budgets=nb101_table.BUDGETS, seed=0):
    """Records in the official format: 3 runs per budget, run 0 carrying the table's values.

    Returns (records in a shuffled file order, the per-run values written in that order).
    """
    rng = np.random.default_rng(seed)
    records, written = [], []
    for row in rows.itertuples():
        matrix = np.array(json.loads(row.adjacency), dtype=np.int8)
        ops = tuple(json.loads(row.ops))
        for epochs in budgets:
            for run in range(3):
                if run == 0:
                    val = getattr(row, f"val_acc_{epochs}")
                    time = row.train_time_108 if epochs == 108 else rng.uniform(100, 1000)
                else:
                    val = float(np.float32(rng.uniform(0.5, 0.95)))  # float32 values, as in NB101
                    time = float(np.float32(rng.uniform(100, 3000)))
                metrics = _metrics(row.trainable_parameters, epochs, val, time, rng)
                records.append(NasbenchRecord(row.hash, epochs, matrix, ops, metrics))
                written.append(dict(hash=row.hash, epochs=epochs, run=run, val=val, time=time))
    # A random file order in which each (hash, epochs) group keeps its runs in order, since
    # the run index is the order of appearance: each draw emits the next run of a group.
    keys = [(w["hash"], w["epochs"]) for w in written]
    pending = {key: [i for i, k in enumerate(keys) if k == key] for key in dict.fromkeys(keys)}
    file_order = [pending[keys[slot]].pop(0) for slot in rng.permutation(len(records))]
    return [records[i] for i in file_order], [written[i] for i in file_order]


@pytest.fixture(scope="module")
def table_rows(data_dir):
    table = nb101_table.load_table(data_dir)
    # One real cell of each size, 2 to 7 vertices.
    return table.groupby("num_vertices").head(1).sort_values("hash", ignore_index=True)


@pytest.fixture(scope="module")
def official_file(table_rows, tmp_path_factory):
    records, written = _nasbench_records(table_rows)
    path = tmp_path_factory.mktemp("nasbench") / "nasbench_full.tfrecord"
    tfrecord.write_records(path, map(tfrecord.encode_record, records))
    return path, records, pd.DataFrame(written)


def test_record_round_trip(official_file, table_rows):
    path, records, _ = official_file
    decoded = [tfrecord.decode_record(data) for data in tfrecord.read_records(path)]
    assert len(decoded) == len(records) == len(table_rows) * 4 * 3
    for got, want in zip(decoded, records):
        assert got.module_hash == want.module_hash and got.epochs == want.epochs
        assert got.operations == want.operations
        np.testing.assert_array_equal(got.adjacency, want.adjacency)
        assert got.metrics == want.metrics


def test_converted_table_equals_the_shared_rows(official_file, table_rows, tmp_path):
    path, _, _ = official_file
    dst = tmp_path / "out" / "nb101.csv.gz"
    returned = convert_tfrecord(path, dst, runs_dst=tmp_path / "runs.csv")
    # Run 0 carries the table's values, so the conversion must give back its rows exactly,
    # JSON encoding of the cells included.
    pd.testing.assert_frame_equal(nb101_table.read_table(dst), table_rows, check_exact=True)
    pd.testing.assert_frame_equal(returned, table_rows, check_exact=True)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["nb101.csv.gz"]


def test_runs_table_and_mean(official_file, tmp_path):
    path, _, written = official_file
    runs, cells = tfrecord.read_runs(path)
    assert list(runs.columns) == list(tfrecord.RUN_COLUMNS)
    np.testing.assert_array_equal(runs["hash"], written["hash"])
    np.testing.assert_array_equal(runs["epochs"], written["epochs"])
    np.testing.assert_array_equal(runs["run"], written["run"])
    np.testing.assert_array_equal(runs["final_validation_accuracy"], written["val"])
    np.testing.assert_array_equal(runs["final_training_time"], written["time"])

    mean = tfrecord.runs_to_table(runs, cells, run="mean").set_index("hash")
    expected = written.groupby(["hash", "epochs"])["val"].mean().unstack()
    for epochs in nb101_table.BUDGETS:
        np.testing.assert_allclose(mean[f"val_acc_{epochs}"], expected[epochs].loc[mean.index], rtol=1e-15)
    second = tfrecord.runs_to_table(runs, cells, run=2).set_index("hash")
    chosen = written[(written["run"] == 2) & (written["epochs"] == 108)].set_index("hash")
    np.testing.assert_array_equal(second["train_time_108"], chosen["time"].loc[second.index])
    with pytest.raises(ValueError, match="run must be"):
        tfrecord.runs_to_table(runs, cells, run="median")


def test_only108_file_leaves_other_budgets_empty(table_rows, tmp_path):
    records, _ = _nasbench_records(table_rows, budgets=(108,))
    src = tmp_path / "nasbench_only108.tfrecord"
    tfrecord.write_records(src, map(tfrecord.encode_record, records))
    table = convert_tfrecord(src, tmp_path / "t.csv")
    assert table[["val_acc_4", "val_acc_12", "val_acc_36"]].isna().all().all()
    np.testing.assert_array_equal(table["val_acc_108"], table_rows["val_acc_108"])


# -- corrupt files ------------------------------------------------------------------------
def _record_offsets(path) -> list[int]:
    offsets, offset = [], 0
    for data in tfrecord.read_records(path):
        offsets.append(offset)
        offset += 16 + len(data)
    return offsets


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("data", "data CRC mismatch in the record at byte offset {offset}"),
        ("length", "length CRC mismatch in the record at byte offset {offset}"),
        ("truncate", "truncated TFRecord .* the record at byte offset {offset} needs"),
    ],
)
def test_corrupt_file_is_a_one_line_error_and_leaves_nothing(official_file, tmp_path, damage, message):
    path, _, _ = official_file
    content = bytearray(path.read_bytes())
    offsets = _record_offsets(path)
    victim = 7 if damage != "truncate" else len(offsets) - 1
    offset = offsets[victim]
    if damage == "data":
        content[offset + 12 + 5] ^= 0x01
    elif damage == "length":
        content[offset] ^= 0x01
    else:
        content = content[:-3]
    src = tmp_path / "bad.tfrecord"
    src.write_bytes(bytes(content))
    out = tmp_path / "out"
    with pytest.raises(TFRecordError, match=message.format(offset=offset)) as error:
        convert_tfrecord(src, out / "table.csv.gz", runs_dst=out / "runs.csv.gz")
    assert "\n" not in str(error.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_not_a_nasbench_record(tmp_path):
    src = tmp_path / "other.tfrecord"
    tfrecord.write_records(src, [b'{"an": "example"}'])
    with pytest.raises(ValueError, match="record 0 is not a NAS-Bench-101 record"):
        tfrecord.read_runs(src)


def test_unknown_output_format_fails_before_reading(tmp_path):
    with pytest.raises(ValueError, match="unknown table format"):
        convert_tfrecord(tmp_path / "does-not-matter.tfrecord", tmp_path / "table.xlsx")
