"""The NAS-Bench-101 search space: one :class:`ModelSpec` is the single source of truth for a cell.

A cell is a DAG of at most 7 vertices and 9 edges given by an upper-triangular 0/1
adjacency ``matrix`` (``matrix[i, j] == 1`` is an edge i -> j) and one op name per
vertex: first ``input``, last ``output``, in between ``conv3x3-bn-relu``,
``conv1x1-bn-relu`` or ``maxpool3x3``. As in NAS-Bench-101 (Ying et al., 2019), a
spec is pruned on construction: vertices not on an input-to-output path are removed,
and the hash identifies the pruned graph up to isomorphism.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
import os
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from nngp_lib import config
from nngp_lib.data.nb101_table import load_table  # noqa: F401  (the space's table, re-exported)

if TYPE_CHECKING:
    import pandas as pd

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"
# The order matters: NB101 labels ops by their index in this list when hashing.
AVAILABLE_OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)

MAX_VERTICES = 7
MAX_EDGES = 9

# The CIFAR-10 network NB101 trained (its default config).
STEM_CHANNELS = 128
NUM_STACKS = 3
NUM_MODULES_PER_STACK = 3
NUM_LABELS = 10
IMAGE_SIZE = 32


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A validated, pruned NAS-Bench-101 cell.

    Args:
      matrix: (V, V) upper-triangular 0/1 adjacency, V <= 7, before pruning.
      ops: V op names, ``ops[0] == 'input'``, ``ops[-1] == 'output'``.

    After construction ``matrix`` (an int8 array) and ``ops`` (a tuple) hold the pruned
    cell; ``original_matrix`` and ``original_ops`` keep what was given. Invalid input
    raises ``ValueError`` with one line naming the fault.
    """

    matrix: np.ndarray
    ops: tuple[str, ...]
    original_matrix: np.ndarray = field(init=False, repr=False)
    original_ops: tuple[str, ...] = field(init=False, repr=False)

    def __init__(self, matrix: np.ndarray | Sequence[Sequence[int]], ops: Sequence[str]):
        matrix = np.array(matrix)
        ops = tuple(ops)
        _check_unpruned(matrix, ops)
        matrix = matrix.astype(np.int8)
        object.__setattr__(self, "original_matrix", matrix)
        object.__setattr__(self, "original_ops", ops)
        pruned_matrix, pruned_ops = prune(matrix, ops)
        num_edges = int(pruned_matrix.sum())
        if num_edges > MAX_EDGES:
            raise ValueError(
                f"invalid cell: {num_edges} edges after pruning, NAS-Bench-101 allows at most "
                f"{MAX_EDGES}; remove edges"
            )
        pruned_matrix.setflags(write=False)
        object.__setattr__(self, "matrix", pruned_matrix)
        object.__setattr__(self, "ops", pruned_ops)

    # -- identity -------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return int(self.matrix.sum())

    def hash(self) -> str:
        """The official NAS-Bench-101 module hash (32 hex digits) of the pruned cell."""
        labeling = [-1] + [AVAILABLE_OPS.index(op) for op in self.ops[1:-1]] + [-2]
        return hash_module(self.matrix, labeling)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelSpec):
            return NotImplemented
        return self.ops == other.ops and np.array_equal(self.matrix, other.matrix)

    def __hash__(self) -> int:
        return hash((self.ops, self.matrix.tobytes()))

    def __repr__(self) -> str:
        return f"ModelSpec(matrix={self.matrix.tolist()}, ops={list(self.ops)})"

    # -- serialization --------------------------------------------------------------------
    def to_json(self) -> dict:
        """The NB101 table's encoding: ``{'adjacency': [[...]], 'ops': [...]}``."""
        return {"adjacency": self.matrix.tolist(), "ops": list(self.ops)}

    @classmethod
    def from_json(cls, adjacency: str | Sequence[Sequence[int]], ops: str | Sequence[str]) -> "ModelSpec":
        """Build from the table's JSON columns (strings) or already-decoded lists."""
        if isinstance(adjacency, str):
            adjacency = json.loads(adjacency)
        if isinstance(ops, str):
            ops = json.loads(ops)
        return cls(adjacency, ops)

    # -- the CIFAR-10 network -------------------------------------------------------------
    def vertex_channels(self, input_channels: int, output_channels: int) -> list[int]:
        """Channels of each vertex of this cell inside the network (NB101's allocation)."""
        return compute_vertex_channels(input_channels, output_channels, self.matrix)

    def network_layers(self) -> list["Layer"]:
        """The conv, pooling and dense layers of the CIFAR-10 network; see :func:`network_layers`."""
        return network_layers(self)

    def num_params(self) -> int:
        """Trainable parameters of the CIFAR-10 network, counted as NB101 counts them
        (its ``trainable_parameters``): conv kernels, batch-norm scale and offset, the
        dense layer's weights and bias."""
        return _network_totals(self)[0]

    def flops(self) -> int:
        """Forward FLOPs of the CIFAR-10 network for one 32x32x3 image: 2 x the
        multiply-adds of every convolution and of the dense layer (see :class:`Layer`
        for what is left out)."""
        return _network_totals(self)[1]

    @classmethod
    def _from_valid(cls, matrix: np.ndarray, ops: tuple[str, ...]) -> "ModelSpec":
        """Skip validation and pruning, for cells valid and pruned by construction (the
        enumerated space): constructing 423,624 specs through ``__init__`` takes minutes."""
        spec = object.__new__(cls)
        matrix = np.array(matrix, dtype=np.int8)
        matrix.setflags(write=False)
        for name, value in (("matrix", matrix), ("ops", ops)):
            object.__setattr__(spec, name, value)
            object.__setattr__(spec, f"original_{name}", value)
        return spec


