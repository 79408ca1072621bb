"""The MnasNet search space (Tan et al., 2019), as the paper samples it (its sections 3.2, C.2).

The space
---------
MnasNet's *factorized hierarchical* space (Tan et al. 2019, section 4.1 and figure 4)
takes a fixed skeleton and searches, independently for each of its seven blocks, one
layer that the block repeats:

==================  ===========================================================
choice              values
==================  ===========================================================
``conv_op``         ``'conv'`` (regular conv), ``'dconv'`` (depthwise-separable
                    conv), ``'mbconv3'`` / ``'mbconv6'`` (mobile inverted
                    bottleneck with expansion 3 / 6)
``kernel_size``     3, 5
``se_ratio``        0 (none), 0.25 (squeeze-and-excitation, Hu et al. 2018)
``skip``            ``'none'``, ``'identity'`` (residual)
``filter_multiplier``  0.75, 1.0, 1.25 times MobileNetV2's output filters
``layer_delta``     -1, 0, +1 layers relative to MobileNetV2
==================  ===========================================================

MnasNet's text also lists a *pooling* skip; its released code (``tensorflow/tpu``,
``models/official/mnasnet``) has only ``id_skip``, and so has this space.

The skeleton is MobileNetV2 (Sandler et al. 2018, table 2), MnasNet's reference:

=====  =======  ======  ======
block  filters  layers  stride
=====  =======  ======  ======
1      16       1       1
2      24       2       2
3      32       3       2
4      64       4       2
5      96       3       1
6      160      3       2
7      320      1       1
=====  =======  ======  ======

with a 3x3 stride-2 conv stem of 32 channels before the blocks and a 1x1 conv head of
1280 channels, global average pooling and a dense classifier after them. Only the first
layer of a block has the block's stride and maps the previous block's filters to the
block's; the others keep shape.

Rules this module fixes (MnasNet's paper leaves them open):

* **Filters** are ``round(baseline * multiplier)``: every product is an integer
  (12, 16, 20; 18, 24, 30; ...). MnasNet's code rounds widths to multiples of 8,
  which would make several multipliers give the same network (16 * 0.75 -> 16).
* **Layers**: a block needs at least one, so the first and last blocks (one layer in
  MobileNetV2) choose among {1, 2}.
* **Identity skip**, as MnasNet's ``id_skip``: the residual is added to each layer of
  the block whose stride is 1 and whose input and output channels agree (all layers but
  the first, and the first too when the block keeps shape). Strides and channels are
  those of the search space (MobileNetV2's strides, unscaled filters), so a variant's
  changed strides or a width multiplier never change which layers have residuals. A
  block with ``skip='identity'`` but no such layer (a single layer that changes shape)
  is **invalid**: it would be the same network as ``skip='none'``, and every network
  should have exactly one spec. With MobileNetV2's filters no first layer keeps shape,
  so identity needs at least two layers.
* **Squeeze-and-excitation** as MnasNet's code: global average pool, 1x1 conv (with
  bias) to ``max(1, int(in_channels * se_ratio))`` channels, ReLU, 1x1 conv (with bias)
  back, sigmoid, channel-wise product; ``in_channels`` is the layer's input width.

Layers (every conv is 'same'-padded, bias-free and followed by batch norm):

* ``conv``: k x k conv (stride s) -> ReLU [-> SE].
* ``dconv``: k x k depthwise conv (stride s) -> ReLU [-> SE] -> 1x1 conv (linear).
* ``mbconvE``: 1x1 conv to E * in channels -> ReLU -> k x k depthwise (stride s) -> ReLU
  [-> SE] -> 1x1 conv (linear), as MnasNet's ``MnasBlock``.

MobileNetV2 itself is in the space (:func:`mobilenet_v2`): its parameter count, 3,504,872
with 1000 classes, is torchvision's.

Variants
--------
``'imagenet'``: as above, 224x224 inputs, 1000 classes, 7x7 final feature map.
``'cifar10'``: 32x32 inputs, 10 classes; the stem and block 2 get stride 1 instead of 2
(the usual CIFAR adaptation of MobileNetV2, e.g. ``kuangliu/pytorch-cifar``), so the
total stride is 8 and the final feature map 4x4 rather than 1x1. Nothing else changes.

Counting
--------
:func:`layer_plan` lists the layers of a network; :func:`num_params`, :func:`flops` and
the JAX builder (:mod:`nngp_lib.spaces.mnas.jax_network`) all read that one list.

Scoring
-------
The paper scores MNAS networks on ImageNet with label-subsampled NNGP sets
(:data:`PAPER_IMAGENET_SETTINGS`). :func:`cifar10_label_subset` draws such sets from
CIFAR-10 (the default data here), :func:`image_folder_label_subset` from an
ImageNet-style folder read by :func:`load_image_folder` with the paper's
preprocessing, and :func:`nngp_accuracy` scores a spec on either.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping, NamedTuple, Sequence

import numpy as np

# -- the space ------------------------------------------------------------------------------

CONV = "conv"
DCONV = "dconv"
MBCONV3 = "mbconv3"
MBCONV6 = "mbconv6"
CONV_OPS = (CONV, DCONV, MBCONV3, MBCONV6)
EXPANSION = {DCONV: 1, MBCONV3: 3, MBCONV6: 6}
KERNEL_SIZES = (3, 5)
SE_RATIOS = (0.0, 0.25)
NO_SKIP = "none"
IDENTITY = "identity"
SKIP_OPS = (NO_SKIP, IDENTITY)
FILTER_MULTIPLIERS = (0.75, 1.0, 1.25)
LAYER_DELTAS = (-1, 0, 1)


class BaselineBlock(NamedTuple):
    """One block of MobileNetV2 (Sandler et al. 2018, table 2)."""

    filters: int
    layers: int
    stride: int


MOBILENET_V2_BLOCKS = (
    BaselineBlock(16, 1, 1),
    BaselineBlock(24, 2, 2),
    BaselineBlock(32, 3, 2),
    BaselineBlock(64, 4, 2),
    BaselineBlock(96, 3, 1),
    BaselineBlock(160, 3, 2),
    BaselineBlock(320, 1, 1),
)
NUM_BLOCKS = len(MOBILENET_V2_BLOCKS)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class Variant(NamedTuple):
    """Input size, label count and strides of one version of the network."""

    name: str
    resolution: int
    num_classes: int
    stem_stride: int
    block_strides: tuple[int, ...]


VARIANTS = {
    "imagenet": Variant("imagenet", 224, 1000, 2, tuple(b.stride for b in MOBILENET_V2_BLOCKS)),
    # Stem and block 2 at stride 1, as kuangliu/pytorch-cifar's MobileNetV2: 32 -> 4.
    "cifar10": Variant("cifar10", 32, 10, 1, (1, 1, 2, 2, 1, 2, 1)),
}
VariantName = Literal["imagenet", "cifar10"]


@dataclass(frozen=True)
class BlockSpec:
    """The layer one block repeats, and how many times (see the module docstring).

    Raises ``ValueError`` (one line) for a value outside the space.
    """

    conv_op: str
    kernel_size: int
    se_ratio: float
    skip: str
    filter_multiplier: float
    layer_delta: int

    def __post_init__(self):
        _check_choice("conv_op", self.conv_op, CONV_OPS)
        _check_choice("kernel_size", self.kernel_size, KERNEL_SIZES)
        _check_choice("se_ratio", self.se_ratio, SE_RATIOS)
        _check_choice("skip", self.skip, SKIP_OPS)
        _check_choice("filter_multiplier", self.filter_multiplier, FILTER_MULTIPLIERS)
        _check_choice("layer_delta", self.layer_delta, LAYER_DELTAS)
        # Canonical types, so that equal blocks serialize (and hash) identically.
        object.__setattr__(self, "kernel_size", int(self.kernel_size))
        object.__setattr__(self, "se_ratio", float(self.se_ratio))
        object.__setattr__(self, "filter_multiplier", float(self.filter_multiplier))
        object.__setattr__(self, "layer_delta", int(self.layer_delta))

    @property
    def expansion(self) -> int | None:
        """Expansion ratio of the inverted bottleneck: 1 for dconv, None for a plain conv."""
        return EXPANSION.get(self.conv_op)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_BLOCK_KEYS = tuple(f.name for f in fields(BlockSpec))


@dataclass(frozen=True)
class MnasSpec:
    """A network of the MnasNet space: seven validated :class:`BlockSpec`.

    Raises ``ValueError`` with one line naming the fault: a wrong number of blocks, a
    block with fewer than one layer, or an identity skip on a block where no layer keeps
    its shape.
    """

    blocks: tuple[BlockSpec, ...]

    def __post_init__(self):
        blocks = tuple(self.blocks)
        object.__setattr__(self, "blocks", blocks)
        if len(blocks) != NUM_BLOCKS:
            raise ValueError(f"an MnasSpec needs {NUM_BLOCKS} blocks, got {len(blocks)}")
        for index, block in enumerate(blocks, start=1):
            if not isinstance(block, BlockSpec):
                raise TypeError(f"block {index} must be a BlockSpec, got {type(block).__name__}")
        fault = _fault(blocks)
        if fault is not None:
            raise ValueError(fault)

    # -- derived ----------------------------------------------------------------------------
    @property
    def num_layers(self) -> tuple[int, ...]:
        """Layers of each block."""
        return tuple(base.layers + b.layer_delta for base, b in zip(MOBILENET_V2_BLOCKS, self.blocks))

    @property
    def filters(self) -> tuple[int, ...]:
        """Output channels of each block (before any width multiplier)."""
        return tuple(_filters(i, b) for i, b in enumerate(self.blocks))

    # -- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"blocks": [block.to_dict() for block in self.blocks]}

    def to_json(self) -> str:
        """Canonical JSON: ``{"blocks": [{"conv_op": ..., ...}, ...]}`` (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | Mapping[str, Any]) -> "MnasSpec":
        """The spec of :meth:`to_json` output (a string or the parsed dict)."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise ValueError(f"not an MnasSpec JSON: {error}") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("blocks"), list):
            raise ValueError('an MnasSpec JSON is an object {"blocks": [7 block objects]}')
        blocks = []
        for index, block in enumerate(data["blocks"], start=1):
            if not isinstance(block, Mapping) or set(block) != set(_BLOCK_KEYS):
                keys = sorted(block) if isinstance(block, Mapping) else type(block).__name__
                raise ValueError(f"block {index} must have exactly the keys {list(_BLOCK_KEYS)}, got {keys}")
            try:
                blocks.append(BlockSpec(**block))
            except ValueError as error:
                raise ValueError(f"block {index}: {error}") from None
        return cls(tuple(blocks))

    def hash(self) -> str:
        """MD5 (32 hex digits) of the canonical JSON: stable across runs and machines."""
        return hashlib.md5(self.to_json().encode("utf-8")).hexdigest()

    def __str__(self) -> str:
        return " | ".join(
            f"{b.conv_op} k{b.kernel_size} se{b.se_ratio:g} {b.skip} x{b.filter_multiplier:g} n{n}"
            for b, n in zip(self.blocks, self.num_layers)
        )


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    # bool is an int: reject it explicitly so that True does not pass as 1.
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _filters(index: int, block: BlockSpec) -> int:
    return int(round(MOBILENET_V2_BLOCKS[index].filters * block.filter_multiplier))


def _block_fault(index: int, block: BlockSpec, in_channels: int) -> str | None:
    """Why block ``index`` (0-based) cannot follow ``in_channels`` channels, or None."""
    base = MOBILENET_V2_BLOCKS[index]
    layers = base.layers + block.layer_delta
    if layers < 1:
        return (
            f"block {index + 1} has {layers} layers (MobileNetV2's {base.layers} "
            f"{block.layer_delta:+d}); a block needs at least 1: use layer_delta >= "
            f"{1 - base.layers}"
        )
    if block.skip == IDENTITY and layers == 1:
        out_channels = _filters(index, block)
        if base.stride != 1 or in_channels != out_channels:
            return (
                f"block {index + 1} has an identity skip but its single layer changes shape "
                f"(stride {base.stride}, {in_channels} -> {out_channels} channels); use "
                f"skip='none' or more layers"
            )
    return None


def _fault(blocks: Sequence[BlockSpec]) -> str | None:
    in_channels = STEM_CHANNELS
    for index, block in enumerate(blocks):
        fault = _block_fault(index, block, in_channels)
        if fault is not None:
            return fault
        in_channels = _filters(index, block)
    return None


@functools.lru_cache(maxsize=1)
def _all_blocks() -> tuple[BlockSpec, ...]:
    """Every block choice (288), valid or not in context."""
    choices = (CONV_OPS, KERNEL_SIZES, SE_RATIOS, SKIP_OPS, FILTER_MULTIPLIERS, LAYER_DELTAS)
    return tuple(BlockSpec(*choice) for choice in itertools.product(*choices))


def space_size() -> int:
    """The number of distinct valid specs (= distinct networks).

    Validity couples a block to the previous block's filters only (the identity rule),
    so the count is a product over blocks of transfer counts, carried over the possible
    filter widths.
    """
    counts = {STEM_CHANNELS: 1}  # ways to reach each input width of the next block
    blocks = _all_blocks()
    for index in range(NUM_BLOCKS):
        following: dict[int, int] = {}
        for in_channels, ways in counts.items():
            for block in blocks:
                if _block_fault(index, block, in_channels) is None:
                    out = _filters(index, block)
                    following[out] = following.get(out, 0) + ways
        counts = following
    return sum(counts.values())


def sample_mnas(n: int, seed: int = 0) -> list[MnasSpec]:
    """``n`` specs drawn independently and uniformly from the valid specs of the space.

    Every choice is drawn uniformly and invalid specs are redrawn (rejection sampling),
    which is exactly uniform over valid specs. Deterministic in ``seed``; draws are
    with replacement (the space holds about 3e16 specs, so repeats are negligible).
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(seed)
    table = _all_blocks()  # uniform over this product = uniform over each choice
    specs: list[MnasSpec] = []
    while len(specs) < n:
        blocks = tuple(table[i] for i in rng.integers(0, len(table), size=NUM_BLOCKS))
        if _fault(blocks) is None:
            specs.append(MnasSpec(blocks))
    return specs


