"""Tests of the MnasNet search space (nngp_lib.spaces.mnas) and its JAX network (nngp_lib.spaces.mnas.jax_network)."""

from __future__ import annotations

import hashlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nngp_lib.data import cifar10
from nngp_lib.networks import layers
from nngp_lib.spaces import mnas
from nngp_lib.spaces.mnas import BlockSpec, MnasSpec
from nngp_lib.spaces.mnas import jax_network as mnas_networks

KEY = jax.random.PRNGKey(0)


def block(op="mbconv6", k=3, se=0.0, skip="none", mult=1.0, delta=0) -> BlockSpec:
    return BlockSpec(op, k, se, skip, mult, delta)


def coverage_spec() -> MnasSpec:
    """A small spec with every op, both kernel sizes, SE and identity skips (13 layers)."""
    return MnasSpec((
        block("dconv", 3, 0.25, "none", 0.75, 0),
        block("mbconv3", 5, 0.0, "identity", 0.75, 0),
        block("mbconv6", 3, 0.25, "identity", 0.75, -1),
        block("conv", 5, 0.25, "identity", 0.75, -1),
        block("conv", 3, 0.0, "none", 0.75, -1),
        block("dconv", 5, 0.0, "identity", 0.75, -1),
        block("mbconv3", 3, 0.25, "none", 0.75, 0),
    ))  # fmt: skip


