"""The layer plan of a NAS-Bench-101 network: one list of steps that every backend runs.

NAS-Bench-101's ``model_builder`` (Ying et al., 2019) builds a CIFAR-10 network from a
cell: a 3x3 conv-BN-ReLU stem with ``stem_channels`` outputs, then ``num_stacks``
stacks of ``modules_per_stack`` cells; before every stack but the first a 2x2 max-pool
of stride 2 halves the image and the channels double; global average pooling gives the
penultimate features (``stem_channels * 2 ** (num_stacks - 1)``, 512 by default) and a
dense layer the logits.

Inside a cell (``build_module``) interior vertex ``t`` sums the outputs of its interior
predecessors, truncated to its own channel count, and, given an edge from the input, a
1x1 conv-BN-ReLU projection of the cell input; then applies its op. The cell output
concatenates the interior vertices that feed it, in vertex order, plus a 1x1 projection
of the cell input when the input feeds the output directly.

:func:`network_plan` writes that network down once, as a :class:`NetworkPlan`: a
sequence of :class:`Step`\\ s in execution order, each a :class:`Layer` (what it
computes, with its shapes) applied to the outputs of earlier steps. Everything else
reads this one list: the parameter and FLOP counts (:func:`network_totals`, equal to
NB101's ``trainable_parameters`` on every row of its table), and the backends that run
it (:mod:`.jax_network`, :mod:`.torch_network`), which initialize the convolutions in
plan order so that every backend computes the same network from the same key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

if TYPE_CHECKING:
    from nngp_lib.spaces.nb101.spec import ModelSpec

# The CIFAR-10 network NB101 trained (its default config).
STEM_CHANNELS = 128
NUM_STACKS = 3
NUM_MODULES_PER_STACK = 3
NUM_LABELS = 10
IMAGE_SIZE = 32

# Op names of the cell (the spec's vocabulary), repeated here so that the plan needs no spec.
_CONV3X3, _CONV1X1, _MAXPOOL3X3 = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"

# Kinds of layer. The first four carry NB101's names and are what `network_layers` lists;
# the last three are the wiring of a cell (no parameters, no multiply-adds).
CONV = "conv"
MAXPOOL = "maxpool"
GLOBAL_AVGPOOL = "global_avgpool"
DENSE = "dense"
TRUNCATE = "truncate"
ADD = "add"
CONCAT = "concat"
LAYER_KINDS = (CONV, MAXPOOL, GLOBAL_AVGPOOL, DENSE)
WIRING_KINDS = (TRUNCATE, ADD, CONCAT)


class Layer(NamedTuple):
    """One layer of an NB101 network, acting on a ``size x size x in_channels`` input.

    ``kind`` is one of:

    * ``'conv'``: ``kernel x kernel`` convolution, stride 1, 'same' padding, no bias,
      followed by batch norm (trainable scale and offset) and ReLU. Every convolution of
      NB101 is one of these: the stem, the cell ops and the 1x1 projections.
    * ``'maxpool'``: ``kernel x kernel`` max-pooling with ``stride``, 'same' padding
      (the 3x3 stride-1 cell op and the 2x2 stride-2 downsampling between stacks).
    * ``'global_avgpool'``: mean over the ``size x size`` positions.
    * ``'dense'``: the ``in_channels -> out_channels`` logits layer, with bias.
    * ``'truncate'``: the first ``out_channels`` of the input's channels.
    * ``'add'``: the sum of its inputs, all of ``out_channels`` channels.
    * ``'concat'``: its inputs concatenated along channels (``out_channels`` in all).

    ``flops`` counts 2 FLOPs per multiply-add of the convolutions and the dense layer,
    the convention of :mod:`nngp_lib.cost` (the paper does not spell out its own) and
    the cost that dominates. Left out, as linear in the activations: batch norm
    (foldable into the convolution at inference), ReLU, the additions of a vertex's
    inputs, the dense bias, max- and average-pooling, and the channel truncation and
    concatenation (no arithmetic). At a few FLOPs per activation these would add about
    1% for a typical cell (median 0.8% on the NB101 table), up to ~10% for cells made
    mostly of max-pooling.
    """

    name: str
    kind: str
    size: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int

    @property
    def out_size(self) -> int:
        """Height (= width) of the output."""
        if self.kind == GLOBAL_AVGPOOL or self.kind == DENSE:
            return 1
        return -(-self.size // self.stride)

    @property
    def num_params(self) -> int:
        """Trainable parameters: conv kernel + batch-norm scale and offset; dense weights + bias."""
        if self.kind == CONV:
            return (self.kernel * self.kernel * self.in_channels + 2) * self.out_channels
        if self.kind == DENSE:
            return (self.in_channels + 1) * self.out_channels
        return 0

    @property
    def macs(self) -> int:
        """Multiply-adds of the convolution or dense layer for one image; 0 otherwise."""
        if self.kind == CONV:
            out_size = -(-self.size // self.stride)
            return out_size * out_size * self.kernel * self.kernel * self.in_channels * self.out_channels
        if self.kind == DENSE:
            return self.in_channels * self.out_channels
        return 0

    @property
    def flops(self) -> int:
        """``2 * macs``."""
        return 2 * self.macs


class Step(NamedTuple):
    """One step of a plan: ``layer`` applied to the values ``inputs``.

    Values are numbered as the plan runs: value 0 is the image batch, value ``i + 1``
    the output of step ``i``. ``layer.name`` names the step's parameters (a conv's
    kernel and batch norm, the dense layer), NB101's variable scope.
    """

    layer: Layer
    inputs: tuple[int, ...]


# Each vertex feeding the output also needs an edge into it, so at most MAX_EDGES // 2
# interior vertices feed the output: a cell's channel split has at most that many parts.
_MAX_OUTPUT_FAN_IN = min(7 - 2, 9 // 2)


@dataclass(frozen=True)
class NetworkConfig:
    """The skeleton around the cell; :data:`NB101_CIFAR10` is NB101's.

    ``stem_channels`` is the network's width (every layer scales with it; 64 is half
    width), ``image_size`` the side of the square input images.
    """

    stem_channels: int = STEM_CHANNELS
    num_stacks: int = NUM_STACKS
    modules_per_stack: int = NUM_MODULES_PER_STACK
    num_labels: int = NUM_LABELS
    image_size: int = IMAGE_SIZE

    def __post_init__(self):
        for name, minimum in (("stem_channels", _MAX_OUTPUT_FAN_IN), ("num_stacks", 1),
                              ("modules_per_stack", 1), ("num_labels", 1), ("image_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    @property
    def feature_dim(self) -> int:
        """Width of the penultimate layer."""
        return self.stem_channels * 2 ** (self.num_stacks - 1)


NB101_CIFAR10 = NetworkConfig()

@dataclass(frozen=True)
class NetworkPlan:
    """A network as steps in execution order (see :class:`Step`).

    Attributes:
      steps: every step; the last is the dense layer, the one before it the global
        average pooling whose output are the penultimate features.
      config: the skeleton it was built for.
    """

    steps: tuple[Step, ...]
    config: NetworkConfig

    @property
    def features_value(self) -> int:
        """The value holding the (N, feature_dim) penultimate features."""
        return len(self.steps) - 1

    @property
    def convs(self) -> tuple[Layer, ...]:
        """The conv layers in plan order: the order backends draw their initial weights in."""
        return tuple(step.layer for step in self.steps if step.layer.kind == CONV)

    @functools.cached_property
    def last_use(self) -> tuple[int, ...]:
        """``last_use[v]``: the last step reading value ``v`` (so a backend can free it)."""
        last = [-1] * (len(self.steps) + 1)
        for index, step in enumerate(self.steps):
            for value in step.inputs:
                last[value] = index
        return tuple(last)

    def flops(self) -> int:
        """FLOPs of one image at the config's image size (see :class:`Layer`)."""
        return sum(step.layer.flops for step in self.steps)

    def num_params(self) -> int:
        return sum(step.layer.num_params for step in self.steps)


