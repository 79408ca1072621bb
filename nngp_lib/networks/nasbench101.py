"""The NAS-Bench-101 CIFAR-10 network of a cell, in plain JAX.

As NAS-Bench-101's ``model_builder`` builds it (Ying et al., 2019): a 3x3 conv-BN-ReLU
stem with ``stem_channels`` outputs, then ``num_stacks`` stacks of ``modules_per_stack``
cells; before every stack but the first a 2x2 max-pool of stride 2 halves the image and
the channels double; global average pooling gives the penultimate features
(``stem_channels * 2 ** (num_stacks - 1)``, 512 by default) and a dense layer the logits.

Inside a cell (``build_module``) interior vertex ``t`` sums the outputs of its interior
predecessors, truncated to its own channel count, and, given an edge from the input, a
1x1 conv-BN-ReLU projection of the cell input; then applies its op. The cell output
concatenates the interior vertices that feed it, in vertex order, plus a 1x1 projection
of the cell input when the input feeds the output directly.

The graph runs in Python over the jitted primitives of :mod:`.layers`: all NB101
networks draw their layer shapes from a small set, so once :func:`precompile` (or a few
networks) has compiled them, a never-seen architecture compiles nothing. Halving
``stem_channels`` quarters the cost; smaller images (e.g. 16x16) are accepted too.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import reduce
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nngp_lib.nasbench101 import (
    MAX_EDGES,
    MAX_VERTICES,
    MAXPOOL3X3,
    NUM_LABELS,
    NUM_MODULES_PER_STACK,
    NUM_STACKS,
    STEM_CHANNELS,
    CONV1X1,
    CONV3X3,
    ModelSpec,
)
from nngp_lib.networks import Network, Variables, layers

_KERNEL_SIZE = {CONV3X3: 3, CONV1X1: 1}
# Each vertex feeding the output also needs an edge into it, so at most MAX_EDGES // 2
# interior vertices feed the output: the channel split has at most that many parts.
_MAX_OUTPUT_FAN_IN = min(MAX_VERTICES - 2, MAX_EDGES // 2)


@dataclass(frozen=True)
class _Module:
    """Static shape plan of one cell inside the network."""

    stack: int
    index: int  # within the stack
    in_channels: int
    out_channels: int
    vertex_channels: tuple[int, ...]

    @property
    def name(self) -> tuple[str, str]:
        return (f"stack{self.stack}", f"module{self.index}")


@dataclass(frozen=True)
class _ConvLayer:
    path: tuple[str, ...]
    kernel_size: int
    in_channels: int
    out_channels: int
    stack: int  # -1 for the stem; images are downsampled 2 ** max(stack, 0) times


def network(
    spec: ModelSpec,
    *,
    stem_channels: int = STEM_CHANNELS,
    num_stacks: int = NUM_STACKS,
    modules_per_stack: int = NUM_MODULES_PER_STACK,
    num_labels: int = NUM_LABELS,
) -> Network:
    """The NB101 network of cell ``spec`` (defaults: NB101's CIFAR-10 network).

    Args:
      spec: the (pruned) cell.
      stem_channels: output channels of the stem (and of the first stack); every layer's
        width scales with it, so it is the network's width multiplier (64 halves it).
      num_stacks, modules_per_stack, num_labels: as NB101's config.

    Returns:
      A :class:`~nngp_lib.networks.Network` taking (N, H, W, 3) float32 images, H and W
      any size (each stack after the first halves them, rounding up).
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    _check_config(stem_channels, num_stacks, modules_per_stack, num_labels)
    modules = _plan_modules(spec, stem_channels, num_stacks, modules_per_stack)
    conv_layers = [_ConvLayer(("stem",), 3, 3, stem_channels, -1)]
    for module in modules:
        conv_layers.extend(_module_conv_layers(spec, module))
    feature_dim = stem_channels * 2 ** (num_stacks - 1)

    def init(key: jax.Array) -> Variables:
        params: dict = {}
        batch_stats: dict = {}
        for index, layer in enumerate(conv_layers):
            layer_params, layer_stats = layers.init_conv_bn(
                jax.random.fold_in(key, index),
                layer.kernel_size,
                layer.in_channels,
                layer.out_channels,
            )
            _set(params, layer.path, layer_params)
            _set(batch_stats, layer.path, layer_stats)
        params["dense"] = layers.init_dense(
            jax.random.fold_in(key, len(conv_layers)), feature_dim, num_labels
        )
        return {"params": params, "batch_stats": batch_stats}

    def features(
        variables: Variables,
        images: jax.Array,
        *,
        train: bool = False,
        bn_momentum: float = layers.BN_MOMENTUM,
    ) -> tuple[jax.Array, dict]:
        _check_images(images)
        params, stats = variables["params"], variables["batch_stats"]
        new_stats: dict = {}
        x, new_stats["stem"] = layers.conv_bn_relu(
            params["stem"], stats["stem"], images, bn_momentum, train=train
        )
        for module in modules:
            if module.stack > 0 and module.index == 0:
                x = layers.max_pool(x, 2, 2)
            stack, name = module.name
            x, module_stats = _module_forward(
                spec, module, params[stack][name], stats[stack][name], x, train, bn_momentum
            )
            new_stats.setdefault(stack, {})[name] = module_stats
        return layers.global_avg_pool(x), new_stats

    def apply(variables: Variables, images: jax.Array, **kwargs) -> tuple[jax.Array, dict]:
        feats, new_stats = features(variables, images, **kwargs)
        return layers.dense(variables["params"]["dense"], feats), new_stats

    def flops(height: int, width: int) -> int:
        total = 2 * feature_dim * num_labels
        for layer in conv_layers:
            scale = 2 ** max(layer.stack, 0)
            total += layers.conv_flops(
                -(-height // scale),
                -(-width // scale),
                layer.kernel_size,
                layer.in_channels,
                layer.out_channels,
            )
        return total

    return Network(init=init, features=features, apply=apply, feature_dim=feature_dim, flops=flops)


def _check_config(stem_channels: int, num_stacks: int, modules_per_stack: int, num_labels: int) -> None:
    for name, value, minimum in (
        ("stem_channels", stem_channels, _MAX_OUTPUT_FAN_IN),
        ("num_stacks", num_stacks, 1),
        ("modules_per_stack", modules_per_stack, 1),
        ("num_labels", num_labels, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_images(images: jax.Array) -> None:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be (N, H, W, 3) NHWC, got shape {tuple(images.shape)}; "
            "transpose NCHW batches with x.transpose(0, 2, 3, 1)"
        )


def _plan_modules(spec: ModelSpec, stem_channels: int, num_stacks: int, modules_per_stack: int) -> list[_Module]:
    modules = []
    in_channels = out_channels = stem_channels
    for stack in range(num_stacks):
        if stack > 0:
            out_channels *= 2
        for index in range(modules_per_stack):
            vertex_channels = tuple(spec.vertex_channels(in_channels, out_channels))
            modules.append(_Module(stack, index, in_channels, out_channels, vertex_channels))
            in_channels = out_channels
    return modules


def _module_conv_layers(spec: ModelSpec, module: _Module) -> Iterator[_ConvLayer]:
    """The conv-BN-ReLU layers of one cell, named as :func:`_module_forward` uses them."""
    matrix, out = spec.matrix, spec.num_vertices - 1
    for t in range(1, out):
        channels = module.vertex_channels[t]
        if matrix[0, t]:
            yield _ConvLayer((*module.name, f"projection{t}"), 1, module.in_channels, channels, module.stack)
        if spec.ops[t] in _KERNEL_SIZE:
            yield _ConvLayer((*module.name, f"vertex{t}"), _KERNEL_SIZE[spec.ops[t]], channels, channels, module.stack)
    if matrix[0, out]:
        yield _ConvLayer((*module.name, "output_projection"), 1, module.in_channels, module.out_channels, module.stack)


def _module_forward(spec, module, params, stats, x, train, momentum):
    """One cell: (N, H, W, in_channels) -> (N, H, W, out_channels), and its new stats."""
    matrix, out = spec.matrix, spec.num_vertices - 1
    new_stats = {}

    def conv(name, inputs):
        y, new_stats[name] = layers.conv_bn_relu(params[name], stats[name], inputs, momentum, train=train)
        return y

    vertices = [x]
    output_inputs = []
    for t in range(1, out):
        channels = module.vertex_channels[t]
        summands = [
            _truncate(vertices[src], channels) for src in range(1, t) if matrix[src, t]
        ]
        if matrix[0, t]:
            summands.append(conv(f"projection{t}", x))
        vertex_input = reduce(layers.add, summands)
        if spec.ops[t] == MAXPOOL3X3:
            value = layers.max_pool(vertex_input, 3, 1)
        else:
            value = conv(f"vertex{t}", vertex_input)
        vertices.append(value)
        if matrix[t, out]:
            output_inputs.append(value)

    if not output_inputs:
        return conv("output_projection", x), new_stats
    y = output_inputs[0] if len(output_inputs) == 1 else layers.concat(tuple(output_inputs))
    if matrix[0, out]:
        y = layers.add(y, conv("output_projection", x))
    return y, new_stats


def _truncate(x: jax.Array, channels: int) -> jax.Array:
    return x if x.shape[-1] == channels else layers.truncate(x, channels)


def _set(tree: dict, path: Sequence[str], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


# -- compile once for the whole space -------------------------------------------------------


def vertex_widths(channels: int) -> list[int]:
    """Every channel count a vertex of a cell with ``channels`` outputs can have.

    Vertices feeding the output split ``channels`` into d near-equal parts
    (d <= 4 interior vertices feed the output); the others take a successor's width.
    """
    widths = set()
    for parts in range(1, _MAX_OUTPUT_FAN_IN + 1):
        widths.add(channels // parts)
        if channels % parts:
            widths.add(channels // parts + 1)
    return sorted(w for w in widths if w > 0)


def precompile(
    *,
    batch_size: int,
    train_batch_size: int | None = None,
    image_size: tuple[int, int] = (32, 32),
    stem_channels: int = STEM_CHANNELS,
    num_stacks: int = NUM_STACKS,
    num_labels: int = NUM_LABELS,
    max_workers: int | None = None,
) -> int:
    """Compile every primitive any NB101 network of this configuration can call.

    Afterwards ``init``, ``features`` on (``batch_size``, H, W, 3) images in inference
    mode, and on (``train_batch_size``, H, W, 3) images in training mode, compile nothing
    for any cell of the space. Compiles ahead of time from shapes alone (nothing runs),
    ``max_workers`` at once (default: one per CPU); about a minute at the full size.

    Returns the number of primitive signatures compiled.
    """
    _check_config(stem_channels, num_stacks, 1, num_labels)
    jax.random.fold_in(jax.random.PRNGKey(0), 0)  # eager, as in ``init``
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    jobs: dict[tuple, tuple] = {}  # signature -> (jitted function, args, kwargs)

    def job(fn, *args, **kwargs):
        signature = (fn, *(_signature(a) for a in args), *sorted(kwargs.items()))
        jobs.setdefault(signature, (fn, args, kwargs))

    def conv(batch, h, w, kernel_size, cin, cout):
        params = {name: _f32(shape) for name, shape in (
            ("kernel", (kernel_size, kernel_size, cin, cout)), ("scale", (cout,)), ("offset", (cout,)))}
        stats = {"mean": _f32((cout,)), "var": _f32((cout,))}
        # One program serves both modes (``train`` is a traced flag).
        job(layers._conv_bn_relu, params, stats, _f32((batch, h, w, cin)), layers.BN_MOMENTUM, False)
        fan_in_variance = 1.0 / (kernel_size * kernel_size * cin)
        job(layers._variance_scaling, key, (kernel_size, kernel_size, cin, cout), "truncated_normal", fan_in_variance)

    for batch in sorted({batch_size, train_batch_size or batch_size}):
        h, w, channels = *image_size, stem_channels
        conv(batch, h, w, 3, 3, stem_channels)
        for stack in range(num_stacks):
            in_channels = {channels}
            if stack > 0:
                job(layers.max_pool, _f32((batch, h, w, channels)), 2, 2)
                h, w = -(-h // 2), -(-w // 2)
                in_channels.add(channels * 2)
                channels *= 2
            widths = vertex_widths(channels)
            for c in widths:
                x = _f32((batch, h, w, c))
                job(layers.add, x, x)
                job(layers.max_pool, x, 3, 1)
                for kernel_size in (1, 3):
                    conv(batch, h, w, kernel_size, c, c)
                for cin in in_channels:
                    conv(batch, h, w, 1, cin, c)
                for smaller in widths:
                    if smaller < c:
                        job(layers.truncate, x, smaller)
            for parts in range(2, _MAX_OUTPUT_FAN_IN + 1):
                split = [channels // parts + (i < channels % parts) for i in range(parts)]
                job(layers.concat, tuple(_f32((batch, h, w, c)) for c in split))
        job(layers.global_avg_pool, _f32((batch, h, w, channels)))
        dense = {"kernel": _f32((channels, num_labels)), "bias": _f32((num_labels,))}
        job(layers.dense, dense, _f32((batch, channels)))
        job(layers.glorot_uniform, key, (channels, num_labels))

    def compile_one(item):
        fn, args, kwargs = item
        fn.lower(*args, **kwargs).compile()

    with ThreadPoolExecutor(max_workers or os.cpu_count()) as pool:
        list(pool.map(compile_one, jobs.values()))
    return len(jobs)


def _f32(shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)


def _signature(arg):
    if isinstance(arg, jax.ShapeDtypeStruct):
        return (arg.shape, str(arg.dtype))
    if isinstance(arg, dict):
        return tuple((k, _signature(v)) for k, v in sorted(arg.items()))
    if isinstance(arg, (tuple, list)):
        return tuple(_signature(a) for a in arg)
    return arg
