"""In-process scoring against an embedded Dask cluster of single-threaded workers, in one run.

    python -m benchmarks.bench_distributed [--archs 20] [--workers 2] [--width 0.5]

Scores the same seeded NB101 architectures (the table sample of ``--sample-seed 0``) at
k = 1, n = m = 100 twice, each into its own temporary result: once in this process (PyTorch
with as many threads as cores) and once through ``nngp_lib.cluster.connect(workers=N)`` (N
single-threaded processes), and prints architectures per second of each and their ratio.
Small NB101 networks fill two cores poorly from one process, which is what two processes
may win back. The two runs must agree row for row (the same scores), which is checked
before any number is printed. Last line::

    bench_distributed: in_process=<arch/s> workers=<arch/s> ratio=<float>x

Run it on an otherwise idle machine; it records nothing (its numbers go in the README).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from nngp_lib import cluster, results, scoring
from nngp_lib.data.nb101_table import load_table, sample_rows
from nngp_lib.spaces import nb101


def _timed_run(specs, setting, folder: str, client) -> tuple[float, "object"]:
    start = time.perf_counter()
    result = scoring.score_many(specs, [setting], "bench", results_dir=folder, client=client, chunk_size=1,
                                progress=False, precompile=False)
    return time.perf_counter() - start, result.table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=int, default=20, help="seeded table architectures scored by each run")
    parser.add_argument("--workers", type=int, default=2, help="single-threaded worker processes of the cluster")
    parser.add_argument("--width", type=float, default=0.5, help="width multiplier of the networks")
    args = parser.parse_args(argv)
    if args.archs < 1 or args.workers < 1:
        parser.error("--archs and --workers must be >= 1")

    table = load_table()
    specs = nb101.specs_from_table(sample_rows(table, args.archs, 0))
    setting = scoring.Setting(ensemble=1, n_train=100, n_val=100, width_multiplier=args.width)
    # Warm-up outside the timings: the data loader's caches and the backend's first call.
    with tempfile.TemporaryDirectory() as folder:
        scoring.score_many(specs[:1], [setting], "warmup", results_dir=folder, progress=False, precompile=False)

    with tempfile.TemporaryDirectory() as folder:
        in_process, reference = _timed_run(specs, setting, folder, None)
    with cluster.connect(workers=args.workers) as client:
        client.wait_for_workers(args.workers)
        with tempfile.TemporaryDirectory() as folder:
            on_workers, distributed = _timed_run(specs, setting, folder, client)

    keys = list(scoring.KEY_COLUMNS)
    merged = reference.merge(distributed, on=keys, suffixes=("", "_workers"), validate="one_to_one")
    if len(merged) != args.archs or not np.allclose(merged["nngp_acc"], merged["nngp_acc_workers"]):
        raise SystemExit("bench_distributed: the cluster's scores differ from the in-process run's")

    rate_in_process, rate_workers = args.archs / in_process, args.archs / on_workers
    print(f"{args.archs} architectures at k=1, n=m=100, width {args.width:g}; {results.cpu_model()}")
    print(f"in-process: {in_process:7.1f} s ({rate_in_process:.3f} arch/s)")
    print(f"{args.workers} workers:  {on_workers:7.1f} s ({rate_workers:.3f} arch/s, cluster start-up excluded)")
    print(f"bench_distributed: in_process={rate_in_process:.4f} workers={rate_workers:.4f} "
          f"ratio={rate_workers / rate_in_process:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
