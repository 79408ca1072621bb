"""The network of an MnasNet-space spec, in plain JAX, exposing its penultimate features.

The layers are those of :func:`nngp_lib.spaces.space.layer_plan` (the one list that
:func:`~nngp_lib.spaces.mnas.num_params` and :func:`~nngp_lib.spaces.mnas.flops` count), run in Python
layer by layer, each layer a separately compiled :func:`layer_unit` (forward, and forward
with pullback plus backward for gradients): a layer compiles once per shape signature,
so networks that share layer shapes share compilations, and gradients taken outside
``jax.jit`` never compile the network as a whole. The network can still be traced by
``jax.jit``, ``jax.grad`` or ``jax.eval_shape``.

Features are the globally average-pooled output of the 1x1 head conv (1280 channels at
width 1): the input of the classifier, the penultimate layer.

Batch norm works as for NAS-Bench-101 (:func:`.layers.conv_bn_relu`): moving statistics
start at mean 0, variance 1; ``train=True`` normalizes with the batch statistics and
returns the moving statistics after one step of momentum ``bn_momentum`` (default
0.997, the paper's; MnasNet trained with 0.99); otherwise the moving statistics
normalize and come back unchanged. Epsilon is MnasNet's 1e-3.

Initialization is MnasNet's released code (``mnasnet_model.py``): conv kernels, depthwise
and squeeze-and-excitation ones included, normal with variance ``2 / fan_out``
(``fan_out = k * k * out_filters``, ``out_filters = 1`` for a depthwise kernel); the
classifier uniform on ``+-1 / sqrt(num_classes)``; biases 0, batch-norm scale 1 and
offset 0. It sets the relative scale of residual branches and so the NNGP kernel.
"""

from __future__ import annotations

import functools
import math
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nngp_lib.networks import Network, Variables, layers
from nngp_lib.spaces.mnas import spec as space
from nngp_lib.spaces.mnas.spec import Conv, Layer, MnasSpec, SqueezeExcite, VariantName

BN_EPSILON = 1e-3  # MnasNet's (NAS-Bench-101 uses layers.BN_EPSILON = 1e-5)
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def network(
    spec: MnasSpec,
    *,
    variant: VariantName = "imagenet",
    num_classes: int | None = None,
    width_multiplier: float = 1.0,
) -> Network:
    """The network of ``spec``.

    Args:
      spec: the architecture.
      variant: ``'imagenet'`` (224x224 inputs, total stride 32) or ``'cifar10'`` (32x32
        inputs, stem and block 2 at stride 1, total stride 8); see :mod:`nngp_lib.spaces.mnas`.
      num_classes: classifier outputs; the variant's (1000 or 10) by default.
      width_multiplier: multiplier of every channel count, for cheaper estimates (the
        cost falls roughly with its square); ``feature_dim`` is ``round(1280 * width_multiplier)``.

    Returns:
      A :class:`~nngp_lib.networks.Network` on (N, H, W, 3) float32 images of any size
      (each stride rounds up, as 'same' padding does).
    """
    plan = space.layer_plan(spec, variant=variant, width_multiplier=width_multiplier)
    classes = space.resolve_num_classes(num_classes, variant)
    feature_dim = plan[-1].out_channels

    def init(key: jax.Array) -> Variables:
        params: dict = {}
        batch_stats: dict = {}
        for index, layer in enumerate(plan):
            layer_params, layer_stats = _init_layer(jax.random.fold_in(key, index), layer)
            _set(params, layer.path, layer_params)
            _set(batch_stats, layer.path, layer_stats)
        params["dense"] = {
            "kernel": _uniform(jax.random.fold_in(key, len(plan)), (feature_dim, classes), 1 / math.sqrt(classes)),
            "bias": _zeros(classes),
        }
        return {"params": params, "batch_stats": batch_stats}

    def features(
        variables: Variables,
        images: jax.Array,
        *,
        train: bool = False,
        bn_momentum: float = layers.BN_MOMENTUM,
    ) -> tuple[jax.Array, dict]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be (N, H, W, 3) NHWC, got shape {tuple(images.shape)}; "
                "transpose NCHW batches with x.transpose(0, 2, 3, 1)"
            )
        params, stats = variables["params"], variables["batch_stats"]
        new_stats: dict = {}
        x = images
        for layer in plan:
            x, layer_stats = layer_unit(layer, train)(
                _get(params, layer.path), _get(stats, layer.path), x, bn_momentum
            )
            _set(new_stats, layer.path, layer_stats)
        return layers.global_avg_pool(x), new_stats

    def apply(variables: Variables, images: jax.Array, **kwargs) -> tuple[jax.Array, dict]:
        feats, new_stats = features(variables, images, **kwargs)
        return layers.dense(variables["params"]["dense"], feats), new_stats

    def flops(height: int, width: int) -> int:
        return space.plan_flops(plan, height, width, classes)

    return Network(init=init, features=features, apply=apply, feature_dim=feature_dim, flops=flops)


