"""Tests of nngp_lib.cost, the paper's FLOP model (Appendix B)."""

from __future__ import annotations

import numpy as np
import pytest

from nngp_lib.cost import (
    nngp_flops,
    nngp_inference_flops,
    nngp_kernel_flops,
    to_pflops,
    training_flops,
)

GFLOP = 1e9


def test_hand_derived_nngp_cost():
    # F = 1 GFLOP, n = m = 1000, k = 4, d = 512, C = 10, L = 20, batch-norm batch 100.
    forward = 4 * (1000 + 1000 + 100) * GFLOP  # 8.4e12
    gram = 2 * 4 * 512 * 1000 * (1000 + 1000)  # 8.192e9: K_tt and K_vt for 4 networks
    cholesky = 1000**3 / 3  # per regularizer
    solves = 2 * 1000**2 * 10  # two triangular solves, 10 label columns
    predict = 2 * 1000 * 1000 * 10  # K_vt @ alpha
    expected = forward + gram + 20 * (cholesky + solves + predict)
    assert nngp_kernel_flops(GFLOP, 1000, 1000, 4, bn_batch=100) == pytest.approx(forward + gram, rel=1e-15)
    assert nngp_inference_flops(1000, 1000) == pytest.approx(20 * (cholesky + solves + predict), rel=1e-15)
    assert nngp_flops(GFLOP, 1000, 1000, 4, bn_batch=100) == pytest.approx(expected, rel=1e-15)


def test_hand_derived_training_cost():
    # 12 epochs over NAS-Bench-101's 40,000 training images at 3x the forward cost,
    # then one pass over its 10,000 validation images.
    assert training_flops(GFLOP, 12) == pytest.approx((3 * 12 * 40_000 + 10_000) * GFLOP, rel=1e-15)
    assert to_pflops(training_flops(GFLOP, 12)) == pytest.approx(1.45)


def test_scaling_laws():
    flops = 2 * GFLOP
    kernel = nngp_kernel_flops(flops, 1000, 500, 1)
    assert nngp_kernel_flops(flops, 1000, 500, 8) == pytest.approx(8 * kernel)
    assert nngp_kernel_flops(2 * flops, 1000, 500, 1) > kernel
    # Training is affine in epochs: the validation pass is paid once.
    one, two, three = (training_flops(flops, e) for e in (1, 2, 3))
    assert three - two == pytest.approx(two - one)
    assert training_flops(flops, 0) == pytest.approx(10_000 * flops)
    sizes = np.array([100, 1000, 2000, 4000, 8000])
    for total in (nngp_flops(flops, sizes, 1000, 4), nngp_flops(flops, 1000, sizes, 4)):
        assert np.all(np.diff(total) > 0)
    # Inference dominates as n grows: cubic, against the linear forward passes.
    assert nngp_inference_flops(8000, 1000) / nngp_inference_flops(4000, 1000) > 7


def test_vectorized_over_architectures():
    flops = np.array([0.5, 1.0, 4.0]) * GFLOP
    totals = nngp_flops(flops, 1000, 1000, 2)
    assert totals.shape == (3,)
    np.testing.assert_allclose(totals, [nngp_flops(f, 1000, 1000, 2) for f in flops])
    np.testing.assert_allclose(training_flops(flops, 4), [training_flops(f, 4) for f in flops])
    grid = nngp_flops(GFLOP, np.array([[1000], [2000]]), np.array([1000, 5000]), 1)
    assert grid.shape == (2, 2)


def test_nngp_is_orders_of_magnitude_cheaper_than_short_training_on_small_sets():
    # The abstract's claim, independent of F when forward passes dominate:
    # k (n + m) = 2000 images against 3 * 4 * 40,000 + 10,000 = 490,000.
    flops = GFLOP
    assert training_flops(flops, 4) / nngp_flops(flops, 1000, 1000, 1) > 100


def test_eigh_solver_count():
    n, m, c, num_reg = 1000, 2000, 10, 20
    expected = 9 * n**3 + 2 * m * n**2 + 2 * n**2 * c + num_reg * (n * c + 2 * n * m * c)
    assert nngp_inference_flops(n, m, solver="eigh") == pytest.approx(expected, rel=1e-15)
    # One eigendecomposition against 20 Cholesky factorizations: 9 n^3 vs 20 n^3 / 3.
    ratio = nngp_inference_flops(1e5, 1, solver="eigh") / nngp_inference_flops(1e5, 1)
    assert ratio == pytest.approx(27 / 20, rel=1e-3)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="ensemble must be non-negative"):
        nngp_flops(GFLOP, 1000, 1000, -1)
    with pytest.raises(ValueError, match="flops_per_image must be non-negative"):
        training_flops(np.array([1.0, -1.0]), 4)
    with pytest.raises(ValueError, match="solver must be 'cholesky' or 'eigh'"):
        nngp_inference_flops(1000, 1000, solver="lu")
