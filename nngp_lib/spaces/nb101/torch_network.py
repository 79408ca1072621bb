"""The PyTorch backend of NAS-Bench-101 networks: the layer plan run by oneDNN on the CPU.

On x86 CPUs PyTorch's convolutions (oneDNN, channels-last) run NB101's layer shapes
near the machine's peak, 1.3-2x faster than XLA's (``make bench`` measures both), and
the forward passes of random networks are what NNGP scoring spends its time on. This
backend runs the same :class:`~nngp_lib.spaces.nb101.plan.NetworkPlan` as
:mod:`.jax_network`, with the same variables: ``init`` *is* the JAX backend's (NB101's
initializers drawn from the same key), so both backends compute the same network and,
to float32 rounding, the same features and NNGP scores.

Two things make it fast besides oneDNN itself:

* tensors stay channels-last (NHWC in memory): the NHWC images are used as they are,
  with no layout conversion anywhere in the network;
* in inference mode batch norm is a per-channel affine map, folded into the preceding
  convolution's kernel and bias once per network (:func:`featurizer`), so each conv
  layer is one oneDNN convolution followed by an in-place ReLU.

The training-mode pass that sets the moving statistics is
:func:`torch.nn.functional.batch_norm` (normalizes with the biased batch variance,
updates the moving variance with the Bessel-corrected one: TF1's fused batch norm,
which NB101 used). Nothing is compiled, so a new architecture costs nothing extra.
Importing this module imports torch; :mod:`nngp_lib.backends` chooses a backend
without importing it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from nngp_lib.networks import Network, Variables, layers
from nngp_lib.spaces.nb101 import jax_network
from nngp_lib.spaces.nb101.plan import (
    ADD,
    CONCAT,
    CONV,
    GLOBAL_AVGPOOL,
    MAXPOOL,
    NUM_LABELS,
    NUM_MODULES_PER_STACK,
    NUM_STACKS,
    STEM_CHANNELS,
    TRUNCATE,
    NetworkPlan,
)
from nngp_lib.spaces.nb101.spec import ModelSpec

# Images per forward pass in inference mode. Smaller batches keep a cell's activations in
# the CPU's cache, which speeds the memory-bound steps (pooling, sums, concatenation) more
# than it slows the convolutions; about the best on NB101's shapes (make bench).
INFERENCE_CHUNK = 50


def network(
    spec: ModelSpec,
    *,
    stem_channels: int = STEM_CHANNELS,
    num_stacks: int = NUM_STACKS,
    modules_per_stack: int = NUM_MODULES_PER_STACK,
    num_labels: int = NUM_LABELS,
) -> Network:
    """The NB101 network of cell ``spec``, run by PyTorch; arguments as
    :func:`.jax_network.network`.

    ``init`` returns the JAX backend's variables (JAX arrays). ``features`` takes (N, H,
    W, 3) float32 images (NumPy or JAX) and returns NumPy ``((N, feature_dim) features,
    batch_stats)``; ``featurizer(variables)`` returns the inference-mode feature function
    with batch norm folded in, for streaming many batches through one network.
    """
    plan = jax_network._plan(spec, stem_channels, num_stacks, modules_per_stack, num_labels)

    def features(variables: Variables, images, *, train: bool = False,
                 bn_momentum: float = layers.BN_MOMENTUM) -> tuple[np.ndarray, dict]:
        jax_network._check_images(images)
        if train:
            return train_pass(plan, variables, images, bn_momentum)
        return featurizer(plan, variables)(images), variables["batch_stats"]

    def apply(variables: Variables, images, **kwargs) -> tuple[np.ndarray, dict]:
        feats, new_stats = features(variables, images, **kwargs)
        dense = variables["params"]["dense"]
        return feats @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"]), new_stats

    return Network(
        init=lambda key: jax_network.init(plan, key),
        features=features,
        apply=apply,
        feature_dim=plan.config.feature_dim,
        flops=lambda height, width: jax_network.plan_flops(plan, height, width),
        featurizer=lambda variables: featurizer(plan, variables),
    )


def featurizer(plan: NetworkPlan, variables: Variables) -> Callable[[np.ndarray], np.ndarray]:
    """``images (N, H, W, 3) -> (N, feature_dim)`` float32 features in inference mode.

    Folds each conv's batch norm (moving statistics) into its kernel and bias once:
    ``relu(conv(x, w) * a + b)`` with ``a = scale / sqrt(var + eps)``,
    ``b = offset - mean * a`` is ``relu(conv(x, w * a) + b)``.
    """
    params, stats = variables["params"], variables["batch_stats"]
    folded = {}
    for layer in plan.convs:
        p, s = params[layer.name], stats[layer.name]
        multiplier = np.asarray(p["scale"]) / np.sqrt(np.asarray(s["var"]) + layers.BN_EPSILON)
        kernel = _torch_kernel(p["kernel"]) * torch.from_numpy(multiplier.astype(np.float32))[:, None, None, None]
        bias = np.asarray(p["offset"]) - np.asarray(s["mean"]) * multiplier
        folded[layer.name] = (kernel.contiguous(memory_format=torch.channels_last),
                              torch.from_numpy(bias.astype(np.float32)))

    def conv(layer, x):
        kernel, bias = folded[layer.name]
        return _conv_relu(x, kernel, bias, layer.kernel // 2)

    def features(images) -> np.ndarray:
        jax_network._check_images(images)
        x = _torch_images(images)
        with torch.inference_mode():
            # Images do not interact in inference mode; chunks keep activations in cache.
            return torch.cat([_run(plan, chunk, conv) for chunk in x.split(INFERENCE_CHUNK)]).numpy()

    return features


def train_pass(plan: NetworkPlan, variables: Variables, images, bn_momentum: float = layers.BN_MOMENTUM
               ) -> tuple[np.ndarray, dict]:
    """One training-mode pass: ``((N, feature_dim) features, updated moving statistics)``.

    Batch norm normalizes with the batch statistics; the moving statistics move one
    step of momentum ``bn_momentum`` towards them (NB101's convention: 0.997 keeps 99.7%
    of the old value), the variance Bessel-corrected.
    """
    params, stats = variables["params"], variables["batch_stats"]
    new_stats: dict = {}

    def conv(layer, x):
        p, s = params[layer.name], stats[layer.name]
        mean = torch.tensor(np.asarray(s["mean"], np.float32))
        var = torch.tensor(np.asarray(s["var"], np.float32))
        y = F.conv2d(x, _torch_kernel(p["kernel"]).contiguous(memory_format=torch.channels_last),
                     padding=layer.kernel // 2)
        # torch's momentum weighs the new batch: NB101's 0.997 is torch's 0.003.
        y = F.batch_norm(y, mean, var, torch.tensor(np.asarray(p["scale"], np.float32)),
                         torch.tensor(np.asarray(p["offset"], np.float32)),
                         training=True, momentum=1.0 - bn_momentum, eps=layers.BN_EPSILON)
        new_stats[layer.name] = {"mean": mean.numpy(), "var": var.numpy()}
        return y.relu_()

    with torch.inference_mode():
        feats = _run(plan, _torch_images(images), conv).numpy()
    return feats, new_stats


def _run(plan: NetworkPlan, x: torch.Tensor, conv) -> torch.Tensor:
    """Run the plan up to the penultimate features on channels-last ``x`` (N, 3, H, W)."""
    values: list = [x]
    last_use = plan.last_use
    for index, step in enumerate(plan.steps[:-1]):
        layer = step.layer
        inputs = [values[v] for v in step.inputs]
        if layer.kind == CONV:
            out = conv(layer, inputs[0])
        elif layer.kind == MAXPOOL and layer.stride == 1 and layer.kernel == 3:
            out = _max_pool_3x3(inputs[0])
        elif layer.kind == MAXPOOL:
            # 'same' padding as TF: the 2x2 stride-2 downsampling pads the end of odd
            # sizes with -inf, which is ceil_mode.
            out = F.max_pool2d(inputs[0], layer.kernel, layer.stride, padding=layer.kernel // 2 if layer.stride == 1 else 0,
                               ceil_mode=True)
        elif layer.kind == TRUNCATE:
            out = inputs[0][:, : layer.out_channels]
        elif layer.kind == ADD:
            out = inputs[0] + inputs[1]
            for other in inputs[2:]:
                out += other
        elif layer.kind == CONCAT:
            out = torch.cat(inputs, dim=1)
        elif layer.kind == GLOBAL_AVGPOOL:
            out = inputs[0].mean(dim=(2, 3))
        else:
            raise AssertionError(f"unexpected {layer.kind!r} step {layer.name!r} before the dense layer")
        values.append(out)
        for v in step.inputs:
            if last_use[v] == index:
                values[v] = None
    return values[plan.features_value]


# oneDNN's fused convolution + ReLU (the op PyTorch's own compiler emits on CPUs): one
# pass over the output instead of two, and a faster path for 1x1 convolutions.
_FUSED_CONV = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() else None


def _conv_relu(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, padding: int) -> torch.Tensor:
    """``relu(conv(x, kernel) + bias)``, 'same' padding, stride 1, channels-last."""
    if _FUSED_CONV is not None:
        return _FUSED_CONV(x, kernel, bias, [padding, padding], [1, 1], [1, 1], 1, "relu", [], "")
    return F.conv2d(x, kernel, bias, padding=padding).relu_()


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """NB101's 3x3 stride-1 'same' max-pool (edges padded with -inf) as two separable
    running maxima, each two in-place shifted maxima: 3x faster on the CPU than
    ``max_pool2d``, which also computes the argmax indices; exactly the same values."""
    rows = x.clone(memory_format=torch.channels_last)
    torch.maximum(rows[..., 1:], x[..., :-1], out=rows[..., 1:])
    torch.maximum(rows[..., :-1], x[..., 1:], out=rows[..., :-1])
    out = rows.clone(memory_format=torch.channels_last)
    torch.maximum(out[..., 1:, :], rows[..., :-1, :], out=out[..., 1:, :])
    torch.maximum(out[..., :-1, :], rows[..., 1:, :], out=out[..., :-1, :])
    return out


def _torch_images(images) -> torch.Tensor:
    """(N, H, W, C) NHWC images as an (N, C, H, W) channels-last tensor, without a copy."""
    array = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    if not array.flags.writeable:
        array = array.copy()  # torch.from_numpy needs a writeable buffer
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def _torch_kernel(kernel) -> torch.Tensor:
    """An HWIO (JAX) kernel as an OIHW (torch) tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1)))
