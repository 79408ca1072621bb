"""The JAX backend of NAS-Bench-101 networks: the layer plan run over jitted primitives.

The network of a cell is its :class:`~nngp_lib.spaces.nb101.plan.NetworkPlan`, executed
step by step in Python over the primitives of :mod:`nngp_lib.networks.layers`, each
jitted by shape. All NB101 networks draw their layer shapes from a small set, so once
:func:`precompile` (or a few networks) has compiled them, a never-seen architecture
compiles nothing. The functions are ordinary JAX: a whole network can still be traced
by ``jax.jit``, ``jax.grad`` or ``jax.eval_shape`` (the gradient proxies and the
empirical NTK use this backend).

Variables are flat dictionaries keyed by the plan's layer names, NB101's variable
scopes (``'stem'``, ``'stack1/module0/vertex_2/conv3x3-bn-relu'``, ``'dense'``).
Conv ``i`` of the plan draws its kernel from ``fold_in(key, i)`` and the dense layer
from ``fold_in(key, number of convs)``, so the same key gives the same network in every
backend (:mod:`.torch_network` initializes through this module).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import reduce

import jax
import jax.numpy as jnp

from nngp_lib.networks import Network, Variables, layers
from nngp_lib.spaces.nb101 import plan as nb101_plan
from nngp_lib.spaces.nb101.plan import (
    ADD,
    CONCAT,
    CONV,
    DENSE,
    GLOBAL_AVGPOOL,
    MAXPOOL,
    NUM_LABELS,
    NUM_MODULES_PER_STACK,
    NUM_STACKS,
    STEM_CHANNELS,
    TRUNCATE,
    NetworkConfig,
    NetworkPlan,
)
from nngp_lib.spaces.nb101.spec import ModelSpec


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
    plan = _plan(spec, stem_channels, num_stacks, modules_per_stack, num_labels)

    def features(variables: Variables, images: jax.Array, *, train: bool = False,
                 bn_momentum: float = layers.BN_MOMENTUM) -> tuple[jax.Array, dict]:
        _check_images(images)
        return run(plan, variables, images, train=train, bn_momentum=bn_momentum)

    def apply(variables: Variables, images: jax.Array, **kwargs) -> tuple[jax.Array, dict]:
        feats, new_stats = features(variables, images, **kwargs)
        return layers.dense(variables["params"]["dense"], feats), new_stats

    return Network(
        init=lambda key: init(plan, key),
        features=features,
        apply=apply,
        feature_dim=plan.config.feature_dim,
        flops=lambda height, width: plan_flops(plan, height, width),
        featurizer=lambda variables: lambda images: features(variables, images)[0],
    )


def _plan(spec, stem_channels, num_stacks, modules_per_stack, num_labels) -> NetworkPlan:
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    config = NetworkConfig(stem_channels, num_stacks, modules_per_stack, num_labels)
    return nb101_plan.network_plan(spec, config)


def init(plan: NetworkPlan, key: jax.Array) -> Variables:
    """The variables of ``plan``'s network, NAS-Bench-101's initialization, deterministic
    in ``key``: ``{'params': {name: ...}, 'batch_stats': {name: {'mean', 'var'}}}``."""
    params: dict = {}
    batch_stats: dict = {}
    convs = plan.convs
    for index, layer in enumerate(convs):
        params[layer.name], batch_stats[layer.name] = layers.init_conv_bn(
            jax.random.fold_in(key, index), layer.kernel, layer.in_channels, layer.out_channels
        )
    dense = plan.steps[-1].layer
    params[dense.name] = layers.init_dense(jax.random.fold_in(key, len(convs)), dense.in_channels, dense.out_channels)
    return {"params": params, "batch_stats": batch_stats}


def run(plan: NetworkPlan, variables: Variables, images: jax.Array, *, train: bool = False,
        bn_momentum: float = layers.BN_MOMENTUM) -> tuple[jax.Array, dict]:
    """Penultimate features of (N, H, W, 3) ``images``: ``((N, feature_dim), batch_stats)``.

    With ``train`` batch norm uses the batch statistics and the returned moving
    statistics are one momentum step from ``variables['batch_stats']``; otherwise the
    moving statistics are used and returned unchanged.
    """
    params, stats = variables["params"], variables["batch_stats"]
    new_stats: dict = {}
    values: list = [images]
    last_use = plan.last_use
    for index, step in enumerate(plan.steps[:-1]):  # the dense layer is `apply`'s
        layer = step.layer
        inputs = [values[v] for v in step.inputs]
        if layer.kind == CONV:
            out, new_stats[layer.name] = layers.conv_bn_relu(
                params[layer.name], stats[layer.name], inputs[0], bn_momentum, train=train
            )
        elif layer.kind == MAXPOOL:
            out = layers.max_pool(inputs[0], layer.kernel, layer.stride)
        elif layer.kind == TRUNCATE:
            out = layers.truncate(inputs[0], layer.out_channels)
        elif layer.kind == ADD:
            out = reduce(layers.add, inputs)
        elif layer.kind == CONCAT:
            out = layers.concat(tuple(inputs))
        elif layer.kind == GLOBAL_AVGPOOL:
            out = layers.global_avg_pool(inputs[0])
        else:
            raise AssertionError(f"unexpected {layer.kind!r} step {layer.name!r} before the dense layer")
        values.append(out)
        for v in step.inputs:  # free activations nobody reads again
            if last_use[v] == index:
                values[v] = None
    return values[plan.features_value], new_stats


def plan_flops(plan: NetworkPlan, height: int, width: int) -> int:
    """FLOPs of one (height, width) image through ``plan`` (see :class:`.plan.Layer`):
    the plan's layer shapes with the image size the network is given."""
    total = 0
    stack_of = 0
    for step in plan.steps:
        layer = step.layer
        if layer.kind == MAXPOOL and layer.stride > 1:
            stack_of += 1
        if layer.kind == CONV:
            scale = 2**stack_of
            total += layers.conv_flops(-(-height // scale), -(-width // scale), layer.kernel,
                                       layer.in_channels, layer.out_channels)
        elif layer.kind == DENSE:
            total += layer.flops
    return total


def _check_images(images) -> None:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be (N, H, W, 3) NHWC, got shape {tuple(images.shape)}; "
            "transpose NCHW batches with x.transpose(0, 2, 3, 1)"
        )


