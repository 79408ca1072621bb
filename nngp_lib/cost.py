"""The paper's FLOP model: NNGP scoring versus shortened training (its Appendix B).

Symbols (the paper's): ``F`` forward FLOPs of the network for one image, ``d`` the
feature dimension of the penultimate layer (512 for every NAS-Bench-101 network),
``k`` the ensemble number, ``C`` the number of classes, ``n`` and ``m`` the NNGP
training and validation set sizes, ``L`` the number of regularizers (20).

NNGP validation accuracy (eq. 4 = S1 + S2)::

    kernel    = k (n + m + b) F  +  2 k d n (n + m)                    (S1)
    inference = L (n^3 / 3  +  2 n^2 C  +  2 n m C)                     (S2)

S1: every one of the k networks runs forward on the n + m images ("the first term
comes from forward-propagation on the network") and forms the Gram products
``Phi_t Phi_t^T`` and ``Phi_v Phi_t^T`` ("matrix computations used to construct the
kernels"). ``b`` is the batch of training images of the one training-mode forward
pass that sets each network's batch-norm statistics (paper, Appendix A); the
paper's eq. S1 does not show it, so it defaults to 0 and callers that want it
counted pass the batch they used. S2: per regularizer, "NNGP inference via
Cholesky solve": a Cholesky factorization (n^3/3), two triangular solves for the C
label columns (2 n^2 C) and the prediction ``K_vt alpha`` (2 n m C).

Shortened training for ``E`` epochs (eq. 5 = S4)::

    training = 3 F E n_all  +  F m_all

with the measured ratio F_train ~= 3 F between a training step and inference per
image (paper, Fig. S2), training on the full training set (NAS-Bench-101: 40,000
images) and one evaluation pass over the full validation set (10,000 images) at
the end ("we always train/validate over the full training and validation set").

Conventions: one multiply-add is 2 FLOPs, so ``flops_per_image`` must count the
same way (if a model counts multiply-accumulates, double it). Additions of the k
kernels, the regularizer and the argmax are O(n^2) or less and left out.
Every function broadcasts over NumPy arrays (e.g. one ``flops_per_image`` per
architecture) and returns float64: a Python-compatible scalar for scalar input.
The paper's figures use the mean FLOPs over all architectures and report PFLOPs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

PFLOP = 1e15

NB101_TRAIN_SIZE = 40_000
NB101_VAL_SIZE = 10_000
NB101_FEATURE_DIM = 512
NUM_CLASSES = 10
NUM_REGULARIZERS = 20
TRAIN_TO_INFERENCE_RATIO = 3.0


def nngp_kernel_flops(
    flops_per_image: ArrayLike,
    n_train: ArrayLike,
    n_val: ArrayLike,
    ensemble: ArrayLike,
    *,
    feature_dim: ArrayLike = NB101_FEATURE_DIM,
    bn_batch: ArrayLike = 0,
) -> np.ndarray:
    """FLOPs of the Monte-Carlo NNGP kernels K_tt and K_vt (paper, eq. S1).

    ``k (n + m + bn_batch) F + 2 k d n (n + m)``.

    Args:
      flops_per_image: F, forward FLOPs for one image (array: one per architecture).
      n_train, n_val: n and m.
      ensemble: k, the number of random initializations.
      feature_dim: d.
      bn_batch: images in the batch-norm forward pass per network (0: not counted,
        as in the paper's equation).
    """
    f, n, m, k, d, b = _non_negative(
        flops_per_image=flops_per_image, n_train=n_train, n_val=n_val, ensemble=ensemble,
        feature_dim=feature_dim, bn_batch=bn_batch,
    )
    return k * (n + m + b) * f + 2.0 * k * d * n * (n + m)


def nngp_inference_flops(
    n_train: ArrayLike,
    n_val: ArrayLike,
    *,
    num_classes: ArrayLike = NUM_CLASSES,
    num_regularizers: ArrayLike = NUM_REGULARIZERS,
    solver: Literal["cholesky", "eigh"] = "cholesky",
) -> np.ndarray:
    """FLOPs of GP inference for every regularizer (paper, eq. S2).

    ``solver='cholesky'`` is the paper's count, one Cholesky solve per regularizer:
    ``L (n^3/3 + 2 n^2 C + 2 n m C)``. ``solver='eigh'`` counts
    :func:`nngp_lib.inference.nngp_inference` (without its leave-one-out): one
    symmetric eigendecomposition with eigenvectors (about 9 n^3, Golub & Van Loan,
    *Matrix Computations*, section 8.3), ``K_vt U`` and ``U^T Y``, then per
    regularizer a scaling and one (m, n) x (n, C) product:
    ``9 n^3 + 2 m n^2 + 2 n^2 C + L (n C + 2 n m C)``.
    """
    n, m, c, num_reg = _non_negative(
        n_train=n_train, n_val=n_val, num_classes=num_classes, num_regularizers=num_regularizers
    )
    if solver == "cholesky":
        return num_reg * (n**3 / 3.0 + 2.0 * n**2 * c + 2.0 * n * m * c)
    if solver == "eigh":
        return 9.0 * n**3 + 2.0 * m * n**2 + 2.0 * n**2 * c + num_reg * (n * c + 2.0 * n * m * c)
    raise ValueError(f"solver must be 'cholesky' or 'eigh', got {solver!r}")


def nngp_flops(
    flops_per_image: ArrayLike,
    n_train: ArrayLike,
    n_val: ArrayLike,
    ensemble: ArrayLike,
    *,
    feature_dim: ArrayLike = NB101_FEATURE_DIM,
    num_classes: ArrayLike = NUM_CLASSES,
    num_regularizers: ArrayLike = NUM_REGULARIZERS,
    bn_batch: ArrayLike = 0,
    solver: Literal["cholesky", "eigh"] = "cholesky",
) -> np.ndarray:
    """FLOPs of one NNGP validation accuracy (paper, eq. 4 = S3 = S1 + S2).

    With the defaults this is the paper's count; see :func:`nngp_kernel_flops` and
    :func:`nngp_inference_flops` for the terms.
    """
    kernel = nngp_kernel_flops(
        flops_per_image, n_train, n_val, ensemble, feature_dim=feature_dim, bn_batch=bn_batch
    )
    inference = nngp_inference_flops(
        n_train, n_val, num_classes=num_classes, num_regularizers=num_regularizers, solver=solver
    )
    return kernel + inference


def training_flops(
    flops_per_image: ArrayLike,
    epochs: ArrayLike,
    *,
    train_size: ArrayLike = NB101_TRAIN_SIZE,
    val_size: ArrayLike = NB101_VAL_SIZE,
    train_to_inference_ratio: ArrayLike = TRAIN_TO_INFERENCE_RATIO,
) -> np.ndarray:
    """FLOPs of training for ``epochs`` and one validation pass (paper, eq. 5 = S4).

    ``ratio * F * epochs * train_size + F * val_size``, with the paper's measured
    ratio 3 and NAS-Bench-101's 40,000 training and 10,000 validation images.
    """
    f, e, n_all, m_all, ratio = _non_negative(
        flops_per_image=flops_per_image, epochs=epochs, train_size=train_size,
        val_size=val_size, train_to_inference_ratio=train_to_inference_ratio,
    )
    return ratio * f * e * n_all + f * m_all


def to_pflops(flops: ArrayLike) -> np.ndarray:
    """FLOPs in peta-FLOPs (1e15), the unit of the paper's cost axes."""
    return np.asarray(flops, dtype=np.float64) / PFLOP


def _non_negative(**values: ArrayLike) -> list[np.ndarray]:
    """The arguments as float64 arrays (0-d for scalars); negative ones raise ValueError."""
    arrays = []
    for name, value in values.items():
        array = np.asarray(value, dtype=np.float64)
        if np.any(array < 0):
            raise ValueError(f"{name} must be non-negative, got {value!r}")
        arrays.append(array)
    return arrays
