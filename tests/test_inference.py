"""Tests of nngp_lib.inference: the eps sweep of regularized NNGP inference."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg

from nngp_lib.config import data_dir, missing_data_message
from nngp_lib.inference import (
    DEFAULT_EPS,
    centered_one_hot,
    nngp_inference,
    nngp_inference_from_features,
    posterior_mean,
)

CIFAR_MEAN = np.array([125.3, 123.0, 113.9])
CIFAR_STD = np.array([63.0, 62.1, 66.7])


@pytest.fixture(scope="module")
def cifar_batch() -> tuple[np.ndarray, np.ndarray]:
    """Exact pixels of the first official CIFAR-10 training batch, standardized as in the paper."""
    path = data_dir() / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
    if not path.exists():
        pytest.skip(missing_data_message("CIFAR-10 data_batch_1", path))
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    images = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float64)
    images = ((images - CIFAR_MEAN) / CIFAR_STD).reshape(len(images), -1)
    return images, np.asarray(batch[b"labels"])


def random_relu_kernel(images: np.ndarray, width: int, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """Monte-Carlo NNGP kernel of a random one-hidden-layer ReLU network (features of `width`)."""
    weights = np.random.default_rng(seed).normal(size=(images.shape[1], width)) / np.sqrt(images.shape[1])
    features = np.maximum(images @ weights, 0.0).astype(dtype)
    return features @ features.T / width


@pytest.fixture(scope="module")
def cifar_kernel(cifar_batch):
    """A full-rank NNGP kernel on 300 training and 200 validation CIFAR-10 images."""
    images, labels = cifar_batch
    n, m = 300, 200
    kernel = random_relu_kernel(images[: n + m], width=2048)
    return kernel[:n, :n], kernel[n:, :n], labels[:n], labels[n : n + m]


def direct_posterior_mean(k_tt, k_vt, y_train, eps):
    """The paper's code path: one positive-definite solve per eps."""
    n = k_tt.shape[0]
    reg = eps * np.trace(k_tt) / n
    return k_vt @ scipy.linalg.solve(k_tt + reg * np.eye(n), centered_one_hot(y_train), assume_a="pos")


