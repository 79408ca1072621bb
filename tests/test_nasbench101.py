"""Tests of nngp_lib.spaces.nb101: validation, pruning, the network's parameter and FLOP
counts, the enumeration of the whole space and sampling from it.

The NB101 table (30,001 architectures with NB101's own hash and parameter count) and
NB101's published cell count (423,624) are the references.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from nngp_lib.spaces import nb101 as nb
from nngp_lib.spaces.nb101 import space as nb_space
from nngp_lib.spaces.nb101 import (
    AVAILABLE_OPS,
    CONV1X1,
    CONV3X3,
    INPUT,
    MAXPOOL3X3,
    OUTPUT,
    SPACE_SIZE,
    ModelSpec,
    network_layers,
    random_spec,
    sample_specs,
    search_space,
    specs_from_table,
)


@pytest.fixture(scope="module")
def table(data_dir) -> pd.DataFrame:
    return pd.read_csv(data_dir / "nasbench101" / "nb101_cifar10_30k.csv.gz")


@pytest.fixture(scope="module")
def space() -> nb.SearchSpace:
    return search_space()


# -- validation -------------------------------------------------------------------------------

CHAIN3 = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
FAN_10_EDGES = [[0, 1, 1, 1, 1, 1, 0]] + [[0] * 6 + [1] for _ in range(5)] + [[0] * 7]


@pytest.mark.parametrize(
    "matrix, ops, fault",
    [
        (np.zeros((2, 3), int), [INPUT, OUTPUT], "must be square"),
        ([[0, 1], [1, 0]], [INPUT, OUTPUT], "strictly upper-triangular"),
        (np.eye(8, k=1, dtype=int), [INPUT] + [CONV3X3] * 6 + [OUTPUT], "8 vertices, .* at most 7"),
        (FAN_10_EDGES, [INPUT] + [CONV1X1] * 5 + [OUTPUT], "10 edges after pruning"),
        (CHAIN3, [CONV3X3, CONV3X3, OUTPUT], "first op must be 'input'"),
        (CHAIN3, [INPUT, CONV3X3, CONV3X3], "last op must be 'output'"),
        (CHAIN3, [INPUT, "conv5x5", OUTPUT], "unknown op 'conv5x5'"),
        ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT], "output is not reachable"),
        ([[0, 2], [0, 0]], [INPUT, OUTPUT], "entries must be 0 or 1"),
        (CHAIN3, [INPUT, OUTPUT], "2 ops for a 3-vertex matrix"),
    ],
)
def test_invalid_cell_raises_one_line_error_naming_the_fault(matrix, ops, fault):
    with pytest.raises(ValueError, match=fault) as error:
        ModelSpec(matrix, ops)
    assert "\n" not in str(error.value)


def test_edge_limit_counts_edges_after_pruning():
    # 10 edges, but vertex 5 is dangling (no path to the output): pruning leaves 8.
    matrix = np.zeros((7, 7), int)
    for src, dst in [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 6), (2, 6), (3, 6), (4, 6), (1, 5)]:
        matrix[src, dst] = 1
    spec = ModelSpec(matrix, [INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, CONV3X3, CONV1X1, OUTPUT])
    assert spec.num_vertices == 6 and spec.num_edges == 8


# -- pruning ----------------------------------------------------------------------------------


def test_pruning_removes_vertices_off_every_input_output_path():
    # Vertex 2 is a dead end (no path to the output); vertex 3 is unreachable from the input.
    matrix = np.zeros((6, 6), int)
    for src, dst in [(0, 1), (1, 4), (4, 5), (0, 2), (3, 5)]:
        matrix[src, dst] = 1
    ops = [INPUT, CONV3X3, MAXPOOL3X3, CONV1X1, CONV1X1, OUTPUT]
    spec = ModelSpec(matrix, ops)

    pruned = ModelSpec(np.eye(4, k=1, dtype=int), [INPUT, CONV3X3, CONV1X1, OUTPUT])
    assert spec == pruned
    assert spec.hash() == pruned.hash()
    assert spec.original_ops == tuple(ops)
    np.testing.assert_array_equal(spec.original_matrix, matrix)


def test_hash_is_invariant_to_renumbering_interior_vertices():
    # Two parallel branches (conv3x3, conv1x1) written in either order are one cell.
    matrix = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    a = ModelSpec(matrix, [INPUT, CONV3X3, CONV1X1, OUTPUT])
    b = ModelSpec(matrix, [INPUT, CONV1X1, CONV3X3, OUTPUT])
    assert a != b and a.hash() == b.hash()
    assert a.hash() != ModelSpec(matrix, [INPUT, CONV3X3, CONV3X3, OUTPUT]).hash()


# -- the CIFAR-10 network: parameters and FLOPs ------------------------------------------------


def _projection_only_network() -> tuple[int, int]:
    """Parameters and FLOPs of the network whose cell is a single input -> output edge:
    every cell is one 1x1 conv-bn-relu projection to the cell's channels."""

    def conv(size, kernel, c_in, c_out):
        return kernel * kernel * c_in * c_out + 2 * c_out, 2 * size * size * kernel * kernel * c_in * c_out

    layers = [conv(32, 3, 3, 128)]
    layers += [conv(32, 1, 128, 128)] * 3
    layers += [conv(16, 1, 128, 256)] + [conv(16, 1, 256, 256)] * 2
    layers += [conv(8, 1, 256, 512)] + [conv(8, 1, 512, 512)] * 2
    layers += [(512 * 10 + 10, 2 * 512 * 10)]
    return sum(p for p, _ in layers), sum(f for _, f in layers)


