"""Tests of the MNAS study (nngp_lib.spaces.mnas.study): settings, reward, figure 7's selection, and a
tiny end-to-end run on real CIFAR-10 images."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nngp_lib import results
from nngp_lib.spaces import mnas
from nngp_lib.spaces.mnas import BlockSpec, MnasSpec
from nngp_lib.spaces.mnas import study as mnas_study
from nngp_lib.spaces.mnas.study import StudySettings


def smallest_spec() -> MnasSpec:
    """The cheapest network of the space: regular 3x3 convs, the fewest layers."""
    deltas = (0, -1, -1, -1, -1, -1, 0)
    return MnasSpec(tuple(BlockSpec("conv", 3, 0.0, "none", 0.75, d) for d in deltas))


# A network of 14 layers on a few images: compiles in seconds, trains in milliseconds.
TINY = StudySettings(
    width_multiplier=0.25, nngp_labels=2, nngp_train=20, nngp_val=20, ensemble=1,
    train_images=40, val_images=20, short_epochs=1, long_epochs=2, batch_size=20,
)  # fmt: skip


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(short_epochs=3, long_epochs=3), r"long_epochs \(3\) must exceed short_epochs \(3\)"),
        (dict(batch_size=500), "batch_size 500 exceeds train_images 256"),
        (dict(ensemble=0), "ensemble must be a positive integer"),
        (dict(nngp_train=True), "nngp_train must be a positive integer"),
        (dict(width_multiplier=0), r"width_multiplier must be a number in \(0, 4\]"),
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
    ],
)
def test_bad_settings_raise_one_line_errors(change, message):
    with pytest.raises(ValueError, match=message) as error:
        StudySettings(**change)
    assert "\n" not in str(error.value)


def test_target_is_mobilenet_v2_at_the_same_width():
    settings = StudySettings(width_multiplier=0.5)
    assert settings.target_flops() == mnas.flops(mnas.mobilenet_v2(), variant="cifar10", width_multiplier=0.5)
    assert StudySettings(width_multiplier=1.0).target_flops() > settings.target_flops()


# -- reward -------------------------------------------------------------------------------------


def test_reward_is_mnasnet_soft_constraint():
    accuracy = np.array([0.5, 0.5, 0.5, 0.8])
    cost = np.array([100.0, 200.0, 50.0, 100.0])
    reward = mnas_study.mnas_reward(accuracy, cost, target=100.0)
    # At the target the reward is the accuracy; twice the cost costs a factor 2^-0.07.
    assert reward[0] == 0.5 and reward[3] == 0.8
    assert reward[1] == pytest.approx(0.5 * 2**-0.07) and reward[2] == pytest.approx(0.5 * 2**0.07)
    assert mnas_study.MNASNET_REWARD_EXPONENT == -0.07
    assert mnas_study.mnas_reward(0.5, 200.0, 100.0, exponent=0.0) == 0.5


@pytest.mark.parametrize("cost, target", [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (float("nan"), 1.0)])
def test_reward_rejects_non_positive_costs(cost, target):
    with pytest.raises(ValueError, match="must be positive"):
        mnas_study.mnas_reward(0.5, cost, target)


# -- figure 7's selection -----------------------------------------------------------------------


def test_selection_finds_the_best_of_each_measures_top_k():
    truth = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    table = pd.DataFrame({
        "truth_acc": truth,
        "perfect": truth,  # ranks like the truth: its top 2 hold the best network
        "reversed": -truth,  # its top 2 are the two worst
    })  # fmt: skip
    summary = mnas_study.selection_summary(table, ["perfect", "reversed"], top_k=2, num_trials=2000, seed=1)
    assert list(summary.index) == ["perfect", "reversed", "random"]
    assert summary.loc["perfect", "best"] == 0.9 and summary.loc["perfect", "sem"] == 0
    assert summary.loc["reversed", "best"] == 0.3
    # Best of 2 of 5 drawn at random: P(max is the j-th smallest) = C(j - 1, 1) / C(5, 2).
    expected = sum(value * (j - 1) / math.comb(5, 2) for j, value in enumerate(np.sort(truth), start=1))
    assert summary.loc["random", "trials"] == 2000
    assert summary.loc["random", "best"] == pytest.approx(expected, abs=4 * summary.loc["random", "sem"])


def test_selection_errors():
    table = pd.DataFrame({"truth_acc": [0.1, 0.2], "score": [1.0, 2.0]})
    with pytest.raises(ValueError, match="need 1 <= top_k <= number of networks"):
        mnas_study.selection_summary(table, ["score"], top_k=3)
    with pytest.raises(ValueError, match="'missing' is not a column"):
        mnas_study.selection_summary(table, ["missing"], top_k=1)


# -- a tiny run on real images ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnas_study")
    run = mnas_study.run_study([smallest_spec()], TINY, "tiny", results_dir=folder, data_dir=data_dir,
                               command="pytest")  # fmt: skip
    return run, folder


@pytest.mark.slow
def test_run_study_measures_every_column(tiny_run):
    run, folder = tiny_run
    table = run.table
    assert list(table.columns) == list(mnas_study.COLUMNS) and len(table) == 1
    row = table.iloc[0]
    spec = smallest_spec()
    assert row["hash"] == spec.hash() and MnasSpec.from_json(row["spec"]) == spec
    assert row["params"] == mnas.num_params(spec, variant="cifar10", width_multiplier=0.25)
    assert row["flops"] == mnas.flops(spec, variant="cifar10", width_multiplier=0.25)
    # Accuracies are fractions of the 20 validation images; NNGP's are of 2 classes.
    for column in ("nngp_acc", "nngp_acc_loo", "short_acc", "truth_acc"):
        assert 0 <= row[column] <= 1 and (row[column] * 20) == pytest.approx(round(row[column] * 20))
    assert row["nngp_acc"] >= row["nngp_acc_loo"]  # the best eps is at least the leave-one-out one
    assert row["reward"] == pytest.approx(
        mnas_study.mnas_reward(row["short_acc"], row["flops"], TINY.target_flops())
    )
    assert (table[["seconds_nngp", "seconds_short", "seconds_truth"]] > 0).all(axis=None)
    provenance = run.provenance
    assert provenance["command"] == "pytest" and provenance["architectures"] == 1
    assert provenance["settings"]["target_flops"] == TINY.target_flops()


@pytest.mark.slow
def test_measurements_are_deterministic(tiny_run, data_dir):
    run, _ = tiny_run
    again = mnas_study.measure_network(smallest_spec(), TINY, mnas_study.StudyData.load(TINY, data_dir))
    row = run.table.iloc[0]
    # The table stores 10 significant digits.
    for column in ("nngp_acc", "nngp_acc_loo", "short_acc", "truth_acc", "reward"):
        assert again[column] == pytest.approx(row[column], rel=1e-9), column


@pytest.mark.slow
def test_run_study_resumes_and_refuses_to_overwrite(tiny_run, monkeypatch):
    run, folder = tiny_run

    def fail(*args, **kwargs):
        raise AssertionError("a network already in the result was measured again")

    monkeypatch.setattr(mnas_study, "measure_network", fail)
    resumed = mnas_study.run_study([smallest_spec()], TINY, "tiny", results_dir=folder)
    pd.testing.assert_frame_equal(resumed.table, run.table)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        mnas_study.run_study([smallest_spec()], TINY, "tiny", results_dir=folder, resume=False)
    other = StudySettings(**{**TINY.as_dict(), "long_epochs": 3})
    with pytest.raises(ValueError, match="computed with other settings"):
        mnas_study.run_study([smallest_spec()], other, "tiny", results_dir=folder)
    assert results.read("tiny", folder).table.equals(run.table)  # nothing was rewritten


def test_run_study_with_no_networks_writes_an_empty_result(tmp_path):
    run = mnas_study.run_study([], TINY, "empty", results_dir=tmp_path)
    assert run.table.empty and list(run.table.columns) == list(mnas_study.COLUMNS)
