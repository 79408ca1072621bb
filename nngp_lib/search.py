"""Uses of a cheap score in architecture search (paper, sections 4.1 and 5).

Plain functions of arrays with one entry per architecture:

* Structure of the search space: :func:`residual_connections` (the paper's "linear"
  networks, its Fig. 4) and :func:`size_clusters` (the parameter-count clusters of its
  appendix F).
* Search-space reduction (the paper's Fig. 8): :func:`random_spaces` draws the search
  spaces of the trials, :func:`reduce_space` keeps the top fraction of each by a score,
  :func:`random_reduction` a random fraction as the baseline, and :func:`random_search`
  runs random search inside the reduced spaces with shortened training as the signal,
  returning a :class:`SearchCurve` over search budgets.
* Hybrid metrics (the paper's Fig. 9): :func:`fit_hybrid` fits a linear model of
  several cheap scores to a costlier one, and :func:`hybrid_split_scores` measures it
  on architectures it was not fitted on.
* Reading small samples: :func:`tau_null_sd`, how far a Kendall tau moves by chance.

Conventions: ``metric``, ``search_metric``, ``truth`` and ``cost`` are (N,) arrays in
the same architecture order, higher metric meaning better; an architecture is named by
its position in them. NaN in a metric or the truth raises ``ValueError`` (drop unscored
architectures first). Randomness comes from ``numpy.random.default_rng(seed)`` only, so
every result is a deterministic function of its arguments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nngp_lib.metrics import kendall_tau

# -- structure of the search space ---------------------------------------------------------


def residual_connections(adjacency: str | ArrayLike) -> int:
    """Number of residual connections of a cell: edges that skip a vertex in index order.

    The paper counts "the k-th diagonal elements with k > 1" of the cell's directed
    adjacency matrix (our reading of its section 4.1, whose symbols were lost from our
    copy): edges ``i -> j`` with ``j >= i + 2``. A "linear" cell, a chain ``0 -> 1 ->
    ... -> V-1``, has none. Vertices are in NAS-Bench-101's topological order, so this
    depends on the matrix as stored (the pruned ``module_adjacency``), as the paper's
    count does.

    Args:
      adjacency: (V, V) upper-triangular 0/1 matrix, or the NB101 table's JSON string of it.

    Returns:
      The count, between 0 and ``(V - 1) (V - 2) / 2``.
    """
    matrix = np.asarray(json.loads(adjacency) if isinstance(adjacency, str) else adjacency)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {matrix.shape}")
    if np.tril(matrix).any():
        raise ValueError("adjacency must be strictly upper-triangular (a DAG in topological order)")
    return int(np.count_nonzero(np.triu(matrix, k=2)))


def size_clusters(parameters: ArrayLike, *, min_gap: float = 2e6) -> np.ndarray:
    """Clusters of model size: runs of sorted parameter counts split where they jump.

    Two architectures are in the same cluster when the sorted parameter counts between
    them never jump by more than ``min_gap``. On NAS-Bench-101 the default 2 million
    splits the table at its empty intervals (no model between about 17 and 19 million
    parameters, and so on up): the "multiple clusters of models with respect to size"
    the paper sees in its Fig. S7.

    Args:
      parameters: (N,) parameter counts (or any size measure), no NaN.
      min_gap: smallest jump that separates two clusters, > 0, in the units of ``parameters``.

    Returns:
      (N,) int64 cluster labels 0, 1, ..., numbered from the smallest models up.
    """
    sizes = np.asarray(parameters, dtype=np.float64)
    if sizes.ndim != 1:
        raise ValueError(f"parameters must be a 1-D array, got shape {sizes.shape}")
    if np.isnan(sizes).any():
        raise ValueError("parameters contain NaN: drop those architectures first")
    if not min_gap > 0:
        raise ValueError(f"min_gap must be positive, got {min_gap}")
    order = np.argsort(sizes, kind="stable")
    breaks = np.concatenate([[0], np.diff(sizes[order]) > min_gap]).cumsum()
    labels = np.empty(sizes.size, dtype=np.int64)
    labels[order] = breaks
    return labels


# -- search-space reduction ----------------------------------------------------------------


def random_spaces(num_architectures: int, space_size: int, num_trials: int, *, seed: int = 0) -> np.ndarray:
    """Random search spaces, one per trial (the paper's "10 randomly selected subsets").

    Returns:
      (num_trials, space_size) int64 positions in ``0..num_architectures - 1``, each row
      drawn uniformly without replacement.
    """
    if num_trials < 1:
        raise ValueError(f"num_trials must be at least 1, got {num_trials}")
    if not 1 <= space_size <= num_architectures:
        raise ValueError(f"need 1 <= space_size <= num_architectures, got {space_size} and {num_architectures}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(num_architectures, size=space_size, replace=False) for _ in range(num_trials)])


def reduce_space(
    metric: ArrayLike, fraction: float, *, spaces: ArrayLike | None = None, seed: int = 0
) -> np.ndarray:
    """The top ``fraction`` of a search space by ``metric`` (the NNGP screen).

    Keeps ``max(1, round(fraction * S))`` of the S architectures of each space. Ties in
    ``metric`` at the boundary (NNGP accuracies are multiples of 1/m, so they are
    common) are broken uniformly at random with ``seed``, as a screen with no further
    information would.

    Args:
      metric: (N,) score, higher is better, no NaN.
      fraction: share of each space kept, in (0, 1].
      spaces: None (the whole of ``metric``), (S,) positions, or (T, S) one space per
        trial (:func:`random_spaces`).
      seed: seed of the tie-breaking.

    Returns:
      Positions into ``metric``, best first: (K,) for one space, (T, K) for T spaces.
    """
    scores = _vector(metric, "metric")
    rows = _spaces(spaces, scores.size)
    count = _kept(rows.shape[1], fraction)
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(rows, axis=1)
    best = np.argsort(-scores[shuffled], axis=1, kind="stable")[:, :count]
    kept = np.take_along_axis(shuffled, best, axis=1)
    return kept[0] if spaces is None or np.ndim(spaces) == 1 else kept


def random_reduction(spaces: ArrayLike, fraction: float, *, seed: int = 0) -> np.ndarray:
    """A random ``fraction`` of each space: the baseline of :func:`reduce_space`.

    Args:
      spaces: (S,) positions or (T, S) one space per trial.
      fraction: share kept, in (0, 1].
      seed: seed of the draws.

    Returns:
      (K,) or (T, K) positions, ``K = max(1, round(fraction * S))``, a uniform draw
      without replacement from each space.
    """
    rows = np.asarray(spaces)
    if rows.ndim not in (1, 2) or rows.shape[-1] == 0:
        raise ValueError(f"spaces must be (S,) or (T, S) positions with S >= 1, got shape {rows.shape}")
    count = _kept(rows.shape[-1], fraction)
    return np.random.default_rng(seed).permuted(np.atleast_2d(rows), axis=1)[:, :count].reshape(
        (*rows.shape[:-1], count)
    )


@dataclass(frozen=True)
class SearchCurve:
    """What random search found, per trial and search budget.

    Attributes:
      budgets: (B,) number of architectures trained (drawn) by the search.
      found: (T, B) ``truth`` of the architecture the search picked, per trial and budget.
      cost: (B,) cost of training the drawn architectures, averaged over the trials
        (zeros when no ``cost`` was given).
    """

    budgets: np.ndarray
    found: np.ndarray
    cost: np.ndarray

    @property
    def num_trials(self) -> int:
        return self.found.shape[0]

    def mean(self) -> np.ndarray:
        """(B,) mean found truth over the trials."""
        return self.found.mean(axis=0)

    def sem(self) -> np.ndarray:
        """(B,) standard error of :meth:`mean` (NaN for one trial)."""
        if self.num_trials < 2:
            return np.full(self.budgets.shape, np.nan)
        return self.found.std(axis=0, ddof=1) / math.sqrt(self.num_trials)

    def to_frame(self, *, extra_cost: float = 0.0, band: float = 0.8) -> pd.DataFrame:
        """One row per budget: ``budget``, ``cost`` (+ ``extra_cost``, e.g. the screen's),
        ``mean``, ``sem`` and the central ``band`` of the trials (``low``, ``high``)."""
        if not 0.0 < band < 1.0:
            raise ValueError(f"band must be in (0, 1), got {band}")
        low, high = np.quantile(self.found, [(1 - band) / 2, (1 + band) / 2], axis=0)
        return pd.DataFrame(
            {
                "budget": self.budgets,
                "cost": self.cost + extra_cost,
                "mean": self.mean(),
                "sem": self.sem(),
                "low": low,
                "high": high,
            }
        )


def random_search(
    search_metric: ArrayLike,
    truth: ArrayLike,
    budgets: ArrayLike,
    *,
    pool: ArrayLike | None = None,
    top_k: int = 1,
    num_trials: int = 100,
    seed: int = 0,
    cost: ArrayLike | None = None,
) -> SearchCurve:
    """Random search guided by a cheap metric, inside a pool of the space.

    Each trial visits the pool in a random order. At budget ``b`` the search has trained
    the first ``b`` architectures visited, keeps the ``top_k`` of them by
    ``search_metric`` (e.g. 12-epoch accuracy) and reports the best ``truth`` among them
    (``top_k=1``: the truth of the architecture it would pick; the paper's discovered
    performance uses ``top_k=10``). Ties in ``search_metric`` go to the architecture
    visited first, i.e. at random. The budgets of one trial are nested (the first ``b``
    architectures of one random order), so a trial's curve moves only when the search
    metric meets a new best; it may move down, where that metric misjudges.

    Args:
      search_metric, truth: (N,) arrays.
      budgets: (B,) increasing integers in ``1..pool size``.
      pool: positions the search may draw: None (all N), (P,) one pool for every trial
        (e.g. :func:`reduce_space` of one space), or (num_trials, P) one per trial (e.g.
        :func:`reduce_space` or :func:`random_reduction` of :func:`random_spaces`).
      top_k: architectures kept by the search metric, >= 1.
      num_trials: random orders (rows of a 2-D ``pool``, if given).
      seed: seed of the orders.
      cost: (N,) cost of obtaining ``search_metric`` for each architecture (e.g.
        :func:`nngp_lib.cost.training_flops`), summed over the drawn ones.

    Returns:
      A :class:`SearchCurve`.
    """
    scores = _vector(search_metric, "search_metric")
    values = _vector(truth, "truth")
    if scores.size != values.size:
        raise ValueError(f"search_metric and truth must have the same length, got {scores.size} and {values.size}")
    size = scores.size
    costs = np.zeros(size) if cost is None else _vector(cost, "cost")
    if costs.size != size:
        raise ValueError(f"cost must have one entry per architecture ({size}), got {costs.size}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if num_trials < 1:
        raise ValueError(f"num_trials must be at least 1, got {num_trials}")

    pools = np.arange(size) if pool is None else np.asarray(pool)
    if pools.ndim not in (1, 2) or (pools.ndim == 2 and pools.shape[0] != num_trials):
        raise ValueError(f"pool must be (P,) or (num_trials={num_trials}, P), got shape {pools.shape}")
    if pools.shape[-1] == 0 or not np.issubdtype(pools.dtype, np.integer):
        raise ValueError("pool must hold at least one integer position")
    if pools.min() < 0 or pools.max() >= size:
        raise ValueError(f"pool positions must lie in 0..{size - 1}")
    if (np.diff(np.sort(pools, axis=-1), axis=-1) == 0).any():
        raise ValueError("pool positions must be distinct within a trial")
    if pools.ndim == 1:
        pools = np.broadcast_to(pools, (num_trials, pools.size))

    steps = np.asarray(budgets)
    if steps.ndim != 1 or steps.size == 0 or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError("budgets must be a non-empty 1-D array of integers")
    if steps[0] < 1 or steps[-1] > pools.shape[1] or np.any(np.diff(steps) <= 0):
        raise ValueError(
            f"budgets must increase strictly within 1..{pools.shape[1]} (the pool size), got {steps.tolist()}"
        )

    orders = np.random.default_rng(seed).permuted(pools, axis=1)
    found = np.empty((num_trials, steps.size))
    spent = np.empty(steps.size)
    for column, budget in enumerate(steps):
        drawn = orders[:, :budget]
        # stable sort: among equal scores the first visited wins, a random choice
        top = np.take_along_axis(drawn, np.argsort(-scores[drawn], axis=1, kind="stable")[:, :top_k], axis=1)
        found[:, column] = values[top].max(axis=1)
        spent[column] = costs[drawn].sum(axis=1).mean()
    return SearchCurve(budgets=steps.copy(), found=found, cost=spent)


NO_REDUCTION = "no reduction"


def reduction_curves(
    screen: ArrayLike,
    signals: dict,
    truth: ArrayLike,
    spaces: ArrayLike,
    *,
    fractions: Sequence[float] = (0.3, 0.1),
    costs: dict | None = None,
    screen_cost: float = 0.0,
    top_k: int = 1,
    num_budgets: int = 25,
    seed: int = 0,
) -> pd.DataFrame:
    """The paper's Fig. 8: random search in each space, whole or reduced to a fraction.

    Every space of ``spaces`` is searched three ways per fraction p: whole
    (``"no reduction"``), in its top p by ``screen`` (``"NNGP top 30%"``,
    :func:`reduce_space`) and in a random p (``"random 30%"``, :func:`random_reduction`),
    each with every search signal of ``signals`` (:func:`random_search`, one trial per
    space). Budgets run geometrically from 1 to the pool's size, plus the size of every
    smaller pool, so that strategies meet at equal training budgets.

    Args:
      screen: (N,) the screening score (higher is better).
      signals: search signal name (e.g. epochs of training) -> (N,) its metric.
      truth: (N,) what the search is judged on.
      spaces: (T, S) one search space per trial (:func:`random_spaces`).
      fractions: shares of each space the reductions keep, each in (0, 1].
      costs: signal name -> (N,) cost of that signal per architecture (summed over the
        drawn ones); None costs nothing.
      screen_cost: cost of screening one space, added to the screened strategies' cost.
      top_k, num_budgets, seed: the search's (:func:`random_search`); ``seed`` also
        breaks the screen's ties and ``seed + 1`` draws the random reductions.

    Returns:
      One row per (signal, strategy, budget): ``signal``, ``strategy``, ``pool_size``
      and :meth:`SearchCurve.to_frame`'s columns; strategies in the order
      ``"no reduction"``, then per fraction ``"NNGP top p"`` and ``"random p"``.
    """
    rows = np.asarray(spaces)
    if rows.ndim != 2:
        raise ValueError(f"spaces must be (T, S), one search space per trial (random_spaces), got shape {rows.shape}")
    if num_budgets < 1:
        raise ValueError(f"num_budgets must be at least 1, got {num_budgets}")
    if not signals:
        raise ValueError("signals is empty: pass at least one search signal, e.g. {12: 12-epoch accuracy}")
    pools = {NO_REDUCTION: rows}
    for fraction in fractions:
        pools[f"NNGP top {fraction:.0%}"] = reduce_space(screen, fraction, spaces=rows, seed=seed)
        pools[f"random {fraction:.0%}"] = random_reduction(rows, fraction, seed=seed + 1)
    pool_sizes = sorted({pool.shape[1] for pool in pools.values()})
    frames = []
    for name, signal in signals.items():
        cost = None if costs is None else costs[name]
        for strategy, pool in pools.items():
            size = pool.shape[1]
            budgets = np.unique(np.r_[np.geomspace(1, size, num_budgets).round(), [p for p in pool_sizes if p <= size]])
            curve = random_search(signal, truth, budgets.astype(int), pool=pool, top_k=top_k,
                                  num_trials=rows.shape[0], seed=seed, cost=cost)
            frame = curve.to_frame(extra_cost=screen_cost if strategy.startswith("NNGP") else 0.0)
            frames.append(frame.assign(signal=name, strategy=strategy, pool_size=size))
    out = pd.concat(frames, ignore_index=True)
    return out[["signal", "strategy", "pool_size", *out.columns[:-3]]]


# -- hybrid metrics ------------------------------------------------------------------------


@dataclass(frozen=True)
class HybridMetric:
    """A linear combination of cheap metrics: ``features @ coef + intercept``.

    Attributes:
      coef: (p,) one weight per feature.
      intercept: the bias.
      names: the features' names, in order.
    """

    coef: np.ndarray
    intercept: float
    names: tuple[str, ...]

    def __call__(self, features: ArrayLike | pd.DataFrame) -> np.ndarray:
        """(N,) hybrid metric of (N, p) features (a DataFrame is read by ``names``)."""
        matrix = _features(features, self.names)
        if matrix.shape[1] != self.coef.size:
            raise ValueError(f"expected {self.coef.size} features {self.names}, got {matrix.shape[1]}")
        return matrix @ self.coef + self.intercept


def fit_hybrid(features: ArrayLike | pd.DataFrame, target: ArrayLike) -> HybridMetric:
    """Least-squares fit of ``target`` by a linear model of ``features`` with a bias.

    The paper fits 12-epoch accuracy by 4-epoch accuracy and one NNGP accuracy: three
    parameters with the bias.

    Args:
      features: (N, p) array, or a DataFrame whose columns are the features.
      target: (N,) the metric the hybrid imitates; N must exceed p.

    Returns:
      A :class:`HybridMetric`.
    """
    names = tuple(map(str, features.columns)) if isinstance(features, pd.DataFrame) else None
    matrix = _features(features, names)
    goal = _vector(target, "target")
    if goal.size != matrix.shape[0]:
        raise ValueError(f"features have {matrix.shape[0]} rows but target has {goal.size}")
    if matrix.shape[0] <= matrix.shape[1]:
        raise ValueError(f"need more architectures than features to fit, got {matrix.shape[0]} for {matrix.shape[1]}")
    design = np.column_stack([matrix, np.ones(matrix.shape[0])])
    solution, *_ = np.linalg.lstsq(design, goal, rcond=None)
    names = names or tuple(f"x{i}" for i in range(matrix.shape[1]))
    return HybridMetric(coef=solution[:-1], intercept=float(solution[-1]), names=names)


def hybrid_split_scores(
    features: pd.DataFrame,
    target: ArrayLike,
    truth: ArrayLike,
    *,
    num_splits: int = 100,
    train_fraction: float = 0.5,
    seed: int = 0,
    score: Callable[[np.ndarray, np.ndarray], float] = kendall_tau,
) -> pd.DataFrame:
    """Score a hybrid on architectures it was not fitted on, against each feature alone.

    Each split draws ``round(train_fraction * N)`` architectures, fits the hybrid of all
    ``features`` to ``target`` on them (:func:`fit_hybrid`), and scores, on the other
    architectures only, the hybrid and every feature alone against ``truth``. The
    features alone need no fit: the scores used here (rank correlations) do not change
    under an increasing map.

    Args:
      features: (N, p) DataFrame, one column per cheap metric (higher is better).
      target: (N,) the metric the hybrid is fitted to (the paper: 12-epoch accuracy).
      truth: (N,) the ground truth it is scored against (108-epoch accuracy).
      num_splits: random splits, >= 1.
      train_fraction: share of architectures used for fitting, in (0, 1).
      seed: seed of the splits.
      score: ``score(metric, truth) -> float`` on the held-out architectures.

    Returns:
      DataFrame with ``num_splits`` rows and one column per feature, then ``'hybrid'``.
    """
    if not isinstance(features, pd.DataFrame):
        raise TypeError("features must be a DataFrame with one named column per metric")
    if "hybrid" in features.columns:
        raise ValueError("a feature may not be named 'hybrid' (the result's own column)")
    matrix = _features(features, tuple(features.columns))
    goal, values = _vector(target, "target"), _vector(truth, "truth")
    size = matrix.shape[0]
    if not goal.size == values.size == size:
        raise ValueError(f"features, target and truth must have the same length, got {size}, {goal.size}, {values.size}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if num_splits < 1:
        raise ValueError(f"num_splits must be at least 1, got {num_splits}")
    num_fit = round(train_fraction * size)
    if num_fit <= matrix.shape[1] or size - num_fit < 2:
        raise ValueError(
            f"{size} architectures are too few to split {train_fraction:.0%}/{1 - train_fraction:.0%} "
            f"with {matrix.shape[1]} features: need more than {matrix.shape[1]} to fit and 2 to score"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_splits):
        order = rng.permutation(size)
        fit, held_out = order[:num_fit], order[num_fit:]
        hybrid = fit_hybrid(features.iloc[fit], goal[fit])
        row = {name: score(matrix[held_out, j], values[held_out]) for j, name in enumerate(features.columns)}
        row["hybrid"] = score(hybrid(matrix[held_out]), values[held_out])
        rows.append(row)
    return pd.DataFrame(rows, columns=[*map(str, features.columns), "hybrid"])


# -- reading small samples ---------------------------------------------------------------


def tau_null_sd(num_architectures: int) -> float:
    """Standard deviation of Kendall's tau between two independent rankings of n items.

    ``sqrt(2 (2n + 5) / (9 n (n - 1)))`` (Kendall, 1938; exact for untied data): a tau
    within about two of these of another is indistinguishable from it by chance on a
    sample of n architectures. Ties make the true spread slightly larger.
    """
    n = num_architectures
    if n < 2:
        raise ValueError(f"need at least 2 architectures, got {n}")
    return math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))


# -- helpers -------------------------------------------------------------------------------


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains {int(np.isnan(array).sum())} NaN: drop unscored architectures first")
    return array


def _features(features: ArrayLike | pd.DataFrame, names: Sequence[str] | None) -> np.ndarray:
    if isinstance(features, pd.DataFrame):
        if names is not None:
            missing = [name for name in names if name not in features.columns]
            if missing:
                raise ValueError(f"features lack the columns {missing}")
            features = features[list(names)]
        matrix = features.to_numpy(dtype=np.float64)
    else:
        matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"features must be (N, p) with p >= 1, got shape {matrix.shape}")
    if np.isnan(matrix).any():
        raise ValueError(f"features contain {int(np.isnan(matrix).sum())} NaN: drop unscored architectures first")
    return matrix


def _spaces(spaces: ArrayLike | None, size: int) -> np.ndarray:
    """(T, S) positions from None (everything), (S,) or (T, S), checked against ``size``."""
    rows = np.arange(size)[None, :] if spaces is None else np.atleast_2d(np.asarray(spaces))
    if rows.ndim != 2 or rows.shape[1] == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"spaces must be (S,) or (T, S) integer positions with S >= 1, got shape {rows.shape}")
    if rows.min() < 0 or rows.max() >= size:
        raise ValueError(f"space positions must lie in 0..{size - 1}")
    return rows


def _kept(num_architectures: int, fraction: float) -> int:
    if num_architectures < 1:
        raise ValueError(f"need at least one architecture, got {num_architectures}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * num_architectures))