def _check_unpruned(matrix: np.ndarray, ops: tuple[str, ...]) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"invalid cell: adjacency matrix must be square, got shape {matrix.shape}")
    num_vertices = matrix.shape[0]
    if num_vertices < 2:
        raise ValueError(f"invalid cell: needs at least 2 vertices (input and output), got {num_vertices}")
    if num_vertices > MAX_VERTICES:
        raise ValueError(
            f"invalid cell: {num_vertices} vertices, NAS-Bench-101 allows at most {MAX_VERTICES}"
        )
    if not ((matrix == 0) | (matrix == 1)).all():
        raise ValueError("invalid cell: adjacency matrix entries must be 0 or 1")
    if np.tril(matrix).any():
        raise ValueError(
            "invalid cell: adjacency matrix must be strictly upper-triangular "
            "(edges go from a lower to a higher vertex index)"
        )
    if len(ops) != num_vertices:
        raise ValueError(
            f"invalid cell: {len(ops)} ops for a {num_vertices}-vertex matrix; give one op per vertex"
        )
    if ops[0] != INPUT:
        raise ValueError(f"invalid cell: first op must be {INPUT!r}, got {ops[0]!r}")
    if ops[-1] != OUTPUT:
        raise ValueError(f"invalid cell: last op must be {OUTPUT!r}, got {ops[-1]!r}")
    for op in ops[1:-1]:
        if op not in AVAILABLE_OPS:
            raise ValueError(
                f"invalid cell: unknown op {op!r}; interior ops must be one of {list(AVAILABLE_OPS)}"
            )


