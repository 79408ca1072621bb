"""Jitted building blocks shared by the networks of the search spaces.

Every primitive is its own ``jax.jit`` function of arrays (NHWC activations, HWIO
kernels, float32), compiled once per input shape. Networks of one search space differ
in graph but draw their layer shapes from a small set, so a network that runs its
graph in Python over these primitives compiles nothing for a never-seen architecture
once those shapes are warm (:func:`count_compilations` checks it). The primitives are
ordinary differentiable JAX functions: a whole network can still be traced by
``jax.jit``, ``jax.grad`` or ``jax.eval_shape``.

Initializers follow TensorFlow 1 as NAS-Bench-101 used it: conv kernels
``variance_scaling_initializer()`` (scale 1, fan-in, truncated normal), dense kernels
Glorot-uniform, batch norm gamma 1, beta 0, moving mean 0, moving variance 1.
"""

from __future__ import annotations

import contextlib
import math
from functools import partial
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BN_MOMENTUM = 0.997
BN_EPSILON = 1e-5
# Standard deviation of a unit normal truncated to [-2, 2]; TF divides by it so that the
# truncated draw keeps the requested variance.
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978

Params = dict
BatchStats = dict

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


# -- initializers ---------------------------------------------------------------------------


def variance_scaling(
    key: jax.Array,
    shape: Sequence[int],
    *,
    scale: float = 1.0,
    distribution: str = "truncated_normal",
) -> jax.Array:
    """A kernel of ``shape`` (HWIO conv or (in, out) dense) with variance ``scale / fan_in``.

    ``distribution='truncated_normal'`` is TF1's ``variance_scaling_initializer`` (a normal
    truncated at two standard deviations, rescaled to keep the variance); ``'normal'`` is
    an untruncated Gaussian of the same variance (the NNGP literature's prior).
    """
    if distribution not in ("truncated_normal", "normal"):
        raise ValueError(
            f"unknown distribution {distribution!r}; use 'truncated_normal' or 'normal'"
        )
    fan_in = math.prod(shape[:-1])
    return _variance_scaling(key, tuple(int(s) for s in shape), distribution, scale / fan_in)


@partial(jax.jit, static_argnums=(1, 2))
def _variance_scaling(key, shape, distribution, variance):
    if distribution == "truncated_normal":
        unit = jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
        return unit * (jnp.sqrt(variance) / _TRUNCATED_NORMAL_STDDEV)
    return jax.random.normal(key, shape, jnp.float32) * jnp.sqrt(variance)


@partial(jax.jit, static_argnums=1)
def glorot_uniform(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Keras' default dense kernel: uniform on +-sqrt(6 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


def init_conv_bn(
    key: jax.Array,
    kernel_size: int,
    in_channels: int,
    out_channels: int,
    *,
    batch_norm: bool = True,
    distribution: str = "truncated_normal",
) -> tuple[Params, BatchStats | None]:
    """Parameters and batch-norm statistics of one :func:`conv_bn_relu` layer.

    Returns ``({'kernel': (k, k, in, out)[, 'scale': (out,), 'offset': (out,)]},
    {'mean': (out,), 'var': (out,)} or None without batch norm)``.
    """
    kernel = variance_scaling(
        key, (kernel_size, kernel_size, in_channels, out_channels), distribution=distribution
    )
    if not batch_norm:
        return {"kernel": kernel}, None
    # Host-side constants: building them with jnp would compile one tiny program per width.
    ones = jnp.asarray(np.ones(out_channels, np.float32))
    zeros = jnp.asarray(np.zeros(out_channels, np.float32))
    return {"kernel": kernel, "scale": ones, "offset": zeros}, {"mean": zeros, "var": ones}


def init_dense(key: jax.Array, in_features: int, out_features: int) -> Params:
    """``{'kernel': (in, out) Glorot-uniform, 'bias': (out,) zeros}``."""
    return {
        "kernel": glorot_uniform(key, (in_features, out_features)),
        "bias": jnp.asarray(np.zeros(out_features, np.float32)),
    }


# -- layers ---------------------------------------------------------------------------------


def conv_bn_relu(
    params: Params,
    stats: BatchStats | None,
    x: jax.Array,
    momentum: float | jax.Array = BN_MOMENTUM,
    *,
    train: bool | jax.Array = False,
) -> tuple[jax.Array, BatchStats | None]:
    """'Same'-padded stride-1 convolution without bias, batch norm, ReLU (NB101's op).

    Args:
      params: ``{'kernel': (k, k, C_in, C_out), 'scale', 'offset': (C_out,)}``; without
        ``'scale'`` the layer is a plain conv-ReLU (no batch norm; ``stats`` is None).
      stats: moving ``{'mean', 'var'}`` of shape (C_out,).
      x: (N, H, W, C_in) activations.
      momentum: moving-average momentum, used when ``train``.
      train: normalize with the batch statistics and return updated moving statistics,
        as TF1's fused batch norm does: the batch variance normalizing the output is the
        biased one, the one entering the moving average is Bessel-corrected (times
        m / (m - 1), m = N * H * W). Otherwise normalize with ``stats``, returned as is.

    Returns:
      ``((N, H, W, C_out) activations, moving statistics)``.
    """
    if "scale" not in params:
        out = _conv_relu(params, x), stats
    else:
        # ``train`` is an argument, not a static one, so that both modes share one compiled
        # program (the branch runs under lax.cond): half the compilations.
        out = _conv_bn_relu(params, stats, x, momentum, train)
    for hook in _relu_hooks:
        hook(out[0])
    return out


_relu_hooks: list[Callable[[jax.Array], None]] = []


@contextlib.contextmanager
def relu_hook(hook: Callable[[jax.Array], None]) -> Iterator[None]:
    """Call ``hook(activations)`` with the (N, H, W, C) output of every
    :func:`conv_bn_relu` run inside the block, in execution order.

    NB101's ReLUs are exactly these layers, so this sees every ReLU unit of a network
    (the activation patterns of Mellor et al.'s NASWOT score, :mod:`nngp_lib.proxies`).
    A unit is active where its output is positive. Hooks nest; the outputs are the
    arrays the network computes (tracers when the network is being traced).
    """
    _relu_hooks.append(hook)
    try:
        yield
    finally:
        _relu_hooks.remove(hook)


@jax.jit
def _conv_relu(params, x):
    return jax.nn.relu(_conv(x, params["kernel"]))


@jax.jit
def _conv_bn_relu(params, stats, x, momentum, train):
    y = _conv(x, params["kernel"])

    def batch_statistics(y):
        mean = jnp.mean(y, axis=(0, 1, 2))
        var = jnp.mean(jnp.square(y - mean), axis=(0, 1, 2))
        count = y.size // y.shape[-1]
        moving = {
            "mean": momentum * stats["mean"] + (1.0 - momentum) * mean,
            "var": momentum * stats["var"] + (1.0 - momentum) * var * (count / max(count - 1, 1)),
        }
        return mean, var, moving

    def moving_statistics(y):
        return stats["mean"], stats["var"], stats

    mean, var, stats = lax.cond(train, batch_statistics, moving_statistics, y)
    multiplier = params["scale"] * lax.rsqrt(var + BN_EPSILON)
    return jax.nn.relu((y - mean) * multiplier + params["offset"]), stats


def _conv(x, kernel):
    if kernel.shape[:2] == (1, 1):
        # A 1x1 convolution is a matrix product, which XLA:CPU runs about 1.3x faster
        # as a dot than as a convolution.
        n, h, w, c = x.shape
        return (x.reshape(n * h * w, c) @ kernel[0, 0]).reshape(n, h, w, -1)
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMENSION_NUMBERS)


