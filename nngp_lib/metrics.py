"""How well a cheap performance metric predicts the ground truth (paper, section 2.2).

Plain functions of two equally long 1-D arrays, one entry per architecture:
``metric`` (e.g. NNGP validation accuracy, or accuracy after 4 epochs of training)
and ``truth`` (the ground truth, e.g. validation accuracy after 108 epochs).

Common conventions:

* Length mismatch or non-1-D input raises ``ValueError`` (one line).
* NaN: ``nan_policy='propagate'`` (default of the correlation functions, as in
  scipy) returns NaN if any pair holds a NaN; ``'omit'`` drops those pairs;
  ``'raise'`` raises ``ValueError``.
* Degenerate input (fewer than two pairs, or a constant array) gives NaN, as scipy
  does, without a warning.

Definitions chosen (the paper's equations were lost from our copy of its text; the
prose and the authors' released colab fix them):

* :func:`kendall_tau` is Kendall's tau-b, ``(P - Q) / sqrt((P + Q + T) (P + Q +
  U))``: the paper counts concordant pairs P, discordant pairs Q "and the number of
  ties in each of the orderings T and U", which only tau-b uses (tau-a has no tie
  terms), and the colab calls ``scipy.stats.kendalltau`` whose default is tau-b.
  Ties matter here: NNGP accuracies are multiples of 1/m.
* :func:`pqetp` is the AUROC of ``metric`` for the binary label ``truth >
  threshold`` (strict: "whether the ground-truth validation accuracy of the network
  *exceeds* the threshold"; the colab uses ``ground_truth > threshold``).
* :func:`discovered_performance` is the best ``truth`` among the top-k by
  ``metric`` (k = 10 "throughout the paper"), in random subsets of fixed size.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

NanPolicy = Literal["propagate", "omit", "raise"]


def kendall_tau(metric: ArrayLike, truth: ArrayLike, *, nan_policy: NanPolicy = "propagate") -> float:
    """Kendall's tau-b between ``metric`` and ``truth`` (paper, eq. 6).

    ``tau_b = (P - Q) / sqrt((P + Q + T) (P + Q + U))`` with P concordant and Q
    discordant pairs, T pairs tied only in ``metric`` and U pairs tied only in
    ``truth`` (pairs tied in both count in neither). O(N log N) via scipy.

    Args:
      metric, truth: (N,) arrays.
      nan_policy: see the module docstring.

    Returns:
      tau in [-1, 1]; NaN for fewer than two pairs or a constant input.
    """
    pair = _paired(metric, truth, nan_policy)
    if pair is None:
        return float("nan")
    return float(scipy.stats.kendalltau(*pair, variant="b").statistic)


def pearson(metric: ArrayLike, truth: ArrayLike, *, nan_policy: NanPolicy = "propagate") -> float:
    """Pearson's correlation coefficient (the paper's "correlation coefficient").

    Returns NaN for fewer than two pairs or a constant input.
    """
    pair = _paired(metric, truth, nan_policy)
    if pair is None:
        return float("nan")
    return float(scipy.stats.pearsonr(*pair).statistic)


def spearman(metric: ArrayLike, truth: ArrayLike, *, nan_policy: NanPolicy = "propagate") -> float:
    """Spearman's rank correlation (Pearson's of average ranks).

    Returns NaN for fewer than two pairs or a constant input.
    """
    pair = _paired(metric, truth, nan_policy)
    if pair is None:
        return float("nan")
    return float(scipy.stats.spearmanr(*pair).statistic)


def pqetp(
    metric: ArrayLike,
    truth: ArrayLike,
    threshold: ArrayLike,
    *,
    nan_policy: NanPolicy = "propagate",
) -> float | np.ndarray:
    """Prediction Quality for Exceedance of Threshold Performance (PQETP).

    The area under the ROC curve of ``metric`` used as a score for the binary label
    ``truth > threshold``: the probability that a random architecture above the
    threshold has a higher ``metric`` than a random one at or below it, ties in
    ``metric`` counting one half (equal to ``sklearn.metrics.roc_auc_score``).
    Computed for all thresholds at once from one ranking (Mann-Whitney U).

    Args:
      metric, truth: (N,) arrays.
      threshold: a scalar or an array of thresholds of any shape.
      nan_policy: see the module docstring (NaN thresholds give NaN).

    Returns:
      A float for a scalar threshold, else an array shaped like ``threshold``.
      NaN where one of the two classes is empty (every ``truth`` above, or none
      above, the threshold), since the AUROC is then undefined.
    """
    thresholds = np.asarray(threshold, dtype=np.float64)
    result = np.full(thresholds.shape, np.nan)
    pair = _paired(metric, truth, nan_policy, allow_constant=True)
    if pair is not None:
        scores, labels_source = pair
        size = scores.size
        ranks = scipy.stats.rankdata(scores)  # average ranks for ties
        # Architectures above a threshold are a prefix of the truth-descending order.
        descending = np.argsort(-labels_source, kind="stable")
        rank_prefix_sums = np.concatenate([[0.0], np.cumsum(ranks[descending])])
        num_pos = size - np.searchsorted(np.sort(labels_source), thresholds, side="right")
        num_neg = size - num_pos
        defined = (num_pos > 0) & (num_neg > 0) & ~np.isnan(thresholds)
        pos, neg = num_pos[defined], num_neg[defined]
        u_statistic = rank_prefix_sums[pos] - pos * (pos + 1) / 2.0
        result[defined] = u_statistic / (pos.astype(np.float64) * neg)
    return float(result) if result.ndim == 0 else result


def discovered_performance(
    metric: ArrayLike,
    truth: ArrayLike,
    subset_size: int,
    *,
    top_k: int = 10,
    num_trials: int = 10,
    seed: int = 0,
    nan_policy: Literal["omit", "raise"] = "raise",
) -> np.ndarray:
    """Best ``truth`` among the ``top_k`` architectures by ``metric``, in random subsets.

    Each trial draws ``subset_size`` architectures uniformly without replacement
    (as the paper's "10 randomly sampled 10k-subsets"), keeps the ``top_k`` by
    ``metric`` and records the largest ``truth`` among them. Ties in ``metric`` at
    the top-k boundary are broken uniformly at random (the subset comes in random
    order and the sort is stable), as a search with no further information would.
    The subsets depend only on ``seed``, ``num_trials``, ``subset_size`` and the
    number of architectures, so two metrics scored on the same architectures with
    the same seed are compared on identical subsets.

    Args:
      metric, truth: (N,) arrays.
      subset_size: architectures per trial, ``top_k <= subset_size <= N``.
      top_k: architectures kept per trial (the paper uses 10).
      num_trials: number of random subsets (the paper uses 10).
      seed: seed of ``numpy.random.default_rng``.
      nan_policy: architectures with NaN ``metric`` or ``truth`` (e.g. not
        scored): ``'raise'`` (default) raises ``ValueError``; ``'omit'`` removes
        them before subsets are drawn, so subsets come from the scored ones only.

    Returns:
      (num_trials,) float64, one discovered performance per trial. The paper plots
      the mean with the standard error as a band::

          trials = discovered_performance(nngp_acc, truth, 10_000)
          mean, sem = trials.mean(), trials.std(ddof=1) / np.sqrt(trials.size)
    """
    if nan_policy not in ("omit", "raise"):
        raise ValueError(f"nan_policy must be 'omit' or 'raise' for discovered_performance, got {nan_policy!r}")
    scores, values = _checked_arrays(metric, truth)
    scores, values = _drop_nan(scores, values, nan_policy)
    size = scores.size
    if not 1 <= top_k <= subset_size <= size:
        raise ValueError(
            f"need 1 <= top_k <= subset_size <= number of architectures, got top_k={top_k}, "
            f"subset_size={subset_size}, architectures={size}"
        )
    if num_trials < 1:
        raise ValueError(f"num_trials must be at least 1, got {num_trials}")
    rng = np.random.default_rng(seed)
    trials = np.empty(num_trials)
    for trial in range(num_trials):
        subset = rng.choice(size, size=subset_size, replace=False)  # in random order
        top = subset[np.argsort(-scores[subset], kind="stable")[:top_k]]
        trials[trial] = values[top].max()
    return trials


def _checked_arrays(metric: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(metric, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"metric and truth must be 1-D arrays, got shapes {x.shape} and {y.shape}")
    if x.size != y.size:
        raise ValueError(f"metric and truth must have the same length, got {x.size} and {y.size}")
    return x, y


def _drop_nan(x: np.ndarray, y: np.ndarray, nan_policy: str) -> tuple[np.ndarray, np.ndarray]:
    nan = np.isnan(x) | np.isnan(y)
    if nan.any():
        if nan_policy == "raise":
            raise ValueError(
                f"{int(nan.sum())} of {x.size} pairs contain NaN (unscored architectures?): "
                "drop them or pass nan_policy='omit'"
            )
        x, y = x[~nan], y[~nan]
    return x, y


def _paired(
    metric: ArrayLike, truth: ArrayLike, nan_policy: str, *, allow_constant: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validated float64 pairs, or None when the statistic is NaN by convention."""
    if nan_policy not in ("propagate", "omit", "raise"):
        raise ValueError(f"nan_policy must be 'propagate', 'omit' or 'raise', got {nan_policy!r}")
    x, y = _checked_arrays(metric, truth)
    if nan_policy == "propagate":
        if np.isnan(x).any() or np.isnan(y).any():
            return None
    else:
        x, y = _drop_nan(x, y, nan_policy)
    if x.size < 2:
        return None
    if not allow_constant and (np.all(x == x[0]) or np.all(y == y[0])):
        return None
    return x, y
