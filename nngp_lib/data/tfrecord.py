"""NAS-Bench-101's official TFRecord files: read, write, and convert to the NB101 table.

The official ``nasbench_full.tfrecord`` (all budgets, about 5.1 M records) and
``nasbench_only108.tfrecord`` (108 epochs, about 1.3 M records) hold one record per
(module hash, epoch budget, training run). A record is framed as

    uint64 length (little-endian) | uint32 masked CRC32C of the length bytes |
    data (length bytes)           | uint32 masked CRC32C of the data

and its data is the UTF-8 JSON list ``[module_hash, epochs, adjacency, operations,
metrics]``: ``adjacency`` a string of V*V digits 0/1 (row-major), ``operations`` a
comma-separated string of op names, ``metrics`` a base64-encoded ``nasbench.ModelMetrics``
protocol buffer (proto2), whose last ``EvaluationData`` is the end of training.

Everything here streams: the file is read record by record, CRCs are checked in blocks
(vectorized CRC32C in numpy, no TensorFlow), and only a few numbers per record are kept.
:func:`convert_tfrecord` writes the NB101 table (:data:`nngp_lib.data.nb101_table.COLUMNS`,
the schema of the CSV) and optionally the per-run table (:data:`RUN_COLUMNS`).
"""

from __future__ import annotations

import array
import base64
import json
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import pandas as pd
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from nngp_lib.data import nb101_table
from nngp_lib.data.download import atomic_path

# -- CRC32C (Castagnoli), as TFRecord uses it ---------------------------------------------
_CRC32C_POLY = 0x82F63B78  # bit-reversed 0x1EDC6F41
_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table[byte] = crc
    return table


_CRC_TABLE = _crc32c_table()
_CRC_TABLE_LIST = _CRC_TABLE.tolist()


def crc32c(data: bytes) -> int:
    """CRC32C of one byte string (pure Python; fine for short records)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_many(buffers: Sequence[bytes]) -> np.ndarray:
    """CRC32C of each buffer, vectorized across buffers.

    Returns a uint32 array of shape ``(len(buffers),)``. The cost is one numpy step per
    byte of the *longest* buffer, so it pays for many buffers of similar length (the
    records of one block of a TFRecord file), not for one long buffer.
    """
    n = len(buffers)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    lengths = np.fromiter(map(len, buffers), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: the active rows are a prefix
    sorted_lengths = lengths[order]
    max_length = int(sorted_lengths[0])
    # Byte p of every buffer, one row per position, so each step reads a contiguous row.
    by_position = np.zeros((max_length, n), dtype=np.uint8)
    by_position.T[np.arange(max_length) < sorted_lengths[:, None]] = np.frombuffer(
        b"".join([buffers[i] for i in order]), dtype=np.uint8
    )
    active = n - np.searchsorted(sorted_lengths[::-1], np.arange(max_length), side="right")
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for position in range(max_length):
        k = active[position]
        head = crc[:k]
        crc[:k] = _CRC_TABLE[(head ^ by_position[position, :k]) & 0xFF] ^ (head >> 8)
    result = np.empty(n, dtype=np.uint32)
    result[order] = crc ^ np.uint32(0xFFFFFFFF)
    return result


def masked_crc32c(crc: int | np.ndarray) -> int | np.ndarray:
    """TFRecord's masking of a CRC32C value (rotate right by 15, add a constant), mod 2**32."""
    if isinstance(crc, np.ndarray):
        crc = crc.astype(np.uint32)
        return ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# -- record framing -------------------------------------------------------------------------
_CHUNK = 1 << 20
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_FRAMING_BYTES = _HEADER.size + _FOOTER.size  # 16


