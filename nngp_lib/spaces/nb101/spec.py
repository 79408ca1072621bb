"""A NAS-Bench-101 cell: one :class:`ModelSpec` is the single source of truth.

A cell is a DAG of at most 7 vertices and 9 edges given by an upper-triangular 0/1
adjacency ``matrix`` (``matrix[i, j] == 1`` is an edge i -> j) and one op name per
vertex: first ``input``, last ``output``, in between ``conv3x3-bn-relu``,
``conv1x1-bn-relu`` or ``maxpool3x3``. As in NAS-Bench-101 (Ying et al., 2019), a
spec is pruned on construction: vertices not on an input-to-output path are removed,
and the hash identifies the pruned graph up to isomorphism. The CIFAR-10 network of a
cell, its parameters and its FLOPs come from one layer plan (:mod:`.plan`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nngp_lib.spaces.nb101 import plan
from nngp_lib.spaces.nb101.plan import (  # noqa: F401  (the network's constants, re-exported)
    IMAGE_SIZE,
    NUM_LABELS,
    NUM_MODULES_PER_STACK,
    NUM_STACKS,
    STEM_CHANNELS,
    compute_vertex_channels,
)

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

    def network_plan(self, config: plan.NetworkConfig = plan.NB101_CIFAR10) -> plan.NetworkPlan:
        """The layer plan of this cell's network, which every backend runs (:mod:`.plan`)."""
        return plan.network_plan(self, config)

    def network_layers(self) -> list[plan.Layer]:
        """The conv, pooling and dense layers of the CIFAR-10 network; see :func:`.plan.network_layers`."""
        return plan.network_layers(self)

    def num_params(self) -> int:
        """Trainable parameters of the CIFAR-10 network, counted as NB101 counts them
        (its ``trainable_parameters``): conv kernels, batch-norm scale and offset, the
        dense layer's weights and bias."""
        return plan.network_totals(self)[0]

    def flops(self) -> int:
        """Forward FLOPs of the CIFAR-10 network for one 32x32x3 image: 2 x the
        multiply-adds of every convolution and of the dense layer (see :class:`.plan.Layer`
        for what is left out)."""
        return plan.network_totals(self)[1]

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




def specs_from_table(table: "pd.DataFrame") -> list[ModelSpec]:
    """One validated :class:`ModelSpec` per row of an NB101 table (its ``adjacency`` and
    ``ops`` columns, JSON strings or decoded lists), in row order."""
    pairs = zip(table["adjacency"], table["ops"])
    return [ModelSpec.from_json(adjacency, ops) for adjacency, ops in pairs]
