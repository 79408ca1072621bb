"""Tests of nngp_lib.training: short optax training of search-space networks on real CIFAR-10."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from nngp_lib import training
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.spaces import mnas
from nngp_lib.spaces.mnas import jax_network as mnas_networks
from nngp_lib.spaces.nb101 import ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nasbench101

KEY = jax.random.PRNGKey(0)
SETTINGS = dict(epochs=4, batch_size=32, learning_rate=0.2, seed=0)


@pytest.fixture(scope="module")
def data():
    return nngp_split(128, 100, seed=0, source="batches")


@pytest.fixture(scope="module")
def tiny_nb101():
    """A small NAS-Bench-101 network (8-channel stem, 2 stacks of one cell) and its init."""
    spec = ModelSpec(
        [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
        ["input", "conv3x3-bn-relu", "maxpool3x3", "output"],
    )
    net = nasbench101.network(spec, stem_channels=8, num_stacks=2, modules_per_stack=1)
    return net, net.init(KEY)


@pytest.fixture(scope="module")
def trained(tiny_nb101, data):
    net, variables = tiny_nb101
    return training.train(net, variables, data.x_train, data.y_train, **SETTINGS)


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.mark.slow
def test_training_lowers_the_loss_on_real_images(trained, tiny_nb101):
    variables, history = trained
    assert history.steps == 4 * (128 // 32) and history.epoch_loss.shape == (4,)
    assert np.isfinite(history.loss).all()
    assert history.epoch_loss[-1] < history.epoch_loss[0] - 0.1
    # Parameters and moving statistics both moved, and kept their structure.
    _, initial = tiny_nb101
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(initial)
    assert not np.array_equal(leaves(variables["params"])[0], leaves(initial["params"])[0])
    assert not np.array_equal(leaves(variables["batch_stats"])[0], leaves(initial["batch_stats"])[0])


def test_training_is_deterministic_and_compiles_once(trained, tiny_nb101, data):
    net, variables = tiny_nb101
    again, history = training.train(net, variables, data.x_train, data.y_train, **SETTINGS)
    assert history.compile_seconds < 0.1  # the step compiled for `trained` is reused
    assert all(np.array_equal(a, b) for a, b in zip(leaves(again), leaves(trained[0])))
    np.testing.assert_array_equal(history.loss, trained[1].loss)
    _, other = training.train(net, variables, data.x_train, data.y_train, **{**SETTINGS, "seed": 1})
    assert not np.array_equal(other.loss, history.loss)  # the seed orders the batches


@pytest.mark.slow
def test_eager_gradients_compute_the_same_training(trained, tiny_nb101, data):
    net, variables = tiny_nb101
    _, history = training.train(net, variables, data.x_train, data.y_train, **SETTINGS, jit_step=False)
    # Same arithmetic up to float rounding (XLA fuses differently), which the steps then
    # amplify: the first epoch agrees to 1e-5, the rest to about 1e-3.
    np.testing.assert_allclose(history.loss[:4], trained[1].loss[:4], rtol=1e-5)
    np.testing.assert_allclose(history.loss, trained[1].loss, rtol=1e-2)


def test_learning_rate_schedules(trained, tiny_nb101, data):
    rates = trained[1].learning_rate
    steps = rates.size
    expected = 0.1 * (1 + np.cos(np.pi * np.arange(steps) / steps))  # cosine from 0.2 to 0
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-7)
    net, variables = tiny_nb101
    _, warm = training.train(
        net, variables, data.x_train, data.y_train, **{**SETTINGS, "epochs": 2, "warmup_epochs": 1.0}
    )
    np.testing.assert_allclose(warm.learning_rate[:4], [0.0, 0.05, 0.1, 0.15], atol=1e-7)
    assert warm.learning_rate[4] == pytest.approx(0.2) and warm.learning_rate[-1] < 0.2


def test_evaluate_is_the_argmax_accuracy(trained, tiny_nb101, data):
    net, _ = tiny_nb101
    variables, _ = trained
    logits, _ = net.apply(variables, data.x_val)
    expected = np.mean(np.argmax(np.asarray(logits), axis=-1) == data.y_val)
    assert training.evaluate(net, variables, data.x_val, data.y_val, batch_size=30) == pytest.approx(expected)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(batch_size=129), "batch_size 129 exceeds the 128 training images"),
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(optimizer="adam"), "optimizer must be 'rmsprop' or 'sgd'"),
        (dict(learning_rate=math.nan), "learning_rate must be a finite number >= 0"),
        (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
        (dict(y=np.arange(128) % 11), r"labels must lie in \[0, 10\), got a label 10"),
        (dict(y=np.zeros(127, int)), r"y must be \(N,\) labels for the N=128 images"),
        (dict(x=np.zeros((128, 32, 32)), y=np.zeros(128, int)), r"x must be \(N, H, W, 3\) images"),
    ],
)
def test_bad_arguments_raise_one_line_errors(tiny_nb101, data, change, message):
    net, variables = tiny_nb101
    kwargs = {**SETTINGS, "x": data.x_train, "y": data.y_train, **change}
    with pytest.raises(ValueError, match=message) as error:
        training.train(net, variables, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_mnas_network_trains(data):
    # The smallest MNAS network of the space: regular 3x3 convs, the fewest layers.
    deltas = (0, -1, -1, -1, -1, -1, 0)
    spec = mnas.MnasSpec(tuple(mnas.BlockSpec("conv", 3, 0.0, "none", 0.75, d) for d in deltas))
    net = mnas_networks.network(spec, variant="cifar10", width_multiplier=0.25)
    settings = {**SETTINGS, "epochs": 6, "optimizer": "sgd", "learning_rate": 0.05}
    variables, history = training.train(net, net.init(KEY), data.x_train, data.y_train, **settings, jit_step=False)
    assert np.isfinite(history.loss).all()
    assert history.epoch_loss[-1] < history.epoch_loss[0] - 0.1
    assert 0.0 <= training.evaluate(net, variables, data.x_val, data.y_val) <= 1.0
