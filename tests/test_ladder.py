"""The ladder of settings: its plan, and the analysis the chapter reads from a real run."""

from __future__ import annotations

import numpy as np
import pytest

from nngp_lib import analysis, ladder, metrics, scoring
from nngp_lib.data import nb101_table
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.spaces.nb101 import specs_from_table


def test_plan_stays_within_the_exact_images_and_reaches_the_issue_targets(data_dir):
    for width in ladder.widths():
        settings = ladder.settings(width)
        assert len(set(settings)) == len(settings)
        assert {s.width_multiplier for s in settings} == {width}
        assert max(s.n_val for s in settings) >= 500
        largest = nngp_split(max(s.n_train for s in settings), max(s.n_val for s in settings))
        assert largest.source == "batches"  # exact pixels, not the JPEG set
    quarter = ladder.settings(0.25)
    assert max(s.n_train for s in quarter if s.ensemble == 1) >= 3000
    assert max(s.n_train for s in quarter if s.ensemble >= 2) >= 1000
    assert {s.ensemble for s in quarter} == {1, 2, 4}
    assert ladder.ARCHITECTURES[1.0] >= 300 and ladder.ARCHITECTURES[0.25] == 1000
    # every width covers the shared prefix at every setting with k <= 2 and n <= 1000
    for width in ladder.widths():
        assert all(count >= ladder.SHARED for s, count in ladder.coverage(width).items()
                   if s.ensemble <= 2 and s.n_train <= 1000 and not (width == 1.0 and s.ensemble == 2))
    # network 0 sees 3000 + 500 images, networks 1-3 the k > 1 settings' 1000 + 500 (k = 4 on the first 300)
    assert ladder.images_per_architecture(0.25) == 3500 + 3 * 1500
    assert ladder.images_per_architecture(0.25, 300) == 3500 + 1500
    assert ladder.images_per_architecture(0.25, 1000) == 0
    segments = ladder.plan_segments([0.25, 1.0])
    assert segments[["first", "last"]].values.tolist() == [[1, 300], [301, 1000], [1, 50], [51, 300]]
    assert segments["images per architecture"].tolist() == [8000, 5000, 3500 + 800, 1500]
    assert ladder.run_name(0.25) == "nb101_ladder_w025" and ladder.run_name(1) == "nb101_ladder_w100"


def test_covering_keeps_the_settings_planned_on_enough_architectures():
    import pandas as pd

    rows = pd.DataFrame([(w, s.ensemble, s.n_train, s.n_val) for w in ladder.widths() for s in ladder.settings(w)],
                        columns=["width_multiplier", "ensemble", "n_train", "n_val"])
    shared = ladder.covering(rows, ladder.SHARED)
    assert len(shared) == len(rows) - 2 * 3  # full width's n = 3000 and k = 2 (n = 100, 300) cover 50
    assert len(ladder.covering(rows, 1000)) == 2 * 7  # quarter width, k = 1 and 2
    assert len(ladder.covering(rows.assign(n_val=200), 1)) == 0  # not in the plan


def test_a_width_outside_the_plan_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"widths \[0.25, 0.5, 1.0\], got 0.3"):
        ladder.settings(0.3)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """A real miniature ladder: 12 sampled architectures, two widths, k in {1, 2}, n in {20, 60}."""
    folder = tmp_path_factory.mktemp("ladder")
    table = nb101_table.load_table()
    specs = specs_from_table(nb101_table.sample_rows(table, 12, seed=0))
    for width, count in ((0.25, 12), (1.0, 6)):
        settings = [scoring.Setting(k, n, 40, width_multiplier=width, downsample_factor=4)
                    for k in (1, 2) for n in (20, 60)]
        scoring.score_many(specs[:count], settings, ladder.run_name(width), results_dir=folder, progress=False)
    return folder, table, specs


