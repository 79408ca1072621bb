"""Compare cheap performance proxies of the same architectures with their ground truth.

The book's chapters all ask one question of a results table: given several cheap
scores of the same architectures (NNGP validation accuracy at several settings,
accuracy after a few epochs of training), how well does each predict the
ground truth, and at what cost? This module holds the shared steps:

* :func:`proxy_scores` turns a scoring results table (one row per architecture and
  setting, :mod:`nngp_lib.scoring`) and the NB101 table into one aligned
  :class:`ProxyScores`: a (N architectures, P proxies) score matrix, the ground
  truth and one descriptive row per proxy. Everything below is a function of
  ``scores`` (a DataFrame, one column per proxy) and ``truth`` (N values), so it
  serves any proxies, not only these.
* :func:`proxy_costs`: the paper's FLOP model (:mod:`nngp_lib.cost`) per proxy.
* :func:`correlation_table`, :func:`bootstrap_correlations`,
  :func:`paired_comparison`: Kendall's tau-b and Pearson's r with bootstrap
  confidence intervals over architectures.
* :func:`pqetp_table` and :func:`better_ranges`: PQETP curves over a threshold grid
  and the threshold ranges where one proxy beats another (the paper's Fig. 2 and S6).
* :func:`discovered_performance_table`: average discovered performance in random
  subsets (the paper's Fig. 3), with random-choice and best-in-subset references.
* :func:`pareto_front`: the proxies that no other proxy beats on both cost and
  quality.

The bootstrap resamples architectures with replacement (the architectures are the
sample; the NNGP images and networks are held fixed), with one set of resamples
shared by every proxy and statistic for a given seed, so differences between proxies
are paired. Intervals are percentile intervals. Kendall's tau-b of a resample is
computed exactly from the resample's multiplicities (see
:func:`bootstrap_correlations`), which is what makes thousands of resamples of a
few hundred architectures take well under a second per proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nngp_lib import cost, metrics
from nngp_lib.scoring import SETTING_COLUMNS, complete_settings

TRUTH_COLUMN = "val_acc_108"
"""The NB101 table's ground truth: validation accuracy after 108 epochs (one training run)."""

NNGP_VALUES: dict[str, str] = {
    "nngp_acc": "best eps",
    "nngp_acc_loo": "leave-one-out eps",
    "nngp_acc_centered": "centered kernel",
    "nngp_acc_loo_centered": "centered kernel, leave-one-out eps",
}
"""Score columns of a results table -> how their eps was chosen. ``nngp_acc`` is the
paper's number (the best validation accuracy over the eps grid, chosen with the
validation labels), ``nngp_acc_loo`` the honest one (eps chosen by leave-one-out on
the training images)."""

NNGP = "nngp"
TRAINING = "training"

PROXY_COLUMNS = ("kind", "value", "variant", *SETTING_COLUMNS, "epochs")
"""Columns of :attr:`ProxyScores.proxies`."""

Statistic = Literal["kendall_tau", "pearson"]
STATISTICS: tuple[Statistic, ...] = ("kendall_tau", "pearson")

_NAMED_SETTINGS = ("ensemble", "n_train", "n_val")  # always in a proxy's label
_OTHER_SETTINGS = tuple(c for c in SETTING_COLUMNS if c not in _NAMED_SETTINGS)  # in it when they vary
_LABEL_NAMES = {"width_multiplier": "width"}  # a setting's name in a label, where it differs
_DENSE_TAU_ARCHITECTURES = 4_000  # up to here the resampled tau uses (N, N) matrices; above, one sort per resample