def mobilenet_v2() -> MnasSpec:
    """MobileNetV2 1.0 as a point of the space (ReLU in place of ReLU6).

    Block 1 is a depthwise-separable conv (MobileNetV2's expansion-1 bottleneck), the
    others 3x3 inverted bottlenecks of expansion 6 with identity skips; blocks 1 and 7,
    single layers that change shape, have none.
    """
    blocks = [BlockSpec(DCONV, 3, 0.0, NO_SKIP, 1.0, 0)]
    blocks += [BlockSpec(MBCONV6, 3, 0.0, IDENTITY, 1.0, 0) for _ in range(5)]
    blocks += [BlockSpec(MBCONV6, 3, 0.0, NO_SKIP, 1.0, 0)]
    return MnasSpec(tuple(blocks))


# -- the layer list: one source of truth for counts and the JAX network ---------------------


class Conv(NamedTuple):
    """A bias-free, 'same'-padded convolution followed by batch norm (and ReLU if ``relu``).

    ``depthwise``: one ``kernel_size x kernel_size`` filter per channel
    (``in_channels == out_channels``).
    """

    name: str
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    depthwise: bool
    relu: bool

    @property
    def num_params(self) -> int:
        """Kernel plus batch-norm scale and offset."""
        fan_in = 1 if self.depthwise else self.in_channels
        return self.kernel_size**2 * fan_in * self.out_channels + 2 * self.out_channels

    def multiply_adds(self, height: int, width: int) -> int:
        """Multiply-adds on one ``height x width`` input."""
        fan_in = 1 if self.depthwise else self.in_channels
        out_pixels = -(-height // self.stride) * -(-width // self.stride)
        return out_pixels * self.kernel_size**2 * fan_in * self.out_channels


class SqueezeExcite(NamedTuple):
    """Squeeze-and-excitation on ``channels``: FC to ``reduced`` (bias), ReLU, FC back
    (bias), sigmoid gate. Acts after the conv at index ``after`` of its layer."""

    channels: int
    reduced: int
    after: int

    @property
    def num_params(self) -> int:
        return 2 * self.channels * self.reduced + self.reduced + self.channels

    @property
    def multiply_adds(self) -> int:
        return 2 * self.channels * self.reduced


class Layer(NamedTuple):
    """One layer of the network: its convs in order, an optional SE, and whether the
    layer input is added to its output (identity residual)."""

    path: tuple[str, ...]
    convs: tuple[Conv, ...]
    se: SqueezeExcite | None
    residual: bool

    @property
    def in_channels(self) -> int:
        return self.convs[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels

    @property
    def stride(self) -> int:
        return math.prod(conv.stride for conv in self.convs)

    @property
    def num_params(self) -> int:
        return sum(c.num_params for c in self.convs) + (self.se.num_params if self.se else 0)


def _scaled(channels: int, multiplier: float) -> int:
    return max(1, int(channels * multiplier + 0.5))


def _check_width(multiplier: float) -> None:
    if isinstance(multiplier, bool) or not (isinstance(multiplier, (int, float)) and 0.0 < multiplier <= 4.0):
        raise ValueError(f"width_multiplier must be a number in (0, 4], got {multiplier!r}")


def _variant(variant: str) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


def _block_layer(
    path: tuple[str, ...], block: BlockSpec, stride: int, cin: int, cout: int, residual: bool
) -> Layer:
    k, ratio = block.kernel_size, block.se_ratio
    reduced = max(1, int(cin * ratio))  # MnasNet: from the layer's input width
    if block.conv_op == CONV:
        convs = (Conv("conv", k, stride, cin, cout, False, True),)
        se_channels, se_after = cout, 0
    else:
        hidden = cin * block.expansion
        convs = (
            *((Conv("expand", 1, 1, cin, hidden, False, True),) if block.expansion > 1 else ()),
            Conv("depthwise", k, stride, hidden, hidden, True, True),
            Conv("project", 1, 1, hidden, cout, False, False),
        )
        se_channels, se_after = hidden, len(convs) - 2
    se = SqueezeExcite(se_channels, reduced, se_after) if ratio > 0 else None
    return Layer(path, convs, se, residual)


def layer_plan(
    spec: MnasSpec, *, variant: VariantName = "imagenet", width_multiplier: float = 1.0
) -> tuple[Layer, ...]:
    """Every layer of the network of ``spec``, stem and head included, in order.

    Args:
      spec: the architecture.
      variant: ``'imagenet'`` or ``'cifar10'`` (strides; see the module docstring).
      width_multiplier: multiplier of every channel count (stem, blocks, head), rounded to the
        nearest integer (at least 1); a cheap estimate's network. Expansions and SE
        widths follow the scaled widths; which layers are residual does not change.

    Returns:
      The layers; the last one is the 1x1 head conv whose pooled output is the
      penultimate feature vector (``layers[-1].out_channels`` wide).
    """
    if not isinstance(spec, MnasSpec):
        raise TypeError(f"spec must be an MnasSpec, got {type(spec).__name__}")
    _check_width(width_multiplier)
    config = _variant(variant)
    stem = _scaled(STEM_CHANNELS, width_multiplier)
    plan = [Layer(("stem",), (Conv("conv", 3, config.stem_stride, 3, stem, False, True),), None, False)]
    cin, base_in = stem, STEM_CHANNELS
    for index, (block, layers) in enumerate(zip(spec.blocks, spec.num_layers)):
        base_out = _filters(index, block)
        cout = _scaled(base_out, width_multiplier)
        for j in range(layers):
            stride = config.block_strides[index] if j == 0 else 1
            base_stride = MOBILENET_V2_BLOCKS[index].stride if j == 0 else 1
            residual = block.skip == IDENTITY and base_stride == 1 and base_in == base_out
            path = (f"block{index + 1}", f"layer{j + 1}")
            plan.append(_block_layer(path, block, stride, cin, cout, residual))
            cin, base_in = cout, base_out
    head = _scaled(HEAD_CHANNELS, width_multiplier)
    plan.append(Layer(("head",), (Conv("conv", 1, 1, cin, head, False, True),), None, False))
    return tuple(plan)


def num_params(
    spec: MnasSpec,
    *,
    num_classes: int | None = None,
    variant: VariantName = "imagenet",
    width_multiplier: float = 1.0,
) -> int:
    """Trainable parameters: conv kernels, batch-norm scales and offsets, SE weights and
    biases, the dense classifier's weights and bias. Independent of the input size.

    ``num_classes`` defaults to the variant's (1000 for ImageNet, 10 for CIFAR-10).
    """
    plan = layer_plan(spec, variant=variant, width_multiplier=width_multiplier)
    classes = resolve_num_classes(num_classes, variant)
    features = plan[-1].out_channels
    return sum(layer.num_params for layer in plan) + features * classes + classes


def flops(
    spec: MnasSpec,
    resolution: int | None = None,
    *,
    variant: VariantName = "imagenet",
    num_classes: int | None = None,
    width_multiplier: float = 1.0,
) -> int:
    """Forward FLOPs for one ``resolution x resolution`` image (default: the variant's).

    Counts 2 FLOPs per multiply-add of every convolution (depthwise ones included), of
    the squeeze-and-excitation FC layers and of the classifier. Left out, all linear in
    the activations: batch norm (foldable into the convs), ReLU, sigmoid, SE gating,
    pooling, residual additions, biases. MobileNetV2 at 224 comes to 2 x 300.8M.
    """
    config = _variant(variant)
    resolution = config.resolution if resolution is None else resolution
    if not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    plan = layer_plan(spec, variant=variant, width_multiplier=width_multiplier)
    return plan_flops(plan, resolution, resolution, resolve_num_classes(num_classes, variant))


def plan_flops(plan: Sequence[Layer], height: int, width: int, num_classes: int) -> int:
    """FLOPs of a :func:`layer_plan` on one ``height x width`` image (see :func:`flops`)."""
    total = 0
    for layer in plan:
        for conv in layer.convs:
            total += conv.multiply_adds(height, width)
            height, width = -(-height // conv.stride), -(-width // conv.stride)
        if layer.se is not None:
            total += layer.se.multiply_adds
    total += plan[-1].out_channels * num_classes
    return 2 * total


def resolve_num_classes(num_classes: int | None, variant: str) -> int:
    """``num_classes``, validated, or the variant's label count when it is None."""
    if num_classes is None:
        return _variant(variant).num_classes
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)