class TFRecordError(ValueError):
    """A TFRecord file is corrupt or truncated; the message names the byte offset."""


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing: length, masked CRC of the length, data, masked CRC."""
    length = struct.pack("<Q", len(data))
    return b"".join(
        (
            length,
            _FOOTER.pack(masked_crc32c(crc32c(length))),
            data,
            _FOOTER.pack(masked_crc32c(crc32c(data))),
        )
    )


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Write records to a TFRecord file atomically; returns how many were written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        for data in records:
            out.write(frame_record(data))
            count += 1
    return count


def read_records(path: str | os.PathLike, *, block_size: int = 4096) -> Iterator[bytes]:
    """Stream the data of each record of a TFRecord file, checking both CRCs.

    CRCs are checked a block of ``block_size`` records at a time, before any record of
    the block is yielded. A bad CRC or a truncated file raises :class:`TFRecordError`
    naming the byte offset of the first bad record.
    """
    path = Path(path)
    size = path.stat().st_size
    offsets: list[int] = []
    datas: list[bytes] = []
    crcs = array.array("I")
    with open(path, "rb", buffering=_CHUNK) as f:
        offset = 0
        while offset < size:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise TFRecordError(
                    f"truncated TFRecord {path}: the record at byte offset {offset} has a "
                    f"{len(header)}-byte header (12 expected); download the file again"
                )
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(crc32c(header[:8])) != length_crc:
                # Checked at once (8 bytes, cheap): a bad length must not steer the reads.
                raise TFRecordError(
                    f"corrupt TFRecord {path}: length CRC mismatch in the record at byte offset "
                    f"{offset}; download the file again"
                )
            if offset + _FRAMING_BYTES + length > size:
                raise TFRecordError(
                    f"truncated TFRecord {path}: the record at byte offset {offset} needs "
                    f"{_FRAMING_BYTES + length} bytes, the file has {size - offset} left; "
                    "download the file again"
                )
            offsets.append(offset)
            datas.append(f.read(length))
            crcs.append(_FOOTER.unpack(f.read(_FOOTER.size))[0])
            offset += _FRAMING_BYTES + length
            if len(datas) == block_size:
                yield from _checked_block(path, offsets, datas, crcs)
                offsets, datas, crcs = [], [], array.array("I")
    yield from _checked_block(path, offsets, datas, crcs)


def _checked_block(
    path: Path, offsets: list[int], datas: list[bytes], crcs: array.array
) -> list[bytes]:
    expected = np.frombuffer(crcs, dtype=np.uint32) if len(crcs) else np.zeros(0, np.uint32)
    bad = np.flatnonzero(masked_crc32c(crc32c_many(datas)) != expected)
    if bad.size:
        raise TFRecordError(
            f"corrupt TFRecord {path}: data CRC mismatch in the record at byte offset "
            f"{offsets[bad[0]]}; download the file again"
        )
    return datas


# -- the NAS-Bench-101 payload --------------------------------------------------------------
def _metrics_classes() -> tuple[type, type]:
    """Build ``nasbench.ModelMetrics`` and ``nasbench.EvaluationData`` without protoc.

    A private descriptor pool keeps these from clashing with the ``nasbench`` package's
    own ``model_metrics.proto`` if that is imported too.
    """
    fdp = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="nngp_lib/nasbench_model_metrics.proto", package="nasbench", syntax="proto2"
    )
    evaluation = file_proto.message_type.add(name="EvaluationData")
    for number, name in enumerate(
        ("current_epoch", "training_time", "train_accuracy", "validation_accuracy", "test_accuracy"),
        start=1,
    ):
        evaluation.field.add(name=name, number=number, type=fdp.TYPE_DOUBLE, label=fdp.LABEL_OPTIONAL)
    evaluation.field.add(name="checkpoint_path", number=6, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    metrics = file_proto.message_type.add(name="ModelMetrics")
    metrics.field.add(
        name="evaluation_data",
        number=1,
        type=fdp.TYPE_MESSAGE,
        type_name=".nasbench.EvaluationData",
        label=fdp.LABEL_REPEATED,
    )
    metrics.field.add(name="trainable_parameters", number=2, type=fdp.TYPE_INT32, label=fdp.LABEL_OPTIONAL)
    metrics.field.add(name="total_time", number=3, type=fdp.TYPE_DOUBLE, label=fdp.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.EvaluationData")),
    )


ModelMetrics, EvaluationData = _metrics_classes()


class NasbenchRecord(NamedTuple):
    """One decoded record: one training run of one cell for one epoch budget."""

    module_hash: str
    epochs: int
    adjacency: np.ndarray  # (V, V) int8, the pruned cell as NAS-Bench-101 stores it
    operations: tuple[str, ...]  # V op names, 'input' first, 'output' last
    metrics: "ModelMetrics"  # type: ignore[valid-type]


def decode_record(data: bytes) -> NasbenchRecord:
    """Decode the data of one record (the JSON list) into a :class:`NasbenchRecord`."""
    module_hash, epochs, adjacency, operations, metrics = json.loads(data)
    return NasbenchRecord(
        module_hash=module_hash,
        epochs=int(epochs),
        adjacency=_adjacency_matrix(adjacency),
        operations=tuple(operations.split(",")),
        metrics=ModelMetrics.FromString(base64.b64decode(metrics)),
    )


def encode_record(record: NasbenchRecord) -> bytes:
    """The data of one record in the official encoding (inverse of :func:`decode_record`)."""
    adjacency = np.asarray(record.adjacency)
    return json.dumps(
        [
            record.module_hash,
            int(record.epochs),
            "".join(str(int(bit)) for bit in adjacency.ravel()),
            ",".join(record.operations),
            base64.b64encode(record.metrics.SerializeToString()).decode("ascii"),
        ]
    ).encode("utf-8")


def _adjacency_matrix(digits: str) -> np.ndarray:
    """(V, V) int8 matrix from the record's string of V*V row-major digits 0/1."""
    bits = np.frombuffer(digits.encode("ascii"), dtype=np.uint8) - np.uint8(ord("0"))
    num_vertices = int(round(bits.size**0.5))
    if num_vertices * num_vertices != bits.size or (bits > 1).any():
        raise ValueError(f"adjacency {digits!r} is not a square matrix of digits 0/1")
    return bits.astype(np.int8).reshape(num_vertices, num_vertices)