# -- aligning proxies ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyScores:
    """Several proxies of the same architectures, aligned with their ground truth.

    Attributes:
      scores: (N, P) float, index ``hash`` (architectures), one column per proxy
        named by its label (e.g. ``"NNGP k=2 n=100 m=200"``, ``"train 4 epochs"``).
      truth: (N,) float, the ground truth of the same architectures, same index.
      proxies: (P, len(PROXY_COLUMNS)) one row per proxy, index the labels in the
        order of ``scores.columns``: ``kind`` (``"nngp"`` or ``"training"``),
        ``value`` (the source column, e.g. ``"nngp_acc_loo"`` or ``"val_acc_4"``),
        ``variant`` (how eps was chosen, :data:`NNGP_VALUES`; ``"training"`` for
        training), the NNGP setting's fields (NaN for training) and ``epochs`` (NaN
        for NNGP).
      dropped: architectures of the results left out because they were not scored
        at every setting or a requested score is NaN (every eps failed).
    """

    scores: pd.DataFrame
    truth: pd.Series
    proxies: pd.DataFrame
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.truth)

    def select(self, labels: Sequence[str]) -> "ProxyScores":
        """The same architectures with only the proxies ``labels``, in that order."""
        missing = [label for label in labels if label not in self.proxies.index]
        if missing:
            raise KeyError(f"unknown proxies {missing}; available: {list(self.proxies.index)}")
        return ProxyScores(self.scores[list(labels)], self.truth, self.proxies.loc[list(labels)], self.dropped)

    def subset(self, mask: ArrayLike) -> "ProxyScores":
        """The architectures where the boolean ``mask`` (N,) is true, e.g. one size class."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"mask must have shape ({len(self)},), got {mask.shape}")
        return ProxyScores(self.scores[mask], self.truth[mask], self.proxies, self.dropped)


def setting_label(setting: pd.Series | dict, *, extra: Sequence[str] = (), value: str = "nngp_acc") -> str:
    """A proxy's name: ``"NNGP k=2 n=100 m=200"`` (the paper's k, n, m), with
    ``" width=0.5"`` for networks narrower than NB101's and ``" pixels/4"`` for images
    downsampled by 2.

    Args:
      setting: a row with at least ``ensemble``, ``n_train``, ``n_val`` (and
        ``width_multiplier``, named when present and not 1).
      extra: further setting fields to name, e.g. those that vary in a run
        (``"seed=1"``, ``"bn_momentum=0"``; ``width_multiplier`` is named ``"width"``).
      value: the score column; anything but ``"nngp_acc"`` is named in parentheses,
        e.g. ``"NNGP k=2 n=100 m=200 (leave-one-out eps)"``.
    """
    label = f"NNGP k={int(setting['ensemble'])} n={int(setting['n_train'])} m={int(setting['n_val'])}"
    width = setting.get("width_multiplier", 1.0)
    if width != 1.0 and "width_multiplier" not in extra:
        label += f" width={width:g}"
    factor = setting.get("downsample_factor", 1)
    if factor != 1 and "downsample_factor" not in extra:
        label += f" pixels/{factor ** 2:g}"
    for name in extra:
        short = _LABEL_NAMES.get(name, name)
        label += f" {short}={setting[name]:g}" if isinstance(setting[name], float) else f" {short}={setting[name]}"
    if value != "nngp_acc":
        label += f" ({NNGP_VALUES.get(value, value)})"
    return label


def training_label(epochs: int) -> str:
    """A training proxy's name: ``"train 4 epochs"``."""
    return f"train {int(epochs)} epochs"


