"""Tests of nngp_lib.metrics against scipy, sklearn and brute force, on NAS-Bench-101 results."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from nngp_lib.config import data_dir, missing_data_message
from nngp_lib.metrics import discovered_performance, kendall_tau, pearson, pqetp, spearman


@pytest.fixture(scope="module")
def nb101() -> pd.DataFrame:
    """The NAS-Bench-101 table: validation accuracies after 4, 12, 36 and 108 epochs."""
    path = data_dir() / "nasbench101" / "nb101_cifar10_30k.csv.gz"
    if not path.exists():
        pytest.skip(missing_data_message("NAS-Bench-101 table", path))
    return pd.read_csv(path, usecols=["val_acc_4", "val_acc_12", "val_acc_36", "val_acc_108", "trainable_parameters"])


def brute_force_tau(x, y, variant):
    """Kendall's tau over all pairs: 'a' ignores ties, 'b' is the paper's eq. 6."""
    concordant = discordant = ties_x_only = ties_y_only = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sign = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
        if sign > 0:
            concordant += 1
        elif sign < 0:
            discordant += 1
        elif x[i] == x[j] and y[i] != y[j]:
            ties_x_only += 1
        elif y[i] == y[j] and x[i] != x[j]:
            ties_y_only += 1
    if variant == "a":
        return (concordant - discordant) / (len(x) * (len(x) - 1) / 2)
    p_q = concordant + discordant
    return (concordant - discordant) / np.sqrt((p_q + ties_x_only) * (p_q + ties_y_only))


@pytest.mark.parametrize("seed", range(4))
def test_kendall_tau_is_tau_b_of_eq_6(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=40).astype(float)  # heavy ties, like accuracies on small sets
    y = x + rng.integers(-2, 3, size=40)
    tau = kendall_tau(x, y)
    assert tau == pytest.approx(brute_force_tau(x, y, "b"), abs=1e-12)
    assert tau == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)
    # With ties tau-a is a different number, so the variant is not a matter of taste.
    assert abs(tau - brute_force_tau(x, y, "a")) > 1e-3


def test_kendall_tau_without_ties_is_every_variant():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert kendall_tau(x, y) == pytest.approx(brute_force_tau(x, y, "a"), abs=1e-12)


def test_rank_correlations_on_nas_bench_101(nb101):
    truth = nb101["val_acc_108"].to_numpy()
    four = nb101["val_acc_4"].to_numpy()
    assert np.unique(four).size < four.size  # real accuracies tie, so tau-b matters
    assert kendall_tau(four, truth) == pytest.approx(scipy.stats.kendalltau(four, truth).statistic, abs=1e-12)
    # The data README's independent figures: 0.309, 0.439, 0.695 and 0.316.
    assert kendall_tau(four, truth) == pytest.approx(0.309, abs=5e-4)
    assert kendall_tau(nb101["val_acc_12"], truth) == pytest.approx(0.439, abs=5e-4)
    assert kendall_tau(nb101["val_acc_36"], truth) == pytest.approx(0.695, abs=5e-4)
    assert kendall_tau(nb101["trainable_parameters"], truth) == pytest.approx(0.316, abs=5e-4)
    assert pearson(four, truth) == pytest.approx(np.corrcoef(four, truth)[0, 1], abs=1e-12)
    assert spearman(four, truth) == pytest.approx(scipy.stats.spearmanr(four, truth).statistic, abs=1e-12)


def test_pqetp_equals_sklearn_auroc_on_nas_bench_101(nb101):
    truth = nb101["val_acc_108"].to_numpy()
    thresholds = np.array([0.80, 0.85, 0.90, 0.92, 0.94, np.quantile(truth, 0.99)])
    for column in ["val_acc_4", "val_acc_36", "trainable_parameters"]:
        metric = nb101[column].to_numpy()
        expected = [roc_auc_score(truth > t, metric) for t in thresholds]
        np.testing.assert_allclose(pqetp(metric, truth, thresholds), expected, rtol=0, atol=1e-12)


def test_pqetp_uses_strict_exceedance_and_half_credit_for_score_ties():
    truth = np.array([0.1, 0.5, 0.5, 0.9])
    metric = np.array([1.0, 2.0, 2.0, 2.0])
    # Threshold 0.5: only 0.9 exceeds it; the two 0.5s are negatives tied with it in score.
    assert pqetp(metric, truth, 0.5) == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert pqetp(metric, truth, 0.5) == pytest.approx(roc_auc_score(truth > 0.5, metric))


def test_pqetp_shapes_and_undefined_thresholds():
    rng = np.random.default_rng(0)
    metric, truth = rng.normal(size=50), rng.uniform(size=50)
    assert isinstance(pqetp(metric, truth, 0.5), float)
    grid = np.array([[-1.0, 0.5], [truth.max(), np.nan]])
    values = pqetp(metric, truth, grid)
    assert values.shape == (2, 2)
    # Nobody exceeds the maximum and everybody exceeds -1: one class is empty.
    assert np.isnan(values[0, 0]) and np.isnan(values[1, 0]) and np.isnan(values[1, 1])
    assert values[0, 1] == pytest.approx(roc_auc_score(truth > 0.5, metric))


def test_discovered_performance_of_a_perfect_metric_dominates(nb101):
    truth = nb101["val_acc_108"].to_numpy()
    kwargs = dict(subset_size=5_000, num_trials=8, seed=3)
    perfect = discovered_performance(truth, truth, **kwargs)
    assert perfect.shape == (8,)
    # Same seed, same subsets: the oracle finds each subset's best, nobody finds better.
    for column in ["val_acc_4", "val_acc_36", "trainable_parameters"]:
        found = discovered_performance(nb101[column].to_numpy(), truth, **kwargs)
        assert np.all(found <= perfect)
    blind = discovered_performance(np.zeros_like(truth), truth, **kwargs)  # random top 10
    assert blind.mean() < perfect.mean()


def test_discovered_performance_full_set_and_seeds():
    rng = np.random.default_rng(0)
    truth = rng.uniform(size=200)
    np.testing.assert_array_equal(discovered_performance(truth, truth, 200, top_k=1, num_trials=3), truth.max())
    # Keeping everything finds the best whatever the metric.
    assert np.all(discovered_performance(-truth, truth, 50, top_k=50) == discovered_performance(truth, truth, 50, top_k=50))
    noisy = truth + rng.normal(scale=0.3, size=200)
    first = discovered_performance(noisy, truth, 50, seed=1)
    np.testing.assert_array_equal(first, discovered_performance(noisy, truth, 50, seed=1))
    assert not np.array_equal(first, discovered_performance(noisy, truth, 50, seed=2))


def test_discovered_performance_nan_policy():
    truth = np.linspace(0, 1, 30)
    metric = truth.copy()
    metric[-1] = np.nan  # the best architecture was not scored
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        discovered_performance(metric, truth, 10)
    found = discovered_performance(metric, truth, 29, top_k=1, nan_policy="omit")
    np.testing.assert_array_equal(found, truth[-2])
    with pytest.raises(ValueError, match="subset_size"):
        discovered_performance(metric, truth, 30, nan_policy="omit")


@pytest.mark.parametrize("function", [kendall_tau, pearson, spearman])
def test_correlations_nan_constant_and_mismatch(function):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20), rng.normal(size=20)
    x_nan = x.copy()
    x_nan[3] = np.nan
    assert np.isnan(function(x_nan, y))
    assert function(x_nan, y, nan_policy="omit") == pytest.approx(function(np.delete(x, 3), np.delete(y, 3)))
    with pytest.raises(ValueError, match="1 of 20 pairs contain NaN"):
        function(x_nan, y, nan_policy="raise")
    assert np.isnan(function(np.ones(20), y))
    assert np.isnan(function(x[:1], y[:1]))
    with pytest.raises(ValueError, match="same length, got 20 and 19"):
        function(x, y[:-1])
    with pytest.raises(ValueError, match="1-D"):
        function(x.reshape(4, 5), y.reshape(4, 5))
