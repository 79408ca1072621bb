"""Monte-Carlo NNGP kernels: definition, determinism, batch norm, and convergence to the
analytic NNGP kernel of neural-tangents."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table
from nngp_lib.kernels import ensemble_features, monte_carlo_nngp, nngp_from_features
from nngp_lib.networks import convnet, layers
from nngp_lib.spaces.nb101 import ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nb101_net

# As in test_networks: every code path at little compute; with batches of 4 8x8 images
# both files share one set of compilations.
TINY = dict(stem_channels=8, num_stacks=2, modules_per_stack=2)
BATCH = dict(batch_size=4)


@pytest.fixture(scope="module")
def data(data_dir):
    """Real CIFAR-10 NNGP sets averaged down to 8x8 images: 6 training, 4 validation."""
    split = nngp_split(6, 4, seed=0, data_dir=data_dir)

    def shrink(x):
        return x.reshape(len(x), 8, 4, 8, 4, 3).mean(axis=(2, 4))

    return shrink(split.x_train), shrink(split.x_val)


@pytest.fixture(scope="module")
def specs(data_dir) -> list[ModelSpec]:
    table = load_table(data_dir)
    rows = np.random.default_rng(0).choice(len(table), 5, replace=False)
    return [ModelSpec.from_json(table["adjacency"][i], table["ops"][i]) for i in rows]


def test_kernels_are_symmetric_psd_and_deterministic(data, specs):
    x_train, x_val = data
    net = nb101_net.network(specs[0], **TINY)
    k_tt, k_vt = monte_carlo_nngp(net, x_train, x_val, ensemble=2, seed=3, **BATCH)
    assert k_tt.shape == (6, 6) and k_vt.shape == (4, 6)
    assert k_tt.dtype == np.float64 and k_vt.dtype == np.float64
    np.testing.assert_array_equal(k_tt, k_tt.T)
    assert np.linalg.eigvalsh(k_tt).min() > -1e-12 * np.trace(k_tt)
    # Validation images equal to training images get the training rows.
    _, k_same = monte_carlo_nngp(net, x_train, x_train[:4], ensemble=2, seed=3, **BATCH)
    np.testing.assert_allclose(k_same, k_tt[:4], rtol=1e-6)

    again = monte_carlo_nngp(net, x_train, x_val, ensemble=2, seed=3, **BATCH)
    np.testing.assert_array_equal(again[0], k_tt)
    np.testing.assert_array_equal(again[1], k_vt)
    other = monte_carlo_nngp(net, x_train, x_val, ensemble=2, seed=4, **BATCH)
    assert not np.allclose(other[0], k_tt, rtol=1e-3)


def test_kernel_is_the_feature_second_moment_over_inits_and_units(data):
    x_train, x_val = data
    net = convnet.network(16)
    k_tt, k_vt = monte_carlo_nngp(net, x_train, x_val, ensemble=2, seed=5, bn_batch=0, **BATCH)
    f_train, f_val = [], []
    for index in range(2):  # the documented seeding
        key = jax.random.fold_in(jax.random.PRNGKey(5), index)
        variables = net.init(jax.random.split(key)[0])
        f_train.append(np.asarray(net.features(variables, x_train)[0], np.float64))
        f_val.append(np.asarray(net.features(variables, x_val)[0], np.float64))
    expected_tt = sum(f @ f.T for f in f_train) / (2 * net.feature_dim)
    expected_vt = sum(v @ t.T for v, t in zip(f_val, f_train)) / (2 * net.feature_dim)
    np.testing.assert_allclose(k_tt, expected_tt, rtol=1e-5)
    np.testing.assert_allclose(k_vt, expected_vt, rtol=1e-5)


def test_batching_does_not_change_the_kernel(data):
    x_train, x_val = data
    net = convnet.network(16, batch_norm=True)
    whole = monte_carlo_nngp(net, x_train, x_val, seed=1, bn_batch=4, batch_size=100)
    batched = monte_carlo_nngp(net, x_train, x_val, seed=1, bn_batch=4, batch_size=3)  # zero-padded
    for a, b in zip(whole, batched):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_batch_norm_momentum(data, specs):
    """Momentum 1 keeps the initial statistics, as no pass does; momentum 0 makes them the
    batch statistics, so that the kernel no longer depends on the scale of the images."""
    x_train, x_val = data
    net = nb101_net.network(specs[3], **TINY)

    def kernel(scale=1.0, **kwargs):
        return monte_carlo_nngp(net, scale * x_train, scale * x_val, seed=2, **BATCH, **kwargs)[0]

    no_pass = kernel(bn_batch=0)
    np.testing.assert_array_equal(kernel(bn_momentum=1.0), no_pass)
    nb101_default, zero = kernel(), kernel(bn_momentum=0.0)
    for moved in (nb101_default, zero):
        assert not np.allclose(moved, no_pass, rtol=1e-3)

    def change(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    # Up to batch norm's epsilon, amplified with depth (BN networks are chaotic).
    assert change(kernel(10.0, bn_momentum=0.0), zero) < 0.01
    assert change(kernel(10.0) / 10**2, nb101_default) > 0.05


def test_bad_arguments_raise_one_line_errors(data, specs):
    x_train, x_val = data
    net = nb101_net.network(specs[0], **TINY)
    with pytest.raises(ValueError, match="bn_batch must be between 0 and the 6 training images"):
        monte_carlo_nngp(net, x_train, x_val, bn_batch=7)
    with pytest.raises(ValueError, match="ensemble must be a positive integer"):
        monte_carlo_nngp(net, x_train, x_val, ensemble=0)
    with pytest.raises(ValueError, match="differ in shape"):
        monte_carlo_nngp(net, x_train, x_val[:, :4])
    with pytest.raises(ValueError, match="standardize uint8 pixels first"):
        monte_carlo_nngp(net, x_train.astype(np.uint8), x_val)
    with pytest.raises(ValueError, match=r"must be \(N, H, W, C\) images"):
        monte_carlo_nngp(net, x_train[0], x_val)


@pytest.mark.slow
def test_scoring_a_new_architecture_compiles_nothing(data, specs):
    x_train, x_val = data
    nb101_net.precompile(batch_size=4, image_size=(8, 8), stem_channels=8, num_stacks=2)
    monte_carlo_nngp(nb101_net.network(specs[0], **TINY), x_train, x_val, ensemble=2, **BATCH)  # RNG helpers
    for spec in specs[1:]:
        with layers.count_compilations() as compiled:
            monte_carlo_nngp(nb101_net.network(spec, **TINY), x_train, x_val, ensemble=2, **BATCH)
        assert compiled.count == 0, spec


@pytest.mark.slow
def test_monte_carlo_converges_to_neural_tangents_nngp(data):
    x = np.concatenate(data)[:4]
    exact = convnet.analytic_nngp(x)  # imports neural-tangents and TensorFlow: seconds

    # Relative error, root-mean-square over seeds, as width x ensemble grows 16-fold.
    samples = np.array([8 * 2, 32 * 8, 128 * 32])
    errors = []
    for width, ensemble in ((8, 2), (32, 8), (128, 32)):
        net = convnet.network(width)
        errors.append(
            np.sqrt(
                np.mean([
                    (np.linalg.norm(monte_carlo_nngp(net, x, x[:1], ensemble=ensemble, seed=s, bn_batch=0)[0] - exact)
                     / np.linalg.norm(exact)) ** 2
                    for s in range(4)
                ])
            )
        )
    slope = np.polyfit(np.log(samples), np.log(errors), 1)[0]
    assert -0.7 < slope < -0.35, (errors, slope)  # Monte-Carlo rate: 1 / sqrt(width x ensemble)
    assert errors[-1] < 0.1, errors


def test_smaller_ensemble_is_a_prefix_of_a_larger_one(data, specs):
    """Settings of one architecture share work: the kernel of k'=1 network is the one
    computed from the first network of an ensemble of 3."""
    x_train, x_val = data
    net = nb101_net.network(specs[1], **TINY)
    f_train, f_val = ensemble_features(net, x_train, x_val, ensemble=3, seed=2, **BATCH)
    alone = monte_carlo_nngp(net, x_train, x_val, ensemble=1, seed=2, **BATCH)
    from_prefix = nngp_from_features(f_train[:1], f_val[:1])
    for a, b in zip(alone, from_prefix):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert f_train.shape == (3, len(x_train), net.feature_dim)
