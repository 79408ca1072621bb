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

From features: low rank, centering, nested validation sets
-----------------------------------------------------------
A Monte-Carlo kernel of k networks with D features is ``K = F F^T / (k D)`` with ``F``
the (n, k D) features side by side, so its rank is at most ``r = k D``. When n > r,
:func:`nngp_inference_from_features` factors ``F`` (a thin SVD, O(n r^2)) instead of
``K`` (O(n^3)): with ``F = U S V^T`` the spectrum is ``S^2 / (k D)`` on ``U`` and exactly
0 on the rest, where ``(K + reg I)^{-1}`` is ``1 / reg``. The same eps then fails
exactly when the eigendecomposition's test says it should (its smallest eigenvalue is
0). At n = 3000 and r = 256 this is 40x faster and free of the round-off eigenvalues.

``center=True`` scores the *centered* kernel, beyond the paper: each network's
features minus their mean over the training images. Random ReLU features share a
large positive mean, which puts one near-constant direction at the top of the
spectrum (most of the trace) and dilutes what the regularizer sees; centering removes
it and costs no forward pass.

:meth:`InferenceResult.restricted` gives the result on a subset of the validation
images from the same fit, so settings that differ only in ``n_val`` share one
factorization.
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
      val_labels: (L, m) predicted validation labels at every ``eps`` (-1 where the eps
        failed) when requested, else None; what :meth:`restricted` needs.
    """

    eps: np.ndarray
    accuracy: np.ndarray
    best_accuracy: float
    best_eps: float
    loo_accuracy: np.ndarray
    loo_eps: float
    loo_val_accuracy: float
    predictions: np.ndarray | None = None
    val_labels: np.ndarray | None = None

    @property
    def failed(self) -> np.ndarray:
        """(L,) bool: which ``eps`` failed numerically."""
        return np.isnan(self.accuracy)

    def restricted(self, positions: ArrayLike, y_val: ArrayLike) -> InferenceResult:
        """The result on the validation images at ``positions`` (labels ``y_val``) alone:
        equal to running the inference with those rows of ``K_vt``, at no cost.

        Needs a result computed with ``return_val_labels=True``. The leave-one-out choice
        of eps depends on the training images only and carries over.
        """
        if self.val_labels is None:
            raise ValueError("restricted() needs a result computed with return_val_labels=True")
        positions = np.asarray(positions, dtype=np.intp)
        y_val = np.asarray(y_val)
        if positions.ndim != 1 or positions.size == 0 or y_val.shape != positions.shape:
            raise ValueError(f"positions and y_val must be matching non-empty 1-D arrays, got {positions.shape} and {y_val.shape}")
        labels = self.val_labels[:, positions]
        accuracy = np.where(self.failed, np.nan, (labels == y_val).mean(axis=1))
        return _result(self.eps, accuracy, self.loo_accuracy, labels, return_predictions=self.predictions is not None,
                       return_val_labels=True)


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
    return_val_labels: bool = False,
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
      return_val_labels: keep the (L, m) predicted labels at every eps (for
        :meth:`InferenceResult.restricted`).

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
    system = _RegularizedSystem.from_kernel(k_tt, eps)
    return _fit(system, k_vt, eps, y_train, y_val, num_classes, leave_one_out, return_predictions,
                return_val_labels)


def nngp_inference_from_features(
    f_train: ArrayLike,
    f_val: ArrayLike,
    y_train: ArrayLike,
    y_val: ArrayLike,
    *,
    center: bool = False,
    eps: ArrayLike = DEFAULT_EPS,
    num_classes: int = NUM_CLASSES,
    leave_one_out: bool = True,
    return_predictions: bool = False,
    return_val_labels: bool = False,
) -> InferenceResult:
    """:func:`nngp_inference` with the Monte-Carlo kernels of per-network features.

    Args:
      f_train: (k, n, D) penultimate features of the training images under k networks.
      f_val: (k, m, D) features of the validation images under the same networks.
      y_train, y_val, eps, num_classes, leave_one_out, return_predictions: as
        :func:`nngp_inference`.
      center: subtract from each network's features their mean over the training
        images first (the centered kernel; see the module docstring).
      return_val_labels: keep the (L, m) predicted labels (for :meth:`InferenceResult.restricted`).

    Returns:
      The :class:`InferenceResult` of the kernels ``nngp_from_features(f_train, f_val)``
      (of the centered features with ``center``). When n exceeds ``k * D`` the
      system is factored from the features (a thin SVD), otherwise from the kernel.
    """
    f_train = np.asarray(f_train, dtype=np.float64)
    f_val = np.asarray(f_val, dtype=np.float64)
    if f_train.ndim != 3 or f_val.ndim != 3 or f_train.shape[::2] != f_val.shape[::2] or 0 in f_train.shape:
        raise ValueError(
            f"features must be non-empty (k, n, D) and (k, m, D) with the same k and D, got {f_train.shape} and {f_val.shape}"
        )
    if center:
        mean = f_train.mean(axis=1, keepdims=True)
        f_train, f_val = f_train - mean, f_val - mean
    k, n, dim = f_train.shape
    scale = np.sqrt(k * dim)
    factor = f_train.transpose(1, 0, 2).reshape(n, k * dim) / scale  # K_tt = factor @ factor.T
    val_factor = f_val.transpose(1, 0, 2).reshape(f_val.shape[1], k * dim) / scale
    k_vt = val_factor @ factor.T
    eps = np.array(eps, dtype=np.float64, ndmin=1)
    if eps.ndim != 1 or eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"eps must be a non-empty 1-D grid of finite values >= 0, got {eps!r}")
    y_train = _labels(y_train, num_classes, "y_train", size=n)
    y_val = _labels(y_val, num_classes, "y_val", size=k_vt.shape[0])
    if n > k * dim:
        system = _RegularizedSystem.from_factor(factor, eps)
    else:
        k_tt = factor @ factor.T
        system = _RegularizedSystem.from_kernel(0.5 * (k_tt + k_tt.T), eps)
    return _fit(system, k_vt, eps, y_train, y_val, num_classes, leave_one_out, return_predictions,
                return_val_labels)


def _fit(system, k_vt, eps, y_train, y_val, num_classes, leave_one_out, return_predictions,
         return_val_labels) -> InferenceResult:
    """The eps sweep on a factored system: validation and leave-one-out accuracies."""
    num_eps, m = eps.size, k_vt.shape[0]
    accuracy = np.full(num_eps, np.nan)
    loo_accuracy = np.full(num_eps, np.nan)
    val_labels = np.full((num_eps, m), -1)
    if system is not None:
        targets = centered_one_hot(y_train, num_classes)
        dual = system.solve(targets)  # (L, n, C): (K_tt + reg I)^{-1} Y
        # K_vt is orthogonal to the null space of K_tt, so only U's part of the dual acts.
        projected = system.vectors.T @ targets  # U^T Y, (r, C)
        val_mean = np.matmul(k_vt @ system.vectors, projected[None] * system.inverse[..., None])  # (L, m, C)
        ok = system.ok & np.isfinite(val_mean).all(axis=(1, 2))
        val_labels = np.where(ok[:, None], val_mean.argmax(axis=-1), -1)
        accuracy = np.where(ok, (val_labels == y_val).mean(axis=1), np.nan)
        if leave_one_out:
            loo_accuracy = _loo_accuracy(system, dual, targets, y_train, ok)
    if system is None or np.isnan(accuracy).all():
        warnings.warn(
            "NNGP inference failed for every eps (kernel non-finite, zero or indefinite): "
            "best accuracy is NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    return _result(eps, accuracy, loo_accuracy, val_labels, return_predictions, return_val_labels)


def _result(eps, accuracy, loo_accuracy, val_labels, return_predictions, return_val_labels) -> InferenceResult:
    best = _argmax_last(accuracy)
    loo_best = _argmax_last(loo_accuracy)
    return InferenceResult(
        eps=eps,
        accuracy=accuracy,
        best_accuracy=float(accuracy[best]) if best is not None else float("nan"),
        best_eps=float(eps[best]) if best is not None else float("nan"),
        loo_accuracy=loo_accuracy,
        loo_eps=float(eps[loo_best]) if loo_best is not None else float("nan"),
        loo_val_accuracy=float(accuracy[loo_best]) if loo_best is not None else float("nan"),
        predictions=val_labels[best] if return_predictions and best is not None else None,
        val_labels=val_labels if return_val_labels else None,
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
        mean = np.matmul(k_vt @ system.vectors, projected_targets[None] * system.inverse[..., None])
        mean[~system.ok] = np.nan
    return mean


@dataclass(frozen=True)
class _RegularizedSystem:
    """``K_tt = U diag(lam) U^T`` (U: (n, r), r <= n; lam = 0 on the rest) with
    ``1 / (lam + reg(eps))`` on U and ``1 / reg(eps)`` on the null space, for every eps."""

    vectors: np.ndarray  # U, (n, r)
    inverse: np.ndarray  # (L, r): 1 / (lam + reg), 0 where the eps failed
    null_inverse: np.ndarray  # (L,): 1 / reg where r < n and the eps succeeded, else 0
    ok: np.ndarray  # (L,) bool

    @classmethod
    def from_kernel(cls, k_tt: np.ndarray, eps: np.ndarray) -> _RegularizedSystem | None:
        """None when no eps can succeed (non-finite or zero kernel)."""
        if not np.isfinite(k_tt).all():
            return None
        lam, vectors = np.linalg.eigh(k_tt)
        return cls._build(lam, vectors, k_tt.shape[0], np.trace(k_tt), eps)

    @classmethod
    def from_factor(cls, factor: np.ndarray, eps: np.ndarray) -> _RegularizedSystem | None:
        """The system of ``K_tt = factor @ factor.T`` for an (n, r) factor, r < n."""
        if not np.isfinite(factor).all():
            return None
        vectors, singular, _ = np.linalg.svd(factor, full_matrices=False)
        lam = singular**2
        return cls._build(lam, vectors, factor.shape[0], lam.sum(), eps)

    @classmethod
    def _build(cls, lam, vectors, n, trace, eps) -> _RegularizedSystem | None:
        scale = np.abs(lam).max() if lam.size else 0.0
        if not scale > 0:
            return None
        reg = eps * (trace / n)
        # The null space (if any) has eigenvalue 0 exactly: it is where the test must hold.
        smallest = lam.min() if lam.size == n else min(lam.min(), 0.0)
        shifted = lam[None, :] + reg[:, None]
        ok = (smallest + reg) > n * np.finfo(np.float64).eps * scale
        inverse = np.divide(1.0, shifted, out=np.zeros_like(shifted), where=ok[:, None])
        has_null = lam.size < n
        null_inverse = np.divide(1.0, reg, out=np.zeros_like(reg), where=ok & has_null)
        return cls(vectors=vectors, inverse=inverse, null_inverse=null_inverse, ok=ok)

    def solve(self, targets: np.ndarray) -> np.ndarray:
        """(L, n, C): ``(K_tt + reg I)^{-1} targets`` for every eps (0 where it failed)."""
        projected = self.vectors.T @ targets  # (r, C)
        in_span = self.vectors @ projected  # (n, C)
        dual = np.matmul(self.vectors, projected[None] * self.inverse[..., None])
        return dual + self.null_inverse[:, None, None] * (targets - in_span)[None]

    def inverse_diagonal(self) -> np.ndarray:
        """(n, L): the diagonal of ``(K_tt + reg I)^{-1}`` for every eps."""
        squares = self.vectors**2
        outside = 1.0 - squares.sum(axis=1)  # the null space's share of each unit vector
        return squares @ self.inverse.T + outside[:, None] * self.null_inverse[None, :]


def _loo_accuracy(
    system: _RegularizedSystem,
    dual: np.ndarray,
    targets: np.ndarray,
    y_train: np.ndarray,
    ok: np.ndarray,
) -> np.ndarray:
    """(L,) exact leave-one-out training accuracy, NaN where ``ok`` is False.
    ``dual`` is ``system.solve(targets)``, G Y."""
    diagonal = system.inverse_diagonal()  # G_ii, (n, L)
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
