"""Scoring end to end on real CIFAR-10 images and real NB101 cells (narrow networks, so it is fast)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nngp_lib import cli, kernels, results, scoring
from nngp_lib.inference import nngp_inference
from nngp_lib.spaces.nb101 import ModelSpec, load_table
from nngp_lib.spaces.nb101 import jax_network as nb101_net

NARROW = 1 / 16  # 8 stem channels: the same code path at a fraction of the cost


@pytest.fixture(scope="module")
def specs(data_dir):
    table = load_table(data_dir)
    rows = table.sample(3, random_state=1)
    return [ModelSpec.from_json(a, o) for a, o in zip(rows["adjacency"], rows["ops"])]


@pytest.fixture(scope="module")
def data(data_dir):
    return scoring.nngp_split(40, 30, seed=0, data_dir=data_dir)


def test_a_setting_equals_algorithm_1_computed_directly(specs, data):
    """A row of a shared multi-setting run equals the kernel and inference computed on its own."""
    small = scoring.Setting(ensemble=1, n_train=20, n_val=30, width_multiplier=NARROW)
    large = scoring.Setting(ensemble=2, n_train=40, n_val=30, width_multiplier=NARROW)
    row_small, row_large = scoring.score_spec(specs[0], [small, large], data)

    network = nb101_net.network(specs[0], stem_channels=scoring.stem_channels(NARROW))
    k_tt, k_vt = kernels.monte_carlo_nngp(network, data.x_train, data.x_val, ensemble=2, seed=0)
    direct = nngp_inference(k_tt, k_vt, data.y_train, data.y_val)
    assert row_large["nngp_acc"] == pytest.approx(direct.best_accuracy)
    assert row_large["nngp_acc_loo"] == pytest.approx(direct.loo_val_accuracy)
    assert row_large["hash"] == specs[0].hash()
    assert 0.0 <= row_small["nngp_acc"] <= 1.0
    assert row_small["seconds"] < row_large["seconds"]


def test_nested_training_subset_is_class_balanced(data):
    setting = scoring.Setting(ensemble=1, n_train=20, n_val=30)
    train_pos, val_pos = scoring._nested_subsets(data, setting, 40, 30)
    assert np.bincount(data.y_train[train_pos], minlength=10).tolist() == [2] * 10
    assert val_pos.tolist() == list(range(30))


def test_score_many_writes_resumes_and_records_provenance(specs, tmp_path, data_dir, monkeypatch):
    settings = [scoring.Setting(ensemble=1, n_train=20, n_val=20, width_multiplier=NARROW)]
    first = scoring.score_many(specs[:2], settings, "run", results_dir=tmp_path, data_dir=data_dir,
                               progress=False, command="test")
    assert len(first.table) == 2
    assert set(first.table["hash"]) == {s.hash() for s in specs[:2]}
    assert first.provenance["settings"]["architectures"] == 2
    assert first.provenance["data"]["n_train"] == 20

    calls = []
    original = scoring.score_spec
    monkeypatch.setattr(scoring, "score_spec", lambda spec, *a: calls.append(spec) or original(spec, *a))
    second = scoring.score_many(specs[:2], settings, "run", results_dir=tmp_path, data_dir=data_dir,
                                progress=False, command="test")
    assert calls == []  # everything was already scored
    assert second.table.equals(first.table)

    with pytest.raises(FileExistsError, match="pass resume=True"):
        scoring.score_many(specs[:2], settings, "run", results_dir=tmp_path, data_dir=data_dir,
                           resume=False, progress=False)
    other = [scoring.Setting(ensemble=2, n_train=20, n_val=20, width_multiplier=NARROW)]
    with pytest.raises(ValueError, match="computed with other settings"):
        scoring.score_many(specs[:2], other, "run", results_dir=tmp_path, data_dir=data_dir, progress=False)


def test_coverage_scores_a_setting_on_a_prefix_and_widens_on_resume(specs, tmp_path, data_dir):
    cheap = scoring.Setting(ensemble=1, n_train=20, n_val=20, width_multiplier=NARROW)
    dear = scoring.Setting(ensemble=2, n_train=20, n_val=20, width_multiplier=NARROW)
    first = scoring.score_many(specs, [cheap, dear], "tiers", results_dir=tmp_path, data_dir=data_dir,
                               progress=False, coverage={dear: 1})
    assert first.table.groupby("ensemble")["hash"].apply(list).to_dict() == {
        1: [s.hash() for s in specs], 2: [specs[0].hash()]}
    assert first.provenance["coverage"] == [{**dear.as_dict(), "architectures": 1}]
    # coverage is not a setting: the same run resumes with a wider one and scores only the new pairs
    wider = scoring.score_many(specs, [cheap, dear], "tiers", results_dir=tmp_path, data_dir=data_dir,
                               progress=False, coverage={dear: 2})
    assert len(wider.table) == len(specs) + 2
    kept = wider.table.merge(first.table, on=["hash", *scoring.SETTING_COLUMNS], suffixes=("", "_first"))
    assert len(kept) == len(first.table) and (kept["nngp_acc"] == kept["nngp_acc_first"]).all()
    with pytest.raises(ValueError, match="coverage names a setting that is not scored"):
        scoring.score_many(specs, [cheap], "tiers", results_dir=tmp_path, data_dir=data_dir, progress=False,
                           coverage={dear: 1})


def test_smaller_images_are_the_kernel_of_block_averaged_images(specs, data):
    """downsample_factor=2 scores the network on 2x2-block means of the same images; it is a
    different (cheaper) estimate, sharing nothing with the 32x32 setting."""
    full = scoring.Setting(ensemble=1, n_train=20, n_val=30, width_multiplier=NARROW)
    small = scoring.Setting(ensemble=1, n_train=20, n_val=30, width_multiplier=NARROW, downsample_factor=2)
    assert full.network_key != small.network_key
    row_full, row_small = scoring.score_spec(specs[1], [full, small], data)
    assert row_small["downsample_factor"] == 2 and row_full["downsample_factor"] == 1

    network = nb101_net.network(specs[1], stem_channels=scoring.stem_channels(NARROW))
    x_train = scoring.downsample(data.x_train[:20], 2)
    assert x_train.shape == (20, 16, 16, 3)
    np.testing.assert_allclose(x_train[3, 0, 0], data.x_train[3, :2, :2].mean(axis=(0, 1)), rtol=1e-5)
    k_tt, k_vt = kernels.monte_carlo_nngp(network, x_train, scoring.downsample(data.x_val, 2), ensemble=1, seed=0)
    direct = nngp_inference(k_tt, k_vt, data.y_train[:20], data.y_val)
    assert row_small["nngp_acc"] == pytest.approx(direct.best_accuracy)


def test_runs_recorded_before_a_setting_existed_read_and_resume(specs, tmp_path, data_dir):
    """A result written without the downsample_factor column (and setting) resumes with factor 1."""
    settings = [scoring.Setting(ensemble=1, n_train=20, n_val=20, width_multiplier=NARROW)]
    first = scoring.score_many(specs[:1], settings, "old", results_dir=tmp_path, data_dir=data_dir, progress=False)
    record = dict(first.provenance)
    record["settings"] = {**record["settings"],
                          "settings": [{k: v for k, v in s.items() if k != "downsample_factor"}
                                       for s in record["settings"]["settings"]]}
    results.write("legacy", first.table.drop(columns="downsample_factor"), record, tmp_path)  # the CSV format
    assert "downsample_factor" not in results.read("legacy", tmp_path).table
    assert scoring.complete_settings(results.read("legacy", tmp_path).table)["downsample_factor"].tolist() == [1]

    resumed = scoring.score_many(specs[:1], settings, "legacy", results_dir=tmp_path, data_dir=data_dir,
                                 progress=False)
    assert len(resumed.table) == 1 and resumed.table["downsample_factor"].tolist() == [1]
    assert resumed.table.equals(results.read("legacy", tmp_path).table)
    assert resumed.path == tmp_path / "legacy" and not (tmp_path / "legacy.csv").exists()  # converted


def test_score_sample_scores_the_seeded_table_sample_at_every_setting(tmp_path, data_dir):
    run = scoring.score_sample("sample", 2, ensembles=[1], n_trains=[10, 20], n_vals=[20], seed=3,
                               width_multiplier=NARROW, downsample_factor=2, results_dir=tmp_path, data_dir=data_dir,
                               command="test")
    drawn = load_table(data_dir).sample(2, random_state=3)["hash"].tolist()
    assert pd.unique(run.table["hash"]).tolist() == drawn
    assert sorted(run.table["n_train"].unique()) == [10, 20] and len(run.table) == 4
    assert set(run.table["seed"]) == set(run.table["data_seed"]) == {3}
    assert set(run.table["width_multiplier"]) == {NARROW} and set(run.table["downsample_factor"]) == {2}
    assert run.provenance["command"] == "test"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ensemble": 0}, "ensemble must be >= 1"),
        ({"n_train": 5}, "need n_train >= 10"),
        ({"bn_momentum": 1.5}, r"bn_momentum must be in \[0, 1\]"),
        ({"width_multiplier": 0}, "width_multiplier must be in"),
        ({"downsample_factor": 3}, r"downsample_factor must be one of \(1, 2, 4\)"),
    ],
)
def test_impossible_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scoring.Setting(**kwargs)


def test_setting_larger_than_the_data_is_an_error(specs, data):
    with pytest.raises(ValueError, match="pass a larger nngp_split"):
        scoring.score_spec(specs[0], [scoring.Setting(n_train=100, n_val=30)], data)


def test_cli_scores_a_spec_and_a_table(specs, tmp_path, capsys, data_dir):
    spec = specs[1]
    argv = ["score", "--adjacency", json.dumps(spec.matrix.tolist()), "--ops", json.dumps(list(spec.ops)),
            "--ensemble", "1", "--n-train", "20", "--n-val", "20", "--width-multiplier", str(NARROW),
            "--data-dir", str(data_dir)]
    assert cli.main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["hash"] == spec.hash() and 0.0 <= row["nngp_acc"] <= 1.0

    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"{specs[0].hash()}\n{specs[2].hash()}\n")
    argv = ["score-table", "--hashes", str(hashes), "--out", "cli_run", "--results-dir", str(tmp_path),
            "--ensemble", "1", "--n-train", "20", "--n-val", "20", "--width-multiplier", str(NARROW),
            "--data-dir", str(data_dir)]
    assert cli.main(argv) == 0
    table = results.read("cli_run", tmp_path).table
    assert table["hash"].tolist() == [specs[0].hash(), specs[2].hash()]


def test_cli_bad_input_is_a_one_line_error(capsys, data_dir):
    code = cli.main(["score", "--adjacency", "[[0,1],[0,0]]", "--ops", '["input","conv5x5","output"]',
                     "--data-dir", str(data_dir)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nngp-nas: invalid cell") and "\n" not in err
    with pytest.raises(SystemExit, match="not in the NB101 table"):
        cli.main(["score", "--hash", "0" * 32, "--data-dir", str(data_dir)])
