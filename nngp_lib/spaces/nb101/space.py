"""The whole NAS-Bench-101 space: its 423,624 unique cells, enumerated as NB101 does,
cached, and sampled."""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
import os
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from nngp_lib import config
from nngp_lib.spaces.nb101.spec import (
    AVAILABLE_OPS,
    INPUT,
    MAX_EDGES,
    MAX_VERTICES,
    OUTPUT,
    ModelSpec,
)

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


def permutation_sample(n: int, seed: int = 0, *, cache_dir: str | os.PathLike | None = None) -> list[ModelSpec]:
    """The first ``n`` cells of a seeded permutation of the 423,624 (NumPy's default
    generator): samples with one ``seed`` are prefixes of each other, as the table's
    ``--sample`` are (``nngp-nas score-table --space nb101``)."""
    space = search_space(cache_dir=cache_dir)
    if not 0 <= n <= len(space):
        raise ValueError(
            f"cannot sample {n} distinct cells from a space of {len(space)}; pass 0 <= n <= {len(space)}"
        )
    indices = np.random.default_rng(seed).permutation(len(space))[:n]
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
