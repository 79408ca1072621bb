"""Tests of nngp_lib.analysis on the real NAS-Bench-101 table and on results tables built from it."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from nngp_lib import analysis, cost, metrics
from nngp_lib.data import nb101_table
from nngp_lib.scoring import SCORE_COLUMNS, SETTING_COLUMNS, Setting
from nngp_lib.spaces.nb101 import ModelSpec

SETTINGS = (Setting(ensemble=1, n_train=100, n_val=100), Setting(ensemble=2, n_train=200, n_val=100))


@pytest.fixture(scope="module")
def nb101(data_dir) -> pd.DataFrame:
    return nb101_table.load_table(data_dir)


def synthetic_results(nb101: pd.DataFrame, num_architectures: int, settings=SETTINGS, seed: int = 0) -> pd.DataFrame:
    """A results table shaped like scoring.score_many's, scores a noisy copy of the truth.

    NNGP accuracies are multiples of 1/n_val (ties, as in real runs); the leave-one-out
    variant is a little lower. Rows are shuffled, as nothing promises their order.
    """
    rng = np.random.default_rng(seed)
    sample = nb101.sample(num_architectures, random_state=seed)
    rows = []
    for setting in settings:
        noise = rng.normal(scale=0.03 / setting.ensemble, size=num_architectures)
        acc = np.round((sample["val_acc_108"].to_numpy() - 0.55 + noise) * setting.n_val) / setting.n_val
        for spec_hash, value in zip(sample["hash"], acc):
            rows.append({"hash": spec_hash, **setting.as_dict(), "nngp_acc": value, "nngp_eps": 1e-3,
                         "nngp_acc_loo": value - 0.01, "nngp_eps_loo": 1e-2, "seconds": 1.0})
    table = pd.DataFrame(rows, columns=["hash", *SETTING_COLUMNS, *SCORE_COLUMNS])
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def results(nb101) -> pd.DataFrame:
    return synthetic_results(nb101, 80)


@pytest.fixture(scope="module")
def sample(nb101) -> pd.DataFrame:
    """300 real architectures: a sample size like the book's."""
    return nb101.sample(300, random_state=1).reset_index(drop=True)


# -- proxy_scores -------------------------------------------------------------------------


def test_proxy_scores_aligns_every_score_with_its_architecture(results, nb101):
    proxies = analysis.proxy_scores(results, nb101, values=("nngp_acc", "nngp_acc_loo"), epochs=(4, 12))
    assert len(proxies) == 80 and proxies.dropped == 0
    assert list(proxies.scores.columns) == [
        "NNGP k=1 n=100 m=100", "NNGP k=2 n=200 m=100",
        "NNGP k=1 n=100 m=100 (leave-one-out eps)", "NNGP k=2 n=200 m=100 (leave-one-out eps)",
        "train 4 epochs", "train 12 epochs",
    ]
    assert list(proxies.proxies.index) == list(proxies.scores.columns)
    assert list(proxies.proxies["kind"]) == ["nngp"] * 4 + ["training"] * 2
    assert list(proxies.proxies["epochs"].iloc[4:]) == [4, 12]
    # Architectures in the order they first appear in the results.
    assert list(proxies.scores.index) == list(results["hash"].drop_duplicates())
    table = nb101.set_index("hash")
    np.testing.assert_array_equal(proxies.truth, table.loc[proxies.scores.index, "val_acc_108"])
    np.testing.assert_array_equal(proxies.scores["train 12 epochs"], table.loc[proxies.scores.index, "val_acc_12"])
    for row in results.sample(20, random_state=0).itertuples():
        label = f"NNGP k={row.ensemble} n={row.n_train} m={row.n_val}"
        assert proxies.scores.loc[row.hash, label] == row.nngp_acc
        assert proxies.scores.loc[row.hash, f"{label} (leave-one-out eps)"] == row.nngp_acc_loo
        info = proxies.proxies.loc[label]
        assert (info["ensemble"], info["n_train"], info["n_val"]) == (row.ensemble, row.n_train, row.n_val)