def num_leaves(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


# -- the space --------------------------------------------------------------------------------


def test_space_size_matches_the_rules():
    # 4 ops x 2 kernels x 2 SE ratios x 3 multipliers = 48 layer choices, times
    # (layers, skip) pairs: blocks 1 and 7 (1 layer in MobileNetV2) allow 1 layer without
    # identity or 2 layers with either skip (3 pairs); block 2 (2 layers) allows 1 layer
    # without identity or 2, 3 layers with either (5 pairs); blocks 3-6 allow all 6 pairs
    # (no first layer keeps shape with MobileNetV2's filters, so layers >= 2 for identity).
    assert mnas.space_size() == (48 * 3) ** 2 * (48 * 5) * (48 * 6) ** 4


def test_mobilenet_v2_matches_its_published_size_and_cost():
    spec = mnas.mobilenet_v2()
    assert spec.filters == (16, 24, 32, 64, 96, 160, 320)
    assert spec.num_layers == (1, 2, 3, 4, 3, 3, 1)
    # torchvision's mobilenet_v2 (same layers, ReLU6): 3,504,872 parameters; the
    # MobileNetV2 paper: 300M multiply-adds at 224x224.
    assert mnas.num_params(spec, num_classes=1000) == 3_504_872
    assert mnas.flops(spec, 224) / 2 == pytest.approx(300e6, rel=0.01)


def test_sampler_is_seeded_and_valid():
    first = mnas.sample_mnas(40, seed=3)
    assert first == mnas.sample_mnas(40, seed=3)
    assert first != mnas.sample_mnas(40, seed=4)
    assert all(isinstance(spec, MnasSpec) for spec in first)
    assert mnas.sample_mnas(0) == []


def test_sampler_is_uniform_over_valid_specs():
    # Block 1 has 3 valid (layers, skip) pairs for each layer choice: (1, none),
    # (2, none), (2, identity); uniform over valid specs gives each probability 1/3.
    specs = mnas.sample_mnas(3000, seed=0)
    pairs = [(spec.num_layers[0], spec.blocks[0].skip) for spec in specs]
    for pair in [(1, "none"), (2, "none"), (2, "identity")]:
        share = pairs.count(pair) / len(pairs)
        assert share == pytest.approx(1 / 3, abs=4 * math.sqrt(2 / 9 / len(pairs)))
    assert sorted(set(pairs)) == [(1, "none"), (2, "identity"), (2, "none")]
    ops = [b.conv_op for spec in specs for b in spec.blocks]
    assert {op: ops.count(op) / len(ops) for op in mnas.CONV_OPS} == pytest.approx(
        dict.fromkeys(mnas.CONV_OPS, 0.25), abs=0.02
    )


def test_json_round_trip_and_stable_hash():
    spec = mnas.sample_mnas(1, seed=7)[0]
    text = spec.to_json()
    assert MnasSpec.from_json(text) == spec
    assert MnasSpec.from_json(json.loads(text)) == spec
    assert spec.hash() == hashlib.md5(text.encode()).hexdigest()
    assert len({s.hash() for s in mnas.sample_mnas(200, seed=1)}) == 200
    # Equal values of other types (0 for 0.0, 1 for 1.0) make the same spec and hash.
    blocks = [BlockSpec(b.conv_op, b.kernel_size, int(b.se_ratio) if b.se_ratio == 0 else b.se_ratio,
                        b.skip, b.filter_multiplier, b.layer_delta) for b in spec.blocks]  # fmt: skip
    assert MnasSpec(tuple(blocks)).hash() == spec.hash()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MnasSpec(mnas.mobilenet_v2().blocks[:6]), "needs 7 blocks, got 6"),
        (lambda: block(op="sepconv"), "conv_op must be one of"),
        (lambda: block(k=7), "kernel_size must be one of"),
        (lambda: block(k=True), "kernel_size must be one of"),
        (lambda: block(se=0.5), "se_ratio must be one of"),
        (lambda: block(skip="pool"), "skip must be one of"),
        (lambda: block(mult=2.0), "filter_multiplier must be one of"),
        (lambda: block(delta=2), "layer_delta must be one of"),
        (
            lambda: MnasSpec((block(delta=-1),) + mnas.mobilenet_v2().blocks[1:]),
            "block 1 has 0 layers .* at least 1",
        ),
        (
            lambda: MnasSpec((block("dconv", skip="identity"),) + mnas.mobilenet_v2().blocks[1:]),
            r"block 1 has an identity skip but its single layer changes shape \(stride 1, 32 -> 16",
        ),
        (
            lambda: MnasSpec(mnas.mobilenet_v2().blocks[:1] + (block(skip="identity", delta=-1),)
                             + mnas.mobilenet_v2().blocks[2:]),  # fmt: skip
            r"block 2 has an identity skip .*\(stride 2, 16 -> 24 channels\)",
        ),
        (lambda: MnasSpec.from_json('{"blocks": [{"conv_op": "conv"}]}'), "block 1 must have exactly the keys"),
        (lambda: MnasSpec.from_json("[1, 2]"), "an MnasSpec JSON is an object"),
        (lambda: MnasSpec.from_json("{"), "not an MnasSpec JSON"),
        (lambda: mnas.sample_mnas(-1), "n must be a non-negative integer"),
        (lambda: mnas.layer_plan(mnas.mobilenet_v2(), variant="svhn"), "variant must be one of"),
        (
            lambda: mnas.layer_plan(mnas.mobilenet_v2(), width_multiplier=0),
            r"width_multiplier must be a number in \(0, 4\]",
        ),
    ],
)
def test_bad_specs_raise_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_from_json_names_the_bad_block():
    data = mnas.mobilenet_v2().to_dict()
    data["blocks"][4]["kernel_size"] = 4
    with pytest.raises(ValueError, match=r"^block 5: kernel_size must be one of \(3, 5\), got 4$"):
        MnasSpec.from_json(data)


def test_layer_plan_follows_the_space():
    for spec in mnas.sample_mnas(30, seed=11):
        for variant in ("imagenet", "cifar10"):
            plan = mnas.layer_plan(spec, variant=variant)
            assert len(plan) == sum(spec.num_layers) + 2
            total_stride = math.prod(layer.stride for layer in plan)
            assert total_stride == {"imagenet": 32, "cifar10": 8}[variant]
            for before, after in zip(plan, plan[1:]):
                assert after.in_channels == before.out_channels
            assert plan[-1].out_channels == mnas.HEAD_CHANNELS
        plan = mnas.layer_plan(spec)
        for index, (b, filters, count) in enumerate(zip(spec.blocks, spec.filters, spec.num_layers)):
            block_layers = [layer for layer in plan if layer.path[0] == f"block{index + 1}"]
            assert len(block_layers) == count
            assert all(layer.out_channels == filters for layer in block_layers)
            for j, layer in enumerate(block_layers):
                shape_kept = layer.stride == 1 and layer.in_channels == layer.out_channels
                assert layer.residual == (b.skip == "identity" and shape_kept)
                assert (j > 0) <= shape_kept  # repeated layers always keep shape
                assert (layer.se is not None) == (b.se_ratio > 0)