def test_read_runs_concatenates_the_widths_present_and_names_the_missing_one(run):
    folder, _, _ = run
    rows, provenances = ladder.read_runs(results_dir=folder)
    assert set(provenances) == {0.25, 1.0}
    assert len(rows) == 12 * 4 + 6 * 4
    with pytest.raises(FileNotFoundError, match="nngp-nas ladder --width 0.5"):
        ladder.read_runs([0.5], results_dir=folder)


def test_summary_costs_taus_and_frontier_follow_the_scores(run):
    folder, table, specs = run
    rows, _ = ladder.read_runs(results_dir=folder)
    scores = analysis.proxy_scores(rows, table, values=ladder.VALUES, epochs=(4, 12))
    assert len(scores) == 6  # full width holds only the first 6: the common architectures
    flops = analysis.mean_network_flops([s for s in specs if s.hash() in set(scores.truth.index)], (1.0, 0.25))
    out = ladder.summary(scores, flops, num_resamples=200)
    assert len(out) == len(scores.proxies)
    for proxy in scores.proxies.index:
        assert out.loc[proxy, "kendall_tau"] == pytest.approx(metrics.kendall_tau(scores.scores[proxy], scores.truth))
    nngp = out[out["kind"] == "nngp"]
    narrow = nngp["width_multiplier"] == 0.25
    assert (nngp.loc[narrow, "spent PFLOPs"] < nngp.loc[narrow, "full-width PFLOPs"]).all()
    assert np.allclose(nngp.loc[~narrow, "spent PFLOPs"], nngp.loc[~narrow, "full-width PFLOPs"])
    # the three scores of a setting cost alike: the best of the cheapest is on the frontier
    cheapest = out[out["spent PFLOPs"] == out["spent PFLOPs"].min()]
    assert out.loc[cheapest["kendall_tau"].idxmax(), "frontier"]
    assert not out.loc[cheapest["kendall_tau"].idxmin(), "frontier"] or cheapest["kendall_tau"].nunique() == 1
    best = out["kendall_tau"].idxmax()
    assert out.loc[best, "frontier"]


def test_claim_test_picks_the_best_affordable_nngp_and_pairs_it_with_training(run):
    folder, table, specs = run
    rows, _ = ladder.read_runs([0.25], results_dir=folder)
    scores = analysis.proxy_scores(rows, table, values=("nngp_acc",), epochs=(4, 12))
    flops = analysis.mean_network_flops(specs, (1.0, 0.25))
    costs = ladder.summary(scores, flops, num_resamples=0)["spent PFLOPs"]
    claims = ladder.claim_tests(scores, costs, num_resamples=300).set_index("training")
    for epochs in (4, 12):
        row = claims.loc[f"train {epochs} epochs"]
        assert row["NNGP PFLOPs"] <= row["training PFLOPs"] / 10
        affordable = [p for p in scores.proxies.index if p.startswith("NNGP") and costs[p] <= row["NNGP budget PFLOPs"]]
        taus = {p: metrics.kendall_tau(scores.scores[p], scores.truth) for p in affordable}
        assert row["NNGP"] == max(taus, key=taus.get)
        assert row["difference"] == pytest.approx(row["NNGP tau"] - row["training tau"])
        assert row["low"] <= row["difference"] <= row["high"]
    dearest = ladder.claim_tests(scores, costs, choose="largest", num_resamples=0).set_index("training")
    for epochs in (4, 12):
        row = dearest.loc[f"train {epochs} epochs"]
        nngp_costs = costs[[p for p in scores.proxies.index if p.startswith("NNGP")]]
        assert row["NNGP PFLOPs"] == nngp_costs[nngp_costs <= row["NNGP budget PFLOPs"]].max()
    nothing_affordable = ladder.claim_tests(scores, costs, saving=1e12, num_resamples=0)
    assert nothing_affordable["NNGP"].isna().all()
    with pytest.raises(ValueError, match="train 36 epochs"):
        ladder.claim_tests(scores, costs, budgets=(36,))