def compute_vertex_channels(input_channels: int, output_channels: int, matrix: np.ndarray) -> list[int]:
    """Output channels of each vertex of a pruned cell, NB101's ``compute_vertex_channels``.

    Vertices feeding the output split ``output_channels`` between them (the remainder goes
    to the first ones, since their outputs are concatenated); every other interior vertex
    takes the largest channel count among its successors (inputs are truncated to fit).
    """
    matrix = np.asarray(matrix)
    num_vertices = matrix.shape[0]
    channels = [0] * num_vertices
    channels[0] = input_channels
    channels[-1] = output_channels
    if num_vertices == 2:
        return channels
    out = num_vertices - 1
    in_degree_of_output = int(matrix[1:, out].sum())
    interior, correction = divmod(output_channels, in_degree_of_output)
    for v in range(1, out):
        if matrix[v, out]:
            channels[v] = interior + (1 if correction else 0)
            correction = max(correction - 1, 0)
    for v in range(num_vertices - 3, 0, -1):
        if not matrix[v, out]:
            for dst in range(v + 1, out):
                if matrix[v, dst]:
                    channels[v] = max(channels[v], channels[dst])
    return channels


def network_plan(spec: ModelSpec, config: NetworkConfig = NB101_CIFAR10) -> NetworkPlan:
    """The plan of the network of cell ``spec`` (a pruned :class:`ModelSpec`) in ``config``.

    Step names follow NB101's variable scopes: ``stem``, ``stack{s}/downsample``,
    ``stack{s}/module{m}/vertex_{t}/projection``, ``stack{s}/module{m}/vertex_{t}/{op}``,
    ``stack{s}/module{m}/output/projection``, ``global_avgpool``, ``dense``; the wiring
    steps (truncations, sums, concatenations) are named after the vertex they feed.
    """
    steps: list[Step] = []
    for scope, block, offset in _blocks(spec, config):
        start = len(steps)
        for layer, inputs in block:
            # Block inputs are relative: -1 is the block's input value, j >= 0 its own step j.
            absolute = tuple(offset if i < 0 else start + i + 1 for i in inputs)
            steps.append(Step(layer._replace(name=scope + layer.name), absolute))
    return NetworkPlan(tuple(steps), config)


