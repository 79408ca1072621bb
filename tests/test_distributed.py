"""Batch scoring on Dask: real scheduler and worker processes on 127.0.0.1, real data, a tiny setting.

Each run scores 20 seeded architectures of the NB101 table at k = 1, n = m = 10, width
1/8, 8x8 images, and must give every (architecture, setting) pair exactly once, with
the values of the in-process run: through ``--scheduler`` (a ``dask scheduler`` and two
``dask worker`` processes), with one of those workers killed mid-run, on the embedded
``LocalCluster`` of ``--workers 2`` with a worker killed, and an interrupted ``--workers``
run resumed. Then the run's guards: the lock, a corrupt part, a part of other settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from nngp_lib import cli, results, scoring

ARCHITECTURES = 20
TINY = ["--ensemble", "1", "--n-train", "10", "--n-val", "10", "--width-multiplier", "0.125",
        "--downsample-factor", "4", "--backend", "torch"]
DASK = str(Path(sys.executable).with_name("dask"))
TIMEOUT = 120  # seconds any one run may take on two busy cores


def _args(out: Path, *extra: str) -> list[str]:
    return ["score-table", "--sample", str(ARCHITECTURES), "--sample-seed", "0", "--out", out.name,
            "--results-dir", str(out.parent), *TINY, *extra]


def _cli(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nngp_lib.cli", *_args(out, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_parts(folder: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(list(folder.glob("part-*.parquet"))) < count:
        assert process.poll() is None, f"the run ended before {count} parts: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {count} parts in {folder} after {TIMEOUT} s"
        time.sleep(0.05)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err[-2000:]
    return out


def _assert_complete_and_identical(out: Path, reference: pd.DataFrame) -> None:
    table = results.read(out.name, out.parent).table
    keys = list(scoring.KEY_COLUMNS)
    assert not table.duplicated(subset=keys).any()
    raw = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])
    assert len(raw) == len(reference)  # every pair exactly once in the parts themselves, not only after dedup
    scores = ["nngp_acc", "nngp_eps", "nngp_acc_loo", "nngp_eps_loo", "nngp_acc_centered", "nngp_eps_centered"]
    merged = reference.merge(table, on=keys, suffixes=("_ref", ""), validate="one_to_one")
    assert len(merged) == len(reference)
    for column in scores:
        assert merged[column].tolist() == merged[f"{column}_ref"].tolist(), column


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> pd.DataFrame:
    """The in-process run of the tiny setting."""
    out = tmp_path_factory.mktemp("inprocess") / "tiny"
    assert cli.main(_args(out)) == 0
    table = results.read(out.name, out.parent).table
    assert len(table) == ARCHITECTURES
    return table


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(data_dir):
    """A ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                 "--host", "127.0.0.1", "--name", f"w{i}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for process in (*workers, scheduler):
            process.terminate()
        for process in (*workers, scheduler):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_run_on_a_dask_scheduler_equals_the_in_process_run(dask_cluster, reference, tmp_path):
    address, _ = dask_cluster
    out = tmp_path / "tiny"
    assert cli.main(_args(out, "--scheduler", address, "--chunk-size", "3")) == 0
    _assert_complete_and_identical(out, reference)
    provenance = results.read(out.name, out.parent).provenance
    assert provenance["workers"] == address and provenance["backends"][0].startswith("torch")
    assert not (out / results.LOCK_FILE).exists()


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(dask_cluster, reference, tmp_path):
    address, workers = dask_cluster
    out = tmp_path / "tiny"
    run = _cli(out, "--scheduler", address, "--chunk-size", "1")
    _wait_for_parts(out, 2, run)
    workers[0].send_signal(signal.SIGKILL)  # its chunk in flight is rescheduled on the other worker
    _finish(run)
    _assert_complete_and_identical(out, reference)


