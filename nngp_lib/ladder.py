"""The ladder: NNGP settings from today's cheap points up to the paper's cost range.

One plan, read by the run (``nngp-nas ladder --width W``) and by the chapters. Each
width is one result, ``nb101_ladder_w025`` and so on, over a prefix of the book's seeded
sample (``--sample 1000 --sample-seed 0``). Within a width every setting is a nested
subset of the largest images (class-balanced, see :func:`nngp_lib.scoring.score_spec`)
and network i of the ensemble is the same whatever k, so one set of features serves
every smaller setting: the cost of a width is that of its largest k = 1 setting plus
the extra networks on the images of the largest k > 1 settings.

Every setting of the plan keeps n + m within the exact CIFAR-10 batches (5,170
training images), so no setting reads the JPEG set.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

from nngp_lib.scoring import Setting

SAMPLE_SEED = 0
N_VALS = (100, 500)  # m = 100 matches the earlier runs; m = 500 for a standard error near 2 points

# width -> ((k, n_trains), ...): larger n at k = 1, larger k at moderate n.
PLAN: dict[float, tuple[tuple[int, tuple[int, ...]], ...]] = {
    0.25: ((1, (100, 300, 1000, 3000)), (2, (100, 300, 1000)), (4, (100, 300, 1000))),
    0.5: ((1, (100, 300, 1000, 3000)), (2, (100, 300, 1000))),
    1.0: ((1, (100, 300, 1000)),),
}
# architectures of the seeded sample per width: full width on a prefix of the others.
ARCHITECTURES: dict[float, int] = {0.25: 1000, 0.5: 1000, 1.0: 300}


def widths() -> tuple[float, ...]:
    return tuple(PLAN)


def _checked(width: float) -> float:
    width = float(width)
    if width not in PLAN:
        raise ValueError(f"the ladder has widths {list(PLAN)}, got {width}: pass one of them")
    return width


def run_name(width: float) -> str:
    """Result name of one width of the ladder, e.g. ``nb101_ladder_w025``."""
    return f"nb101_ladder_w{round(100 * _checked(width)):03d}"


def settings(width: float, *, seed: int = SAMPLE_SEED) -> list[Setting]:
    """Every setting the ladder scores at ``width``, smallest first."""
    width = _checked(width)
    return [
        Setting(ensemble=k, n_train=n, n_val=m, seed=seed, data_seed=seed, width_multiplier=width)
        for k, n_trains in PLAN[width]
        for n, m in itertools.product(n_trains, N_VALS)
    ]


def images_per_architecture(width: float) -> int:
    """Images the networks of one architecture process at ``width`` (batch-norm passes excluded).

    Network i sees the images of the largest setting with more than i networks.
    """
    plan = settings(width)
    total = 0
    for index in range(max(s.ensemble for s in plan)):
        users = [s for s in plan if s.ensemble > index]
        total += max(s.n_train for s in users) + max(s.n_val for s in users)
    return total


def run(
    width: float,
    *,
    num_architectures: int | None = None,
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    backend: str = "auto",
    progress: bool = True,
    command: str | None = None,
    client=None,
    chunk_size: int | None = None,
):
    """Score the ladder at ``width`` into :func:`run_name` (resumable: rows already present are kept).

    ``num_architectures`` (default :data:`ARCHITECTURES`) takes a shorter prefix of the
    sample, e.g. for a test in its own ``results_dir``. ``client`` and ``chunk_size`` are
    :func:`nngp_lib.scoring.score_many`'s (a Dask cluster; one architecture per part by default).
    """
    from nngp_lib import scoring
    from nngp_lib.data import nb101_table
    from nngp_lib.spaces.nb101 import specs_from_table

    width = _checked(width)
    count = ARCHITECTURES[width] if num_architectures is None else num_architectures
    drawn = nb101_table.sample_rows(nb101_table.load_table(data_dir), count, SAMPLE_SEED)
    return scoring.score_many(
        specs_from_table(drawn), settings(width), run_name(width),
        description=(f"the NNGP ladder at width {width}: {count} NAS-Bench-101 architectures of the seeded "
                     f"sample (seed {SAMPLE_SEED})"),
        results_dir=results_dir, data_dir=data_dir, progress=progress, command=command, backend=backend,
        checkpoint_every=1, client=client, chunk_size=chunk_size,
    )


def plan_table(widths_: Sequence[float] | None = None):
    """The plan as a DataFrame: width, k, n, m, architectures, images per architecture."""
    import pandas as pd

    rows = []
    for width in widths_ or widths():
        for s in settings(width):
            rows.append({"width": width, "k": s.ensemble, "n": s.n_train, "m": s.n_val,
                         "architectures": ARCHITECTURES[width]})
    return pd.DataFrame(rows)