def test_proxy_scores_drops_architectures_not_scored_everywhere(results, nb101):
    first, second = results["hash"].unique()[:2]
    incomplete = results.drop(results.index[(results["hash"] == first) & (results["ensemble"] == 2)])
    incomplete.loc[(incomplete["hash"] == second) & (incomplete["ensemble"] == 1), "nngp_acc"] = np.nan
    proxies = analysis.proxy_scores(incomplete, nb101)
    assert proxies.dropped == 2
    assert len(proxies) == 78 and first not in proxies.scores.index and second not in proxies.scores.index
    assert not proxies.scores.isna().any().any()
    # An architecture whose training result is missing is dropped too.
    third = results["hash"].unique()[2]
    untrained = nb101.assign(val_acc_4=nb101["val_acc_4"].mask(nb101["hash"] == third))
    assert third not in analysis.proxy_scores(results, untrained).scores.index
    with pytest.raises(ValueError, match="incomplete"):
        analysis.proxy_scores(results.assign(nngp_acc=np.nan), nb101)


def test_proxy_scores_names_settings_that_vary(nb101):
    settings = tuple(Setting(ensemble=1, n_train=100, n_val=100, seed=seed) for seed in (0, 1))
    proxies = analysis.proxy_scores(synthetic_results(nb101, 10, settings), nb101, epochs=())
    assert list(proxies.scores.columns) == ["NNGP k=1 n=100 m=100 seed=0", "NNGP k=1 n=100 m=100 seed=1"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda r: r.iloc[0:0], "empty"),
        (lambda r: pd.concat([r, r.iloc[:1]]), "repeats"),
        (lambda r: r.drop(columns="nngp_acc"), "lacks columns"),
        (lambda r: r.assign(hash=r["hash"].where(r.index > 0, "0" * 32)), "not in the NB101 table"),
    ],
)
def test_proxy_scores_rejects_bad_tables(results, nb101, corrupt, message):
    with pytest.raises(ValueError, match=message):
        analysis.proxy_scores(corrupt(results), nb101)


def test_select_and_subset(results, nb101):
    proxies = analysis.proxy_scores(results, nb101)
    chosen = proxies.select(["train 36 epochs", "NNGP k=1 n=100 m=100"])
    assert list(chosen.scores.columns) == list(chosen.proxies.index) == ["train 36 epochs", "NNGP k=1 n=100 m=100"]
    large = proxies.truth.to_numpy() > proxies.truth.median()
    upper = proxies.subset(large)
    assert len(upper) == large.sum() and (upper.truth > proxies.truth.median()).all()
    with pytest.raises(KeyError, match="unknown proxies"):
        proxies.select(["train 5 epochs"])


# -- cost and the Pareto front -------------------------------------------------------------


def test_proxy_costs_follow_the_paper_flop_model(results, nb101):
    proxies = analysis.proxy_scores(results, nb101).proxies
    flops = 2.5e9
    costs = analysis.proxy_costs(proxies, flops)
    assert costs["NNGP k=2 n=200 m=100"] == pytest.approx(cost.to_pflops(cost.nngp_flops(flops, 200, 100, 2)))
    assert costs["train 12 epochs"] == pytest.approx(cost.to_pflops(cost.training_flops(flops, 12)))
    with pytest.raises(ValueError, match="no flops_per_image for width_multiplier 0.5"):
        analysis.proxy_costs(proxies.assign(width_multiplier=0.5), flops)
    narrow = analysis.proxy_costs(proxies.assign(width_multiplier=0.5), {1.0: flops, 0.5: flops / 4})
    assert narrow["NNGP k=2 n=200 m=100"] == pytest.approx(
        cost.to_pflops(cost.nngp_flops(flops / 4, 200, 100, 2, feature_dim=256)))
    assert narrow["train 12 epochs"] == costs["train 12 epochs"]