@partial(jax.jit, static_argnums=(1, 2))
def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
    """(N, H, W, C) -> (N, ceil(H / stride), ceil(W / stride), C), 'same' padding (TF's)."""
    n, h, w, c = x.shape
    # XLA:CPU's reduce_window is 2-3x slower than these equivalent forms of NB101's two
    # poolings: 3x3 stride 1 as a max of shifted copies along W then H, and 2x2 stride 2
    # on even sizes (no padding) as a max over a reshape.
    if stride == 1 and window % 2:
        return _running_max(_running_max(x, window, axis=2), window, axis=1)
    if window == stride and h % stride == 0 and w % stride == 0:
        return x.reshape(n, h // stride, stride, w // stride, stride, c).max(axis=(2, 4))
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "SAME"
    )


def _running_max(x: jax.Array, window: int, axis: int) -> jax.Array:
    """Max over a centred odd ``window`` along ``axis``, -inf beyond the edges ('same')."""
    size, half = x.shape[axis], window // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    padded = jnp.pad(x, pad, constant_values=-jnp.inf)
    out = lax.slice_in_dim(padded, 0, size, axis=axis)
    for offset in range(1, window):
        out = jnp.maximum(out, lax.slice_in_dim(padded, offset, offset + size, axis=axis))
    return out


@partial(jax.jit, static_argnums=1)
def truncate(x: jax.Array, channels: int) -> jax.Array:
    """The first ``channels`` channels of (N, H, W, C) ``x`` (NB101's ``truncate``)."""
    return lax.slice_in_dim(x, 0, channels, axis=-1)


@jax.jit
def add(x: jax.Array, y: jax.Array) -> jax.Array:
    return x + y


@jax.jit
def concat(xs: Sequence[jax.Array]) -> jax.Array:
    """Concatenate NHWC tensors along channels."""
    return jnp.concatenate(xs, axis=-1)


@jax.jit
def global_avg_pool(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, C)."""
    return jnp.mean(x, axis=(1, 2))


@jax.jit
def dense(params: Params, x: jax.Array) -> jax.Array:
    """(N, D) -> (N, out) with ``{'kernel': (D, out), 'bias': (out,)}``."""
    return x @ params["kernel"] + params["bias"]


def conv_flops(height: int, width: int, kernel_size: int, in_channels: int, out_channels: int) -> int:
    """Floating-point operations (a multiply-add counts two) of one 'same' stride-1 conv
    on one image."""
    return 2 * height * width * kernel_size * kernel_size * in_channels * out_channels


# -- compile accounting ---------------------------------------------------------------------

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compilations = 0
_listening = False


def _on_event_duration(event: str, duration: float, **_) -> None:
    global _compilations
    if event == _BACKEND_COMPILE_EVENT:
        _compilations += 1


class CompilationCount:
    """Number of XLA compilations seen so far inside a :func:`count_compilations` block."""

    def __init__(self) -> None:
        self._start = _compilations

    @property
    def count(self) -> int:
        return _compilations - self._start

    def __int__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"CompilationCount({self.count})"


@contextlib.contextmanager
def count_compilations() -> Iterator[CompilationCount]:
    """Count XLA backend compilations (jit, eager ops, anything) inside the block::

        with count_compilations() as compiled:
            net.features(variables, images)
        assert compiled.count == 0
    """
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_on_event_duration)
        _listening = True
    yield CompilationCount()