def proxy_scores(
    results: pd.DataFrame,
    nb101: pd.DataFrame,
    *,
    values: Sequence[str] = ("nngp_acc",),
    epochs: Sequence[int] = (4, 12, 36),
    truth: str = TRUTH_COLUMN,
) -> ProxyScores:
    """Align NNGP scores at every setting of a run with training proxies and the truth.

    Args:
      results: a scoring results table (:func:`nngp_lib.scoring.score_many`): one row
        per (``hash``, setting), the setting columns
        :data:`nngp_lib.scoring.SETTING_COLUMNS` and the score columns in ``values``.
      nb101: the NB101 table (:func:`nngp_lib.data.nb101_table.load_table`), with
        ``hash``, ``truth`` and ``val_acc_<epochs>`` columns; it must hold every
        scored architecture.
      values: score columns, each giving one proxy per setting (e.g. ``("nngp_acc",
        "nngp_acc_loo")`` for both eps choices).
      epochs: training budgets to add as proxies, from the same architectures'
        ``val_acc_<epochs>``; ``()`` for none.
      truth: the NB101 column used as ground truth.

    Returns:
      A :class:`ProxyScores` over the architectures scored at every setting with no
      NaN score, training result or truth, in the order they first appear in ``results``. Proxies come NNGP
      first (per value, settings sorted by ensemble, n_train, n_val, then the other
      fields), then training by budget. Labels name ``ensemble``, ``n_train``,
      ``n_val`` and any other setting field that varies in ``results``.

    Raises:
      ValueError: a column is missing, ``results`` is empty or repeats a (hash,
        setting) row, a scored hash is not in ``nb101``, or no architecture is complete.
    """
    results = complete_settings(results)
    _require_columns(results, ["hash", *SETTING_COLUMNS, *values], "results table")
    _require_columns(nb101, ["hash", truth, *(f"val_acc_{e}" for e in epochs)], "NB101 table")
    if results.empty:
        raise ValueError("results table is empty: score some architectures first")
    keys = ["hash", *SETTING_COLUMNS]
    if results.duplicated(keys).any():
        raise ValueError("results table repeats a (hash, setting) row: it mixes two runs; deduplicate it")

    settings = results[list(SETTING_COLUMNS)].drop_duplicates()
    settings = settings.sort_values([*_NAMED_SETTINGS, *_OTHER_SETTINGS]).reset_index(drop=True)
    varying = [c for c in _OTHER_SETTINGS if settings[c].nunique() > 1]

    hashes = pd.Index(results["hash"].drop_duplicates(), name="hash")
    table = nb101.set_index("hash")
    missing = hashes.difference(table.index)
    if len(missing):
        raise ValueError(
            f"{len(missing)} scored architectures (e.g. {missing[0]}) are not in the NB101 table: "
            "pass the table the run sampled from"
        )
    setting_ids = results.merge(settings.reset_index(names="setting"), on=list(SETTING_COLUMNS), how="left")
    columns, rows = {}, []
    for value in values:
        wide = setting_ids.pivot(index="hash", columns="setting", values=value).reindex(hashes)
        for setting_id, setting in settings.iterrows():
            label = setting_label(setting, extra=varying, value=value)
            columns[label] = wide[setting_id]
            rows.append({"kind": NNGP, "value": value, "variant": NNGP_VALUES.get(value, value),
                         **setting.to_dict(), "epochs": np.nan, "label": label})
    table = table.loc[hashes]
    for budget in epochs:
        label = training_label(budget)
        columns[label] = table[f"val_acc_{budget}"]
        rows.append({"kind": TRAINING, "value": f"val_acc_{budget}", "variant": TRAINING,
                     **{c: np.nan for c in SETTING_COLUMNS}, "epochs": budget, "label": label})
    scores = pd.DataFrame(columns, index=hashes).astype(np.float64)
    truth_values = table[truth].astype(np.float64).rename("truth")
    complete = scores.notna().all(axis=1) & truth_values.notna()
    if not complete.any():
        raise ValueError("no architecture has every score and a ground truth: the run is incomplete")
    proxies = pd.DataFrame(rows).set_index("label")[list(PROXY_COLUMNS)]
    proxies.index.name = "proxy"
    scores.columns.name = "proxy"
    return ProxyScores(
        scores=scores[complete],
        truth=truth_values[complete],
        proxies=proxies,
        dropped=int((~complete).sum()),
    )


# -- cost ---------------------------------------------------------------------------------