def test_mean_network_flops_counts_the_network_scoring_builds(nb101):
    specs = [ModelSpec.from_json(a, o) for a, o in zip(nb101["adjacency"][:3], nb101["ops"][:3])]
    flops = analysis.mean_network_flops(specs, widths=(1.0, 0.5))
    assert flops[1.0] == pytest.approx(np.mean([s.flops() for s in specs]))
    assert 0.2 * flops[1.0] < flops[0.5] < 0.3 * flops[1.0]  # convs scale with width squared


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    cost_, quality = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)
    quality[3] = np.nan
    front = analysis.pareto_front(cost_, quality)
    for i in range(40):
        dominated = any(
            cost_[j] <= cost_[i] and quality[j] >= quality[i] and (cost_[j] < cost_[i] or quality[j] > quality[i])
            for j in range(40)
            if not np.isnan(quality[j])
        )
        assert front[i] == (not dominated and not np.isnan(quality[i]))
    assert front.any()


# -- bootstrap ------------------------------------------------------------------------------


def materialised(values: np.ndarray, weights_row: np.ndarray) -> np.ndarray:
    return np.repeat(values, weights_row)


def test_bootstrap_weights_are_seeded_resamples():
    weights = analysis.bootstrap_weights(50, 200, seed=3)
    assert weights.shape == (200, 50) and (weights.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(weights, analysis.bootstrap_weights(50, 200, seed=3))
    assert not np.array_equal(weights, analysis.bootstrap_weights(50, 200, seed=4))
    # Each item is drawn with probability 1/N per draw: on average once per resample.
    assert weights.mean() == pytest.approx(1.0)
    assert (weights == 0).mean() == pytest.approx((1 - 1 / 50) ** 50, abs=0.02)


def test_resampled_tau_and_pearson_equal_those_of_the_materialised_resamples(sample):
    metric = np.round(sample["val_acc_4"].to_numpy(), 2)  # ties, like NNGP accuracies
    truth = sample["val_acc_108"].to_numpy()
    weights = analysis.bootstrap_weights(truth.size, 25, seed=0)
    taus = analysis.resampled_kendall_tau(metric, truth, weights)
    rs = analysis.resampled_pearson(metric, truth, weights)
    for row, tau, r in zip(weights, taus, rs):
        x, y = materialised(metric, row), materialised(truth, row)
        assert tau == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)
        assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-10)
    ones = np.ones((1, truth.size))
    assert analysis.resampled_kendall_tau(metric, truth, ones)[0] == pytest.approx(metrics.kendall_tau(metric, truth))
    assert analysis.resampled_pearson(metric, truth, ones)[0] == pytest.approx(metrics.pearson(metric, truth))


def test_resampled_tau_above_the_dense_limit_is_the_same_statistic(sample, monkeypatch):
    """Past the dense path's size, each resample is sorted instead: the same tau-b."""
    metric = np.round(sample["val_acc_4"].to_numpy(), 2)
    truth = sample["val_acc_108"].to_numpy()
    weights = analysis.bootstrap_weights(truth.size, 10, seed=1)
    dense = analysis.resampled_kendall_tau(metric, truth, weights)
    monkeypatch.setattr(analysis, "_DENSE_TAU_ARCHITECTURES", truth.size - 1)
    np.testing.assert_allclose(analysis.resampled_kendall_tau(metric, truth, weights), dense, atol=1e-12)


def test_intervals_on_the_whole_table(nb101):
    """All 30,001 architectures (too many for (N, N) matrices): intervals around the point
    estimate, as narrow as tau's sampling error at that size (about 0.004)."""
    table = analysis.correlation_table(nb101[["val_acc_4", "val_acc_12"]], nb101["val_acc_108"], num_resamples=20)
    assert table.loc["val_acc_4", "kendall_tau"] == pytest.approx(0.309, abs=5e-4)  # the data README's value
    widths = table["kendall_tau_high"] - table["kendall_tau_low"]
    assert ((table["kendall_tau_low"] < table["kendall_tau"]) & (table["kendall_tau"] < table["kendall_tau_high"])).all()
    assert (widths < 0.02).all() and (widths > 0).all()


