"""The landing page's table: each number is the committed run's, recomputed here directly."""

from __future__ import annotations

import numpy as np
import pytest

from nngp_lib import findings, results, scoring
from nngp_lib.metrics import kendall_tau


@pytest.fixture(scope="module")
def table(data_dir):
    from nngp_lib.data import nb101_table

    return nb101_table.load_table()


@pytest.fixture(scope="module")
def key(table):
    return findings.key_results(table, num_resamples=0, findings=["NNGP against training", "cheap estimates"])


def test_nngp_and_training_taus_are_those_of_the_committed_run(table, key):
    run = scoring.complete_settings(results.read(findings.NNGP_RUN).table)
    rows = run[(run["ensemble"] == 1) & (run["n_train"] == 100) & (run["n_val"] == 100)].set_index("hash")
    truth = table.set_index("hash").loc[rows.index]
    main = key[key["finding"] == "NNGP against training"].set_index("score")
    assert main.loc["NNGP k=1 n=100 m=100 width=0.5", "architectures"] == len(rows) == 1000
    assert main.loc["NNGP k=1 n=100 m=100 width=0.5", "kendall_tau"] == pytest.approx(
        kendall_tau(rows["nngp_acc"], truth["val_acc_108"]))
    assert main.loc["train 4 epochs", "kendall_tau"] == pytest.approx(
        kendall_tau(truth["val_acc_4"], truth["val_acc_108"]))
    # training costs about four decades more than n = 100 NNGP at half width, by the paper's model
    ratio = main.loc["train 4 epochs", "PFLOPs"] / main.loc["NNGP k=1 n=100 m=100 width=0.5", "PFLOPs"]
    assert 1e3 < ratio < 1e5
    assert set(main["chapter"]) == {"nb101"} and np.isnan(main["kendall_tau_low"]).all()  # no resamples asked


def test_cheap_estimates_rank_against_the_full_width_run(key):
    cheap = key[key["finding"] == "cheap estimates"].set_index("score")
    assert len(cheap) == len(findings.CHEAP_RUNS) - 1
    full = results.read("nb101_nngp_k1_w1").table.set_index(["hash", "n_train", "n_val"])
    quarter = results.read("nb101_nngp_k1_w025").table.set_index(["hash", "n_train", "n_val"])
    both = full.xs((100, 100), level=("n_train", "n_val")).join(
        quarter.xs((100, 100), level=("n_train", "n_val")), rsuffix="_q", how="inner")
    row = cheap.loc["width 0.25 against full width (k=1, n=100, m=100)"]
    assert row["architectures"] == len(both)
    assert row["kendall_tau"] == pytest.approx(kendall_tau(both["nngp_acc_q"], both["nngp_acc"]))


def test_whole_table_rows_are_those_of_the_table_run_on_every_scored_architecture(table):
    key = findings.key_results(table, num_resamples=0, findings=["the whole table"]).set_index("score")
    run = results.read(findings.TABLE_RUN).table
    rows = run[run["n_val"] == 500].set_index("hash")
    truth = table.set_index("hash").loc[rows.index]
    label = "NNGP k=1 n=100 m=500 width=0.25"
    assert key.loc[label, "architectures"] == run["hash"].nunique() == len(rows)
    assert key.loc[label, "kendall_tau"] == pytest.approx(kendall_tau(rows["nngp_acc"], truth["val_acc_108"]))
    assert key.loc["train 12 epochs", "kendall_tau"] == pytest.approx(
        kendall_tau(truth["val_acc_12"], truth["val_acc_108"]))
    assert set(key["chapter"]) == {"whole_table"} and set(key["run"]) == {findings.TABLE_RUN}


def test_runs_that_are_absent_leave_their_rows_out_and_are_listed(table, tmp_path):
    missing = findings.missing_runs(tmp_path)
    assert missing["NNGP against training"] == [findings.NNGP_RUN]
    assert all(missing.values())
    key = findings.key_results(table, num_resamples=0, results_dir=tmp_path)
    assert key.empty and list(key.columns) == findings.COLUMNS
    with pytest.raises(ValueError, match="unknown findings \\['fig 1'\\]; choose from"):
        findings.key_results(table, findings=["fig 1"], results_dir=tmp_path)


def test_cost_points_are_the_scores_with_a_flop_cost(key):
    points = findings.cost_points(key)
    assert set(points["kind"]) == {"NNGP", "training"}
    assert (points["PFLOPs"] > 0).all() and "cheap estimates" not in set(points["finding"])
