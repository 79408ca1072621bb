"""Monte-Carlo NNGP kernels of finite networks (the paper's Algorithm 1 up to the kernels).

The NNGP kernel of a network with penultimate features f(x) in R^D is the second moment
of the features over random initializations and feature units (Park et al., 2020,
eq. 1)::

    K(x, x') = E_theta[ f(x) . f(x') ] / D,

estimated by averaging over ``ensemble`` independent initializations. Before computing
features, each initialization sets its batch-norm moving statistics with one
training-mode pass on a random batch of the NNGP training images (the paper's
Appendix A; NAS-Bench-101's momentum 0.997 keeps them close to mean 0, variance 1,
momentum 0 makes them the batch's statistics), then features are computed in inference
mode, where images do not interact.
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np

from nngp_lib.networks import Network
from nngp_lib.networks.layers import BN_MOMENTUM

DEFAULT_BATCH_SIZE = 100  # images per pass: the paper's colab batch, and memory-bounded


def monte_carlo_nngp(
    network: Network,
    x_train: np.ndarray,
    x_val: np.ndarray,
    *,
    ensemble: int = 1,
    seed: int = 0,
    bn_momentum: float = BN_MOMENTUM,
    bn_batch: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo NNGP kernels ``K(train, train)`` and ``K(val, train)``.

    Args:
      network: any :class:`~nngp_lib.networks.Network` (``init`` and ``features``).
      x_train: (n, H, W, C) float32 NNGP training images.
      x_val: (m, H, W, C) float32 NNGP validation images.
      ensemble: number k of random initializations averaged over.
      seed: initialization ``i`` uses ``jax.random.fold_in(jax.random.PRNGKey(seed), i)``,
        so the first k' networks of an ensemble of k are the ensemble of k'; the result
        is a deterministic function of ``seed`` and the inputs.
      bn_momentum: momentum of the single batch-norm update (0.997 as in NAS-Bench-101;
        0 sets the moving statistics to the batch's, the paper's ablation).
      bn_batch: number of training images, drawn at random without replacement for
        each initialization, in the training-mode pass that sets batch-norm statistics.
        ``None`` takes ``min(n, batch_size)``, as the paper's colab (one batch of 100
        of its training images); 0 skips the pass (statistics stay 0 and 1).
      batch_size: images per forward pass in inference mode, bounding memory; the last
        batch is zero-padded so that every pass has the same shape (no recompilation).

    Returns:
      ``(k_train_train (n, n), k_val_train (m, n))`` float64 arrays: the second moment
      of the features averaged over the k initializations and the D feature units.
      ``k_train_train`` is symmetric positive semi-definite.

    Features are float32; the kernels are accumulated in float64 (cheap next to the
    forward passes) so that rounding stays far below the smallest regularizer of the
    inference sweep (1e-7 times the mean eigenvalue, the size of float32 rounding).
    """
    f_train, f_val = ensemble_features(
        network, x_train, x_val, ensemble=ensemble, seed=seed, bn_momentum=bn_momentum,
        bn_batch=bn_batch, batch_size=batch_size,
    )
    return nngp_from_features(f_train, f_val)


