"""The ladder: NNGP settings from today's cheap points up to the paper's cost range.

One plan, read by the run (``nngp-nas ladder --width W``) and by the chapters. Each
width is one result, ``nb101_ladder_w025`` and so on, over a prefix of the book's seeded
sample (``--sample 1000 --sample-seed 0``). Within a width every setting is a nested
subset of the largest images (class-balanced, see :func:`nngp_lib.scoring.score_spec`)
and network i of the ensemble is the same whatever k, so one set of features serves
every smaller setting: the cost of an architecture is that of its largest k = 1 setting
plus the extra networks on the images of its largest k > 1 setting.

The plan is in tiers: each group of settings covers a prefix of the sample, the cheap
ones all of it and the dear ones the first architectures, so that every width and the
dear settings meet on shared architectures (the first 300, and the first 50 for the
dearest full-width settings). Every setting keeps n + m within the exact CIFAR-10
batches (5,170 training images), so no setting reads the JPEG set.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

from nngp_lib.scoring import Setting

SAMPLE_SEED = 0
N_VALS = (100, 500)  # m = 100 matches the earlier runs; m = 500 for a standard error near 2 points

# width -> ((k, n_trains, architectures), ...): each group of settings on the first
# `architectures` of the sample. Larger n at k = 1, larger k at moderate n. The first
# plan put every group on every architecture of its width (FIRST_PLAN_ARCHITECTURES;
# the ladder chapter costs both plans from the recorded seconds), far over its budget,
# so the groups that rank no better than a cheaper one on the architectures scored first
# (k = 4 next to k = 2; n = 3,000 next to n = 1,000 at half width) moved to the prefixes.
PLAN: dict[float, tuple[tuple[int, tuple[int, ...], int], ...]] = {
    0.25: ((1, (100, 300, 1000, 3000), 1000), (2, (100, 300, 1000), 1000), (4, (100, 300, 1000), 300)),
    0.5: ((1, (100, 300, 1000, 3000), 300), (2, (100, 300, 1000), 300)),
    # k = 1, n = 3000 at full width: two decades above n = 100 in FLOPs actually spent.
    1.0: ((1, (100, 300, 1000), 300), (1, (3000,), 50), (2, (100, 300), 50)),
}
SHARED = 300
"""Architectures every width covers (the first of the sample): the comparisons across widths."""
FIRST_PLAN_ARCHITECTURES: dict[float, int] = {0.25: 1000, 0.5: 1000, 1.0: 300}
"""Architectures the first plan ran every setting of a width on (what the tiers replaced)."""


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


def coverage(width: float, *, seed: int = SAMPLE_SEED) -> dict[Setting, int]:
    """Every setting the ladder scores at ``width``, smallest first, with the number of
    first architectures of the sample it is scored on."""
    width = _checked(width)
    return {
        Setting(ensemble=k, n_train=n, n_val=m, seed=seed, data_seed=seed, width_multiplier=width): count
        for k, n_trains, count in PLAN[width]
        for n, m in itertools.product(n_trains, N_VALS)
    }


def settings(width: float, *, seed: int = SAMPLE_SEED) -> list[Setting]:
    """Every setting the ladder scores at ``width``, smallest first."""
    return list(coverage(width, seed=seed))


def architectures(width: float) -> int:
    """Architectures of the sample the ladder scores at ``width`` (its largest group)."""
    return max(count for *_, count in PLAN[_checked(width)])


ARCHITECTURES: dict[float, int] = {width: architectures(width) for width in PLAN}


def images_per_architecture(width: float, position: int = 0) -> int:
    """Images the networks of the sample's architecture number ``position`` (0-based)
    process at ``width`` (batch-norm passes excluded); 0 past the width's architectures.

    Network i sees the images of the largest setting with more than i networks.
    """
    plan = [s for s, count in coverage(width).items() if position < count]
    total = 0
    for index in range(max((s.ensemble for s in plan), default=0)):
        users = [s for s in plan if s.ensemble > index]
        total += max(s.n_train for s in users) + max(s.n_val for s in users)
    return total


def covering(rows, count: int):
    """The rows of ``rows`` (ladder results, any widths) whose setting the plan scores on at
    least the first ``count`` architectures: e.g. ``covering(rows, SHARED)`` for the
    comparisons across widths (:func:`nngp_lib.analysis.proxy_scores` then keeps the
    architectures complete at all of them). Settings are matched on width, k, n and m; rows
    of settings outside the plan are left out."""
    planned = {(s.width_multiplier, s.ensemble, s.n_train, s.n_val): n
               for width in widths() for s, n in coverage(width).items()}
    keys = list(zip(rows["width_multiplier"].astype(float), rows["ensemble"].astype(int),
                    rows["n_train"].astype(int), rows["n_val"].astype(int)))
    return rows[[planned.get(key, 0) >= count for key in keys]]


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
    sample, e.g. for a test in its own ``results_dir``; each group of settings covers
    the same share of it as of the plan's prefix (at least one architecture).
    ``client`` and ``chunk_size`` are :func:`nngp_lib.scoring.score_many`'s (a Dask
    cluster; one architecture per part by default).
    """
    from nngp_lib import scoring
    from nngp_lib.data import nb101_table
    from nngp_lib.spaces.nb101 import specs_from_table

    width = _checked(width)
    planned = ARCHITECTURES[width]
    count = planned if num_architectures is None else num_architectures
    if count < 1:
        raise ValueError(f"num_architectures must be at least 1, got {count}")
    scaled = {s: max(1, n * count // planned) for s, n in coverage(width).items()}
    drawn = nb101_table.sample_rows(nb101_table.load_table(data_dir), count, SAMPLE_SEED)
    return scoring.score_many(
        specs_from_table(drawn), list(scaled), run_name(width),
        description=(f"the NNGP ladder at width {width}: {count} NAS-Bench-101 architectures of the seeded "
                     f"sample (seed {SAMPLE_SEED})"),
        results_dir=results_dir, data_dir=data_dir, progress=progress, command=command, backend=backend,
        checkpoint_every=1, client=client, chunk_size=chunk_size, coverage=scaled,
    )


def architecture_seconds(rows):
    """Forward-pass seconds of each architecture of a ladder table: Series indexed by
    (``width_multiplier``, ``hash``).

    A setting's ``seconds`` is its share of the passes it used (apportioned by images,
    :func:`nngp_lib.scoring.score_spec`), so the settings of one architecture overlap.
    Network 0 ran on the images of the largest k = 1 setting, which got all of its time;
    networks 1 and up ran on the images of the largest setting of the largest k, whose
    time is theirs plus network 0's share, i.e. the k = 1 setting on the same images.
    """
    def one(frame):
        size = frame["n_train"] + frame["n_val"]
        single = frame[frame["ensemble"] == 1]
        total = single.loc[size[single.index].idxmax(), "seconds"]
        top = frame[frame["ensemble"] == frame["ensemble"].max()]
        if top["ensemble"].iloc[0] > 1:
            row = top.loc[size[top.index].idxmax()]
            same = single[(single["n_train"] == row["n_train"]) & (single["n_val"] == row["n_val"])]
            if same.empty:
                raise ValueError("architecture_seconds needs a k = 1 setting on the images of the largest k")
            total += row["seconds"] - same["seconds"].iloc[0]
        return float(total)

    if not (rows["ensemble"] == 1).any():
        raise ValueError("architecture_seconds needs the k = 1 settings of the ladder")
    return rows.groupby(["width_multiplier", "hash"]).apply(one, include_groups=False).rename("seconds")


def plan_segments(widths_: Sequence[float] | None = None):
    """The plan by stretches of the sample that run the same settings: one row per width
    and stretch, with its ``first`` and ``last`` architecture (1-based), their number,
    the settings and the images each architecture's networks process."""
    import pandas as pd

    rows = []
    for width in widths_ or widths():
        plan = coverage(width)
        bounds = sorted({0, *plan.values()})
        for start, stop in zip(bounds, bounds[1:]):
            rows.append({"width": width, "first": start + 1, "last": stop, "architectures": stop - start,
                         "settings": sum(count > start for count in plan.values()),
                         "images per architecture": images_per_architecture(width, start)})
    return pd.DataFrame(rows)


# -- reading the ladder -------------------------------------------------------------------

VALUES = ("nngp_acc", "nngp_acc_loo", "nngp_acc_centered")
"""The scores each setting is read at: the paper's best eps, eps by leave-one-out, and the
centered kernel (best eps), all from the same features."""


def read_runs(widths_: Sequence[float] | None = None, results_dir: str | os.PathLike | None = None):
    """The ladder's results present in ``results_dir``: ``(table, {width: provenance})``.

    ``table`` concatenates the rows of every width's result found (missing widths are
    left out: the run may still be going); a width asked for explicitly and absent is an
    error naming the command that computes it.
    """
    import pandas as pd

    from nngp_lib import results

    tables, provenances = [], {}
    for width in widths_ or widths():
        name = run_name(width)
        if not results.exists(name, results_dir):
            if widths_ is not None:
                raise FileNotFoundError(f"no result {name!r}: compute it with `nngp-nas ladder --width {width:g}`")
            continue
        result = results.read(name, results_dir)
        tables.append(result.table)
        provenances[float(width)] = result.provenance
    if not tables:
        raise FileNotFoundError("no ladder result found: compute one with `nngp-nas ladder --width 0.25`")
    return pd.concat(tables, ignore_index=True), provenances


def best_reading(table, *, value: str = "nngp_acc", results_dir: str | os.PathLike | None = None):
    """The rows of the ladder's best whole-sample setting: the other chapters' re-read.

    Among the settings the plan scores on every architecture of the sample (quarter
    width, k <= 2) at the largest validation set, the one whose ``value`` ranks best
    (Kendall tau with ``table``'s 108-epoch truth) on the architectures all of them
    hold; chosen on the architectures it is read on, as the paper reads its figures.
    Returns that setting's rows of ``nb101_ladder_w025`` (every architecture it holds),
    or an empty frame when that run is not in ``results_dir``.
    """
    import pandas as pd

    from nngp_lib import analysis, results

    name = run_name(0.25)
    if not results.exists(name, results_dir):
        return pd.DataFrame()
    rows = results.read(name, results_dir).table
    whole = covering(rows, ARCHITECTURES[0.25])
    whole = whole[whole["n_val"] == max(N_VALS)]
    if whole.empty:
        return pd.DataFrame()
    scores = analysis.proxy_scores(whole, table, values=(value,), epochs=())
    taus = analysis.correlation_table(scores.scores, scores.truth, num_resamples=0)["kendall_tau"]
    best = scores.proxies.loc[taus.idxmax()]
    chosen = ((whole["ensemble"] == best["ensemble"]) & (whole["n_train"] == best["n_train"])
              & (whole["n_val"] == best["n_val"]))
    return whole[chosen].reset_index(drop=True)


def flops_by_width(proxy_scores, table, widths_: Sequence[float]) -> dict[float, float]:
    """Mean forward FLOPs per image of the architectures of ``proxy_scores`` (an
    :class:`nngp_lib.analysis.ProxyScores`) at full width and at each of ``widths_``, the
    ``flops_by_width`` that :func:`summary` and :func:`claim_tests` take. ``table`` is the
    NB101 table (the cells of the hashes)."""
    from nngp_lib import analysis
    from nngp_lib.spaces.nb101 import specs_from_table

    specs = specs_from_table(table.set_index("hash").loc[proxy_scores.truth.index].reset_index())
    return analysis.mean_network_flops(specs, sorted({1.0, *(float(w) for w in widths_)}))


def summary(
    proxy_scores,
    flops_by_width: dict[float, float],
    *,
    num_resamples: int = 1000,
    seed: int = 0,
):
    """One row per proxy of ``proxy_scores`` (an :class:`nngp_lib.analysis.ProxyScores`):
    its setting, tau and Pearson with bootstrap intervals, and two costs per score.

    ``spent PFLOPs`` is the paper's FLOP model (:func:`nngp_lib.analysis.proxy_costs`)
    with each width's own mean forward FLOPs (``flops_by_width``, which must hold 1.0
    and every width scored), i.e. what the narrower networks actually computed;
    ``full-width PFLOPs`` counts every NNGP setting as if run at full width (the paper's
    axis). ``frontier`` marks the proxies no cheaper proxy beats on tau (by spent cost).
    """
    from nngp_lib import analysis

    table = analysis.correlation_table(proxy_scores.scores, proxy_scores.truth,
                                       num_resamples=num_resamples, seed=seed)
    proxies = proxy_scores.proxies
    out = proxies[["kind", "variant", "ensemble", "n_train", "n_val", "width_multiplier", "epochs"]].join(table)
    out["spent PFLOPs"] = analysis.proxy_costs(proxies, flops_by_width)
    full_width = {w: flops_by_width[1.0] for w in flops_by_width}
    out["full-width PFLOPs"] = analysis.proxy_costs(proxies, full_width)
    out["frontier"] = analysis.pareto_front(out["spent PFLOPs"], out["kendall_tau"])
    return out


def claim_tests(
    proxy_scores,
    costs,
    *,
    budgets: Sequence[int] = (4, 12),
    saving: float = 10.0,
    choose: str = "best",
    num_resamples: int = 1000,
    seed: int = 0,
):
    """The paper's claim at each training budget: an NNGP score within ``1/saving`` of
    that training's cost against the training itself, by a paired bootstrap.

    Args:
      proxy_scores: an :class:`nngp_lib.analysis.ProxyScores` with NNGP proxies and
        ``train <E> epochs`` for each budget E.
      costs: PFLOPs per proxy, a Series indexed by (at least) the proxies' labels (e.g.
        ``summary(...)["spent PFLOPs"]``).
      budgets: training epochs to test against.
      saving: how much cheaper NNGP must be (10: "an order of magnitude less FLOPs").
      num_resamples: bootstrap resamples (0: the difference alone, no interval).
      choose: which affordable NNGP proxy (costing at most ``cost / saving``) faces the
        training: ``"best"``, the highest tau (as the paper reads its figure; chosen on
        the same architectures it is tested on, so the test is optimistic), or
        ``"largest"``, the dearest affordable one, fixed before looking at any tau
        (ties broken by the highest tau).

    Returns one row per budget: the training's cost and tau, the NNGP proxy chosen (None
    when none is that cheap), its cost and tau, and the paired difference in tau (NNGP minus training)
    with its percentile interval and the share of resamples in which NNGP wins.
    """
    import numpy as np
    import pandas as pd

    from nngp_lib import analysis, metrics
    from nngp_lib.analysis import NNGP, training_label

    if choose not in ("best", "largest"):
        raise ValueError(f"choose must be 'best' or 'largest', got {choose!r}")
    proxies = proxy_scores.proxies
    missing = proxies.index.difference(costs.index)
    if len(missing):
        raise ValueError(f"no cost for proxy {missing[0]!r}: pass costs indexed by every proxy")
    costs = costs.reindex(proxies.index)
    taus = pd.Series({p: metrics.kendall_tau(proxy_scores.scores[p], proxy_scores.truth) for p in proxies.index})
    rows = []
    for epochs in budgets:
        train = training_label(epochs)
        if train not in proxies.index:
            raise ValueError(f"no proxy {train!r}: pass epochs={tuple(budgets)} to analysis.proxy_scores")
        limit = costs[train] / saving
        affordable = proxies.index[(proxies["kind"] == NNGP) & (costs <= limit)]
        row = {"training": train, "training PFLOPs": costs[train], "training tau": taus[train],
               "NNGP budget PFLOPs": limit}
        if len(affordable):
            if choose == "best":
                best = taus[affordable].idxmax()
            else:
                dearest = affordable[costs[affordable] == costs[affordable].max()]
                best = taus[dearest].idxmax()
            if num_resamples:
                test = analysis.paired_comparison(proxy_scores.scores, proxy_scores.truth, best, train,
                                                  num_resamples=num_resamples, seed=seed)
            else:  # the point estimate alone
                test = {"difference": taus[best] - taus[train], "low": np.nan, "high": np.nan,
                        "fraction_first_better": np.nan}
            row.update({"NNGP": best, "NNGP PFLOPs": costs[best], "NNGP tau": taus[best],
                        "difference": test["difference"], "low": test["low"], "high": test["high"],
                        "fraction NNGP better": test["fraction_first_better"]})
        else:
            row.update({"NNGP": None, "NNGP PFLOPs": np.nan, "NNGP tau": np.nan, "difference": np.nan,
                        "low": np.nan, "high": np.nan, "fraction NNGP better": np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def log_cost_trend(cost, tau, *, targets: Sequence[float] = ()):
    """Least-squares line tau = a + b log10(cost) over the points given, and where it
    reaches each target tau: ``(slope, intercept, {target: PFLOPs})``.

    An extrapolation: it assumes tau keeps growing linearly in log cost past the
    measured settings, which nothing here guarantees (tau is bounded by 1 and by the
    noise of the ground truth). A flat or falling trend reaches no target (inf).
    """
    import numpy as np

    x = np.log10(np.asarray(cost, dtype=float))
    y = np.asarray(tau, dtype=float)
    if x.shape != y.shape or len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("log_cost_trend needs at least two points at different costs")
    slope, intercept = np.polyfit(x, y, 1)
    reach = {float(t): (float(10 ** ((t - intercept) / slope)) if slope > 0 else float("inf")) for t in targets}
    return float(slope), float(intercept), reach