# -- primitives -----------------------------------------------------------------------------
# layers.conv_bn_relu is stride 1, dense and always ReLU; MnasNet needs strides, depthwise
# kernels and linear projections, so it has its own conv and batch norm, with the same
# batch-norm semantics.


@partial(jax.jit, static_argnames=("stride", "relu", "train"))
def conv_bn(
    params: dict,
    stats: dict,
    x: jax.Array,
    momentum: float | jax.Array = layers.BN_MOMENTUM,
    *,
    stride: int = 1,
    relu: bool = True,
    train: bool = False,
) -> tuple[jax.Array, dict]:
    """'Same'-padded bias-free convolution, batch norm, optional ReLU.

    Args:
      params: ``{'kernel': (k, k, C_in / groups, C_out), 'scale', 'offset': (C_out,)}``;
        a (k, k, 1, C) kernel on C input channels is depthwise (one group per channel).
      stats: moving ``{'mean', 'var'}`` of shape (C_out,).
      x: (N, H, W, C_in).
      momentum, train: as :func:`.layers.conv_bn_relu` (TF1 fused batch norm: biased
        batch variance normalizes, the Bessel-corrected one enters the moving average).
      stride: spatial stride; the output is (N, ceil(H / stride), ceil(W / stride), C_out).
      relu: apply ReLU (False for MnasNet's linear projections).
    """
    kernel = params["kernel"]
    if kernel.shape[2] == 1 and x.shape[-1] > 1:
        y = depthwise_conv(x, kernel, stride)
    else:
        y = lax.conv_general_dilated(
            x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS
        )
    if train:
        mean = jnp.mean(y, axis=(0, 1, 2))
        var = jnp.mean(jnp.square(y - mean), axis=(0, 1, 2))
        count = y.size // y.shape[-1]
        bessel = count / max(count - 1, 1)
        stats = {
            "mean": momentum * stats["mean"] + (1.0 - momentum) * mean,
            "var": momentum * stats["var"] + (1.0 - momentum) * var * bessel,
        }
    else:
        mean, var = stats["mean"], stats["var"]
    y = (y - mean) * (params["scale"] * lax.rsqrt(var + BN_EPSILON)) + params["offset"]
    return (jax.nn.relu(y) if relu else y), stats


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """'Same'-padded (TF's) depthwise convolution: (N, H, W, C) with a (k, k, 1, C) kernel
    -> (N, ceil(H / stride), ceil(W / stride), C).

    Written as the sum of k * k strided, shifted products rather than a grouped
    ``conv_general_dilated``: on the CPU, XLA's grouped convolution runs about 15 times
    slower and its gradient takes minutes to compile inside a whole network. The result
    is the same up to float rounding.
    """
    k = kernel.shape[0]
    n, h, w, c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + k - h, 0)
    pad_w = max((out_w - 1) * stride + k - w, 0)
    padded = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    y = None
    for i in range(k):
        for j in range(k):
            window = lax.slice(
                padded,
                (0, i, j, 0),
                (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c),
                (1, stride, stride, 1),
            )
            term = window * kernel[i, j, 0]
            y = term if y is None else y + term
    return y


@jax.jit
def squeeze_excite(params: dict, x: jax.Array) -> jax.Array:
    """Squeeze-and-excitation (Hu et al. 2018) as MnasNet: (N, H, W, C) -> same shape.

    ``params``: ``{'reduce': {'kernel': (C, R), 'bias': (R,)}, 'expand': {'kernel': (R, C),
    'bias': (C,)}}``; the two 1x1 convs act on the pooled (N, C) vector.
    """
    squeezed = jnp.mean(x, axis=(1, 2))
    hidden = jax.nn.relu(layers.dense(params["reduce"], squeezed))
    gate = jax.nn.sigmoid(layers.dense(params["expand"], hidden))
    return x * gate[:, None, None, :]


def layer_unit(layer: Layer, train: bool):
    """``unit(params, stats, x, momentum) -> (y, new_stats)``: one layer compiled on its own.

    Evaluated directly, the layer runs as one jitted program; differentiated outside
    ``jax.jit`` (as :func:`nngp_lib.training.train` does with ``jit_step=False``), its
    forward pass with the pullback and its backward pass are two more jitted programs.
    All three are cached by the layer's shape signature, across steps and networks: a
    network compiles per distinct layer, never as a whole (which takes XLA's CPU backend
    minutes for one MnasNet network). Inside ``jax.jit`` the unit is traced like plain
    code. Gradients flow to ``params`` and ``x``; the statistics and momentum get zero.
    """
    # Layers that differ only in their place in the network share one unit.
    return _layer_unit(layer._replace(path=()), train)