def prune(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Remove vertices not on an input-to-output path, exactly as NB101's ``ModelSpec._prune``.

    Raises ValueError when the output cannot be reached from the input.
    """
    num_vertices = matrix.shape[0]
    from_input = _reachable(matrix, 0, forward=True)
    to_output = _reachable(matrix, num_vertices - 1, forward=False)
    keep = sorted(from_input & to_output)
    if len(keep) < 2:
        raise ValueError("invalid cell: the output is not reachable from the input; add a path")
    pruned = matrix[np.ix_(keep, keep)].copy()
    return pruned, tuple(ops[i] for i in keep)


def _reachable(matrix: np.ndarray, start: int, forward: bool) -> set[int]:
    # Plain lists: numpy scalar indexing dominated the cost of building a spec.
    adjacency = (matrix if forward else matrix.T).tolist()
    seen, frontier = {start}, [start]
    while frontier:
        row = adjacency[frontier.pop()]
        for nxt, edge in enumerate(row):
            if edge and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def hash_module(matrix: np.ndarray, labeling: Sequence[int]) -> str:
    """NAS-Bench-101's graph hash: Weisfeiler-Lehman-style iterated MD5 of each vertex's
    (out-degree, in-degree, label), its in- and out-neighbours, then of the sorted hashes.

    ``labeling`` is -1 for the input, -2 for the output and the op's index in
    ``AVAILABLE_OPS`` otherwise. Isomorphic graphs get the same hash.
    """
    matrix = np.asarray(matrix)
    num_vertices = matrix.shape[0]
    in_edges = matrix.sum(axis=0).tolist()
    out_edges = matrix.sum(axis=1).tolist()
    hashes = [
        hashlib.md5(str((int(o), int(i), int(label))).encode("utf-8")).hexdigest()
        for o, i, label in zip(out_edges, in_edges, labeling)
    ]
    sources = [np.flatnonzero(matrix[:, v]).tolist() for v in range(num_vertices)]
    targets = [np.flatnonzero(matrix[v, :]).tolist() for v in range(num_vertices)]
    for _ in range(num_vertices):
        hashes = [
            hashlib.md5(
                (
                    "".join(sorted(hashes[w] for w in sources[v]))
                    + "|"
                    + "".join(sorted(hashes[w] for w in targets[v]))
                    + "|"
                    + hashes[v]
                ).encode("utf-8")
            ).hexdigest()
            for v in range(num_vertices)
        ]
    return hashlib.md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


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


def specs_from_table(table: "pd.DataFrame") -> list[ModelSpec]:
    """One validated :class:`ModelSpec` per row of an NB101 table (its ``adjacency`` and
    ``ops`` columns, JSON strings or decoded lists), in row order."""
    pairs = zip(table["adjacency"], table["ops"])
    return [ModelSpec.from_json(adjacency, ops) for adjacency, ops in pairs]


# -- the CIFAR-10 network, layer by layer ---------------------------------------------------

CONV = "conv"
MAXPOOL = "maxpool"
GLOBAL_AVGPOOL = "global_avgpool"
DENSE = "dense"


class Layer(NamedTuple):
    """One layer of NB101's CIFAR-10 network, acting on a ``size x size x in_channels`` input.

    ``kind`` is one of:

    * ``'conv'``: ``kernel x kernel`` convolution, stride 1, 'same' padding, no bias,
      followed by batch norm (trainable scale and offset) and ReLU. Every convolution of
      NB101 is one of these: the stem, the cell ops and the 1x1 projections.
    * ``'maxpool'``: ``kernel x kernel`` max-pooling with ``stride``, 'same' padding
      (the 3x3 stride-1 cell op and the 2x2 stride-2 downsampling between stacks).
    * ``'global_avgpool'``: mean over the ``size x size`` positions.
    * ``'dense'``: the ``in_channels -> out_channels`` logits layer, with bias.

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
        """Multiply-adds of the convolution or dense layer for one image; 0 for pooling."""
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


def network_layers(spec: ModelSpec) -> list[Layer]:
    """The layers of NB101's CIFAR-10 network for one cell, in NB101's build order.

    The network (NB101's ``model_builder.build_model_fn`` with its default config): a
    3x3 conv stem to 128 channels, then 3 stacks of 3 cells (numbered from 0, as in the
    names); before stacks 1 and 2 a 2x2 stride-2 max-pool, after which the cells double
    the channels (128, 256, 512 at 32x32, 16x16, 8x8); then global average pooling and a
    dense layer to 10 logits.

    Inside a cell (``build_module``), vertex ``t`` gets ``vertex_channels[t]`` channels
    (:func:`compute_vertex_channels`); its inputs from interior vertices are truncated to
    that width, its input from the cell input (if any) is a 1x1 conv projection, and its
    op keeps the width. The output concatenates the interior vertices that feed it; an
    input->output edge adds a 1x1 projection of the input to the cell's channels.

    Names follow NB101's variable scopes: ``stem``, ``stack{s}/downsample``,
    ``stack{s}/module{m}/vertex_{t}/projection``, ``stack{s}/module{m}/vertex_{t}/{op}``,
    ``stack{s}/module{m}/output/projection``, ``global_avgpool``, ``dense``.
    """
    return [
        layer._replace(name=scope + layer.name) if scope else layer
        for scope, block in _network_blocks(spec)
        for layer in block
    ]


def _network_blocks(spec: ModelSpec) -> list[tuple[str, list[Layer]]]:
    """The network as (scope, layers) blocks in build order. The 9 cells have only 5
    distinct shapes; cells of equal shape share one list, so totals need 5 cells, not 9."""
    matrix = spec.matrix.tolist()
    blocks = [("", [Layer("stem", CONV, IMAGE_SIZE, 3, 1, 3, STEM_CHANNELS)])]
    size, channels = IMAGE_SIZE, STEM_CHANNELS
    cells: dict[tuple[int, int, int], list[Layer]] = {}
    for stack in range(NUM_STACKS):
        input_channels = channels
        if stack > 0:
            downsample = Layer(f"stack{stack}/downsample", MAXPOOL, size, 2, 2, channels, channels)
            blocks.append(("", [downsample]))
            size, channels = size // 2, 2 * channels
        # The interior widths depend on the cell's output channels only (the input's
        # sets vertex 0 alone, unused here), so one call serves the stack's three cells.
        vertex_channels = compute_vertex_channels(input_channels, channels, spec.matrix)
        for module in range(NUM_MODULES_PER_STACK):
            shape = (size, input_channels, channels)
            if shape not in cells:
                cells[shape] = _cell_layers(matrix, spec.ops, vertex_channels, *shape)
            blocks.append((f"stack{stack}/module{module}/", cells[shape]))
            input_channels = channels
    blocks.append(("", [
        Layer("global_avgpool", GLOBAL_AVGPOOL, size, size, 1, channels, channels),
        Layer("dense", DENSE, 1, 1, 1, channels, NUM_LABELS),
    ]))
    return blocks


@functools.lru_cache(maxsize=1 << 16)
def _network_totals(spec: ModelSpec) -> tuple[int, int]:
    """(trainable parameters, FLOPs) summed over :func:`network_layers`, memoized:
    scoring code asks for both."""
    block_totals: dict[int, tuple[int, int]] = {}
    num_params = flops = 0
    for _, block in _network_blocks(spec):
        if id(block) not in block_totals:
            block_totals[id(block)] = (
                sum([layer.num_params for layer in block]),
                sum([layer.flops for layer in block]),
            )
        block_params, block_flops = block_totals[id(block)]
        num_params += block_params
        flops += block_flops
    return num_params, flops


_OP_KERNELS = {CONV3X3: (CONV, 3), CONV1X1: (CONV, 1), MAXPOOL3X3: (MAXPOOL, 3)}


def _cell_layers(
    matrix: list[list[int]],
    ops: tuple[str, ...],
    vertex_channels: list[int],
    size: int,
    input_channels: int,
    channels: int,
) -> list[Layer]:
    """The layers of one cell (NB101's ``build_module``), named relative to its scope."""
    out = len(matrix) - 1
    layers = []
    for t in range(1, out):
        width = vertex_channels[t]
        if matrix[0][t]:
            layers.append(Layer(f"vertex_{t}/projection", CONV, size, 1, 1, input_channels, width))
        kind, kernel = _OP_KERNELS[ops[t]]
        layers.append(Layer(f"vertex_{t}/{ops[t]}", kind, size, kernel, 1, width, width))
    if matrix[0][out]:
        layers.append(Layer("output/projection", CONV, size, 1, 1, input_channels, channels))
    return layers


# -- the whole search space -----------------------------------------------------------------

SPACE_SIZE = 423_624
"""Unique cells of NAS-Bench-101 (Ying et al., 2019): its official count."""

PAD_LABEL = -3
"""Label of the padding vertices in :class:`SearchSpace` arrays (cells with < 7 vertices)."""

_SPACE_FILE = Path("nasbench101") / "nb101_space_v1.npz"
_LABEL_OPS = {-1: INPUT, -2: OUTPUT, **dict(enumerate(AVAILABLE_OPS))}


@dataclass(frozen=True, eq=False)
class SearchSpace:
    """The 423,624 unique NAS-Bench-101 cells as arrays, in NB101's ``generate_graphs`` order.

    Each cell is its representative graph, the one NB101 stores (``module_adjacency``,
    ``module_operations``): the first labeled graph of its hash met by ``generate_graphs.py``.

    Attributes:
      matrices: (N, 7, 7) int8 adjacency; cell ``i`` is the top-left
        ``num_vertices[i]`` square, the rest is 0.
      labels: (N, 7) int8 NB101 labeling: -1 input, -2 output, ``k`` for
        ``AVAILABLE_OPS[k]``, :data:`PAD_LABEL` past the cell's vertices.
      num_vertices: (N,) int8, 2..7.
      hashes: (N,) ``<U32`` official module hashes, all distinct.

    ``space[i]`` is a :class:`ModelSpec`; iterating yields all N of them (a few seconds
    in all; prefer the arrays for whole-space statistics). The arrays are read-only views.
    """

    matrices: np.ndarray
    labels: np.ndarray
    num_vertices: np.ndarray
    hashes: np.ndarray

    def __post_init__(self):
        # One space is shared by every caller of search_space(): make it immutable.
        for name in ("matrices", "labels", "num_vertices", "hashes"):
            view = np.asarray(getattr(self, name)).view()
            view.setflags(write=False)
            object.__setattr__(self, name, view)

    def __len__(self) -> int:
        return len(self.hashes)

    def __getitem__(self, index: int) -> ModelSpec:
        index = operator.index(index)
        num_vertices = int(self.num_vertices[index])
        ops = tuple(_LABEL_OPS[label] for label in self.labels[index, :num_vertices].tolist())
        return ModelSpec._from_valid(self.matrices[index, :num_vertices, :num_vertices], ops)

    def __iter__(self) -> Iterator[ModelSpec]:
        return (self[i] for i in range(len(self)))

    def index_of_hash(self, module_hash: str) -> int:
        """Position of the cell with this official hash; KeyError if not in the space."""
        position = int(self.indices_of_hashes([module_hash])[0])
        if position < 0:
            raise KeyError(f"hash {module_hash!r} is not a NAS-Bench-101 cell")
        return position

    def indices_of_hashes(self, module_hashes: Sequence[str] | np.ndarray) -> np.ndarray:
        """Positions of many hashes at once, (M,) int64; -1 for hashes not in the space."""
        queries = np.asarray(module_hashes, dtype=str)
        if len(self) == 0 or len(queries) == 0:
            return np.full(len(queries), -1, dtype=np.int64)
        rank = np.searchsorted(self.hashes, queries, sorter=self._hash_order).clip(max=len(self) - 1)
        found = self._hash_order[rank]
        return np.where(self.hashes[found] == queries, found, -1)

    @functools.cached_property
    def _hash_order(self) -> np.ndarray:
        return np.argsort(self.hashes)


def search_space(*, cache_dir: str | os.PathLike | None = None, rebuild: bool = False) -> SearchSpace:
    """All 423,624 NAS-Bench-101 cells (see :class:`SearchSpace`), enumerated once and cached.

    The enumeration (:func:`build_search_space`, about a minute) is saved to
    ``<cache_dir>/nasbench101/nb101_space_v1.npz`` (default :func:`nngp_lib.config.cache_dir`,
    about 8 MB), validated on every load (cell count and a SHA-256 of the arrays, under a
    second) and rebuilt if missing or invalid, with a warning if it was corrupt;
    ``rebuild=True`` forces it. Within a process the result is memoized per cache folder.
    """
    path = Path(cache_dir if cache_dir is not None else config.cache_dir()).expanduser() / _SPACE_FILE
    if not rebuild and path in _SPACES:
        return _SPACES[path]
    space = None if rebuild else _read_space(path)
    if space is None:
        if path.exists() and not rebuild:
            warnings.warn(f"NAS-Bench-101 space cache {path} is corrupt; rebuilding it", stacklevel=2)
        space = build_search_space()
        _write_space(path, space)
    _SPACES[path] = space
    return space


_SPACES: dict[Path, SearchSpace] = {}


def enumerate_space(*, cache_dir: str | os.PathLike | None = None) -> Iterator[ModelSpec]:
    """Every NAS-Bench-101 cell, once, as NB101's representative :class:`ModelSpec`,
    in NB101's order (:func:`search_space`)."""
    return iter(search_space(cache_dir=cache_dir))


def sample_specs(n: int, seed: int = 0, *, cache_dir: str | os.PathLike | None = None) -> list[ModelSpec]:
    """``n`` distinct cells drawn uniformly from the 423,624 (without replacement),
    the same for the same ``seed`` (NumPy's default generator)."""
    space = search_space(cache_dir=cache_dir)
    if not 0 <= n <= len(space):
        raise ValueError(
            f"cannot sample {n} distinct cells from a space of {len(space)}; pass 0 <= n <= {len(space)}"
        )
    indices = np.random.default_rng(seed).choice(len(space), size=n, replace=False)
    return [space[i] for i in indices.tolist()]


def random_spec(rng: np.random.Generator, *, cache_dir: str | os.PathLike | None = None) -> ModelSpec:
    """One cell drawn uniformly from the 423,624 with ``rng``."""
    space = search_space(cache_dir=cache_dir)
    return space[int(rng.integers(len(space)))]


def build_search_space() -> SearchSpace:
    """Enumerate the space exactly as NB101's ``generate_graphs.py`` does, fast.

    NB101 walks, for 2..7 vertices, every upper-triangular matrix in the order of its
    edge bits (edge ``x -> y`` is bit ``y (y - 1) / 2 + x``), keeps the "full DAGs"
    (every vertex but the output has an out-edge, every vertex but the input an
    in-edge: nothing to prune) with at most 9 edges, and hashes every op labeling in
    ``itertools.product`` order; the first graph of each hash is its representative.
    That is 1.29M labeled graphs, about ten minutes of :func:`hash_module`. Instead,
    since the hash is an isomorphism invariant:

    1. Isomorphic matrices (input and output fixed, interior vertices permuted) are
       grouped by a canonical code, the least over the (V-2)! permutations; every
       class's representative uses its first matrix in bit order, because all of a
       class's labelings are met on that matrix before any later one.
    2. On that matrix, the labeled classes are the orbits of the labelings under its
       automorphisms; the representative is each orbit's least labeling.
    3. Only the 423,624 representatives are MD5-hashed (:func:`hash_module`'s
       algorithm, compiled per matrix). Hashes are distinct (checked), so no two
       non-isomorphic graphs share a hash and the partition is exactly NB101's.
    """
    cells = [cell for V in range(2, MAX_VERTICES + 1) for cell in _representatives(V)]
    hashes = _hash_cells(cells)
    matrices, labels, num_vertices = [], [], []
    for matrix, labelings in cells:
        V = matrix.shape[0]
        padded_matrix = np.zeros((MAX_VERTICES, MAX_VERTICES), np.int8)
        padded_matrix[:V, :V] = matrix
        matrices.append(np.broadcast_to(padded_matrix, (len(labelings), MAX_VERTICES, MAX_VERTICES)))
        padded_labels = np.full((len(labelings), MAX_VERTICES), PAD_LABEL, np.int8)
        padded_labels[:, 0], padded_labels[:, 1 : V - 1], padded_labels[:, V - 1] = -1, labelings, -2
        labels.append(padded_labels)
        num_vertices.append(np.full(len(labelings), V, np.int8))
    space = SearchSpace(
        matrices=np.concatenate(matrices),
        labels=np.concatenate(labels),
        num_vertices=np.concatenate(num_vertices),
        hashes=np.array(hashes, dtype="<U32"),
    )
    if len(space) != SPACE_SIZE or len(set(hashes)) != SPACE_SIZE:
        raise RuntimeError(
            f"enumerated {len(space)} cells with {len(set(hashes))} distinct hashes, expected "
            f"{SPACE_SIZE} of each: the enumeration is broken"
        )
    return space


def _representatives(num_vertices: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(matrix (V, V) int8, labelings (L, V-2) int8) for every class of unlabeled
    V-vertex cells, in NB101's order: matrices by edge bits, labelings in product order."""
    V = num_vertices
    pairs = [(x, y) for y in range(V) for x in range(y)]  # pairs[k] is edge bit k
    bits = np.arange(2 ** len(pairs), dtype=np.int64)
    keep = np.ones(len(bits), dtype=bool)
    for v in range(V):
        out_mask = sum(1 << k for k, (x, _) in enumerate(pairs) if x == v)
        in_mask = sum(1 << k for k, (_, y) in enumerate(pairs) if y == v)
        if v < V - 1:
            keep &= (bits & out_mask) != 0
        if v > 0:
            keep &= (bits & in_mask) != 0
    edges = ((bits[keep, None] >> np.arange(len(pairs))) & 1).astype(np.int64)  # (M, E)
    edges = edges[edges.sum(axis=1) <= MAX_EDGES]

    # codes[m, p]: matrix m with its vertices renamed by permutation p, as V*V bits.
    permutations = [(0, *p, V - 1) for p in itertools.permutations(range(1, V - 1))]
    weights = np.array([[1 << (p[x] * V + p[y]) for x, y in pairs] for p in permutations], dtype=np.int64)
    codes = edges @ weights.T  # (M, P); permutations[0] is the identity
    _, first_of_class = np.unique(codes.min(axis=1), return_index=True)

    interior = V - 2
    num_ops = len(AVAILABLE_OPS)
    labelings = np.array(list(itertools.product(range(num_ops), repeat=interior)), dtype=np.int8)
    labelings = labelings.reshape(num_ops**interior, interior)
    place_values = num_ops ** np.arange(interior - 1, -1, -1)  # product order = base-3 value
    own_code = np.arange(len(labelings))  # labelings are in product order
    for m in np.sort(first_of_class):
        matrix = np.zeros((V, V), dtype=np.int8)
        matrix[tuple(np.array(pairs).T)] = edges[m]
        orbit_min = own_code
        for p in np.flatnonzero(codes[m] == codes[m, 0])[1:]:  # non-trivial automorphisms
            moved = np.empty_like(labelings)
            moved[:, np.array(permutations[p][1:-1], dtype=np.int64) - 1] = labelings
            orbit_min = np.minimum(orbit_min, moved @ place_values)
        yield matrix, labelings[orbit_min == own_code]


def _hash_cells(cells: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """The hashes of every labeling of every (matrix, labelings) cell, in order."""
    hashes = []
    for matrix, labelings in cells:
        hasher = _labeled_hasher(matrix)
        hashes += [hasher([-1, *labeling, -2]) for labeling in labelings.tolist()]
    return hashes


def _labeled_hasher(matrix: np.ndarray) -> Callable[[Sequence[int]], str]:
    """``labeling -> hash_module(matrix, labeling)`` for one matrix, about twice as fast.

    The same MD5s of the same strings, with the rounds unrolled over the vertices into
    generated code (the neighbour lists become constants), which is what makes hashing
    the whole space take a minute rather than several.
    """
    num_vertices = matrix.shape[0]
    rows = matrix.tolist()
    names = [f"h{v}" for v in range(num_vertices)]

    def sorted_concat(vertices: list[int]) -> str:
        if len(vertices) <= 1:
            return names[vertices[0]] if vertices else '""'
        if len(vertices) == 2:
            a, b = (names[v] for v in vertices)
            return f"({a} + {b} if {a} < {b} else {b} + {a})"
        return '"".join(sorted((' + ", ".join(names[v] for v in vertices) + ")))"

    new_hashes = ", ".join(
        "md5(({} + '|' + {} + '|' + {}).encode()).hexdigest()".format(
            sorted_concat([w for w in range(num_vertices) if rows[w][v]]),
            sorted_concat([w for w in range(num_vertices) if rows[v][w]]),
            names[v],
        )
        for v in range(num_vertices)
    )
    source = (
        f"def rounds({', '.join(names)}):\n"
        f"    for _ in range({num_vertices}):\n"
        f"        {', '.join(names)}, = {new_hashes},\n"
        f"    return md5(str(sorted([{', '.join(names)}])).encode()).hexdigest()\n"
    )
    namespace = {"md5": hashlib.md5}
    exec(compile(source, f"<hash_module unrolled for {rows}>", "exec"), namespace)
    rounds = namespace["rounds"]
    degrees = list(zip(matrix.sum(axis=1).tolist(), matrix.sum(axis=0).tolist()))

    def hasher(labeling: Sequence[int]) -> str:
        return rounds(*[_initial_hash(o, i, label) for (o, i), label in zip(degrees, labeling)])

    return hasher


@functools.lru_cache(maxsize=None)
def _initial_hash(out_degree: int, in_degree: int, label: int) -> str:
    return hashlib.md5(str((out_degree, in_degree, label)).encode("utf-8")).hexdigest()


def _space_checksum(space: SearchSpace) -> str:
    digest = hashlib.sha256()
    for array in (space.matrices, space.labels, space.num_vertices, space.hashes.astype("S32")):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _read_space(path: Path) -> SearchSpace | None:
    """The cached space, or None if the file is missing, unreadable or fails validation."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            space = SearchSpace(
                matrices=archive["matrices"],
                labels=archive["labels"],
                num_vertices=archive["num_vertices"],
                hashes=archive["hashes"].astype("<U32"),
            )
            checksum = str(archive["checksum"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):
        return None
    shapes_ok = (
        space.matrices.shape == (SPACE_SIZE, MAX_VERTICES, MAX_VERTICES)
        and space.labels.shape == (SPACE_SIZE, MAX_VERTICES)
        and space.num_vertices.shape == space.hashes.shape == (SPACE_SIZE,)
        and space.matrices.dtype == space.labels.dtype == space.num_vertices.dtype == np.int8
    )
    if not shapes_ok or checksum != _space_checksum(space):
        return None
    return space


def _write_space(path: Path, space: SearchSpace) -> None:
    """Save atomically (temporary file, then rename); warn and go on if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False)
    except OSError as error:
        warnings.warn(f"could not cache the NAS-Bench-101 space at {path}: {error}", stacklevel=3)
        return
    try:
        with handle:
            np.savez_compressed(
                handle,
                matrices=space.matrices,
                labels=space.labels,
                num_vertices=space.num_vertices,
                hashes=space.hashes.astype("S32"),
                checksum=np.array(_space_checksum(space)),
            )
        os.chmod(handle.name, 0o644)  # as a plain file would be; temporary files are private
        os.replace(handle.name, path)
    except OSError as error:
        warnings.warn(f"could not cache the NAS-Bench-101 space at {path}: {error}", stacklevel=3)
    finally:
        Path(handle.name).unlink(missing_ok=True)  # gone already once renamed