def proxy_costs(
    proxies: pd.DataFrame,
    flops_per_image: float | Mapping[float, float],
    **nngp_kwargs,
) -> pd.Series:
    """Cost in PFLOPs of one score of each proxy, by the paper's FLOP model.

    NNGP proxies cost :func:`nngp_lib.cost.nngp_flops` (``F``, ``n_train``, ``n_val``,
    ``ensemble``, feature dimension), training proxies :func:`nngp_lib.cost.training_flops`
    (``F`` of the full-width network, ``epochs``). Both are linear in ``F``, so passing the
    mean FLOPs of the scored architectures gives their mean cost, as the paper plots.

    Args:
      proxies: :attr:`ProxyScores.proxies` (``kind``, ``ensemble``, ``n_train``,
        ``n_val``, ``width_multiplier``, ``epochs``, optionally ``downsample_factor``: F of
        an NNGP proxy on downsampled images is scaled by the share of pixels).
      flops_per_image: F, mean forward FLOPs per image of the full-width networks (e.g.
        ``np.mean([spec.flops() for spec in specs])``), or a mapping from width multiplier
        to the mean F of the networks at that width (which must hold 1.0, for training,
        and every width of an NNGP proxy), e.g. from :func:`mean_network_flops`.
      nngp_kwargs: passed to :func:`nngp_lib.cost.nngp_flops` (e.g. ``bn_batch``).

    Returns:
      (P,) float64 PFLOPs, indexed like ``proxies``.

    Raises:
      ValueError: a width with no F (one line naming it).
    """
    by_width = dict(flops_per_image) if isinstance(flops_per_image, Mapping) else {1.0: float(flops_per_image)}
    nngp = (proxies["kind"] == NNGP).to_numpy()
    widths = proxies["width_multiplier"].fillna(1.0).to_numpy(dtype=float)
    needed = set(widths[nngp]) | ({1.0} if (~nngp).any() else set())
    missing = sorted(w for w in needed if w not in by_width)
    if missing:
        raise ValueError(
            f"no flops_per_image for width_multiplier {missing[0]:g}: pass a mapping width -> mean FLOPs "
            "(see analysis.mean_network_flops)"
        )
    flops = pd.Series(np.nan, index=proxies.index, name="pflops")
    rows = proxies[nngp]
    row_widths = widths[nngp]
    # Fewer pixels shrink every feature map alike: the convolutions' FLOPs scale with the
    # pixels (the dense readout, about 1e-5 of F, is counted as if scaled too).
    factors = rows["downsample_factor"].fillna(1) if "downsample_factor" in rows else 1
    pixels = 1.0 / np.asarray(factors, dtype=float) ** 2
    flops[nngp] = cost.nngp_flops(
        np.array([by_width[w] for w in row_widths]) * pixels, rows["n_train"].to_numpy(), rows["n_val"].to_numpy(),
        rows["ensemble"].to_numpy(), feature_dim=np.round(cost.NB101_FEATURE_DIM * row_widths), **nngp_kwargs,
    )
    if (~nngp).any():
        flops[~nngp] = cost.training_flops(by_width[1.0], proxies.loc[~nngp, "epochs"].to_numpy())
    return pd.Series(cost.to_pflops(flops), index=proxies.index, name="pflops")


def mean_network_flops(specs: Sequence, widths: Sequence[float] = (1.0,)) -> dict[float, float]:
    """Mean forward FLOPs per 32x32 image of the NB101 networks of ``specs`` at each width
    multiplier (1.0 is ``ModelSpec.flops()``; others count the narrower network built by scoring)."""
    from nngp_lib.scoring import stem_channels
    from nngp_lib.spaces.nb101 import jax_network as nb101_net

    out = {}
    for width in widths:
        if width == 1.0:
            out[1.0] = float(np.mean([spec.flops() for spec in specs]))
        else:
            out[float(width)] = float(np.mean([
                nb101_net.network(spec, stem_channels=stem_channels(width)).flops(32, 32) for spec in specs
            ]))
    return out


def pareto_front(cost: ArrayLike, quality: ArrayLike) -> np.ndarray:
    """Which points no other point dominates (cost lower or equal and quality higher or equal, one strictly).

    Args:
      cost, quality: (P,) arrays, e.g. PFLOPs and Kendall's tau of P proxies.

    Returns:
      (P,) bool. Points with a NaN are never on the front and dominate nothing.
    """
    cost, quality = _checked_pair(cost, quality, "cost", "quality")
    valid = ~(np.isnan(cost) | np.isnan(quality))
    c, q = cost[:, None], quality[:, None]
    # dominated[i, j]: point j dominates point i
    dominated = (cost[None, :] <= c) & (quality[None, :] >= q) & ((cost[None, :] < c) | (quality[None, :] > q))
    dominated &= valid[None, :]
    return valid & ~dominated.any(axis=1)