def test_architecture_seconds_count_each_network_once(run):
    folder, _, _ = run
    rows, _ = ladder.read_runs(results_dir=folder)
    seconds = ladder.architecture_seconds(rows)
    assert len(seconds) == 12 + 6
    per_architecture = rows.groupby(["width_multiplier", "hash"])["seconds"]
    # more than any one setting (k = 2 adds a second network), less than the settings' sum
    assert (seconds >= per_architecture.max() - 1e-12).all()
    assert (seconds < per_architecture.sum()).all()
    # networks 0 and 1 both on the 60 + 40 images: the k = 2 n = 60 setting holds them all
    largest_k2 = rows[(rows["ensemble"] == 2) & (rows["n_train"] == 60)].set_index(["width_multiplier", "hash"])
    assert np.allclose(seconds, largest_k2["seconds"].reindex(seconds.index))


def test_log_cost_trend_is_exact_on_a_line_and_a_flat_trend_reaches_nothing():
    cost = np.array([1e-4, 1e-3, 1e-2])
    slope, intercept, reach = ladder.log_cost_trend(cost, 0.5 + 0.1 * np.log10(cost), targets=[0.3, 0.4])
    assert slope == pytest.approx(0.1) and intercept == pytest.approx(0.5)
    assert reach[0.3] == pytest.approx(1e-2) and reach[0.4] == pytest.approx(1e-1)
    assert ladder.log_cost_trend(cost, [0.2, 0.2, 0.2], targets=[0.3])[2][0.3] == float("inf")
    with pytest.raises(ValueError, match="two points"):
        ladder.log_cost_trend([1e-3], [0.2])


def test_best_reading_picks_the_best_whole_sample_setting_and_joins_only_a_covered_run(tmp_path, data_dir):
    from nngp_lib import book, results

    table = nb101_table.load_table()
    specs = specs_from_table(nb101_table.sample_rows(table, 6, seed=ladder.SAMPLE_SEED))
    # two whole-sample settings of the plan and k = 4, which covers 300 (on 8x8 images: the same code path,
    # cheaply; ladder.covering matches a setting on width, k, n and m)
    settings = [scoring.Setting(k, 100, 500, width_multiplier=0.25, downsample_factor=4) for k in (1, 2, 4)]
    scoring.score_many(specs, settings, ladder.run_name(0.25), results_dir=tmp_path, progress=False,
                       coverage={settings[2]: 3})
    reading = ladder.best_reading(table, results_dir=tmp_path)
    rows = results.read(ladder.run_name(0.25), tmp_path).table
    truth = table.set_index("hash").loc[[s.hash() for s in specs], "val_acc_108"]
    taus = {k: metrics.kendall_tau(rows[rows["ensemble"] == k].set_index("hash").loc[truth.index, "nngp_acc"], truth)
            for k in (1, 2)}
    assert reading["ensemble"].unique().tolist() == [max(taus, key=taus.get)]  # never k = 4: not whole-sample
    assert len(reading) == 6

    own = scoring.score_many(specs[:4], settings[:1], "own", results_dir=tmp_path, progress=False)
    joined, note = book.with_ladder_reading(own, table, results_dir=tmp_path)
    assert len(joined) == 4 + 4 and "is read next to" in note
    outside = nb101_table.sample_rows(table, 7, seed=ladder.SAMPLE_SEED)["hash"].iloc[6]  # not scored by the ladder
    beyond = results.Results(own.table.assign(hash=[*own.table["hash"][:3], outside]), own.provenance, own.path)
    rows_only, note = book.with_ladder_reading(beyond, table, results_dir=tmp_path)
    assert rows_only is beyond.table and "holds 3 of this page's 4 architectures" in note
    empty = tmp_path / "none"
    empty.mkdir()
    rows_only, note = book.with_ladder_reading(own, table, results_dir=empty)
    assert rows_only is own.table and "no ladder run" in note
    rows_only, note = book.with_ladder_reading(own, table, enabled=False, results_dir=tmp_path)
    assert rows_only is own.table and "ladder_reading=False" in note