def _local_workers(process: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes of an embedded LocalCluster (spawned by its nannies)."""
    children = psutil.Process(process.pid).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in
            " ".join(c.cmdline())]


def test_the_embedded_local_cluster_survives_a_killed_worker(reference, tmp_path):
    out = tmp_path / "tiny"
    run = _cli(out, "--workers", "2", "--chunk-size", "1")
    _wait_for_parts(out, 2, run)
    workers = _local_workers(run)
    assert len(workers) == 2
    workers[0].send_signal(signal.SIGKILL)  # its nanny starts another; its chunk is retried
    _finish(run)
    _assert_complete_and_identical(out, reference)


def test_a_run_stopped_with_sigterm_clears_its_lock_and_resumes(reference, tmp_path):
    out = tmp_path / "tiny"
    run = _cli(out, "--chunk-size", "1")  # in-process: `kill PID` is how a background run is stopped
    _wait_for_parts(out, 1, run)
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=TIMEOUT)
    assert run.returncode == 128 + signal.SIGTERM
    assert not (out / results.LOCK_FILE).exists()
    assert 0 < len(results.read(out.name, out.parent).table) < ARCHITECTURES
    _finish(_cli(out, "--chunk-size", "5"))
    _assert_complete_and_identical(out, reference)


def test_an_interrupted_workers_run_resumes(reference, tmp_path):
    out = tmp_path / "tiny"
    # One worker and one architecture per chunk: 19 chunks still to go when the first part
    # lands, so the interrupt cannot arrive after the run finished (with two workers and
    # chunks of two the rest finished within the test's polling interval in CI).
    run = _cli(out, "--workers", "1", "--chunk-size", "1")
    _wait_for_parts(out, 1, run)
    # Hold the worker so that no further chunk can finish, interrupt, release.
    workers = _local_workers(run)
    for worker in workers:
        worker.suspend()
    run.send_signal(signal.SIGINT)
    time.sleep(1.0)
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.resume()
    run.communicate(timeout=TIMEOUT)
    assert run.returncode != 0
    assert not (out / results.LOCK_FILE).exists()  # cleared on the way out
    partial = len(results.read(out.name, out.parent).table)
    assert 0 < partial < ARCHITECTURES
    printed = _finish(_cli(out, "--workers", "2", "--chunk-size", "2"))
    assert f"wrote {ARCHITECTURES} rows" in printed
    _assert_complete_and_identical(out, reference)


def test_a_second_run_on_a_locked_name_stops_at_once_naming_the_first(tmp_path, capsys, data_dir):
    out = tmp_path / "tiny"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock = out / results.LOCK_FILE
        out.mkdir()
        lock.write_text(f'{{"host": "{socket.gethostname()}", "pid": {holder.pid}, "started": "now"}}')
        start = time.monotonic()
        assert cli.main(_args(out)) == 2
        assert time.monotonic() - start < 30
        message = capsys.readouterr().err.strip()
        assert "\n" not in message
        assert f"being written by pid {holder.pid} on host {socket.gethostname()}" in message and str(lock) in message
        assert lock.exists()  # the running one's lock stays
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the next run takes it over
    with results.run_lock(out.name, out.parent) as path:
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert not lock.exists()


def _small_run(folder: Path, name: str, n_train: int = 10) -> Path:
    settings = [scoring.Setting(ensemble=1, n_train=n_train, n_val=10, width_multiplier=0.125, downsample_factor=4)]
    from nngp_lib.spaces.nb101 import load_table, specs_from_table

    specs = specs_from_table(load_table().head(2))
    scoring.score_many(specs, settings, name, results_dir=folder, progress=False, chunk_size=1, backend="torch")
    return folder / name


def test_a_corrupt_part_and_a_foreign_part_are_one_line_errors(tmp_path, data_dir):
    run = _small_run(tmp_path, "run")
    other = _small_run(tmp_path, "other", n_train=20)
    first, second = sorted(run.glob("part-*.parquet"))
    foreign = sorted(other.glob("part-*.parquet"))[0]

    shutil.copy(foreign, run / "part-99999999-foreign.parquet")
    with pytest.raises(ValueError, match="belongs to a run with other settings") as err:
        results.read("run", tmp_path)
    assert "part-99999999-foreign.parquet" in str(err.value) and "\n" not in str(err.value)
    (run / "part-99999999-foreign.parquet").unlink()

    second.write_bytes(second.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(ValueError, match="corrupt results part") as err:
        results.read("run", tmp_path)
    assert str(second) in str(err.value) and "delete it and resume" in str(err.value)
    assert "\n" not in str(err.value)
    second.unlink()  # the fix the message names
    _small_run(tmp_path, "run")  # resumed: the deleted part's architecture is scored again
    assert len(results.read("run", tmp_path).table) == 2 and len(list(run.glob("part-*.parquet"))) == 2