# -- correlations with bootstrap intervals -------------------------------------------------


def bootstrap_weights(num_items: int, num_resamples: int, seed: int = 0) -> np.ndarray:
    """Multiplicities of ``num_resamples`` bootstrap resamples of ``num_items`` items.

    Each row counts how often each item is drawn in ``num_items`` draws with
    replacement (``numpy.random.default_rng(seed)``), so every row sums to
    ``num_items``. Returns (num_resamples, num_items) int64.
    """
    if num_items < 1 or num_resamples < 1:
        raise ValueError(f"need num_items >= 1 and num_resamples >= 1, got {num_items} and {num_resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_items, size=(num_resamples, num_items))
    offsets = (np.arange(num_resamples) * num_items)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=num_resamples * num_items).reshape(
        num_resamples, num_items
    )


def resampled_kendall_tau(metric: ArrayLike, truth: ArrayLike, weights: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of resamples given by multiplicities, exactly and all at once.

    A resample that holds item i ``w_i`` times has, with ``S_ij = sign(x_i - x_j)
    sign(y_i - y_j)``, ``P - Q = w^T S w / 2``; its pairs tied in ``metric`` number
    ``(w^T [x_i = x_j] w - sum w) / 2`` (copies of one item are tied in both
    orderings), likewise in ``truth``, so tau-b (:func:`nngp_lib.metrics.kendall_tau`)
    is three quadratic forms per resample: O(R N^2) time, O(N^2) memory. Above
    4,000 architectures (the whole NB101 table has 30,001) the matrices would not fit,
    and each resample is expanded into its items and handed to scipy's O(N log N)
    tau-b instead: the same value, since scipy counts the copies of one item as tied
    in both orderings too.

    Args:
      metric, truth: (N,) arrays without NaN.
      weights: (R, N) non-negative multiplicities (:func:`bootstrap_weights`); a row
        of ones is the sample itself.

    Returns:
      (R,) float64; NaN for a resample constant in either array.
    """
    x, y = _checked_pair(metric, truth, "metric", "truth", allow_nan=False)
    w = _checked_weights(weights, x.size)
    if x.size > _DENSE_TAU_ARCHITECTURES:
        counts = np.rint(w).astype(np.int64)
        if not np.array_equal(counts, w):
            raise ValueError(f"above {_DENSE_TAU_ARCHITECTURES:,} architectures the weights must be whole "
                             "multiplicities (bootstrap_weights)")
        return np.array([metrics.kendall_tau(np.repeat(x, row), np.repeat(y, row)) for row in counts])
    concordance = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    tied_x = (x[:, None] == x[None, :]).astype(np.float64)
    tied_y = (y[:, None] == y[None, :]).astype(np.float64)
    n = w.sum(axis=1)
    pairs = n * (n - 1) / 2
    net = _quadratic_forms(w, concordance) / 2
    ties_x = (_quadratic_forms(w, tied_x) - n) / 2
    ties_y = (_quadratic_forms(w, tied_y) - n) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = net / np.sqrt((pairs - ties_x) * (pairs - ties_y))
    return np.where((pairs - ties_x > 0) & (pairs - ties_y > 0), tau, np.nan)


def resampled_pearson(metric: ArrayLike, truth: ArrayLike, weights: np.ndarray) -> np.ndarray:
    """Pearson's r of resamples given by multiplicities (weighted moments), all at once.

    Same arguments as :func:`resampled_kendall_tau`; (R,) float64, NaN for a
    resample constant in either array.
    """
    x, y = _checked_pair(metric, truth, "metric", "truth", allow_nan=False)
    w = _checked_weights(weights, x.size)
    n = w.sum(axis=1)
    # Centre first: accuracies differ in the third decimal, raw moments would cancel.
    x = x - x.mean()
    y = y - y.mean()
    mean_x, mean_y = w @ x / n, w @ y / n
    cov = w @ (x * y) / n - mean_x * mean_y
    var_x = w @ (x * x) / n - mean_x**2
    var_y = w @ (y * y) / n - mean_y**2
    scale = np.finfo(np.float64).eps * 16
    constant = (var_x <= scale * (w @ (x * x) / n)) | (var_y <= scale * (w @ (y * y) / n))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(var_x * var_y)
    return np.where(constant, np.nan, np.clip(r, -1.0, 1.0))


_RESAMPLED = {"kendall_tau": resampled_kendall_tau, "pearson": resampled_pearson}
_POINT = {"kendall_tau": metrics.kendall_tau, "pearson": metrics.pearson}


def bootstrap_correlations(
    scores: pd.DataFrame,
    truth: ArrayLike,
    *,
    statistic: Statistic = "kendall_tau",
    num_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Bootstrap replicates of each proxy's correlation with the truth.

    Architectures are resampled with replacement; the resamples depend only on
    ``seed``, ``num_resamples`` and N, so they are the same for every proxy, every
    statistic and every call with those arguments (paired comparisons).

    Args:
      scores: (N, P) one column per proxy, no NaN.
      truth: (N,) ground truth, no NaN.
      statistic: ``"kendall_tau"`` (tau-b) or ``"pearson"``.
      num_resamples: R.
      seed: seed of :func:`bootstrap_weights`.

    Returns:
      (R, P) float64 DataFrame, columns as ``scores``; NaN for a resample in which a
      proxy is constant (possible only for a handful of architectures).

    Raises:
      ValueError: unknown statistic or NaN input.
    """
    if statistic not in _RESAMPLED:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    values = _checked_scores(scores, truth)
    weights = bootstrap_weights(values.shape[0], num_resamples, seed)
    truth = np.asarray(truth, dtype=np.float64)
    replicates = {p: _RESAMPLED[statistic](values[:, j], truth, weights) for j, p in enumerate(scores.columns)}
    return pd.DataFrame(replicates, columns=scores.columns)


def percentile_interval(replicates: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Percentile bootstrap interval of each column: DataFrame with ``low`` and ``high``.

    NaN replicates are ignored; a column of only NaN gives NaN bounds.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    return pd.DataFrame(
        {"low": replicates.quantile(alpha), "high": replicates.quantile(1.0 - alpha)}
    )


def correlation_table(
    scores: pd.DataFrame,
    truth: ArrayLike,
    *,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Kendall's tau-b and Pearson's r of every proxy against the truth, with intervals.

    Args:
      scores: (N, P) one column per proxy, no NaN.
      truth: (N,) ground truth.
      num_resamples: bootstrap resamples of the architectures (0: no intervals).
      confidence: coverage of the percentile intervals.
      seed: seed of the resamples (shared by all proxies and both statistics).

    Returns:
      (P, 6) DataFrame indexed by proxy: ``kendall_tau``, ``kendall_tau_low``,
      ``kendall_tau_high``, ``pearson``, ``pearson_low``, ``pearson_high``. The point
      estimates are those of :mod:`nngp_lib.metrics` on the full sample; the bounds
      are NaN when ``num_resamples`` is 0.
    """
    values = _checked_scores(scores, truth)
    table = pd.DataFrame(index=scores.columns)
    for statistic in STATISTICS:
        table[statistic] = [_POINT[statistic](values[:, j], truth) for j in range(values.shape[1])]
        if num_resamples:
            bounds = percentile_interval(
                bootstrap_correlations(scores, truth, statistic=statistic, num_resamples=num_resamples, seed=seed),
                confidence,
            )
            table[f"{statistic}_low"], table[f"{statistic}_high"] = bounds["low"], bounds["high"]
        else:
            table[f"{statistic}_low"] = table[f"{statistic}_high"] = np.nan
    return table


def paired_comparison(
    scores: pd.DataFrame,
    truth: ArrayLike,
    first: str,
    second: str,
    *,
    statistic: Statistic = "kendall_tau",
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.Series:
    """How much better ``first`` correlates with the truth than ``second``, with uncertainty.

    Both are scored on the same bootstrap resamples of the architectures, so the
    interval of the difference is narrower than the two intervals suggest when the
    proxies err on the same architectures.

    Returns:
      Series with ``difference`` (statistic of ``first`` minus ``second`` on the full
      sample), ``low`` and ``high`` (percentile interval of the difference) and
      ``fraction_first_better`` (share of resamples where ``first`` is higher).
    """
    pair = scores[[first, second]]
    values = _checked_scores(pair, truth)
    replicates = bootstrap_correlations(pair, truth, statistic=statistic, num_resamples=num_resamples, seed=seed)
    difference = (replicates[first] - replicates[second]).to_frame("difference")
    bounds = percentile_interval(difference, confidence).loc["difference"]
    point = _POINT[statistic](values[:, 0], truth) - _POINT[statistic](values[:, 1], truth)
    return pd.Series(
        {
            "difference": point,
            "low": bounds["low"],
            "high": bounds["high"],
            "fraction_first_better": float((difference["difference"] > 0).mean()),
        }
    )


# -- thresholds -----------------------------------------------------------------------------


def pqetp_table(
    scores: pd.DataFrame,
    truth: ArrayLike,
    thresholds: ArrayLike,
    *,
    min_class_size: int = 1,
) -> pd.DataFrame:
    """PQETP (:func:`nngp_lib.metrics.pqetp`) of every proxy at every threshold.

    Args:
      scores: (N, P) one column per proxy, no NaN.
      truth: (N,) ground truth.
      thresholds: (T,) increasing thresholds on the truth.
      min_class_size: thresholds with fewer architectures than this above, or at or
        below, are NaN for every proxy: an AUROC from a handful of positives is noise.

    Returns:
      (T, P) DataFrame indexed by ``threshold``, columns as ``scores``.
    """
    values = _checked_scores(scores, truth)
    grid = _checked_grid(thresholds)
    truth = np.asarray(truth, dtype=np.float64)
    above = truth.size - np.searchsorted(np.sort(truth), grid, side="right")
    usable = (above >= max(min_class_size, 1)) & (truth.size - above >= max(min_class_size, 1))
    table = pd.DataFrame(
        {p: np.where(usable, metrics.pqetp(values[:, j], truth, grid), np.nan) for j, p in enumerate(scores.columns)},
        index=pd.Index(grid, name="threshold"),
        columns=scores.columns,
    )
    return table


def intervals_where(mask: ArrayLike, grid: ArrayLike) -> list[tuple[float, float]]:
    """Maximal runs of consecutive grid points where ``mask`` holds, as (first, last) values.

    >>> intervals_where([False, True, True, False, True], [0.1, 0.2, 0.3, 0.4, 0.5])
    [(0.2, 0.3), (0.5, 0.5)]
    """
    mask = np.asarray(mask, dtype=bool)
    grid = np.asarray(grid, dtype=np.float64)
    if mask.shape != grid.shape or mask.ndim != 1:
        raise ValueError(f"mask and grid must be 1-D of the same length, got {mask.shape} and {grid.shape}")
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(float(grid[a]), float(grid[b])) for a, b in zip(starts, stops)]


def better_ranges(pqetp: pd.DataFrame, baseline: str, challengers: Sequence[str] | None = None) -> pd.DataFrame:
    """Threshold ranges where each challenger's PQETP is strictly above the baseline's.

    The paper's Fig. S6, computed on the grid of ``pqetp`` (:func:`pqetp_table`):
    NaN thresholds (too few architectures on one side) belong to no range.

    Args:
      pqetp: (T, P) from :func:`pqetp_table`.
      baseline: the column to beat, e.g. ``"train 4 epochs"``.
      challengers: columns to test (default: every other column).

    Returns:
      DataFrame with one row per maximal range: ``proxy``, ``baseline``, ``start``
      and ``end`` (first and last grid thresholds of the range, inclusive) and
      ``points`` (grid points in it). A challenger that never wins has no row.
    """
    if baseline not in pqetp.columns:
        raise KeyError(f"baseline {baseline!r} is not a column of the PQETP table")
    challengers = [c for c in pqetp.columns if c != baseline] if challengers is None else list(challengers)
    grid = pqetp.index.to_numpy(np.float64)
    rows = []
    for proxy in challengers:
        wins = (pqetp[proxy] > pqetp[baseline]).to_numpy()  # NaN compares False
        for start, end in intervals_where(wins, grid):
            points = int(((grid >= start) & (grid <= end)).sum())
            rows.append({"proxy": proxy, "baseline": baseline, "start": start, "end": end, "points": points})
    return pd.DataFrame(rows, columns=["proxy", "baseline", "start", "end", "points"])


# -- discovered performance -------------------------------------------------------------------

RANDOM_CHOICE = "random choice"
BEST_IN_SUBSET = "best in subset"


def discovered_performance_table(
    scores: pd.DataFrame,
    truth: ArrayLike,
    *,
    subset_size: int,
    top_k: int = 10,
    num_trials: int = 10,
    seed: int = 0,
    references: bool = True,
) -> pd.DataFrame:
    """Average discovered performance of every proxy on identical random subsets.

    Each proxy goes through :func:`nngp_lib.metrics.discovered_performance` with the
    same ``seed``, so all are judged on the same subsets.

    Args:
      scores: (N, P) one column per proxy, no NaN.
      truth: (N,) ground truth.
      subset_size, top_k, num_trials, seed: as in
        :func:`nngp_lib.metrics.discovered_performance`.
      references: add two rows: ``"random choice"`` (the best of ``top_k``
        architectures drawn at random from each subset, what a proxy without
        information finds) and ``"best in subset"`` (the best truth in each subset,
        what a perfect proxy finds).

    Returns:
      DataFrame indexed by proxy with ``mean``, ``sem`` (standard error of the mean
      over trials, as the paper's bands; 0 for one trial) and ``num_trials``.
    """
    values = _checked_scores(scores, truth)
    truth = np.asarray(truth, dtype=np.float64)
    columns = {p: values[:, j] for j, p in enumerate(scores.columns)}
    if references:
        columns[RANDOM_CHOICE] = np.random.default_rng([seed, 1]).random(truth.size)
        columns[BEST_IN_SUBSET] = truth
    rows = {}
    for proxy, metric in columns.items():
        trials = metrics.discovered_performance(
            metric, truth, subset_size, top_k=top_k, num_trials=num_trials, seed=seed
        )
        sem = trials.std(ddof=1) / np.sqrt(trials.size) if trials.size > 1 else 0.0
        rows[proxy] = {"mean": trials.mean(), "sem": sem, "num_trials": trials.size}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "proxy"
    return table


# -- validation -------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")


def _checked_pair(a: ArrayLike, b: ArrayLike, name_a: str, name_b: str, *, allow_nan: bool = True):
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"{name_a} and {name_b} must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if not allow_nan and (np.isnan(x).any() or np.isnan(y).any()):
        raise ValueError(f"{name_a} or {name_b} holds NaN: drop those architectures first")
    return x, y


def _checked_weights(weights: np.ndarray, size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != size:
        raise ValueError(f"weights must have shape (resamples, {size}), got {w.shape}")
    if (w < 0).any():
        raise ValueError("weights must be non-negative multiplicities")
    return w


def _checked_scores(scores: pd.DataFrame, truth: ArrayLike) -> np.ndarray:
    values = scores.to_numpy(np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape != (values.shape[0],):
        raise ValueError(f"truth must have shape ({values.shape[0]},) to match scores, got {truth.shape}")
    if np.isnan(values).any() or np.isnan(truth).any():
        raise ValueError("scores or truth hold NaN: drop those architectures first (proxy_scores does)")
    return values


def _checked_grid(thresholds: ArrayLike) -> np.ndarray:
    grid = np.asarray(thresholds, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.isnan(grid).any() or (np.diff(grid) <= 0).any():
        raise ValueError("thresholds must be a non-empty, strictly increasing 1-D grid without NaN")
    return grid


def _quadratic_forms(weights: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``w_r^T M w_r`` for every row r of ``weights``."""
    return np.einsum("rn,rn->r", weights @ matrix, weights)