def test_resample_of_one_repeated_architecture_is_nan():
    weights = np.array([[3, 0, 0], [1, 1, 1]])
    assert np.isnan(analysis.resampled_kendall_tau([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], weights)[0])
    assert np.isnan(analysis.resampled_pearson([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], weights)[0])
    assert analysis.resampled_kendall_tau([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], weights)[1] == pytest.approx(1 / 3)


def test_intervals_cover_the_full_table_tau(nb101):
    """Coverage: 95% intervals from samples of 150 architectures should hold the tau of all
    30,001 (the population here) in most samples, and narrow as the sample grows."""
    scores = nb101[["val_acc_4", "val_acc_12"]]
    population = [metrics.kendall_tau(scores[c], nb101["val_acc_108"]) for c in scores]
    covered, widths = 0, []
    for seed in range(20):
        rows = nb101.sample(150, random_state=seed)
        table = analysis.correlation_table(rows[["val_acc_4", "val_acc_12"]], rows["val_acc_108"],
                                           num_resamples=400, seed=seed)
        low, high = table["kendall_tau_low"].to_numpy(), table["kendall_tau_high"].to_numpy()
        covered += ((low <= population) & (population <= high)).sum()
        widths.append(high - low)
    assert covered / 40 >= 0.85
    rows = nb101.sample(1200, random_state=99)
    wide = analysis.correlation_table(rows[["val_acc_4", "val_acc_12"]], rows["val_acc_108"], num_resamples=200)
    narrow_width = (wide["kendall_tau_high"] - wide["kendall_tau_low"]).to_numpy()
    # Width ~ 1/sqrt(N): 8x the architectures, about a third of the width.
    np.testing.assert_allclose(narrow_width / np.mean(widths, axis=0), 1 / np.sqrt(8), rtol=0.35)


def test_correlation_table_point_estimates_are_the_metrics(sample):
    scores = sample[["val_acc_4", "val_acc_12", "trainable_parameters"]]
    table = analysis.correlation_table(scores, sample["val_acc_108"], num_resamples=200, seed=0)
    for proxy in scores:
        assert table.loc[proxy, "kendall_tau"] == metrics.kendall_tau(scores[proxy], sample["val_acc_108"])
        assert table.loc[proxy, "pearson"] == metrics.pearson(scores[proxy], sample["val_acc_108"])
    assert (table["kendall_tau_low"] < table["kendall_tau_high"]).all()
    again = analysis.correlation_table(scores, sample["val_acc_108"], num_resamples=200, seed=0)
    pd.testing.assert_frame_equal(table, again)
    bare = analysis.correlation_table(scores, sample["val_acc_108"], num_resamples=0)
    assert bare["kendall_tau_low"].isna().all()
    pd.testing.assert_series_equal(bare["kendall_tau"], table["kendall_tau"])


def test_paired_comparison_on_real_budgets(sample):
    scores, truth = sample[["val_acc_36", "val_acc_4"]], sample["val_acc_108"]
    better = analysis.paired_comparison(scores, truth, "val_acc_36", "val_acc_4", num_resamples=300)
    assert better["difference"] == pytest.approx(
        metrics.kendall_tau(scores["val_acc_36"], truth) - metrics.kendall_tau(scores["val_acc_4"], truth)
    )
    # NB101 says 36 epochs rank far better than 4 (0.695 against 0.309 on 30k rows).
    assert better["low"] > 0 and better["fraction_first_better"] > 0.99
    same = analysis.paired_comparison(scores.assign(copy=scores["val_acc_4"]), truth, "copy", "val_acc_4",
                                      statistic="pearson", num_resamples=50)
    assert (same["difference"], same["low"], same["high"], same["fraction_first_better"]) == (0, 0, 0, 0)


def test_bootstrap_rejects_bad_input(sample):
    scores = sample[["val_acc_4"]]
    with pytest.raises(ValueError, match="statistic"):
        analysis.bootstrap_correlations(scores, sample["val_acc_108"], statistic="spearman")
    unscored = scores.copy()
    unscored.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        analysis.correlation_table(unscored, sample["val_acc_108"])
    with pytest.raises(ValueError, match="shape"):
        analysis.correlation_table(scores, sample["val_acc_108"][:-1])
    with pytest.raises(ValueError, match="confidence"):
        analysis.percentile_interval(pd.DataFrame({"a": [0.1, 0.2]}), confidence=1.0)