def test_counts_by_hand_for_the_two_vertex_cell(table):
    spec = ModelSpec([[0, 1], [0, 0]], [INPUT, OUTPUT])
    params, flops = _projection_only_network()
    assert spec.num_params() == params
    assert spec.flops() == flops
    assert table.loc[table.hash == spec.hash(), "trainable_parameters"].item() == params


def test_network_layers_shapes_and_totals():
    # Vertex 1 feeds vertex 2 and the output; vertex 2 feeds the output; input -> output too.
    matrix = [[0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    spec = ModelSpec(matrix, [INPUT, CONV3X3, MAXPOOL3X3, OUTPUT])
    layers = network_layers(spec)

    names = [layer.name for layer in layers]
    assert len(set(names)) == len(names)
    assert names[0] == "stem" and names[-2:] == ["global_avgpool", "dense"]
    assert [layer.name for layer in layers if layer.kind == nb.MAXPOOL and layer.stride == 2] == [
        "stack1/downsample", "stack2/downsample",
    ]
    cell = [layer for layer in layers if layer.name.startswith("stack1/module0/")]
    # 256 output channels split over the two vertices feeding the output: 128 each.
    shapes = [
        (layer.name, layer.size, layer.kernel, layer.in_channels, layer.out_channels)
        for layer in cell
    ]
    assert shapes == [
        ("stack1/module0/vertex_1/projection", 16, 1, 128, 128),
        ("stack1/module0/vertex_1/conv3x3-bn-relu", 16, 3, 128, 128),
        ("stack1/module0/vertex_2/maxpool3x3", 16, 3, 128, 128),
        ("stack1/module0/output/projection", 16, 1, 128, 256),
    ]
    assert layers[-1].in_channels == 512 and layers[-1].out_channels == 10
    assert spec.num_params() == sum(layer.num_params for layer in layers)
    assert spec.flops() == sum(layer.flops for layer in layers)
    assert all(layer.flops == 0 and layer.num_params == 0 for layer in layers if "pool" in layer.kind)


@pytest.mark.slow
def test_every_table_row_hashes_and_counts_like_nasbench101(table):
    specs = specs_from_table(table)
    assert [spec.hash() for spec in specs] == table["hash"].tolist()
    assert [spec.num_params() for spec in specs] == table["trainable_parameters"].tolist()


def test_flops_track_parameters_over_the_table(table):
    specs = specs_from_table(table.sample(1000, random_state=0))
    flops = np.array([spec.flops() for spec in specs])
    params = np.array([spec.num_params() for spec in specs])
    assert (flops > 0).all()
    # Same layers, different spatial sizes per stack: strongly but not exactly monotone.
    assert scipy.stats.spearmanr(flops, params).statistic > 0.95


# -- the whole space --------------------------------------------------------------------------


def _generate_graphs(max_vertices: int) -> dict[str, tuple[list[list[int]], list[int]]]:
    """NB101's generate_graphs.py, literally: hash -> first (matrix, labeling) seen."""
    buckets = {}
    for V in range(2, max_vertices + 1):
        for bits in range(2 ** (V * (V - 1) // 2)):
            edge_bit = [[y * (y - 1) // 2 + x for y in range(V)] for x in range(V)]
            matrix = np.array([[x < y and (bits >> edge_bit[x][y]) % 2 for y in range(V)] for x in range(V)], int)
            full_dag = matrix[:-1].any(axis=1).all() and matrix[:, 1:].any(axis=0).all()
            if not full_dag or matrix.sum() > nb.MAX_EDGES:
                continue
            for labeling in itertools.product(range(len(AVAILABLE_OPS)), repeat=V - 2):
                labeling = [-1, *labeling, -2]
                buckets.setdefault(nb.hash_module(matrix, labeling), (matrix.tolist(), labeling))
    return buckets


def test_fast_enumeration_reproduces_generate_graphs_up_to_five_vertices():
    # Small enough to run NB101's brute force (every labeled graph hashed); the table
    # test below covers 6 and 7 vertices.
    expected = list(_generate_graphs(5).items())
    cells = [cell for V in range(2, 6) for cell in nb_space._representatives(V)]
    found = [(m.tolist(), [-1, *labels, -2]) for m, labelings in cells for labels in labelings.tolist()]
    assert list(zip(nb_space._hash_cells(cells), found)) == expected


@pytest.mark.slow
def test_space_has_nasbench101s_count_of_distinct_cells(space):
    assert len(space) == SPACE_SIZE
    assert len(np.unique(space.hashes)) == SPACE_SIZE
    # NB101's order: by number of vertices first.
    assert (np.diff(space.num_vertices) >= 0).all()
    assert space[0] == ModelSpec([[0, 1], [0, 0]], [INPUT, OUTPUT])


@pytest.mark.slow
def test_space_holds_the_exact_graph_nasbench101_stores_for_every_table_row(space, table):
    positions = space.indices_of_hashes(table["hash"].to_numpy())
    assert (positions >= 0).all()
    for position, adjacency, ops in zip(positions, table["adjacency"], table["ops"]):
        spec = space[position]
        assert spec.matrix.tolist() == json.loads(adjacency) and list(spec.ops) == json.loads(ops)
    assert space.index_of_hash(table["hash"].iloc[-1]) == positions[-1]
    with pytest.raises(KeyError, match="not a NAS-Bench-101 cell"):
        space.index_of_hash("0" * 32)


@pytest.mark.slow
def test_enumerated_cells_are_valid_pruned_and_hashed_like_hash_module(space):
    rng = np.random.default_rng(0)
    for position in rng.choice(len(space), size=2000, replace=False):
        cell = space[position]
        validated = ModelSpec(cell.matrix, cell.ops)  # validates and prunes
        assert validated == cell
        assert validated.hash() == space.hashes[position]
        assert validated.num_edges <= nb.MAX_EDGES
    assert list(itertools.islice(nb.enumerate_space(), 3)) == [space[0], space[1], space[2]]


def test_space_cache_is_validated_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    # A stand-in space of 100 copies of the 2-vertex cell keeps the test quick.
    size = 100
    labels = np.full((size, nb.MAX_VERTICES), nb.PAD_LABEL, np.int8)
    labels[:, :2] = [-1, -2]
    matrices = np.zeros((size, nb.MAX_VERTICES, nb.MAX_VERTICES), np.int8)
    matrices[:, 0, 1] = 1
    hashes = np.array([f"{i:032x}" for i in range(size)])
    space = nb.SearchSpace(matrices, labels, np.full(size, 2, np.int8), hashes)
    monkeypatch.setattr(nb_space, "SPACE_SIZE", size)
    builds = []
    monkeypatch.setattr(nb_space, "build_search_space", lambda: builds.append(1) or space)
    monkeypatch.setattr(nb_space, "_SPACES", {})
    path = tmp_path / "nasbench101" / "nb101_space_v1.npz"

    assert search_space(cache_dir=tmp_path) is space and len(builds) == 1 and path.exists()
    monkeypatch.setattr(nb_space, "_SPACES", {})
    reloaded = search_space(cache_dir=tmp_path)
    assert len(builds) == 1  # read from the file
    for field in ("matrices", "labels", "num_vertices", "hashes"):
        np.testing.assert_array_equal(getattr(reloaded, field), getattr(space, field))

    def tamper_one_label(path):  # a readable archive whose arrays no longer match the checksum
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["labels"][-1, 1] = (arrays["labels"][-1, 1] + 1) % len(AVAILABLE_OPS)
        np.savez_compressed(path, **arrays)

    def truncate(path):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def garble_end(path):
        path.write_bytes(path.read_bytes()[:-4096] + bytes(4096))

    for corrupt in (tamper_one_label, truncate, garble_end):
        corrupt(path)
        monkeypatch.setattr(nb_space, "_SPACES", {})
        with pytest.warns(UserWarning, match="corrupt; rebuilding"):
            search_space(cache_dir=tmp_path)
        assert nb_space._read_space(path) is not None  # rewritten whole
    assert len(builds) == 4
    assert not list(path.parent.glob("*.tmp"))


# -- sampling ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_sampling_is_seeded_and_uniform_over_cells(space):
    assert sample_specs(20, seed=3) == sample_specs(20, seed=3)
    assert sample_specs(20, seed=3) != sample_specs(20, seed=4)
    assert random_spec(np.random.default_rng(5)) == random_spec(np.random.default_rng(5))
    with pytest.raises(ValueError, match="cannot sample"):
        sample_specs(SPACE_SIZE + 1)

    samples = sample_specs(4000, seed=0)
    positions = space.indices_of_hashes([spec.hash() for spec in samples])
    assert len(set(positions.tolist())) == len(samples) and (positions >= 0).all()
    # Uniform over cells: positions uniform, and cell sizes in the space's proportions
    # (a sampler uniform over sizes or over matrices would fail both by far).
    assert scipy.stats.kstest(positions / len(space), "uniform").pvalue > 1e-3
    groups = np.maximum(space.num_vertices, 5)  # 2..5 vertices pooled: too rare apart
    expected = np.bincount(groups)[5:] / len(space) * len(samples)
    observed = np.bincount(groups[positions], minlength=8)[5:]
    assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3
    assert {op for spec in samples for op in spec.ops[1:-1]} == set(AVAILABLE_OPS)


@pytest.mark.slow
def test_permutation_samples_are_nested_and_reach_cells_outside_the_table(space, data_dir):
    from nngp_lib.spaces.nb101 import load_table, permutation_sample

    first, more = permutation_sample(50, seed=0), permutation_sample(200, seed=0)
    assert more[:50] == first and len({spec.hash() for spec in more}) == 200
    assert permutation_sample(50, seed=1) != first
    in_table = set(load_table()["hash"])
    outside = [spec for spec in more if spec.hash() not in in_table]
    # the table holds 30,001 of 423,624 cells, so most of a uniform draw lies outside it
    assert len(outside) > 150
    with pytest.raises(ValueError, match="cannot sample"):
        permutation_sample(SPACE_SIZE + 1)
