"""Empirical neural tangent kernel (NTK) validation accuracy: the paper's NTK comparison.

The paper's "Comments on usage of NTK" scores NAS-Bench-101 networks with the
*empirical NTK* instead of the NNGP kernel, through the same regularized inference,
and finds it a weaker and more expensive signal. This module computes that score::

    Theta(x, x') = (1 / C) sum_o  J_o(x) . J_o(x'),    J_o(x) = d f_o(x) / d theta,

the Jacobian of logit o (C = 10) with respect to every trainable parameter (conv
kernels, batch-norm scale and offset, the dense layer), contracted over parameters and
**averaged over the C logits** (neural-tangents' ``trace_axes=(-1,)``, which divides
the trace by C). The average only rescales the kernel, which the inference's
dimensionless regularizer ignores. Validation accuracy is then
:func:`nngp_lib.inference.nngp_inference` with ``Theta`` in place of the NNGP kernel.

The network is the one the NNGP score draws first at the same ``seed``
(:func:`nngp_lib.kernels.ensemble_features`, network 0): initialized, its batch-norm
moving statistics set by one training-mode pass on a random batch of the training
images, then evaluated in inference mode, where images do not interact. It is a single
network: an empirical NTK is one draw, like an NNGP kernel of ensemble k = 1.

Cost and memory. Each image costs one Jacobian, C backward passes (about 3 C forward
passes), against one forward pass for the NNGP kernel; the contraction costs
2 P per pair of images and logit, P the number of parameters. The Jacobians of a block of
b images hold ``b * C * P`` float32 numbers (340 MB per image for the average full-width
NB101 network, P = 8.5 million), so the kernel is computed in blocks of images sized to
``memory_budget``; off-diagonal blocks recompute Jacobians, so a larger budget is faster.
On a CPU, narrower networks (``stem_channels``) are the practical choice.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from nngp_lib.data.cifar10 import NNGPData
from nngp_lib.inference import InferenceResult, nngp_inference
from nngp_lib.networks import Network, Variables
from nngp_lib.networks.layers import BN_MOMENTUM
from nngp_lib.spaces.nb101 import NUM_LABELS, STEM_CHANNELS, ModelSpec

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes of Jacobians held at once
_BYTES_PER_FLOAT = 4


def initialized_variables(
    network: Network,
    x_train: np.ndarray,
    *,
    seed: int = 0,
    index: int = 0,
    bn_momentum: float = BN_MOMENTUM,
    bn_batch: int | None = None,
    batch_size: int = 100,
) -> Variables:
    """Network ``index`` of the NNGP ensemble at ``seed``, with its batch-norm pass done.

    The same draw as :func:`nngp_lib.kernels.ensemble_features`: init key and batch
    from ``jax.random.fold_in(PRNGKey(seed), index)``, then one training-mode pass with
    momentum ``bn_momentum`` on ``bn_batch`` training images drawn without replacement
    (``None``: ``min(n, batch_size)``; 0: no pass, statistics stay 0 and 1).

    Returns the variables to evaluate in inference mode.
    """
    num_train = len(x_train)
    if bn_batch is None:
        bn_batch = min(num_train, batch_size)
    if not 0 <= bn_batch <= num_train:
        raise ValueError(f"bn_batch must be between 0 and the {num_train} training images, got {bn_batch}")
    init_key, bn_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index))
    variables = network.init(init_key)
    if bn_batch:
        chosen = np.asarray(jax.random.choice(bn_key, num_train, (bn_batch,), replace=False))
        _, batch_stats = network.features(variables, x_train[chosen], train=True, bn_momentum=bn_momentum)
        variables = {**variables, "batch_stats": batch_stats}
    return variables


def num_parameters(variables: Variables) -> int:
    """Number of trainable parameters (the entries of ``variables['params']``)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(variables["params"]))


def empirical_ntk(
    network: Network,
    variables: Variables,
    x1: np.ndarray,
    x2: np.ndarray | None = None,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    block_size: int | None = None,
) -> np.ndarray:
    """The logit-averaged empirical NTK of ``network`` in inference mode.

    Args:
      network: a :class:`~nngp_lib.networks.Network`.
      variables: its variables (``{'params', 'batch_stats'}``); the kernel is taken with
        respect to every leaf of ``params``, batch norm uses ``batch_stats``.
      x1: (N1, H, W, C) float32 images.
      x2: (N2, H, W, C) images, or None for ``x2 = x1`` (symmetric: each pair of blocks
        computed once).
      memory_budget: bytes of float32 Jacobians held at once; sets the block size
        ``b = memory_budget // (2 * C * P * 4)`` images (at least 1).
      block_size: images per block, overriding ``memory_budget``.

    Returns:
      (N1, N2) float64: ``(1/C) sum_o J_o(x1_i) . J_o(x2_j)``, computed in float32 by
      ``neural_tangents.empirical_ntk_fn`` (Jacobian contraction, vmapped over images).
    """
    x1 = _as_images(x1, "x1")
    if x2 is None:
        return _symmetric_ntk(network, variables, x1, len(x1), _block_size(variables, memory_budget, block_size))
    x2 = _as_images(x2, "x2")
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 images {x1.shape[1:]} and x2 images {x2.shape[1:]} differ in shape")
    ntk_fn = _ntk_fn(network, variables)
    size = _block_size(variables, memory_budget, block_size)
    kernel = np.empty((len(x1), len(x2)), np.float64)
    for rows in _blocks(len(x1), size):
        for cols in _blocks(len(x2), size):
            kernel[rows, cols] = ntk_fn(x1[rows], x2[cols])
    return kernel


