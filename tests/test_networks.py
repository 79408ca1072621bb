"""The NAS-Bench-101 network in JAX: structure, initialization, batch norm, compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table
from nngp_lib.networks import layers
from nngp_lib.spaces.nb101 import CONV1X1, CONV3X3, INPUT, MAXPOOL3X3, OUTPUT, ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nb101_net

# Every code path (both kinds of stack, cells fed by a stack input and by a cell) at
# little compute; all tests share it and 4 images of 8x8, hence one set of compilations.
TINY = dict(stem_channels=8, num_stacks=2, modules_per_stack=2)


@pytest.fixture(scope="module")
def table(data_dir):
    return load_table(data_dir)


@pytest.fixture(scope="module")
def images(data_dir) -> np.ndarray:
    """(4, 32, 32, 3) real standardized CIFAR-10 training images."""
    return nngp_split(4, 0, seed=0, data_dir=data_dir).x_train


@pytest.fixture(scope="module")
def small_images(images) -> np.ndarray:
    """The same images averaged down to 8x8."""
    return images.reshape(4, 8, 4, 8, 4, 3).mean(axis=(2, 4))


def _spec(row) -> ModelSpec:
    return ModelSpec.from_json(row["adjacency"], row["ops"])


def _rows(table, count: int, seed: int):
    """The smallest and largest network of the table and ``count`` random rows."""
    picks = [table["trainable_parameters"].idxmin(), table["trainable_parameters"].idxmax()]
    picks += np.random.default_rng(seed).choice(len(table), count, replace=False).tolist()
    return [table.loc[i] for i in picks]


def _num_params(params) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))


def test_parameter_count_matches_nasbench101(table):
    for row in _rows(table, 8, seed=1):
        spec = _spec(row)
        net = nb101_net.network(spec)
        shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0))
        assert _num_params(shapes["params"]) == row["trainable_parameters"], spec
        assert net.flops(32, 32) == spec.flops()
        assert net.feature_dim == 512


def test_features_and_logits_on_cifar10(table, small_images):
    images = small_images
    spec = _spec(table.loc[0])
    net = nb101_net.network(spec, **TINY)
    variables = net.init(jax.random.PRNGKey(0))
    feats, stats = net.features(variables, images)
    assert feats.shape == (4, 16) and feats.dtype == jnp.float32
    assert np.isfinite(feats).all() and (np.asarray(feats) >= 0).all()  # pooled ReLUs
    assert len(np.unique(np.asarray(feats), axis=0)) == 4  # distinct images, distinct features
    unchanged = jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), stats, variables["batch_stats"])
    assert jax.tree_util.tree_all(unchanged)  # inference mode leaves them alone
    logits, _ = net.apply(variables, images)
    assert logits.shape == (4, 10)


@pytest.mark.parametrize("size", [32, 16, 15])
def test_images_of_any_size_are_accepted(table, images, size):
    net = nb101_net.network(_spec(table.loc[0]), **TINY)
    feats, _ = net.features(net.init(jax.random.PRNGKey(0)), images[:2, :size, :size])
    assert feats.shape == (2, 16) and np.isfinite(feats).all()
    if size < 32:
        assert net.flops(size, size) < net.flops(32, 32) / 3


def test_variance_scaling_is_tf1_truncated_normal():
    bound = 2 / layers._TRUNCATED_NORMAL_STDDEV  # 2 standard deviations of the untruncated normal
    for distribution in ("truncated_normal", "normal"):
        kernel = layers.variance_scaling(jax.random.PRNGKey(0), (3, 3, 64, 128), distribution=distribution)
        w = np.asarray(kernel).ravel() * np.sqrt(3 * 3 * 64)  # unit variance when right
        assert abs(w.var() - 1) < 0.02 and abs(w.mean()) < 0.01
        assert (np.abs(w).max() <= bound + 1e-5) == (distribution == "truncated_normal")


def test_initialization_follows_tensorflow1(table):
    net = nb101_net.network(_spec(table.loc[0]), **TINY)
    variables = net.init(jax.random.PRNGKey(3))
    params, stats = dict(variables["params"]), variables["batch_stats"]
    dense = params.pop("dense")
    bound = 2 / layers._TRUNCATED_NORMAL_STDDEV
    for path, value in jax.tree_util.tree_leaves_with_path(params):
        name = path[-1].key
        if name == "kernel":
            assert np.abs(value).max() * np.sqrt(np.prod(value.shape[:-1])) <= bound + 1e-5
        else:
            assert (np.asarray(value) == (1 if name == "scale" else 0)).all(), path
    for path, value in jax.tree_util.tree_leaves_with_path(stats):
        assert (np.asarray(value) == (0 if path[-1].key == "mean" else 1)).all(), path
    limit = np.sqrt(6 / (16 + 10))  # Glorot-uniform
    assert dense["kernel"].shape == (16, 10) and np.abs(dense["kernel"]).max() <= limit
    assert np.abs(dense["kernel"]).max() > 0.8 * limit
    assert (np.asarray(dense["bias"]) == 0).all()


def test_init_is_a_function_of_the_key(table):
    net = nb101_net.network(_spec(table.loc[1]), **TINY)
    a, b, c = (net.init(jax.random.PRNGKey(seed)) for seed in (0, 0, 1))
    same = jax.tree_util.tree_map(lambda x, y: bool((x == y).all()), a, b)
    assert jax.tree_util.tree_all(same)
    stem_a, stem_c = a["params"]["stem"]["kernel"], c["params"]["stem"]["kernel"]
    assert not np.allclose(stem_a, stem_c)


@pytest.mark.parametrize("momentum", [0.997, 0.0])
def test_training_pass_sets_moving_statistics_like_tf1(table, small_images, momentum):
    images = small_images
    net = nb101_net.network(_spec(table.loc[0]), **TINY)
    variables = net.init(jax.random.PRNGKey(0))
    _, stats = net.features(variables, images, train=True, bn_momentum=momentum)
    # The stem's statistics, from its conv output computed independently.
    kernel = variables["params"]["stem"]["kernel"]
    y = np.asarray(
        lax.conv_general_dilated(images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
        np.float64,
    ).reshape(-1, 8)
    expected_mean = (1 - momentum) * y.mean(axis=0)
    expected_var = momentum + (1 - momentum) * y.var(axis=0, ddof=1)  # Bessel-corrected
    np.testing.assert_allclose(stats["stem"]["mean"], expected_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["stem"]["var"], expected_var, rtol=1e-4)
    # Every layer moved, and only the statistics did.
    moved = jax.tree_util.tree_map(
        lambda new, old: bool((new != old).any()), stats, variables["batch_stats"]
    )
    assert jax.tree_util.tree_all(moved)
    assert jax.tree_util.tree_structure(stats) == jax.tree_util.tree_structure(variables["batch_stats"])


def test_images_interact_only_in_training_mode(table, small_images):
    net = nb101_net.network(_spec(table.loc[2]), **TINY)
    variables = net.init(jax.random.PRNGKey(0))
    other = small_images.copy()
    other[2:] = small_images[2:, :, ::-1]  # the last two images mirrored
    for train in (False, True):
        a, _ = net.features(variables, small_images, train=train)
        b, _ = net.features(variables, other, train=train)
        assert not np.allclose(a[2:], b[2:], rtol=1e-3)
        assert np.allclose(a[:2], b[:2], rtol=1e-5, atol=1e-7) == (not train)


def _reference_features(spec: ModelSpec, variables, x, stem_channels, num_stacks, modules_per_stack):
    """NB101's build_module written independently: vertices evaluated recursively from
    their inputs with plain jax.numpy, inference mode (jit it: one compilation)."""
    params, stats = variables["params"], variables["batch_stats"]

    def conv_bn_relu(p, s, h):
        y = lax.conv_general_dilated(h, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.maximum((y - s["mean"]) / jnp.sqrt(s["var"] + 1e-5) * p["scale"] + p["offset"], 0)

    def pool(h, window, stride):
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "SAME")

    def cell(scope, h, channels):
        out = spec.num_vertices - 1
        widths = spec.vertex_channels(h.shape[-1], channels)
        cache = {0: h}

        def vertex(t):
            if t not in cache:
                terms = [vertex(u)[..., : widths[t]] for u in range(1, t) if spec.matrix[u, t]]
                if spec.matrix[0, t]:
                    name = f"{scope}vertex_{t}/projection"
                    terms.append(conv_bn_relu(params[name], stats[name], h))
                total = sum(terms)
                if spec.ops[t] == MAXPOOL3X3:
                    cache[t] = pool(total, 3, 1)
                else:
                    name = f"{scope}vertex_{t}/{spec.ops[t]}"
                    cache[t] = conv_bn_relu(params[name], stats[name], total)
            return cache[t]

        fed = [vertex(t) for t in range(1, out) if spec.matrix[t, out]]
        projection = (
            conv_bn_relu(params[f"{scope}output/projection"], stats[f"{scope}output/projection"], h)
            if spec.matrix[0, out]
            else 0
        )
        return (jnp.concatenate(fed, axis=-1) if fed else 0) + projection

    h = conv_bn_relu(params["stem"], stats["stem"], x)
    channels = stem_channels
    for stack in range(num_stacks):
        if stack:
            h, channels = pool(h, 2, 2), 2 * channels
        for m in range(modules_per_stack):
            h = cell(f"stack{stack}/module{m}/", h, channels)
    return h.mean(axis=(1, 2))


HAND_MADE_CELLS = [
    # input -> output only: the cell is a projection
    ModelSpec([[0, 1], [0, 0]], [INPUT, OUTPUT]),
    # a 3-way split of the output (widths 3, 3, 2 of 8): vertex 4 sums a projection and
    # vertex 1 truncated from 3 to 2 channels; a pooling vertex
    ModelSpec(
        [
            [0, 1, 0, 0, 1, 1],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0],
        ],
        [INPUT, CONV1X1, CONV3X3, MAXPOOL3X3, CONV3X3, OUTPUT],
    ),
]


@pytest.mark.parametrize("case", ["projection only", "split and truncation", "smallest", "largest", "random"])
def test_network_matches_an_independent_build_module(table, small_images, case):
    smallest, largest, random_row = _rows(table, 1, seed=5)
    spec = {
        "projection only": HAND_MADE_CELLS[0],
        "split and truncation": HAND_MADE_CELLS[1],
        "smallest": _spec(smallest),
        "largest": _spec(largest),
        "random": _spec(random_row),
    }[case]
    net = nb101_net.network(spec, **TINY)
    variables = net.init(jax.random.PRNGKey(0))
    # Random statistics, so that batch norm is not the identity.
    rng = np.random.default_rng(0)
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.uniform(0.1, 1.0, s.shape), jnp.float32), variables["batch_stats"]
    )
    feats, _ = net.features(variables, small_images)
    reference = jax.jit(lambda v, x: _reference_features(spec, v, x, 8, 2, 2))
    expected = reference(variables, small_images)
    np.testing.assert_allclose(feats, expected, rtol=2e-5, atol=1e-6)


def test_whole_network_can_be_jitted_and_differentiated(table, small_images):
    net = nb101_net.network(_spec(table.loc[3]), **TINY)
    variables = net.init(jax.random.PRNGKey(0))
    eager, _ = net.features(variables, small_images)
    jitted, _ = jax.jit(net.features)(variables, small_images)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-7)

    def loss(params):
        logits, _ = net.apply({**variables, "params": params}, small_images, train=True)
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])

    grads = jax.grad(loss)(variables["params"])
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(variables["params"])
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves)
    assert sum(float(jnp.abs(g).sum()) > 0 for g in leaves) == len(leaves)


@pytest.mark.slow
def test_precompiled_primitives_serve_every_new_cell(table, small_images):
    batch = len(small_images)
    config = dict(stem_channels=8, num_stacks=2)  # as TINY: precompile covers any modules_per_stack
    nb101_net.precompile(batch_size=batch, train_batch_size=batch, image_size=(8, 8), **config)
    # The rows with the most interior vertices feeding the output (the widest channel
    # split), the smallest and largest networks, and random ones.
    fan_in = [int(np.asarray(_spec(r).matrix)[1:-1, -1].sum()) for _, r in table.head(2000).iterrows()]
    rows = [table.loc[int(np.argmax(fan_in))]] + _rows(table, 6, seed=7)
    for row in rows:
        with layers.count_compilations() as compiled:
            net = nb101_net.network(_spec(row), **TINY)
            variables = net.init(jax.random.PRNGKey(1))
            _, variables["batch_stats"] = net.features(variables, small_images, train=True)
            feats, _ = net.features(variables, small_images)
            feats.block_until_ready()
        assert compiled.count == 0, row["hash"]


@pytest.mark.parametrize("height, width", [(8, 8), (7, 9)])
def test_primitives_match_their_textbook_forms(height, width):
    """max_pool and 1x1 convs take faster routes than reduce_window and conv; same results."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, height, width, 5), np.float32))
    for window, stride in [(3, 1), (2, 2), (3, 2)]:
        expected = lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "SAME")
        np.testing.assert_array_equal(layers.max_pool(x, window, stride), expected)
    params = {"kernel": jnp.asarray(rng.standard_normal((1, 1, 5, 6), np.float32))}
    expected = lax.conv_general_dilated(x, params["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(layers.conv_bn_relu(params, None, x)[0], jnp.maximum(expected, 0), rtol=1e-5, atol=1e-6)


def test_vertex_widths_cover_every_cell_of_the_table(table):
    for row in _rows(table, 500, seed=11):
        spec = _spec(row)
        for channels in (8, 128, 256, 512):
            for stack_input in (channels // 2, channels):
                widths = spec.vertex_channels(stack_input, channels)[1:-1]
                assert set(widths) <= set(nb101_net.vertex_widths(channels))


def test_bad_arguments_raise_one_line_errors(table, images):
    spec = _spec(table.loc[0])
    with pytest.raises(ValueError, match="stem_channels must be an integer >= 4"):
        nb101_net.network(spec, stem_channels=2)
    with pytest.raises(TypeError, match="spec must be a ModelSpec"):
        nb101_net.network(table.loc[0]["adjacency"])
    net = nb101_net.network(spec, **TINY)
    variables = net.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"images must be \(N, H, W, 3\) NHWC"):
        net.features(variables, images.transpose(0, 3, 1, 2))


def test_convnet_features_flops_and_bad_arguments():
    from nngp_lib.networks import convnet

    net = convnet.network(8, depth=3)
    images = np.random.default_rng(0).standard_normal((5, 6, 6, 3)).astype(np.float32)
    variables = net.init(jax.random.PRNGKey(0))
    features, _ = net.features(variables, images)
    assert features.shape == (5, 8) and np.all(np.asarray(features) >= 0)  # pooled ReLUs
    assert net.flops(6, 6) == 2 * 36 * 9 * (3 * 8 + 8 * 8 + 8 * 8)
    with_bn = convnet.network(8, batch_norm=True)
    assert set(with_bn.init(jax.random.PRNGKey(0))["params"]["conv0"]) == {"kernel", "scale", "offset"}
    with pytest.raises(ValueError, match="width, depth and in_channels >= 1") as error:
        convnet.network(0)
    assert "\n" not in str(error.value)
