"""Empirical NTK: the kernel against a direct Jacobian computation, its network against the
NNGP's, blocking, and the validation accuracy of a cell, on real CIFAR-10 images."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from nngp_lib import kernels, ntk, proxies
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table
from nngp_lib.spaces.nb101 import ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nb101_net

SMALLEST = dict(stem_channels=4, num_stacks=1, modules_per_stack=1)  # a few hundred parameters


def _shrink(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), 8, 4, 8, 4, 3).mean(axis=(2, 4))


@pytest.fixture(scope="module")
def data(data_dir):
    """Real CIFAR-10 NNGP sets averaged down to 8x8 images: 10 training, 10 validation."""
    split = nngp_split(10, 10, seed=0, data_dir=data_dir)
    return dataclasses.replace(split, x_train=_shrink(split.x_train), x_val=_shrink(split.x_val))


@pytest.fixture(scope="module")
def spec(data_dir) -> ModelSpec:
    table = load_table(data_dir)
    row = table.iloc[int(np.random.default_rng(0).integers(len(table)))]
    return ModelSpec.from_json(row["adjacency"], row["ops"])


def _jacobian_ntk(network, variables, x1, x2):
    """(1/C) J(x1) J(x2)^T from jax.jacobian of the logits, in float64."""

    def jacobian(x):
        tree = jax.jacobian(lambda p: network.apply({**variables, "params": p}, x)[0])(variables["params"])
        return np.concatenate([np.asarray(leaf, np.float64).reshape(len(x), 10, -1)
                               for leaf in jax.tree_util.tree_leaves(tree)], axis=-1)

    return np.einsum("iop,jop->ij", jacobian(x1), jacobian(x2)) / 10


@pytest.mark.slow
def test_empirical_ntk_is_the_logit_averaged_jacobian_product(spec, data):
    network = nb101_net.network(spec, **SMALLEST)
    variables = ntk.initialized_variables(network, data.x_train, seed=1)
    assert ntk.num_parameters(variables) == sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    images = np.concatenate([data.x_train[:4], data.x_val[:4]])
    expected = _jacobian_ntk(network, variables, images, images)
    scale = np.abs(expected).max()

    whole = ntk.empirical_ntk(network, variables, images)
    blocked = ntk.empirical_ntk(network, variables, images, block_size=4)  # one shape less to compile
    for kernel in (whole, blocked):
        assert kernel.shape == (8, 8) and kernel.dtype == np.float64
        np.testing.assert_allclose(kernel, expected, atol=1e-5 * scale)
        np.testing.assert_array_equal(kernel, kernel.T)
    assert np.linalg.eigvalsh(whole).min() > -1e-5 * scale

    rectangular = ntk.empirical_ntk(network, variables, data.x_val[:4], data.x_train[:4], block_size=4)
    np.testing.assert_allclose(rectangular, expected[4:, :4], atol=1e-5 * scale)


@pytest.mark.slow
def test_ntk_kernels_use_the_first_network_of_the_nngp_ensemble(spec, data):
    network = nb101_net.network(spec, **SMALLEST)
    x_train, x_val = data.x_train[:6], data.x_val[:2]
    variables = ntk.initialized_variables(network, x_train, seed=3)
    f_train, f_val = kernels.ensemble_features(network, x_train, x_val, ensemble=1, seed=3)
    np.testing.assert_allclose(network.features(variables, x_train)[0], f_train[0], rtol=1e-6)

    k_tt, k_vt = ntk.ntk_kernels(network, x_train, x_val, seed=3, block_size=4)
    whole = ntk.empirical_ntk(network, variables, np.concatenate([x_train, x_val]))
    np.testing.assert_allclose(k_tt, whole[:6, :6], rtol=1e-6)  # blocks of 4 and 4 images
    np.testing.assert_allclose(k_vt, whole[6:, :6], rtol=1e-6)
    np.testing.assert_array_equal(k_tt, k_tt.T)
    other, _ = ntk.ntk_kernels(network, x_train, x_val, seed=4, block_size=4)
    assert not np.allclose(other, k_tt, rtol=1e-3)


@pytest.mark.slow
def test_ntk_accuracy_of_a_cell_next_to_the_nngp_of_the_same_network(spec, data):
    result, seconds = ntk.ntk_inference(spec, data, seed=0, stem_channels=4)
    assert 0.0 <= result.best_accuracy <= 1.0 and seconds > 0
    assert result.accuracy.shape == (20,) and (result.accuracy[~result.failed] <= result.best_accuracy).all()
    row = ntk.ntk_score(spec, data, seed=0, stem_channels=4)
    assert row["ntk_acc"] == result.best_accuracy and set(row) == {
        "ntk_acc", "ntk_eps", "ntk_acc_loo", "ntk_eps_loo", "seconds"}
    assert proxies.ntk(spec, data, seed=0, stem_channels=4) == result.best_accuracy
    nngp_acc = proxies.nngp(spec, data, seed=0, stem_channels=4)
    assert 0.0 <= nngp_acc <= 1.0


def test_bad_arguments_raise_one_line_errors(spec, data):
    network = nb101_net.network(spec, **SMALLEST)
    variables = network.init(jax.random.PRNGKey(0))
    cases = [
        (dict(block_size=0), "block_size must be a positive integer"),
        (dict(memory_budget=0), "memory_budget must be a positive number of bytes"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            ntk.empirical_ntk(network, variables, data.x_train, **kwargs)
    with pytest.raises(ValueError, match="differ in shape"):
        ntk.empirical_ntk(network, variables, data.x_train, data.x_val[:, :4])
    with pytest.raises(ValueError, match="standardize uint8 pixels first"):
        ntk.ntk_kernels(network, data.x_train.astype(np.uint8), data.x_val)
    with pytest.raises(ValueError, match="bn_batch must be between 0 and the 10 training images"):
        ntk.initialized_variables(network, data.x_train, bn_batch=11)