def ntk_kernels(
    network: Network,
    x_train: np.ndarray,
    x_val: np.ndarray,
    *,
    seed: int = 0,
    bn_momentum: float = BN_MOMENTUM,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical NTKs ``Theta(train, train)`` (n, n) and ``Theta(val, train)`` (m, n).

    The network is network 0 of the NNGP ensemble at ``seed`` (:func:`initialized_variables`).
    The n + m images are cut into blocks (training images first) and each pair of blocks
    holding a training image is computed once, so every Jacobian is computed once when
    the images fit in one block; the validation-validation entries this also computes
    cost less than the n extra Jacobians of a separate ``Theta(val, train)``.
    """
    x_train, x_val = _as_images(x_train, "x_train"), _as_images(x_val, "x_val")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"x_train images {x_train.shape[1:]} and x_val images {x_val.shape[1:]} differ in shape")
    variables = initialized_variables(network, x_train, seed=seed, bn_momentum=bn_momentum)
    num_train = len(x_train)
    size = _block_size(variables, memory_budget, block_size)
    kernel = _symmetric_ntk(network, variables, np.concatenate([x_train, x_val]), num_train, size)
    return kernel[:num_train, :num_train], kernel[num_train:, :num_train]


def _symmetric_ntk(network, variables, images, num_rows, block_size) -> np.ndarray:
    """Theta(images, images), computing only the pairs of blocks (i <= j) where block i
    starts before ``num_rows``; entries of the other pairs are NaN."""
    ntk_fn = _ntk_fn(network, variables)
    blocks = _blocks(len(images), block_size)
    kernel = np.full((len(images), len(images)), np.nan)
    for i, rows in enumerate(blocks):
        if rows.start >= num_rows:
            break
        for cols in blocks[i:]:
            block = ntk_fn(images[rows], None if cols == rows else images[cols])
            kernel[rows, cols] = block
            kernel[cols, rows] = block.T
        # float32 contractions of (i, j) and (j, i) round differently: keep it exactly symmetric.
        kernel[rows, rows] = 0.5 * (kernel[rows, rows] + kernel[rows, rows].T)
    return kernel


def _ntk_fn(network: Network, variables: Variables):
    """``ntk_fn(x1, x2 or None) -> (N1, N2) float64`` for fixed variables."""
    import neural_tangents as nt  # imports TensorFlow: only when an NTK is computed

    batch_stats = variables["batch_stats"]

    def apply_fn(params, x):
        logits, _ = network.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
        return logits

    # vmap_axes=0: in inference mode every image's logits depend on that image alone.
    # trace_axes=(-1,) contracts the logits and divides by their number: the mean over logits.
    kernel_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)
    params = variables["params"]
    return lambda x1, x2: np.asarray(kernel_fn(x1, x2, params), np.float64)


def _block_size(variables: Variables, memory_budget: int, block_size: int | None) -> int:
    if block_size is None:
        if not memory_budget > 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
        per_image = NUM_LABELS * num_parameters(variables) * _BYTES_PER_FLOAT
        return max(1, int(memory_budget // (2 * per_image)))
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return int(block_size)


def ntk_inference(
    spec: ModelSpec,
    data: NNGPData,
    *,
    seed: int = 0,
    stem_channels: int = STEM_CHANNELS,
    bn_momentum: float = BN_MOMENTUM,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    block_size: int | None = None,
) -> tuple[InferenceResult, float]:
    """Empirical-NTK validation accuracy of one NB101 cell, and the seconds it took.

    Args:
      spec: the cell; its network is built with ``stem_channels`` (NB101: 128).
      data: NNGP training and validation images (:func:`nngp_lib.data.cifar10.nngp_split`).
      seed: the network is network 0 of the NNGP ensemble at this seed.
      bn_momentum, memory_budget, block_size: see :func:`ntk_kernels`.

    Returns:
      ``(result, seconds)``: the eps sweep of :func:`nngp_lib.inference.nngp_inference`
      on the NTK (``result.best_accuracy`` is the paper's choice of eps,
      ``result.loo_val_accuracy`` the leave-one-out one) and the wall time of kernels
      plus inference.
    """
    from nngp_lib.spaces.nb101 import jax_network as nb101_net

    start = time.perf_counter()
    network = nb101_net.network(spec, stem_channels=stem_channels)
    k_tt, k_vt = ntk_kernels(network, data.x_train, data.x_val, seed=seed, bn_momentum=bn_momentum,
                             memory_budget=memory_budget, block_size=block_size)
    result = nngp_inference(k_tt, k_vt, data.y_train, data.y_val)
    return result, time.perf_counter() - start


def ntk_score(spec: ModelSpec, data: NNGPData, **options: Any) -> dict[str, float]:
    """:func:`ntk_inference` as a row: ``ntk_acc``, ``ntk_eps``, ``ntk_acc_loo``,
    ``ntk_eps_loo``, ``seconds`` (the columns of an NNGP scoring row)."""
    result, seconds = ntk_inference(spec, data, **options)
    return {
        "ntk_acc": result.best_accuracy,
        "ntk_eps": result.best_eps,
        "ntk_acc_loo": result.loo_val_accuracy,
        "ntk_eps_loo": result.loo_eps,
        "seconds": seconds,
    }


def _blocks(size: int, block_size: int) -> list[slice]:
    return [slice(start, min(start + block_size, size)) for start in range(0, size, block_size)]


def _as_images(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{name} must be non-empty (N, H, W, C) images, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise ValueError(f"{name} must hold finite standardized floats; standardize uint8 pixels first")
    return x.astype(np.float32, copy=False)


__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "empirical_ntk",
    "initialized_variables",
    "ntk_inference",
    "ntk_kernels",
    "ntk_score",
    "num_parameters",
]