# -- conversion to tables -------------------------------------------------------------------
RUN_COLUMNS: dict[str, str] = {
    "hash": "str",
    "epochs": "int64",
    "run": "int64",  # 0, 1, 2: order of appearance of the (hash, epochs) record in the file
    "final_train_accuracy": "float64",
    "final_validation_accuracy": "float64",
    "final_test_accuracy": "float64",
    "final_training_time": "float64",
}
"""Schema of the per-run table: one row per record, the end-of-training values."""

Run = int | Literal["mean"]


def read_runs(src: str | os.PathLike, *, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stream an official NAS-Bench-101 TFRecord file into two tables.

    Returns:
      runs: one row per record, columns :data:`RUN_COLUMNS`, in file order; ``run``
        numbers the records of each (hash, epochs) in order of appearance.
      cells: one row per hash, in order of first appearance: ``hash``, ``num_vertices``,
        ``adjacency`` and ``ops`` (compact JSON, as in the NB101 CSV) and
        ``trainable_parameters``.

    Raises :class:`TFRecordError` for a corrupt file and ``ValueError`` when two records
    of one hash disagree on the cell or its parameter count.
    """
    hash_ids: dict[str, int] = {}
    cells: list[tuple[str, str, int]] = []  # (adjacency digits, operations, parameters)
    columns = {name: array.array(code) for name, code in _RUN_ARRAYS.items()}
    records = read_records(src)
    if progress:
        from tqdm.auto import tqdm

        records = tqdm(records, desc=Path(src).name, unit=" records")
    for number, data in enumerate(records):
        try:
            module_hash, epochs, adjacency, operations, encoded_metrics = json.loads(data)
            metrics = ModelMetrics.FromString(base64.b64decode(encoded_metrics))
            final = metrics.evaluation_data[-1]
        except (ValueError, TypeError, IndexError, DecodeError) as error:
            raise ValueError(
                f"{src}: record {number} is not a NAS-Bench-101 record "
                f"([hash, epochs, adjacency, operations, metrics with evaluation data]): {error}"
            ) from None
        cell = (adjacency, operations, metrics.trainable_parameters)
        hash_id = hash_ids.setdefault(module_hash, len(hash_ids))
        if hash_id == len(cells):
            cells.append(cell)
        elif cells[hash_id] != cell:
            raise ValueError(
                f"{src}: records of module {module_hash} disagree on the cell or its parameter "
                "count; the file is not a NAS-Bench-101 dataset"
            )
        columns["hash_id"].append(hash_id)
        columns["epochs"].append(int(epochs))
        columns["final_train_accuracy"].append(final.train_accuracy)
        columns["final_validation_accuracy"].append(final.validation_accuracy)
        columns["final_test_accuracy"].append(final.test_accuracy)
        columns["final_training_time"].append(final.training_time)

    hashes = pd.array(list(hash_ids), dtype="str")
    hash_codes = np.asarray(columns.pop("hash_id"), dtype=np.int64)
    runs = pd.DataFrame({"hash": hashes.take(hash_codes)})
    for name, values in columns.items():
        runs[name] = np.asarray(values, dtype=RUN_COLUMNS[name])
    runs.insert(2, "run", runs.groupby(["hash", "epochs"], sort=False).cumcount().astype("int64"))

    matrices = [_adjacency_matrix(adjacency) for adjacency, _, _ in cells]
    cell_table = pd.DataFrame(
        {
            "hash": hashes,
            "num_vertices": np.array([len(m) for m in matrices], dtype=np.int64),
            "adjacency": pd.array([nb101_table.adjacency_json(m) for m in matrices], dtype="str"),
            "ops": pd.array([nb101_table.ops_json(ops.split(",")) for _, ops, _ in cells], dtype="str"),
            "trainable_parameters": np.array([p for _, _, p in cells], dtype=np.int64),
        }
    )
    return runs[list(RUN_COLUMNS)], cell_table


_RUN_ARRAYS = {
    "hash_id": "i",
    "epochs": "h",
    "final_train_accuracy": "d",
    "final_validation_accuracy": "d",
    "final_test_accuracy": "d",
    "final_training_time": "d",
}


def runs_to_table(runs: pd.DataFrame, cells: pd.DataFrame, *, run: Run = 0) -> pd.DataFrame:
    """The NB101 table (schema :data:`nb101_table.COLUMNS`, sorted by hash) from per-run results.

    Args:
      runs, cells: as returned by :func:`read_runs`.
      run: which training run fills ``val_acc_<E>`` and ``train_time_108``: an index
        (default 0, the first record of each (hash, budget) in the file) or ``"mean"``,
        the mean over the runs. Budgets a hash lacks (e.g. 4, 12, 36 in
        ``nasbench_only108.tfrecord``), or a run index it lacks, give NaN.
    """
    if run == "mean":
        chosen = runs.groupby(["hash", "epochs"], sort=False)[
            ["final_validation_accuracy", "final_training_time"]
        ].mean()
    elif isinstance(run, (int, np.integer)) and not isinstance(run, bool) and run >= 0:
        chosen = runs[runs["run"] == run].set_index(["hash", "epochs"])
    else:
        raise ValueError(f"run must be a non-negative run index or 'mean', got {run!r}")
    accuracy = chosen["final_validation_accuracy"].unstack("epochs")
    table = cells.set_index("hash")
    for epochs in nb101_table.BUDGETS:
        column = accuracy[epochs] if epochs in accuracy.columns else pd.Series(dtype="float64")
        table[f"val_acc_{epochs}"] = column.reindex(table.index).astype("float64")
    time_108 = chosen["final_training_time"].xs(108, level="epochs") if 108 in accuracy.columns else None
    table["train_time_108"] = (
        time_108.reindex(table.index).astype("float64") if time_108 is not None else np.nan
    )
    table = table.reset_index().sort_values("hash", ignore_index=True)
    return table[list(nb101_table.COLUMNS)]


def convert_tfrecord(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    run: Run = 0,
    runs_dst: str | os.PathLike | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Convert an official NAS-Bench-101 TFRecord file to the NB101 table.

    Args:
      src: ``nasbench_full.tfrecord`` or ``nasbench_only108.tfrecord``.
      dst: the table to write, ``.csv``, ``.csv.gz`` or ``.parquet``; same schema and
        encoding as ``nasbench101/nb101_cifar10_30k.csv.gz`` (readable by
        :func:`nngp_lib.data.nb101_table.read_table`), one row per hash, sorted by hash.
      run: which run fills the accuracy and time columns, see :func:`runs_to_table`.
      runs_dst: optionally also write the per-run table (:data:`RUN_COLUMNS`) there.
      progress: show a tqdm progress bar.

    Returns the table written to ``dst``. Outputs are written atomically: on a corrupt
    record (:class:`TFRecordError`, naming the byte offset) nothing is left behind.
    Converting the 5.1 M records of ``nasbench_full.tfrecord`` takes a few minutes and
    about 1 GB of memory.
    """
    for path in (dst, runs_dst):
        if path is not None:
            _table_format(path)  # fail before the long pass, not after
    runs, cells = read_runs(src, progress=progress)
    table = runs_to_table(runs, cells, run=run)
    if runs_dst is not None:
        write_table(runs, runs_dst)
    write_table(table, dst)
    return table


def write_table(table: pd.DataFrame, dst: str | os.PathLike) -> None:
    """Write a table atomically as CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``)."""
    kind = _table_format(dst)
    with atomic_path(dst) as tmp:
        if kind == "parquet":
            table.to_parquet(tmp, index=False)
        else:
            # mtime=0 makes the gzip bytes depend on the content only.
            compression = {"method": "gzip", "mtime": 0} if kind == "csv.gz" else None
            table.to_csv(tmp, index=False, compression=compression)


def _table_format(path: str | os.PathLike) -> str:
    name = Path(path).name.lower()
    for kind in ("csv.gz", "csv", "parquet"):
        if name.endswith("." + kind):
            return kind
    raise ValueError(f"unknown table format for {path}: use a .csv, .csv.gz or .parquet file name")
