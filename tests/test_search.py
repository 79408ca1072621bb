"""Tests of nngp_lib.search: structure of NAS-Bench-101 cells, search-space reduction,
random search and hybrid metrics, on the real NB101 table and on synthetic scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.special

from nngp_lib.data import nb101_table
from nngp_lib.metrics import kendall_tau
from nngp_lib.search import (
    HybridMetric,
    SearchCurve,
    fit_hybrid,
    hybrid_split_scores,
    random_reduction,
    random_search,
    random_spaces,
    reduce_space,
    reduction_curves,
    residual_connections,
    size_clusters,
    tau_null_sd,
)


@pytest.fixture(scope="module")
def table(data_dir) -> pd.DataFrame:
    return nb101_table.load_table(data_dir)


# -- residual connections --------------------------------------------------------------------


def test_residual_connections_of_chain_and_complete_dag():
    chain = np.eye(7, k=1, dtype=int)
    assert residual_connections(chain) == 0
    complete = np.triu(np.ones((7, 7), dtype=int), k=1)
    assert residual_connections(complete) == 15  # all edges but the 6 of the first superdiagonal
    assert residual_connections(json.dumps(complete.tolist())) == 15
    assert residual_connections([[0, 1], [0, 0]]) == 0


def test_residual_connections_match_edge_count_on_the_table(table):
    sample = table.sample(500, random_state=0)
    for adjacency in sample["adjacency"]:
        matrix = json.loads(adjacency)
        skips = sum(matrix[i][j] for i in range(len(matrix)) for j in range(i + 2, len(matrix)))
        assert residual_connections(adjacency) == skips


@pytest.mark.parametrize("bad", [np.ones((3, 4)), [[0, 1], [1, 0]], np.zeros(3)])
def test_residual_connections_reject_non_dag(bad):
    with pytest.raises(ValueError, match="adjacency"):
        residual_connections(bad)


def test_few_residual_connections_rank_low_early_in_training(table):
    """The paper's observation (its Fig. 4), on training alone: among the top tenth by
    108-epoch accuracy, cells with few residual connections rank lower after 4 epochs."""
    table = table.sample(15_000, random_state=0)
    residuals = table["adjacency"].map(residual_connections)
    top = table["val_acc_108"] >= table["val_acc_108"].quantile(0.9)
    rank_4 = table["val_acc_4"].rank(pct=True)
    few, many = rank_4[top & (residuals <= 2)], rank_4[top & (residuals >= 5)]
    assert len(few) > 20 and len(many) > 20
    assert few.mean() < many.mean() - 0.05


# -- size clusters ---------------------------------------------------------------------------


def test_size_clusters_split_at_gaps():
    labels = size_clusters([30.0, 1.0, 11.0, 2.0, 10.0], min_gap=5.0)
    np.testing.assert_array_equal(labels, [2, 0, 1, 0, 1])
    assert size_clusters([5.0], min_gap=1.0).tolist() == [0]
    assert size_clusters([1.0, 2.0], min_gap=1.0).tolist() == [0, 0]  # a jump of exactly min_gap joins


def test_size_clusters_on_the_table_are_separated_by_empty_intervals(table):
    parameters = table["trainable_parameters"].to_numpy()
    labels = size_clusters(parameters, min_gap=2e6)
    clusters = pd.Series(parameters).groupby(labels).agg(["min", "max"])
    assert len(clusters) >= 3  # the paper's "multiple clusters"
    assert (clusters["min"].iloc[1:].to_numpy() - clusters["max"].iloc[:-1].to_numpy() > 2e6).all()
    for label, members in pd.Series(parameters).groupby(labels):
        assert (np.diff(np.sort(members)) <= 2e6).all(), f"cluster {label} holds a larger gap"
    # the smallest cluster holds the paper's "models with less than 10M parameters"
    assert (labels[parameters < 10e6] == 0).all()


def test_size_clusters_reject_bad_input():
    with pytest.raises(ValueError, match="min_gap"):
        size_clusters([1.0, 2.0], min_gap=0)
    with pytest.raises(ValueError, match="NaN"):
        size_clusters([1.0, np.nan])


# -- reduction -------------------------------------------------------------------------------


def test_reduce_space_keeps_the_top_fraction(table):
    metric = table["val_acc_12"].to_numpy()
    kept = reduce_space(metric, 0.3)
    assert kept.size == round(0.3 * metric.size)
    rest = np.setdiff1d(np.arange(metric.size), kept)
    assert metric[kept].min() >= metric[rest].max()
    assert np.all(np.diff(metric[kept]) <= 0)  # best first


def test_reduce_space_breaks_ties_at_random():
    metric = np.array([1.0, 0.5, 0.5, 0.5, 0.5, 0.0])
    chosen = [set(reduce_space(metric, 0.5, seed=seed).tolist()) for seed in range(400)]
    assert all(0 in c and 5 not in c and len(c) == 3 for c in chosen)
    counts = np.bincount([i for c in chosen for i in c if i != 0], minlength=5)[1:5]
    assert counts.sum() == 800 and counts.min() > 150  # each tied one about half the time
    np.testing.assert_array_equal(reduce_space(metric, 0.5, seed=3), reduce_space(metric, 0.5, seed=3))


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_reduce_space_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        reduce_space(np.arange(10.0), fraction)


def test_reduce_space_per_trial_keeps_the_top_of_each_space(table):
    metric = table["val_acc_12"].to_numpy()
    spaces = random_spaces(len(table), 1000, num_trials=5, seed=1)
    kept = reduce_space(metric, 0.1, spaces=spaces)
    assert kept.shape == (5, 100)
    for space, top in zip(spaces, kept):
        assert set(top) <= set(space)
        assert metric[top].min() >= metric[np.setdiff1d(space, top)].max()
    # one space alone keeps the same scores (tied ones may be exchanged)
    np.testing.assert_array_equal(metric[reduce_space(metric, 0.1, spaces=spaces[2])], metric[kept[2]])


def test_random_spaces_and_reductions_are_distinct_uniform_draws():
    spaces = random_spaces(50, 10, num_trials=2000, seed=1)
    assert spaces.shape == (2000, 10)
    assert all(np.unique(row).size == 10 for row in spaces)
    counts = np.bincount(spaces.ravel(), minlength=50)
    assert counts.min() > 300 and counts.max() < 500  # 400 expected for each position
    reduced = random_reduction(spaces, 0.3, seed=2)
    assert reduced.shape == (2000, 3)
    assert all(set(r) <= set(s) and np.unique(r).size == 3 for r, s in zip(reduced, spaces))
    first_kept = (reduced == spaces[:, :1]).any(axis=1).mean()
    assert 0.25 < first_kept < 0.35  # each member of a space is kept with probability 0.3
    assert random_reduction(np.arange(10), 0.5).shape == (5,)
    with pytest.raises(ValueError, match="space_size"):
        random_spaces(5, 6, num_trials=1)


# -- random search ---------------------------------------------------------------------------


def expected_max_of_draws(values: np.ndarray, budget: int) -> float:
    """E[max of `budget` draws without replacement]: the i-th smallest is the maximum
    with probability C(i - 1, budget - 1) / C(N, budget)."""
    ordered = np.sort(values)
    ranks = np.arange(budget, ordered.size + 1)  # only these can be the maximum
    weights = np.exp(log_comb(ranks - 1, budget - 1) - log_comb(ordered.size, budget))
    return float(weights @ ordered[budget - 1 :])


def log_comb(n, k):
    return scipy.special.gammaln(n + 1) - scipy.special.gammaln(k + 1) - scipy.special.gammaln(n - k + 1)


def test_search_by_the_truth_finds_the_expected_maximum(table):
    truth = table["val_acc_108"].to_numpy()
    budgets = np.array([1, 10, 100])
    curve = random_search(truth, truth, budgets, num_trials=400, seed=0)
    for column, budget in enumerate(budgets):
        expected = expected_max_of_draws(truth, budget)
        assert abs(curve.mean()[column] - expected) < 4 * curve.sem()[column]


def test_search_picks_the_best_by_the_search_metric():
    search_metric = np.array([0.1, 0.9, 0.5, 0.7])
    truth = np.array([0.4, 0.2, 0.8, 0.6])
    curve = random_search(search_metric, truth, [4], num_trials=5)
    np.testing.assert_array_equal(curve.found, np.full((5, 1), 0.2))
    top_two = random_search(search_metric, truth, [4], num_trials=5, top_k=2)
    np.testing.assert_array_equal(top_two.found, np.full((5, 1), 0.6))
    pool = random_search(search_metric, truth, [2], pool=np.array([0, 2]), num_trials=3)
    np.testing.assert_array_equal(pool.found, np.full((3, 1), 0.8))


def test_search_cost_sums_the_drawn_architectures():
    cost = np.array([1.0, 10.0, 100.0, 1000.0])
    curve = random_search(np.arange(4.0), np.arange(4.0), [1, 2, 4], num_trials=2000, cost=cost, seed=2)
    np.testing.assert_allclose(curve.cost[-1], 1111.0)
    np.testing.assert_allclose(curve.cost[:2], [1111.0 / 4, 1111.0 / 2], rtol=0.1)
    frame = curve.to_frame(extra_cost=5.0)
    assert list(frame.columns) == ["budget", "cost", "mean", "sem", "low", "high"]
    np.testing.assert_allclose(frame["cost"], curve.cost + 5.0)
    assert (frame["low"] <= frame["mean"]).all() and (frame["mean"] <= frame["high"]).all()


def test_longer_training_searches_better_and_screening_helps(table):
    truth = table["val_acc_108"].to_numpy()
    budgets = np.array([50])

    def found(column, pool=None, trials=200):
        return random_search(table[column].to_numpy(), truth, budgets, pool=pool, num_trials=trials, seed=0).mean()[0]

    assert found("val_acc_36") > found("val_acc_4")
    screened = reduce_space(table["val_acc_12"].to_numpy(), 0.3)
    random_30 = random_reduction(random_spaces(len(table), len(table), num_trials=200), 0.3, seed=1)
    assert found("val_acc_36", screened) > found("val_acc_36", random_30)


def test_search_is_seeded_and_validates_input():
    metric = np.linspace(0, 1, 20)
    first = random_search(metric, metric[::-1], [1, 5], num_trials=10, seed=4)
    again = random_search(metric, metric[::-1], [1, 5], num_trials=10, seed=4)
    np.testing.assert_array_equal(first.found, again.found)
    assert isinstance(first, SearchCurve) and first.num_trials == 10
    with pytest.raises(ValueError, match="budgets"):
        random_search(metric, metric, [5, 1])
    with pytest.raises(ValueError, match="budgets"):
        random_search(metric, metric, [21])
    with pytest.raises(ValueError, match="budgets"):
        random_search(metric, metric, [3], pool=np.array([0, 1]))
    with pytest.raises(ValueError, match="distinct"):
        random_search(metric, metric, [1], pool=np.array([0, 0]))
    with pytest.raises(ValueError, match="pool"):
        random_search(metric, metric, [1], pool=np.zeros((3, 2), dtype=int), num_trials=4)
    with pytest.raises(ValueError, match="NaN"):
        random_search(np.r_[metric[:-1], np.nan], metric, [1])
    with pytest.raises(ValueError, match="length"):
        random_search(metric, metric[:-1], [1])


def test_reduction_curves_on_the_table(table):
    """Fig. 8 on ten 10,000-architecture spaces of the whole table, 12-epoch accuracy as
    the screen: each strategy's curve is the search of its own pools, and screening to the
    top 30% beats a random 30% once the pools are exhausted."""
    truth = table["val_acc_108"].to_numpy()
    signal = table["val_acc_36"].to_numpy()
    spaces = random_spaces(len(table), 10_000, num_trials=10, seed=0)
    curves = reduction_curves(table["val_acc_12"].to_numpy(), {36: signal}, truth, spaces, fractions=(0.3,),
                              costs={36: np.ones(len(table))}, screen_cost=100.0, top_k=10, num_budgets=5, seed=0)
    assert list(curves["strategy"].unique()) == ["no reduction", "NNGP top 30%", "random 30%"]
    assert set(curves["signal"]) == {36}
    sizes = curves.groupby("strategy", sort=False)["pool_size"].first()
    assert sizes.tolist() == [10_000, 3_000, 3_000]
    # every strategy reaches the smaller pools' size, so they meet at equal budgets
    assert (curves.groupby("strategy")["budget"].apply(lambda b: 3_000 in set(b))).all()
    screened = reduce_space(table["val_acc_12"].to_numpy(), 0.3, spaces=spaces, seed=0)
    direct = random_search(signal, truth, [1, 3_000], pool=screened, top_k=10, num_trials=10, seed=0)
    mine = curves[curves["strategy"] == "NNGP top 30%"].set_index("budget")
    assert mine.loc[3_000, "mean"] == pytest.approx(direct.mean()[1])
    assert mine.loc[3_000, "cost"] == pytest.approx(3_000 + 100.0)  # drawn architectures + the screen
    exhausted = curves[curves["budget"] == curves["pool_size"]].set_index("strategy")["mean"]
    assert exhausted["NNGP top 30%"] > exhausted["random 30%"]
    with pytest.raises(ValueError, match="one search space per trial"):
        reduction_curves(signal, {36: signal}, truth, spaces[0])
    with pytest.raises(ValueError, match="signals is empty"):
        reduction_curves(signal, {}, truth, spaces)


# -- hybrid metrics --------------------------------------------------------------------------


def test_fit_hybrid_recovers_a_linear_model():
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    target = 0.3 * features["a"] - 2.0 * features["b"] + 0.7
    hybrid = fit_hybrid(features, target)
    assert isinstance(hybrid, HybridMetric) and hybrid.names == ("a", "b")
    np.testing.assert_allclose(hybrid.coef, [0.3, -2.0], atol=1e-12)
    assert hybrid.intercept == pytest.approx(0.7)
    np.testing.assert_allclose(hybrid(features[["b", "a"]]), target)  # read by name
    np.testing.assert_allclose(hybrid(features.to_numpy()), target)
    with pytest.raises(ValueError, match="more architectures"):
        fit_hybrid(features.iloc[:2], target[:2])
    with pytest.raises(ValueError, match="lack"):
        hybrid(features[["a"]])


def test_hybrid_of_4_epochs_and_an_independent_score_beats_both(table):
    """A synthetic "NNGP" score: 12-epoch accuracy plus noise independent of 4-epoch
    training. Fitted to 12-epoch accuracy on half the architectures, the hybrid with
    4-epoch accuracy ranks the other half better than either alone."""
    sample = table[table["val_acc_108"] > 0.8].sample(2000, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=sample["val_acc_12"].std(), size=len(sample))
    features = pd.DataFrame({"4 epochs": sample["val_acc_4"], "synthetic": sample["val_acc_12"] + noise})
    scores = hybrid_split_scores(features, sample["val_acc_12"], sample["val_acc_108"], num_splits=5, seed=0)
    assert list(scores.columns) == ["4 epochs", "synthetic", "hybrid"]
    assert len(scores) == 5
    assert (scores["hybrid"] > scores[["4 epochs", "synthetic"]].max(axis=1)).all()


def test_hybrid_is_scored_on_held_out_architectures_only():
    rng = np.random.default_rng(1)
    features = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    truth = np.arange(40.0)  # names each architecture
    held_out = []

    def record(metric, values):
        held_out.append(frozenset(values.tolist()))
        return float(len(values))

    sizes = hybrid_split_scores(features, truth, truth, num_splits=3, train_fraction=0.75, score=record)
    assert (sizes.to_numpy() == 10).all()
    # per split: the same 10 held-out architectures score every column; splits differ
    assert all(held_out[i] == held_out[i - i % 3] for i in range(9))
    assert len({held_out[0], held_out[3], held_out[6]}) == 3
    with pytest.raises(ValueError, match="too few"):
        hybrid_split_scores(features.iloc[:4], truth[:4], truth[:4])
    with pytest.raises(TypeError, match="DataFrame"):
        hybrid_split_scores(features.to_numpy(), truth, truth)
    with pytest.raises(ValueError, match="train_fraction"):
        hybrid_split_scores(features, truth, truth, train_fraction=1.0)


def test_tau_null_sd_matches_permutations():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    taus = [kendall_tau(x, rng.permutation(x)) for _ in range(1000)]
    assert np.std(taus) == pytest.approx(tau_null_sd(40), rel=0.1)  # 1000 draws: 2% standard error
    with pytest.raises(ValueError, match="at least 2"):
        tau_null_sd(1)