def test_width_multiplier_scales_channels_not_residuals():
    spec = coverage_spec()
    full = mnas.layer_plan(spec, variant="cifar10")
    quarter = mnas.layer_plan(spec, variant="cifar10", width_multiplier=0.25)
    assert [layer.residual for layer in full] == [layer.residual for layer in quarter]
    assert [layer.out_channels for layer in quarter] == [max(1, round(l.out_channels / 4 + 1e-9)) for l in full]
    quarter_params = mnas.num_params(spec, variant="cifar10", width_multiplier=0.25)
    assert quarter_params < mnas.num_params(spec, variant="cifar10") / 8


# -- the JAX network --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant, width", [("imagenet", 1.0), ("cifar10", 1.0), ("cifar10", 0.3)])
def test_network_parameter_count_equals_the_spec_arithmetic(variant, width):
    specs = mnas.sample_mnas(4, seed=5) + [coverage_spec(), mnas.mobilenet_v2()]
    assert {b.conv_op for spec in specs for b in spec.blocks} == set(mnas.CONV_OPS)
    for spec in specs:
        net = mnas_networks.network(spec, variant=variant, width_multiplier=width)
        variables = jax.eval_shape(net.init, KEY)  # traces init without running it
        assert num_leaves(variables["params"]) == mnas.num_params(spec, variant=variant, width_multiplier=width)
        assert net.flops(32, 32) == mnas.flops(spec, 32, variant=variant, width_multiplier=width)


def test_imagenet_features_are_the_pooled_head():
    net = mnas_networks.network(coverage_spec())
    variables = jax.eval_shape(net.init, KEY)
    images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    feats, _ = jax.eval_shape(lambda v, x: net.features(v, x), variables, images)
    logits, _ = jax.eval_shape(lambda v, x: net.apply(v, x), variables, images)
    assert feats.shape == (2, 1280) == (2, net.feature_dim)
    assert logits.shape == (2, 1000)


@pytest.mark.parametrize("size, kernel_size, stride", [(8, 3, 1), (8, 5, 2), (7, 5, 2), (5, 3, 2), (1, 3, 2)])
def test_depthwise_conv_matches_xla_grouped_conv(size, kernel_size, stride):
    rng = np.random.default_rng(size + kernel_size + stride)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 6)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, 6)), jnp.float32)
    expected = lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6
    )
    np.testing.assert_allclose(mnas_networks.depthwise_conv(x, kernel, stride), expected, atol=1e-5)


@pytest.fixture(scope="module")
def small_network():
    """The coverage spec's CIFAR-10 network at width 0.25, initialized, and 100 real images
    (the batch size of nngp_accuracy's kernel passes, so that tests share compilations)."""
    net = mnas_networks.network(coverage_spec(), variant="cifar10", width_multiplier=0.25)
    images = cifar10.standardize(cifar10.load_cifar10("train", n=100, source="batches").images)
    return net, net.init(KEY), jnp.asarray(images)


@pytest.mark.slow
def test_features_and_batch_norm_on_real_images(small_network):
    net, variables, images = small_network
    feats, stats = net.features(variables, images, train=True)
    assert feats.shape == (100, net.feature_dim) == (100, 320)
    assert np.isfinite(np.asarray(feats)).all() and float(jnp.std(feats)) > 0
    # One training-mode step moves the moving mean by (1 - momentum) x the batch mean.
    stem = variables["params"]["stem"]["conv"]
    stem_out = lax.conv_general_dilated(
        images, stem["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    expected_mean = 0.003 * stem_out.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(stats["stem"]["conv"]["mean"], expected_mean, rtol=1e-3, atol=1e-7)
    assert jax.tree_util.tree_structure(stats) == jax.tree_util.tree_structure(variables["batch_stats"])
    # Inference mode: statistics unchanged, and each image's features ignore the others.
    updated = {**variables, "batch_stats": stats}
    inference, same = net.features(updated, images)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(same), jax.tree_util.tree_leaves(stats)))
    reordered = np.asarray(net.features(updated, images[::-1])[0])[::-1]
    np.testing.assert_allclose(reordered, inference, rtol=1e-4, atol=1e-6)
    logits, _ = net.apply(updated, images)
    assert logits.shape == (100, 10)


