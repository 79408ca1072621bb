"""Where batch scoring runs: in this process, on an embedded Dask cluster, or on a running one.

Dask's ``distributed`` is the engine; this module only makes its client::

    with cluster.connect(scheduler="tcp://head:8786") as client: ...   # `dask scheduler` + `dask worker`s
    with cluster.connect(workers=4) as client: ...                     # LocalCluster, 4 single-threaded processes
    with cluster.connect(gpus=["0", "1"]) as client: ...               # one worker per GPU
    with cluster.connect() as client: ...                              # None: score in-process

and :func:`nngp_lib.scoring.score_many` takes the client. On a cluster of several
machines start one single-threaded worker per core or per GPU, e.g. ::

    dask scheduler --port 8786                                          # on the head node
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://head:8786 --nthreads 1 &   # on each GPU machine, one per GPU
    CUDA_VISIBLE_DEVICES=1 dask worker tcp://head:8786 --nthreads 1 &
    nngp-nas score-table --sample 1000 --out nb101_nngp --scheduler tcp://head:8786

Workers need this package and the same pinned environment, not the data folder: the
images and settings travel with the job, once per worker. Only the submitting process
writes results.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

# Single-threaded workers: one BLAS/OpenMP thread each, so that N workers use N cores.
_SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _torch_threads_plugin():
    """The :class:`distributed.WorkerPlugin` below (made here so that importing this
    module does not import distributed)."""
    from distributed import WorkerPlugin

    class TorchThreads(WorkerPlugin):
        """PyTorch uses as many intra-op threads as the worker has task threads (one for
        single-threaded workers), not one per core of the machine."""

        name = "nngp-torch-threads"

        def setup(self, worker) -> None:
            set_worker_threads(worker.state.nthreads)

    return TorchThreads()


def set_worker_threads(threads: int) -> None:
    for variable in _SINGLE_THREAD_ENV:
        os.environ[variable] = str(threads)
    try:
        import torch
    except ImportError:  # the JAX backend only
        return
    torch.set_num_threads(threads)


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    gpus: Sequence[str] | None = None,
) -> Iterator["distributed.Client | None"]:  # noqa: F821
    """A Dask client for batch scoring (None when nothing is given: score in-process).

    Args:
      scheduler: address of a running ``dask scheduler`` (e.g. ``tcp://10.0.0.1:8786``).
      workers: start an embedded ``LocalCluster`` of this many single-threaded worker processes.
      gpus: start one single-threaded worker process per listed GPU, each seeing only its
        own (``CUDA_VISIBLE_DEVICES``).

    At most one of them; the embedded cluster is closed on exit.
    """
    given = [option for option, value in (("scheduler", scheduler), ("workers", workers), ("gpus", gpus))
             if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one of scheduler, workers and gpus, got {' and '.join(given)}")
    if not given:
        yield None
        return
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus is not None and not gpus:
        raise ValueError("gpus is empty: list the devices, e.g. 0 1")

    from distributed import Client, LocalCluster

    if scheduler is not None:
        cluster = contextlib.nullcontext(scheduler)
    elif workers is not None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, env=_SINGLE_THREAD_ENV)
    else:
        cluster = _gpu_cluster(list(gpus))
    with cluster as address_or_cluster:
        try:
            client = Client(address_or_cluster, timeout="30s")
        except OSError as err:
            raise ValueError(f"no Dask scheduler answers at {scheduler} ({err}); start one with "
                             f"`dask scheduler` or pass --workers N") from None
        with client:
            client.register_plugin(_torch_threads_plugin())
            yield client


def _gpu_cluster(gpus: list[str]):
    """A local cluster of one single-threaded nanny-managed worker per GPU."""
    from distributed import Nanny, Scheduler, SpecCluster

    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    workers = {
        f"gpu-{gpu}": {"cls": Nanny, "options": {"nthreads": 1, "env": {**_SINGLE_THREAD_ENV,
                                                                          "CUDA_VISIBLE_DEVICES": str(gpu)}}}
        for gpu in gpus
    }
    return SpecCluster(workers=workers, scheduler=scheduler)