# -- PQETP ------------------------------------------------------------------------------------


def test_pqetp_table_is_the_auroc_at_every_threshold(sample):
    scores, truth = sample[["val_acc_4", "val_acc_12"]], sample["val_acc_108"].to_numpy()
    grid = np.round(np.arange(0.80, 0.96, 0.005), 3)
    table = analysis.pqetp_table(scores, truth, grid, min_class_size=5)
    assert list(table.columns) == ["val_acc_4", "val_acc_12"]
    np.testing.assert_array_equal(table.index, grid)
    for threshold in grid:
        above = truth > threshold
        if min(above.sum(), (~above).sum()) < 5:
            assert table.loc[threshold].isna().all()
        else:
            for proxy in scores:
                assert table.loc[threshold, proxy] == pytest.approx(roc_auc_score(above, scores[proxy]))
    assert table.notna().any().all() and table.isna().any().all()


def test_intervals_where():
    failures, _ = doctest.testmod(analysis, verbose=False)
    assert failures == 0
    grid = [0.1, 0.2, 0.3]
    assert analysis.intervals_where([True, True, True], grid) == [(0.1, 0.3)]
    assert analysis.intervals_where([False, False, False], grid) == []
    assert analysis.intervals_where([True, False, True], grid) == [(0.1, 0.1), (0.3, 0.3)]
    with pytest.raises(ValueError, match="same length"):
        analysis.intervals_where([True], grid)


def test_better_ranges_are_the_runs_where_a_curve_is_above():
    grid = pd.Index([0.80, 0.81, 0.82, 0.83, 0.84, 0.85], name="threshold")
    curves = pd.DataFrame(
        {
            "base": [0.60, 0.60, 0.60, 0.60, 0.60, 0.60],
            "a": [0.70, 0.70, np.nan, 0.70, 0.50, 0.70],  # NaN splits a run
            "b": [0.50, 0.60, 0.50, 0.50, 0.50, 0.50],  # never strictly above
        },
        index=grid,
    )
    ranges = analysis.better_ranges(curves, "base")
    assert ranges[["proxy", "start", "end", "points"]].values.tolist() == [
        ["a", 0.80, 0.81, 2], ["a", 0.83, 0.83, 1], ["a", 0.85, 0.85, 1]
    ]
    assert (ranges["baseline"] == "base").all()
    assert analysis.better_ranges(curves, "base", ["b"]).empty


def test_pqetp_rejects_unsorted_grid(sample):
    with pytest.raises(ValueError, match="increasing"):
        analysis.pqetp_table(sample[["val_acc_4"]], sample["val_acc_108"], [0.9, 0.8])


# -- discovered performance -----------------------------------------------------------------


def test_discovered_performance_table(sample):
    truth = sample["val_acc_108"].to_numpy()
    scores = sample[["val_acc_4", "val_acc_36"]].assign(oracle=truth)
    table = analysis.discovered_performance_table(scores, truth, subset_size=100, num_trials=30, seed=2)
    for proxy in scores:
        trials = metrics.discovered_performance(scores[proxy], truth, 100, num_trials=30, seed=2)
        assert table.loc[proxy, "mean"] == pytest.approx(trials.mean())
        assert table.loc[proxy, "sem"] == pytest.approx(trials.std(ddof=1) / np.sqrt(30))
    # The same subsets for everyone: the truth as proxy finds exactly the best in each subset.
    assert table.loc["oracle", "mean"] == table.loc[analysis.BEST_IN_SUBSET, "mean"]
    assert (table["mean"] <= table.loc[analysis.BEST_IN_SUBSET, "mean"]).all()
    assert table.loc["val_acc_36", "mean"] > table.loc[analysis.RANDOM_CHOICE, "mean"]
    plain = analysis.discovered_performance_table(scores, truth, subset_size=100, references=False)
    assert list(plain.index) == list(scores.columns)