@pytest.mark.slow
def test_init_is_deterministic_and_compiles_once_per_shape(small_network):
    net, variables, images = small_network
    net.features(variables, images)  # compile this network's shapes, if not done yet
    with layers.count_compilations() as compiled:
        again = net.init(KEY)
        other = net.init(jax.random.PRNGKey(1))
        net.features(other, images)
    assert compiled.count == 0
    assert all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(again))
    )
    params, other_params = variables["params"], other["params"]
    assert not np.array_equal(params["head"]["conv"]["kernel"], other_params["head"]["conv"]["kernel"])
    # MnasNet's initializer: normal with variance 2 / fan_out, fan_out = k * k * out_filters
    # (1 out filter for a depthwise kernel).
    head = np.asarray(params["head"]["conv"]["kernel"])  # (1, 1, C, 320)
    assert np.std(head) == pytest.approx(math.sqrt(2 / 320), rel=0.05)
    depthwise = np.concatenate([
        np.asarray(v["params"][name]["layer1"]["depthwise"]["kernel"]).ravel()
        for v in (variables, other) for name in ("block1", "block3")
    ])  # fmt: skip
    assert np.std(depthwise) == pytest.approx(math.sqrt(2 / 9), rel=0.1)


# -- label-subsampled NNGP data and scoring ----------------------------------------------------


def test_cifar10_subset_with_all_labels_is_nngp_split():
    subset = mnas.cifar10_label_subset(10, 100, 50, seed=3, source="batches")
    split = cifar10.nngp_split(100, 50, seed=3, source="batches")
    assert subset.classes == tuple(range(10)) and subset.dataset == "cifar10"
    np.testing.assert_array_equal(subset.train_ids, split.train_indices)
    np.testing.assert_array_equal(subset.val_ids, split.val_indices)
    np.testing.assert_array_equal(subset.y_train, split.y_train)
    np.testing.assert_array_equal(subset.x_val, split.x_val)


def test_cifar10_subset_of_three_labels():
    subset = mnas.cifar10_label_subset(3, 30, 21, seed=1, source="batches")
    assert len(subset.classes) == subset.num_labels == 3
    assert np.bincount(subset.y_train).tolist() == [10, 10, 10]
    assert np.bincount(subset.y_val).tolist() == [7, 7, 7]
    assert not set(subset.train_ids) & set(subset.val_ids)
    official = cifar10.load_cifar10("train", indices=subset.train_ids, source="batches")
    np.testing.assert_array_equal(np.asarray(subset.classes)[subset.y_train], official.labels)
    np.testing.assert_array_equal(subset.x_train, cifar10.standardize(official.images))
    choices = {mnas.cifar10_label_subset(3, 30, 21, seed=seed, source="batches").classes for seed in range(6)}
    assert len(choices) > 1  # the seed picks the classes
    with pytest.raises(ValueError, match="num_labels must be an integer in 1..10"):
        mnas.cifar10_label_subset(11, 100, 100)
    with pytest.raises(ValueError, match="at least one image per label"):
        mnas.cifar10_label_subset(5, 3, 100)


@pytest.mark.slow
def test_nngp_accuracy_beats_chance_on_two_labels(small_network):
    # Dog vs frog; at width 0.25 one network is too noisy an estimate, four are not.
    data = mnas.cifar10_label_subset(2, 100, 100, seed=0, source="batches")
    assert data.classes == (5, 6)
    result = mnas.nngp_accuracy(coverage_spec(), data, ensemble=4, width_multiplier=0.25)
    assert result.accuracy.shape == (20,)
    # Chance is 0.5 (the best of 20 eps on 100 images stays under about 0.6).
    assert result.best_accuracy > 0.65 and result.loo_val_accuracy > 0.6