@functools.lru_cache(maxsize=4096)
def _layer_unit(layer: Layer, train: bool):
    def forward(params, stats, x, momentum):
        return _layer_forward(layer, params, stats, x, momentum, train)

    primal = jax.jit(forward)

    @jax.jit
    def forward_with_pullback(params, stats, x, momentum):
        y, pullback, new_stats = jax.vjp(lambda p, v: forward(p, stats, v, momentum), params, x, has_aux=True)
        return (y, new_stats), pullback

    backward = jax.jit(lambda pullback, cotangent: pullback(cotangent))

    @jax.custom_vjp
    def unit(params, stats, x, momentum):
        return primal(params, stats, x, momentum)

    def unit_forward(params, stats, x, momentum):
        outputs, pullback = forward_with_pullback(params, stats, x, momentum)
        return outputs, (pullback, stats, momentum)

    def unit_backward(residuals, cotangents):
        pullback, stats, momentum = residuals
        d_params, d_x = backward(pullback, cotangents[0])
        return d_params, jax.tree_util.tree_map(jnp.zeros_like, stats), d_x, jnp.zeros_like(momentum)

    unit.defvjp(unit_forward, unit_backward)
    return unit


def _layer_forward(layer: Layer, params: dict, stats: dict, x, momentum, train):
    inputs = x
    new_stats = {}
    for index, conv in enumerate(layer.convs):
        x, new_stats[conv.name] = conv_bn(
            params[conv.name], stats[conv.name], x, momentum, stride=conv.stride, relu=conv.relu, train=train
        )
        if layer.se is not None and layer.se.after == index:
            x = squeeze_excite(params["se"], x)
    if layer.residual:
        x = layers.add(x, inputs)
    return x, new_stats


# -- initialization -------------------------------------------------------------------------


def _init_layer(key: jax.Array, layer: Layer) -> tuple[dict, dict]:
    params: dict = {}
    stats: dict = {}
    for index, conv in enumerate(layer.convs):
        params[conv.name], stats[conv.name] = _init_conv(jax.random.fold_in(key, index), conv)
    if layer.se is not None:
        params["se"] = _init_se(jax.random.fold_in(key, len(layer.convs)), layer.se)
    return params, stats


def _he_fan_out(key: jax.Array, shape: tuple[int, ...], fan_out: int) -> jax.Array:
    """Normal with variance 2 / fan_out, MnasNet's ``conv_kernel_initializer``, through
    :func:`.layers.variance_scaling` (whose variance is scale / fan_in)."""
    fan_in = math.prod(shape[:-1])
    return layers.variance_scaling(key, shape, scale=2.0 * fan_in / fan_out, distribution="normal")


def _init_conv(key: jax.Array, conv: Conv) -> tuple[dict, dict]:
    k = conv.kernel_size
    if conv.depthwise:
        shape, fan_out = (k, k, 1, conv.out_channels), k * k
    else:
        shape, fan_out = (k, k, conv.in_channels, conv.out_channels), k * k * conv.out_channels
    ones, zeros = _ones(conv.out_channels), _zeros(conv.out_channels)
    params = {"kernel": _he_fan_out(key, shape, fan_out), "scale": ones, "offset": zeros}
    return params, {"mean": zeros, "var": ones}


def _init_se(key: jax.Array, se: SqueezeExcite) -> dict:
    return {
        "reduce": {
            "kernel": _he_fan_out(jax.random.fold_in(key, 0), (se.channels, se.reduced), se.reduced),
            "bias": _zeros(se.reduced),
        },
        "expand": {
            "kernel": _he_fan_out(jax.random.fold_in(key, 1), (se.reduced, se.channels), se.channels),
            "bias": _zeros(se.channels),
        },
    }


@partial(jax.jit, static_argnums=(1, 2))
def _uniform(key: jax.Array, shape: tuple[int, int], limit: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


# Host-side constants: building them with jnp would compile one tiny program per width.
def _ones(n: int) -> jax.Array:
    return jnp.asarray(np.ones(n, np.float32))


def _zeros(n: int) -> jax.Array:
    return jnp.asarray(np.zeros(n, np.float32))


def _set(tree: dict, path: Sequence[str], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree: dict, path: Sequence[str]):
    for key in path:
        tree = tree[key]
    return tree