def test_centered_one_hot_is_mean_zero_one_hot():
    targets = centered_one_hot(np.array([3, 0, 9]))
    assert targets.shape == (3, 10)
    np.testing.assert_allclose(targets.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(targets[0], np.where(np.arange(10) == 3, 0.9, -0.1))
    np.testing.assert_array_equal(targets.argmax(axis=1), [3, 0, 9])


def test_default_grid_is_the_papers():
    np.testing.assert_array_equal(DEFAULT_EPS, np.logspace(-7, 2, 20))
    assert not DEFAULT_EPS.flags.writeable


def test_sweep_matches_one_solve_per_eps_on_cifar(cifar_kernel):
    k_tt, k_vt, y_train, y_val = cifar_kernel
    means = posterior_mean(k_tt, k_vt, y_train)
    result = nngp_inference(k_tt, k_vt, y_train, y_val, return_predictions=True)
    assert means.shape == (20, 200, 10)
    assert not result.failed.any()
    for i, eps in enumerate(DEFAULT_EPS):
        expected = direct_posterior_mean(k_tt, k_vt, y_train, eps)
        np.testing.assert_allclose(means[i], expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max())
        assert result.accuracy[i] == np.mean(expected.argmax(axis=1) == y_val)
    assert result.best_accuracy == np.max(result.accuracy)
    assert result.best_eps in DEFAULT_EPS
    # A random ReLU network's NNGP is far better than chance (0.1) on CIFAR-10.
    assert result.best_accuracy > 0.2
    best = int(np.flatnonzero(DEFAULT_EPS == result.best_eps)[0])
    np.testing.assert_array_equal(result.predictions, means[best].argmax(axis=1))
    assert np.mean(result.predictions == y_val) == result.best_accuracy


def test_choosing_eps_on_validation_is_never_below_the_honest_choice(cifar_kernel):
    result = nngp_inference(*cifar_kernel)
    assert np.isfinite(result.loo_accuracy).all()
    last_best = np.flatnonzero(result.loo_accuracy == result.loo_accuracy.max())[-1]
    assert result.loo_eps == DEFAULT_EPS[last_best]
    assert result.loo_val_accuracy == result.accuracy[DEFAULT_EPS == result.loo_eps][0]
    assert result.best_accuracy >= result.loo_val_accuracy > 0.2


def test_accuracies_do_not_depend_on_kernel_scale(cifar_kernel):
    k_tt, k_vt, y_train, y_val = cifar_kernel
    base = nngp_inference(k_tt, k_vt, y_train, y_val)
    scaled = nngp_inference(1e3 * k_tt, 1e3 * k_vt, y_train, y_val)
    np.testing.assert_array_equal(base.accuracy, scaled.accuracy)
    np.testing.assert_array_equal(base.loo_accuracy, scaled.loo_accuracy)


def test_closed_form_leave_one_out_equals_refitting():
    rng = np.random.default_rng(1)
    n, m, eps = 40, 5, np.logspace(-3, 1, 5)
    features = rng.normal(size=(n + m, 60))
    kernel = features @ features.T / 60
    labels = rng.integers(0, 10, size=n + m)
    k_tt, y_train = kernel[:n, :n], labels[:n]
    result = nngp_inference(k_tt, kernel[n:, :n], y_train, labels[n:], eps=eps)

    targets = centered_one_hot(y_train)
    for j, e in enumerate(eps):
        reg = e * np.trace(k_tt) / n  # the full-set regularizer, held fixed
        hits = 0
        for i in range(n):
            keep = np.arange(n) != i
            alpha = np.linalg.solve(k_tt[np.ix_(keep, keep)] + reg * np.eye(n - 1), targets[keep])
            hits += int(np.argmax(k_tt[i, keep] @ alpha) == y_train[i])
        assert result.loo_accuracy[j] == hits / n


def test_jax_float32_input_is_computed_in_float64(cifar_kernel):
    jnp = pytest.importorskip("jax.numpy")
    k_tt, k_vt, y_train, y_val = cifar_kernel
    k_tt32, k_vt32 = k_tt.astype(np.float32), k_vt.astype(np.float32)
    from_jax = nngp_inference(jnp.asarray(k_tt32), jnp.asarray(k_vt32), jnp.asarray(y_train), jnp.asarray(y_val))
    from_numpy = nngp_inference(k_tt32.astype(np.float64), k_vt32.astype(np.float64), y_train, y_val)
    np.testing.assert_array_equal(from_jax.accuracy, from_numpy.accuracy)


def test_rank_deficient_float32_kernel_fails_small_eps_only(cifar_batch):
    # 64 features for 150 training images: K_tt has rank 64, and float32 accumulation
    # leaves its null-space eigenvalues at about 1e-7 of the largest, some negative.
    images, labels = cifar_batch
    n, m = 150, 50
    kernel = random_relu_kernel(images[: n + m], width=64, dtype=np.float32)
    assert np.linalg.eigvalsh(kernel[:n, :n].astype(np.float64)).min() < 0
    result = nngp_inference(kernel[:n, :n], kernel[n:, :n], labels[:n], labels[n : n + m])
    assert np.isnan(result.accuracy[0]) and np.isnan(result.loo_accuracy[0])
    assert np.isfinite(result.accuracy[-5:]).all()
    # Failures are a prefix of the grid: a larger regularizer never breaks a solve.
    assert not np.any(result.failed[1:] & ~result.failed[:-1])
    assert result.best_accuracy == np.nanmax(result.accuracy)


@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_degenerate_kernel_warns_and_returns_nan(bad):
    k_tt = np.full((4, 4), bad)
    k_vt = np.full((3, 4), bad)
    with pytest.warns(RuntimeWarning, match="failed for every eps"):
        result = nngp_inference(k_tt, k_vt, np.array([0, 1, 2, 3]), np.array([0, 1, 2]), return_predictions=True)
    assert np.isnan(result.accuracy).all() and np.isnan(result.loo_accuracy).all()
    assert np.isnan(result.best_accuracy) and np.isnan(result.best_eps)
    assert np.isnan(result.loo_val_accuracy) and result.predictions is None


def test_ties_choose_the_largest_eps():
    # Two training images per class, correlated only with each other (and validation
    # image j only with class j): every eps rescales the same predictions, so the
    # validation and leave-one-out accuracies are 1 throughout.
    k_tt = np.kron(np.eye(10), [[2.0, 1.0], [1.0, 2.0]])
    k_vt = np.kron(np.eye(10), [1.0, 1.0])[:6]
    result = nngp_inference(k_tt, k_vt, np.repeat(np.arange(10), 2), np.arange(6))
    assert np.all(result.accuracy == 1.0) and np.all(result.loo_accuracy == 1.0)
    assert result.best_eps == DEFAULT_EPS[-1] and result.loo_eps == DEFAULT_EPS[-1]


@pytest.mark.parametrize(
    "k_tt, k_vt, y_train, y_val, kwargs, message",
    [
        (np.eye(3)[:2], np.eye(3), [0, 1, 2], [0, 1, 2], {}, "square"),
        (np.eye(3), np.eye(2), [0, 1, 2], [0, 1], {}, r"shape \(m, 3\)"),
        (np.triu(np.ones((3, 3))), np.eye(3), [0, 1, 2], [0, 1, 2], {}, "not symmetric"),
        (np.eye(3), np.eye(3), [0, 1], [0, 1, 2], {}, "y_train must have shape"),
        (np.eye(3), np.eye(3), [0, 1, 10], [0, 1, 2], {}, r"lie in \[0, 10\)"),
        (np.eye(3), np.eye(3), [0.0, 1.0, 2.0], [0, 1, 2], {}, "integer class labels"),
        (np.eye(3), np.eye(3), [0, 1, 2], [0, 1, 2], {"eps": [-1.0]}, "eps must be"),
    ],
)
def test_bad_input_raises_one_line(k_tt, k_vt, y_train, y_val, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        nngp_inference(np.asarray(k_tt, float), np.asarray(k_vt, float), np.asarray(y_train), np.asarray(y_val), **kwargs)
    assert "\n" not in str(error.value)


def _relu_features(cifar_batch, networks: int, width: int, n: int, m: int):
    """(k, n, D), (k, m, D) random ReLU features of real images, and their labels."""
    images, labels = cifar_batch
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(networks, images.shape[1], width)) / np.sqrt(images.shape[1])
    features = np.maximum(np.einsum("id,kdw->kiw", images[: n + m], weights), 0.0)
    return features[:, :n], features[:, n:], labels[:n], labels[n : n + m]


def _same_result(a, b):
    np.testing.assert_array_equal(np.isnan(a.accuracy), np.isnan(b.accuracy))
    np.testing.assert_allclose(a.accuracy, b.accuracy, equal_nan=True, atol=1.5 / 100)
    np.testing.assert_allclose(a.loo_accuracy, b.loo_accuracy, equal_nan=True, atol=1.5 / 100)


@pytest.mark.parametrize("networks, width, n", [(2, 200, 300), (1, 40, 300), (3, 30, 250)])
def test_features_path_equals_the_kernel_path(cifar_batch, networks, width, n):
    """Full rank (k D >= n) and low rank (k D < n, the thin-SVD factorization) alike."""
    f_train, f_val, y_train, y_val = _relu_features(cifar_batch, networks, width, n, 100)
    direct = nngp_inference(
        np.einsum("kid,kjd->ij", f_train, f_train) / (networks * width),
        np.einsum("kid,kjd->ij", f_val, f_train) / (networks * width), y_train, y_val,
    )
    from_features = nngp_inference_from_features(f_train, f_val, y_train, y_val)
    _same_result(direct, from_features)
    assert direct.best_accuracy == pytest.approx(from_features.best_accuracy, abs=0.011)
    assert from_features.best_accuracy > 0.15  # real images: above chance (0.1)


def test_low_rank_solve_is_exact(cifar_batch):
    """(K + reg I)^{-1} Y from the thin SVD equals a dense solve at a well-conditioned eps."""
    from nngp_lib.inference import _RegularizedSystem

    f_train, _, y_train, _ = _relu_features(cifar_batch, 1, 30, 200, 1)
    factor = f_train[0] / np.sqrt(30)
    targets = centered_one_hot(y_train)
    system = _RegularizedSystem.from_factor(factor, np.array([1e-2, 1.0]))
    kernel = factor @ factor.T
    for index, eps in enumerate([1e-2, 1.0]):
        reg = eps * np.trace(kernel) / len(kernel)
        expected = np.linalg.solve(kernel + reg * np.eye(len(kernel)), targets)
        np.testing.assert_allclose(system.solve(targets)[index], expected, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(system.inverse_diagonal()[:, index],
                                   np.diag(np.linalg.inv(kernel + reg * np.eye(len(kernel)))), rtol=1e-8)


def test_centered_kernel_is_the_kernel_of_centered_features(cifar_batch):
    f_train, f_val, y_train, y_val = _relu_features(cifar_batch, 2, 100, 300, 100)
    mean = f_train.mean(axis=1, keepdims=True)
    expected = nngp_inference_from_features(f_train - mean, f_val - mean, y_train, y_val)
    centered = nngp_inference_from_features(f_train, f_val, y_train, y_val, center=True)
    np.testing.assert_array_equal(centered.accuracy, expected.accuracy)
    plain = nngp_inference_from_features(f_train, f_val, y_train, y_val)
    assert not np.array_equal(plain.accuracy, centered.accuracy, equal_nan=True)


def test_restricted_result_equals_inference_on_the_subset(cifar_batch):
    f_train, f_val, y_train, y_val = _relu_features(cifar_batch, 2, 100, 300, 200)
    full = nngp_inference_from_features(f_train, f_val, y_train, y_val, return_val_labels=True)
    positions = np.random.default_rng(0).choice(200, 80, replace=False)
    subset = nngp_inference_from_features(f_train, f_val[:, positions], y_train, y_val[positions])
    restricted = full.restricted(positions, y_val[positions])
    np.testing.assert_array_equal(restricted.accuracy, subset.accuracy)
    assert (restricted.best_accuracy, restricted.best_eps, restricted.loo_val_accuracy) == (
        subset.best_accuracy, subset.best_eps, subset.loo_val_accuracy)
    with pytest.raises(ValueError, match="return_val_labels=True"):
        subset.restricted(positions, y_val[positions])
