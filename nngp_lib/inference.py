"""Regularized NNGP inference: the last step of the paper's Algorithm 1.

Given Monte-Carlo NNGP kernels ``K_tt`` (n, n) between the training images and
``K_vt`` (m, n) between validation and training images, the NNGP posterior mean
for the validation images is (paper, eq. 2-3)::

    mean(eps) = K_vt (K_tt + reg(eps) I)^{-1} Y,    reg(eps) = eps * trace(K_tt) / n,
    label     = argmax over classes of mean(eps),

where ``Y`` (n, C) holds the one-hot training labels shifted to mean zero (one-hot
minus 1/C, i.e. minus 0.1 for CIFAR-10). Dividing by the mean eigenvalue
``trace(K_tt) / n`` makes ``eps`` dimensionless, so one grid serves every
architecture; the paper's grid is ``numpy.logspace(-7, 2, 20)``.

One eigendecomposition for the whole sweep
------------------------------------------
With ``K_tt = U diag(lam) U^T``, every ``eps`` costs one small product::

    mean(eps) = (K_vt U) @ ((U^T Y) / (lam + reg(eps))[:, None]),

so :func:`nngp_inference` factors ``K_tt`` once and evaluates all ``eps`` together,
instead of one Cholesky solve per ``eps`` as the paper's code does (both cost
O(n^3); see :mod:`nngp_lib.cost` for the paper's count).

Numerics. The computation is in NumPy float64 whatever the input dtype (NumPy or
JAX, float32 or float64). The smallest regularizer, ``1e-7`` times the mean
eigenvalue, lies below float32 resolution (about ``6e-8`` relative to the largest
eigenvalue, which for NNGP kernels is many times the mean), so in float32 the bottom
of the grid would not be resolved at all; n is at most a few thousand, where a
float64 ``eigh`` on the CPU takes seconds to about a minute, once per architecture.

Failed ``eps``. ``K_tt`` is positive semi-definite in exact arithmetic (a mean of
Gram matrices), and rank-deficient whenever n exceeds (ensemble number x 512), so
its computed spectrum has eigenvalues at round-off level, some slightly negative
(float32 accumulation of the kernel puts that level near ``1e-7 * max(lam)``). We
do **not** clip them to zero: an ``eps`` whose ``reg`` does not lift the smallest
eigenvalue clearly above round-off makes ``K_tt + reg I`` numerically singular or
indefinite, which is exactly where the paper's Cholesky solve fails and its code
skips that ``eps``. Clipping would instead turn those solves into numbers dominated
by amplified round-off. Concretely, an ``eps`` *fails* when
``min(lam) + reg <= n * float64_eps * max|lam|`` (the usual numerical-rank
tolerance) or when its predictions are not finite; its accuracy is NaN, and the
best accuracy ignores it. A non-finite or all-zero kernel fails every ``eps``: the
best accuracy is then NaN and a ``RuntimeWarning`` is issued, never an exception,
so one bad architecture cannot stop a batch.

Choosing ``eps``: the paper's number and an honest one
------------------------------------------------------
The paper reports, for each architecture, the **best validation accuracy over the
20 values of eps** (its code keeps the maximum), i.e. ``eps`` is chosen by looking
at the validation labels. That number is optimistically biased: it is a maximum
of 20 noisy accuracies of the same validation set (with m = 1000, one accuracy has
a standard error near 1.5 points). :attr:`InferenceResult.best_accuracy` is that
number, kept for reproduction.

The honest variant chooses ``eps`` without validation labels, by exact
leave-one-out (LOO) on the training set. For fixed ``reg`` and ``G = (K_tt + reg
I)^{-1}``, the prediction for training point i from the other n - 1 points has
the closed form (Rasmussen & Williams 2006, eq. 5.12)::

    loo_mean_i = y_i - (G Y)_i / G_ii,

and both ``G Y = U ((U^T Y) / (lam + reg))`` and ``G_ii = sum_j U_ij^2 / (lam_j +
reg)`` come from the same eigendecomposition, so LOO over the whole grid costs
O(L n^2 C) on top of it, no refits. ``reg`` stays the full-training-set value
(``trace(K_tt)/n`` is a fixed scale, not refitted per left-out point). The
``eps`` with the highest LOO accuracy is selected, and
:attr:`InferenceResult.loo_val_accuracy` is the validation accuracy there: an
unbiased estimate of the accuracy of a procedure that never saw validation labels.

Ties. Accuracies are multiples of 1/m (or 1/n) and tie often; among tied ``eps``
the largest (most regularized, best conditioned) is chosen, for both selections.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# The paper's grid of dimensionless regularizers (read-only, shared by every call).
DEFAULT_EPS = np.logspace(-7, 2, 20)
DEFAULT_EPS.flags.writeable = False

NUM_CLASSES = 10


def centered_one_hot(labels: ArrayLike, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """One-hot targets shifted to mean zero over classes: ``one_hot(labels) - 1/C``.

    Args:
      labels: (n,) integer class labels in ``[0, num_classes)``.
      num_classes: C.

    Returns:
      (n, C) float64 array; for C = 10 the entries are 0.9 and -0.1.
    """
    labels = _labels(labels, num_classes, "labels")
    targets = np.full((labels.size, num_classes), -1.0 / num_classes)
    targets[np.arange(labels.size), labels] += 1.0
    return targets


@dataclass(frozen=True)
class InferenceResult:
    """The outcome of an ``eps`` sweep of NNGP inference for one architecture.

    Attributes:
      eps: (L,) the dimensionless regularizers swept.
      accuracy: (L,) validation accuracy at each ``eps``; NaN where that ``eps``
        failed numerically (see the module docstring).
      best_accuracy: the paper's number, ``nanmax(accuracy)`` (eps chosen on the
        validation labels, optimistically biased); NaN if every ``eps`` failed.
      best_eps: the ``eps`` attaining it (the largest among ties); NaN if none.
      loo_accuracy: (L,) leave-one-out accuracy on the training set at each ``eps``;
        all NaN when leave-one-out was not requested.
      loo_eps: the ``eps`` with the best leave-one-out accuracy (largest among ties).
      loo_val_accuracy: validation accuracy at ``loo_eps``: the honest number, eps
        chosen without validation labels.
      predictions: (m,) predicted validation labels at ``best_eps`` when requested,
        else None.
    """

    eps: np.ndarray
    accuracy: np.ndarray
    best_accuracy: float
    best_eps: float
    loo_accuracy: np.ndarray
    loo_eps: float
    loo_val_accuracy: float
    predictions: np.ndarray | None = None

    @property
    def failed(self) -> np.ndarray:
        """(L,) bool: which ``eps`` failed numerically."""
        return np.isnan(self.accuracy)


def nngp_inference(
    k_train_train: ArrayLike,
    k_val_train: ArrayLike,
    y_train: ArrayLike,
    y_val: ArrayLike,
    *,
    eps: ArrayLike = DEFAULT_EPS,
    num_classes: int = NUM_CLASSES,
    leave_one_out: bool = True,
    return_predictions: bool = False,
) -> InferenceResult:
    """Validation accuracy of NNGP inference over a grid of regularizers.

    Args:
      k_train_train: (n, n) symmetric kernel between training inputs.
      k_val_train: (m, n) kernel between validation and training inputs.
      y_train: (n,) integer training labels in ``[0, num_classes)``.
      y_val: (m,) integer validation labels in ``[0, num_classes)``.
      eps: (L,) dimensionless regularizers, ``reg = eps * trace(K_tt) / n``;
        non-negative; the paper's ``numpy.logspace(-7, 2, 20)`` by default.
      num_classes: C.
      leave_one_out: also select ``eps`` by exact leave-one-out on the training set
        (the honest variant; about ``L n^2 C`` extra FLOPs).
      return_predictions: keep the (m,) predicted labels at ``best_eps``.

    Returns:
      An :class:`InferenceResult`. Numerically failed ``eps`` give NaN accuracies;
      if all fail the best accuracies are NaN and a ``RuntimeWarning`` is issued.

    Raises:
      ValueError: inconsistent shapes, an asymmetric ``K_tt``, labels out of range
        or a bad ``eps`` grid (one line naming the problem).
    """
    k_tt, k_vt, eps = _check_kernels(k_train_train, k_val_train, eps)
    n, m = k_tt.shape[0], k_vt.shape[0]
    y_train = _labels(y_train, num_classes, "y_train", size=n)
    y_val = _labels(y_val, num_classes, "y_val", size=m)
    num_eps = eps.size

    accuracy = np.full(num_eps, np.nan)
    loo_accuracy = np.full(num_eps, np.nan)
    predictions = None
    system = _RegularizedSystem.from_kernel(k_tt, eps)
    if system is not None:
        targets = centered_one_hot(y_train, num_classes)
        projected_targets = system.vectors.T @ targets  # U^T Y, (n, C)
        weighted = projected_targets[None] * system.inverse[..., None]  # (L, n, C)
        val_mean = np.matmul(k_vt @ system.vectors, weighted)  # (L, m, C)
        ok = system.ok & np.isfinite(val_mean).all(axis=(1, 2))
        val_labels = val_mean.argmax(axis=-1)
        accuracy = np.where(ok, (val_labels == y_val).mean(axis=1), np.nan)
        if leave_one_out:
            loo_accuracy = _loo_accuracy(system, weighted, targets, y_train, ok)
        if return_predictions and not np.isnan(accuracy).all():
            predictions = val_labels[_argmax_last(accuracy)]

    best = _argmax_last(accuracy)
    loo_best = _argmax_last(loo_accuracy)
    if best is None:
        warnings.warn(
            "NNGP inference failed for every eps (kernel non-finite, zero or indefinite): "
            "best accuracy is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return InferenceResult(
        eps=eps,
        accuracy=accuracy,
        best_accuracy=float(accuracy[best]) if best is not None else float("nan"),
        best_eps=float(eps[best]) if best is not None else float("nan"),
        loo_accuracy=loo_accuracy,
        loo_eps=float(eps[loo_best]) if loo_best is not None else float("nan"),
        loo_val_accuracy=float(accuracy[loo_best]) if loo_best is not None else float("nan"),
        predictions=predictions,
    )


def posterior_mean(
    k_train_train: ArrayLike,
    k_val_train: ArrayLike,
    y_train: ArrayLike,
    *,
    eps: ArrayLike = DEFAULT_EPS,
    num_classes: int = NUM_CLASSES,
) -> np.ndarray:
    """NNGP posterior mean ``K_vt (K_tt + reg I)^{-1} Y`` for every ``eps``.

    Args: as :func:`nngp_inference`.

    Returns:
      (L, m, C) float64; the slices of numerically failed ``eps`` are NaN.
    """
    k_tt, k_vt, eps = _check_kernels(k_train_train, k_val_train, eps)
    y_train = _labels(y_train, num_classes, "y_train", size=k_tt.shape[0])
    mean = np.full((eps.size, k_vt.shape[0], num_classes), np.nan)
    system = _RegularizedSystem.from_kernel(k_tt, eps)
    if system is not None:
        projected_targets = system.vectors.T @ centered_one_hot(y_train, num_classes)
        weighted = projected_targets[None] * system.inverse[..., None]
        mean = np.matmul(k_vt @ system.vectors, weighted)
        mean[~system.ok] = np.nan
    return mean


@dataclass(frozen=True)
class _RegularizedSystem:
    """``K_tt = U diag(lam) U^T`` with ``1 / (lam + reg(eps))`` for every eps."""

    vectors: np.ndarray  # U, (n, n)
    inverse: np.ndarray  # (L, n): 1 / (lam + reg), 0 where the eps failed
    ok: np.ndarray  # (L,) bool

    @classmethod
    def from_kernel(cls, k_tt: np.ndarray, eps: np.ndarray) -> _RegularizedSystem | None:
        """None when no eps can succeed (non-finite or zero kernel)."""
        if not np.isfinite(k_tt).all():
            return None
        n = k_tt.shape[0]
        lam, vectors = np.linalg.eigh(k_tt)
        scale = np.abs(lam).max()
        if not scale > 0:
            return None
        reg = eps * (np.trace(k_tt) / n)
        shifted = lam[None, :] + reg[:, None]
        ok = shifted.min(axis=1) > n * np.finfo(np.float64).eps * scale
        inverse = np.divide(1.0, shifted, out=np.zeros_like(shifted), where=ok[:, None])
        return cls(vectors=vectors, inverse=inverse, ok=ok)


def _loo_accuracy(
    system: _RegularizedSystem,
    weighted: np.ndarray,
    targets: np.ndarray,
    y_train: np.ndarray,
    ok: np.ndarray,
) -> np.ndarray:
    """(L,) exact leave-one-out training accuracy, NaN where ``ok`` is False."""
    dual = np.matmul(system.vectors, weighted)  # G Y, (L, n, C)
    diagonal = (system.vectors**2) @ system.inverse.T  # G_ii, (n, L)
    with np.errstate(divide="ignore", invalid="ignore"):
        loo_mean = targets[None] - dual / diagonal.T[..., None]
    ok = ok & np.isfinite(loo_mean).all(axis=(1, 2))
    return np.where(ok, (loo_mean.argmax(axis=-1) == y_train).mean(axis=1), np.nan)


def _argmax_last(values: np.ndarray) -> int | None:
    """Index of the largest non-NaN value, the last one among ties; None if all NaN."""
    finite = ~np.isnan(values)
    if not finite.any():
        return None
    best = np.max(values[finite])
    return int(np.flatnonzero(finite & (values == best))[-1])


def _check_kernels(
    k_train_train: ArrayLike, k_val_train: ArrayLike, eps: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k_tt = np.asarray(k_train_train, dtype=np.float64)
    k_vt = np.asarray(k_val_train, dtype=np.float64)
    eps = np.array(eps, dtype=np.float64, ndmin=1)
    if k_tt.ndim != 2 or k_tt.shape[0] != k_tt.shape[1] or k_tt.shape[0] == 0:
        raise ValueError(f"k_train_train must be a non-empty square (n, n) matrix, got shape {k_tt.shape}")
    n = k_tt.shape[0]
    if k_vt.ndim != 2 or k_vt.shape[1] != n or k_vt.shape[0] == 0:
        raise ValueError(f"k_val_train must have shape (m, {n}) with m > 0, got {k_vt.shape}")
    if eps.ndim != 1 or eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"eps must be a non-empty 1-D grid of finite values >= 0, got {eps!r}")
    finite = np.isfinite(k_tt)
    if finite.all():
        # eigh reads one triangle only; an asymmetric input is a caller's bug, not noise.
        tolerance = 1e-4 * np.abs(k_tt).max()
        if np.abs(k_tt - k_tt.T).max() > tolerance:
            raise ValueError("k_train_train is not symmetric: pass the train-train kernel K_tt, not K_vt or K_tt^T")
        k_tt = 0.5 * (k_tt + k_tt.T)
    return k_tt, k_vt, eps


def _labels(labels: ArrayLike, num_classes: int, name: str, size: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or (size is not None and labels.size != size):
        expected = f"({size},)" if size is not None else "1-D"
        raise ValueError(f"{name} must have shape {expected} to match the kernel, got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.intp, copy=False)