# -- ImageNet-style folders -----------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of generated images: a red/blue split 512x256 and uniform 300x600 ones."""
    from PIL import Image

    split = np.zeros((256, 512, 3), np.uint8)
    split[:, :256] = (255, 0, 0)
    split[:, 256:] = (0, 0, 255)
    (tmp_path / "n01_split").mkdir()
    (tmp_path / "n02_plain").mkdir()
    for i in range(3):
        Image.fromarray(split).save(tmp_path / "n01_split" / f"img{i}.png")
        plain = np.full((600, 300, 3), (200, 100, 50 + i), np.uint8)
        Image.fromarray(plain).save(tmp_path / "n02_plain" / f"img{i}.PNG")
    (tmp_path / "n02_plain" / "notes.txt").write_text("not an image")
    return tmp_path


def test_load_image_folder_preprocesses_like_the_paper(image_folder):
    loaded = mnas.load_image_folder(image_folder)
    assert loaded.classes == ("n01_split", "n02_plain")
    assert loaded.images.shape == (6, 224, 224, 3) and loaded.images.dtype == np.float32
    assert loaded.labels.tolist() == [0, 0, 0, 1, 1, 1]
    mean, std = np.asarray(mnas.IMAGENET_MEAN), np.asarray(mnas.IMAGENET_STD)
    # 512x256 is already 256 on its short side; the centred 224 crop spans columns
    # 144..367, so the red/blue boundary (column 256) falls at crop column 112.
    red, blue = (np.array([255, 0, 0]) - mean) / std, (np.array([0, 0, 255]) - mean) / std
    np.testing.assert_allclose(loaded.images[0, :, :112], np.broadcast_to(red, (224, 112, 3)), rtol=1e-6)
    np.testing.assert_allclose(loaded.images[0, :, 112:], np.broadcast_to(blue, (224, 112, 3)), rtol=1e-6)
    # A uniform 300x600 image is resized to 256x512 and stays uniform.
    plain = (np.array([200, 100, 52]) - mean) / std
    np.testing.assert_allclose(loaded.images[5], np.broadcast_to(plain, (224, 224, 3)), rtol=1e-6)
    pixels = mnas.load_image_folder(image_folder, ["n02_plain"], standardize=False).images
    assert pixels.dtype == np.uint8 and (pixels[0] == (200, 100, 50)).all()


def test_load_image_folder_selects_classes_and_images(image_folder):
    first = mnas.load_image_folder(image_folder, ["n02_plain", "n01_split"], 2, seed=4)
    assert first.classes == ("n02_plain", "n01_split") and first.labels.tolist() == [0, 0, 1, 1]
    assert all("/n02_plain/" in p for p in first.paths[:2])
    assert first.paths == mnas.load_image_folder(image_folder, ["n02_plain", "n01_split"], 2, seed=4).paths
    subset = mnas.image_folder_label_subset(image_folder, 2, 2, 2, seed=0)
    assert subset.dataset == "imagenet" and subset.x_train.shape == (2, 224, 224, 3)
    assert sorted(subset.y_train.tolist()) == [0, 1] and not set(subset.train_ids) & set(subset.val_ids)


def test_load_image_folder_errors(image_folder, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match="image folder .* not found: expected .*<class>/<image>"):
        mnas.load_image_folder(image_folder / "missing")
    with pytest.raises(ValueError, match="class 'n03' is not a folder of"):
        mnas.load_image_folder(image_folder, ["n03"])
    with pytest.raises(ValueError, match="class 'n01_split' has 3 images in .*, per_class=4 asked"):
        mnas.load_image_folder(image_folder, per_class=4)
    with pytest.raises(ValueError, match="crop <= resize"):
        mnas.load_image_folder(image_folder, crop=300)
    broken = tmp_path_factory.mktemp("broken")
    (broken / "cls").mkdir()
    (broken / "cls" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg is not a readable image") as error:
        mnas.load_image_folder(broken)
    assert "\n" not in str(error.value)
