"""A small conv net with an exact NNGP twin: the yardstick of the Monte-Carlo estimator.

NAS-Bench-101 networks have batch norm and max-pooling, so no analytic NNGP kernel
exists to check :func:`nngp_lib.kernels.monte_carlo_nngp` against. This network does
have one: ``depth`` times (3x3 'same' convolution without bias -> ReLU), then global
average pooling, with Gaussian weights of variance 1 / fan-in (neural-tangents'
standard parameterization, ``W_std=1``). :func:`analytic_nngp` computes its
infinite-width kernel with neural-tangents' ``stax``; :func:`network` builds the
finite-width network from the same primitives as the NB101 networks, so the
Monte-Carlo estimate of its kernel converges to the analytic one as width x ensemble
grows (relative error ~ 1 / sqrt(width k), down to a finite-width bias ~ 1 / width).

With ``batch_norm=True`` the convolutions get NB101's batch norm and initialization
instead: no analytic twin, but a small network on which batch-norm handling is tested.
"""

from __future__ import annotations

import jax
import numpy as np

from nngp_lib.networks import Network, Variables
from nngp_lib.networks import layers

KERNEL_SIZE = 3


def network(width: int, *, depth: int = 2, batch_norm: bool = False, in_channels: int = 3) -> Network:
    """``depth`` x (conv3x3 -> [batch norm ->] ReLU) -> global average pooling.

    Args:
      width: channels of every convolution, the feature dimension.
      depth: number of convolutions.
      batch_norm: NB101's batch norm and truncated-normal initialization, instead of
        plain Gaussian weights of variance 1 / fan-in.
      in_channels: channels of the input images.

    Returns:
      a :class:`~nngp_lib.networks.Network` whose ``features`` map ``(N, H, W, C)``
      images to ``(N, width)`` pooled features. It has no readout (``apply`` is None).
    """
    if min(width, depth, in_channels) < 1:
        raise ValueError(
            f"convnet needs width, depth and in_channels >= 1, got {width}, {depth}, {in_channels}"
        )
    distribution = "truncated_normal" if batch_norm else "normal"
    channels = (in_channels,) + (width,) * (depth - 1)

    def init(key: jax.Array) -> Variables:
        params, stats = {}, {}
        for i, (key_i, c) in enumerate(zip(jax.random.split(key, depth), channels)):
            params[f"conv{i}"], stats[f"conv{i}"] = layers.init_conv_bn(
                key_i, KERNEL_SIZE, c, width, batch_norm=batch_norm, distribution=distribution
            )
        return {"params": params, "batch_stats": stats}

    def features(variables, images, *, train=False, bn_momentum=layers.BN_MOMENTUM):
        h, new_stats = images, {}
        for name, params in variables["params"].items():
            h, new_stats[name] = layers.conv_bn_relu(
                params, variables["batch_stats"][name], h, bn_momentum, train=train
            )
        return layers.global_avg_pool(h), new_stats

    def flops(height: int, width_: int) -> int:
        return sum(layers.conv_flops(height, width_, KERNEL_SIZE, c, width) for c in channels)

    return Network(init=init, features=features, apply=None, feature_dim=width, flops=flops)


def analytic_nngp(x1: np.ndarray, x2: np.ndarray | None = None, *, depth: int = 2) -> np.ndarray:
    """The infinite-width NNGP kernel of :func:`network` (without batch norm).

    Args:
      x1: ``(N1, H, W, C)`` images.
      x2: ``(N2, H, W, C)`` images; None means ``x1``.
      depth: as in :func:`network`.

    Returns:
      ``(N1, N2)`` float64 kernel, per feature unit (the pooled features' second moment).
      Imports neural-tangents (and with it TensorFlow): seconds on first use.
    """
    from neural_tangents import stax

    conv = dict(padding="SAME", W_std=1.0, b_std=None, parameterization="standard")
    block = [stax.Conv(1, (KERNEL_SIZE, KERNEL_SIZE), **conv), stax.Relu()]
    *_, kernel_fn = stax.serial(*(block * depth), stax.GlobalAvgPool())
    return np.asarray(kernel_fn(x1, x2, "nngp"), dtype=np.float64)