def network_layers(spec: ModelSpec) -> list[Layer]:
    """The conv, pooling and dense layers of NB101's CIFAR-10 network for one cell, in
    NB101's build order (the plan without its wiring steps)."""
    return [step.layer for step in network_plan(spec).steps if step.layer.kind in LAYER_KINDS]


@functools.lru_cache(maxsize=1 << 16)
def network_totals(spec: ModelSpec, config: NetworkConfig = NB101_CIFAR10) -> tuple[int, int]:
    """(trainable parameters, FLOPs per image) of the plan, memoized: scoring code asks for
    both, and over a whole table. Counts each distinct cell block once (9 cells, 5 shapes)."""
    block_totals: dict[int, tuple[int, int]] = {}
    num_params = flops = 0
    for _, block, _ in _blocks(spec, config):
        if id(block) not in block_totals:
            block_totals[id(block)] = (sum([layer.num_params for layer, _ in block]),
                                       sum([layer.flops for layer, _ in block]))
        block_params, block_flops = block_totals[id(block)]
        num_params += block_params
        flops += block_flops
    return num_params, flops


_Block = list[tuple[Layer, tuple[int, ...]]]


def _blocks(spec: ModelSpec, config: NetworkConfig) -> list[tuple[str, _Block, int]]:
    """The network as (scope, block, input value) in build order; a block's steps read
    relative values (see :func:`network_plan`). Cells of equal shape share one block."""
    matrix, ops = spec.matrix.tolist(), tuple(spec.ops)
    size, channels = config.image_size, config.stem_channels
    blocks: list[tuple[str, _Block, int]] = [("", [(Layer("stem", CONV, size, 3, 1, 3, channels), (-1,))], 0)]
    value = 1
    cells: dict[tuple[int, int, int], _Block] = {}
    for stack in range(config.num_stacks):
        input_channels = channels
        if stack > 0:
            downsample = Layer(f"stack{stack}/downsample", MAXPOOL, size, 2, 2, channels, channels)
            blocks.append(("", [(downsample, (-1,))], value))
            value += 1
            size, channels = -(-size // 2), 2 * channels
        # The interior widths depend on the cell's output channels only (the input's
        # sets vertex 0 alone, unused here), so one call serves the stack's cells.
        vertex_channels = compute_vertex_channels(input_channels, channels, spec.matrix)
        for module in range(config.modules_per_stack):
            shape = (size, input_channels, channels)
            if shape not in cells:
                cells[shape] = _cell_block(matrix, ops, vertex_channels, *shape)
            blocks.append((f"stack{stack}/module{module}/", cells[shape], value))
            value += len(cells[shape])
            input_channels = channels
    blocks.append(("", [
        (Layer("global_avgpool", GLOBAL_AVGPOOL, size, size, 1, channels, channels), (-1,)),
        (Layer("dense", DENSE, 1, 1, 1, channels, config.num_labels), (0,)),
    ], value))
    return blocks


_OP_KERNELS = {_CONV3X3: (CONV, 3), _CONV1X1: (CONV, 1), _MAXPOOL3X3: (MAXPOOL, 3)}


def _cell_block(
    matrix: list[list[int]],
    ops: Sequence[str],
    vertex_channels: list[int],
    size: int,
    input_channels: int,
    channels: int,
) -> _Block:
    """The steps of one cell (NB101's ``build_module``), named relative to its scope."""
    out = len(matrix) - 1
    block: _Block = []

    def emit(layer: Layer, inputs: tuple[int, ...]) -> int:
        block.append((layer, inputs))
        return len(block) - 1

    vertex_value = {0: -1}
    output_inputs = []
    for t in range(1, out):
        width = vertex_channels[t]
        summands = []
        for src in range(1, t):
            if matrix[src][t]:
                source = vertex_value[src]
                if vertex_channels[src] != width:
                    source = emit(Layer(f"vertex_{t}/truncate_{src}", TRUNCATE, size, 1, 1,
                                        vertex_channels[src], width), (source,))
                summands.append(source)
        if matrix[0][t]:
            summands.append(emit(Layer(f"vertex_{t}/projection", CONV, size, 1, 1, input_channels, width), (-1,)))
        vertex_input = summands[0]
        if len(summands) > 1:
            vertex_input = emit(Layer(f"vertex_{t}/sum", ADD, size, 1, 1, width, width), tuple(summands))
        kind, kernel = _OP_KERNELS[ops[t]]
        vertex_value[t] = emit(Layer(f"vertex_{t}/{ops[t]}", kind, size, kernel, 1, width, width), (vertex_input,))
        if matrix[t][out]:
            output_inputs.append(vertex_value[t])

    if matrix[0][out]:
        projection = emit(Layer("output/projection", CONV, size, 1, 1, input_channels, channels), (-1,))
    if not output_inputs:
        return block  # the cell is its projection
    concatenated = output_inputs[0]
    if len(output_inputs) > 1:
        concatenated = emit(Layer("output/concat", CONCAT, size, 1, 1, channels, channels), tuple(output_inputs))
    if matrix[0][out]:
        emit(Layer("output/sum", ADD, size, 1, 1, channels, channels), (concatenated, projection))
    return block