def ensemble_features(
    network: Network,
    x_train: np.ndarray,
    x_val: np.ndarray,
    *,
    ensemble: int = 1,
    seed: int = 0,
    bn_momentum: float = BN_MOMENTUM,
    bn_batch: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features of ``ensemble`` random networks: ``(k, n, D)`` and ``(k, m, D)``.

    The arguments and the per-initialization procedure are those of
    :func:`monte_carlo_nngp`, which is ``nngp_from_features(*ensemble_features(...))``.
    Keeping the features lets smaller settings share the work of a larger one: the
    first k' networks and a subset of the images give the kernel of (k', n', m').
    """
    x_train, x_val = _as_images(x_train, "x_train"), _as_images(x_val, "x_val")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(
            f"x_train images {x_train.shape[1:]} and x_val images {x_val.shape[1:]} differ in shape"
        )
    num_train = len(x_train)
    for name, value in (("ensemble", ensemble), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if bn_batch is None:
        bn_batch = default_bn_batch(num_train, batch_size)
    if not 0 <= bn_batch <= num_train:
        raise ValueError(f"bn_batch must be between 0 and the {num_train} training images, got {bn_batch}")
    if not 0.0 <= bn_momentum <= 1.0:
        raise ValueError(f"bn_momentum must lie in [0, 1], got {bn_momentum}")

    images = np.concatenate([x_train, x_val])
    features = np.stack([
        member_features(network, index, x_train, images, seed=seed, bn_momentum=bn_momentum,
                        bn_batch=bn_batch, batch_size=batch_size)
        for index in range(ensemble)
    ])
    return features[:, :num_train], features[:, num_train:]


def member_features(
    network: Network,
    index: int,
    x_train: np.ndarray,
    images: np.ndarray,
    *,
    seed: int = 0,
    bn_momentum: float = BN_MOMENTUM,
    bn_batch: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Inference-mode features of ``images`` under network ``index`` of an ensemble: (N, D) float64.

    Network ``index`` is initialized from ``fold_in(PRNGKey(seed), index)`` and its
    batch-norm statistics are set by one training-mode pass on ``bn_batch`` images drawn
    from ``x_train`` (the ensemble's NNGP training images), exactly as in
    :func:`ensemble_features`; ``images`` may be any images, e.g. the subset of the
    training and validation images this network's settings need.
    """
    num_train = len(x_train)
    if bn_batch is None:
        bn_batch = default_bn_batch(num_train, batch_size)
    # fold_in, not split(base, k): network i is the same whatever k, so an ensemble
    # of k' < k networks is a prefix of one of k.
    init_key, bn_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index))
    variables = network.init(init_key)
    if bn_batch:
        chosen = np.asarray(jax.random.choice(bn_key, num_train, (bn_batch,), replace=False))
        _, batch_stats = network.features(variables, x_train[chosen], train=True, bn_momentum=bn_momentum)
        variables = {**variables, "batch_stats": batch_stats}
    if len(images) == 0:
        return np.zeros((0, network.feature_dim))
    return _inference_features(network, variables, images, images[:0], batch_size)


def nngp_from_features(f_train: np.ndarray, f_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Monte-Carlo NNGP kernels of per-network features (the paper's eq. 1).

    Args:
      f_train: (k, n, D) features of the training images under k networks.
      f_val: (k, m, D) features of the validation images under the same networks.

    Returns:
      ``(k_train_train (n, n), k_val_train (m, n))`` in float64: the feature products
      averaged over the k networks and the D feature units; ``k_train_train`` is exactly
      symmetric.
    """
    f_train = np.asarray(f_train, dtype=np.float64)
    f_val = np.asarray(f_val, dtype=np.float64)
    if f_train.ndim != 3 or f_val.ndim != 3 or f_train.shape[::2] != f_val.shape[::2]:
        raise ValueError(
            f"features must be (k, n, D) and (k, m, D) with the same k and D, got {f_train.shape} and {f_val.shape}"
        )
    k, _, dim = f_train.shape
    normalization = k * dim
    k_train_train = np.einsum("kid,kjd->ij", f_train, f_train, optimize=True)
    k_val_train = np.einsum("kid,kjd->ij", f_val, f_train, optimize=True)
    k_train_train = (k_train_train + k_train_train.T) / (2 * normalization)
    return k_train_train, k_val_train / normalization


def default_bn_batch(num_train: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Images in the batch-norm pass when ``bn_batch`` is None: one batch of training images."""
    return min(num_train, batch_size)


def inference_batch_size(num_train: int, num_val: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Images per inference-mode pass (the shape the network's primitives are compiled for)."""
    return min(batch_size, num_train + num_val)


def _inference_features(network, variables, x_train, x_val, batch_size) -> np.ndarray:
    """(n + m, D) float64 features of the training then the validation images."""
    batch_size = inference_batch_size(len(x_train), len(x_val), batch_size)
    if network.featurizer is not None:
        featurize = network.featurizer(variables)  # the backend prepares the network once
    else:
        featurize = lambda batch: network.features(variables, batch, train=False)[0]  # noqa: E731
    out = []
    for batch, valid in _padded_batches(x_train, x_val, batch_size):
        out.append(np.asarray(featurize(batch), dtype=np.float64)[:valid])
    return np.concatenate(out)


def _padded_batches(x_train, x_val, batch_size) -> Iterator[tuple[np.ndarray, int]]:
    """Consecutive batches of ``batch_size`` images of x_train followed by x_val, the last
    zero-padded, without copying the full arrays; yields ``(batch, number of real images)``."""
    total = len(x_train) + len(x_val)
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        parts = [x_train[start:stop], x_val[max(start - len(x_train), 0) : max(stop - len(x_train), 0)]]
        valid = stop - start
        if valid < batch_size:
            parts.append(np.zeros((batch_size - valid, *x_train.shape[1:]), np.float32))
        yield np.concatenate(parts), valid


def _as_images(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, H, W, C) images, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} holds no images")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must hold standardized floats, got dtype {x.dtype}; standardize uint8 pixels first")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.astype(np.float32, copy=False)