# -- compile once for the whole space -------------------------------------------------------


def vertex_widths(channels: int) -> list[int]:
    """Every channel count a vertex of a cell with ``channels`` outputs can have.

    Vertices feeding the output split ``channels`` into d near-equal parts
    (d <= 4 interior vertices feed the output); the others take a successor's width.
    """
    widths = set()
    for parts in range(1, nb101_plan._MAX_OUTPUT_FAN_IN + 1):
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
    forward: bool = True,
) -> int:
    """Compile every primitive any NB101 network of this configuration can call.

    Afterwards ``init``, and ``features`` on (``batch_size``, H, W, 3) images in inference
    mode and on (``train_batch_size``, H, W, 3) images in training mode, compile nothing
    for any cell of the space. Compiles ahead of time from shapes alone (nothing runs),
    ``max_workers`` at once (default: one per CPU); about a minute at the full size.
    ``forward=False`` compiles the initializers only (what another backend, which
    initializes through this one, needs).

    Returns the number of primitive signatures compiled.
    """
    NetworkConfig(stem_channels, num_stacks, 1, num_labels)  # validates
    jax.random.fold_in(jax.random.PRNGKey(0), 0)  # eager, as in ``init``
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    jobs: dict[tuple, tuple] = {}  # signature -> (jitted function, args, kwargs)

    def job(fn, *args, **kwargs):
        if not forward and fn not in (layers._variance_scaling, layers.glorot_uniform):
            return
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
            for parts in range(2, nb101_plan._MAX_OUTPUT_FAN_IN + 1):
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
