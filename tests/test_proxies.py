"""Training-free proxies: their definitions on small real networks and CIFAR-10 images,
the results table they are scored into, and held-out judging of combined scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from nngp_lib import proxies, results
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table, sample_rows
from nngp_lib.networks import layers
from nngp_lib.spaces.nb101 import ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nb101_net

# As test_kernels: every code path at little compute, 8x8 images.
TINY = dict(stem_channels=8, num_stacks=2, modules_per_stack=2)
NARROW = 4  # stem channels of the full-depth networks the cell-level proxies build


def _shrink(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), 8, 4, 8, 4, 3).mean(axis=(2, 4))


@pytest.fixture(scope="module")
def table(data_dir):
    return load_table(data_dir)


@pytest.fixture(scope="module")
def specs(table) -> list[ModelSpec]:
    rows = np.random.default_rng(0).choice(len(table), 5, replace=False)
    return [ModelSpec.from_json(table["adjacency"][i], table["ops"][i]) for i in rows]


@pytest.fixture(scope="module")
def batch(data_dir) -> proxies.Batch:
    """Ten real CIFAR-10 training images averaged down to 8x8, one per class, with labels."""
    split = nngp_split(10, 10, seed=0, data_dir=data_dir)
    return proxies.Batch(_shrink(split.x_train), split.y_train)


@pytest.fixture(scope="module")
def other_batch(data_dir) -> proxies.Batch:
    split = nngp_split(10, 10, seed=0, data_dir=data_dir)
    return proxies.Batch(_shrink(split.x_val), split.y_val)


def _codes(network, variables, images) -> np.ndarray:
    """(N, N_A) binary codes of every ReLU unit, collected independently of the proxy."""
    outputs = []
    with layers.relu_hook(outputs.append):
        network.features(variables, images, train=True)
    return np.concatenate([np.asarray(o > 0).reshape(len(images), -1) for o in outputs], axis=1)


@pytest.mark.slow
def test_naswot_is_log_det_of_the_hamming_kernel(specs, batch):
    network = nb101_net.network(specs[0], **TINY)
    variables = network.init(jax.random.PRNGKey(0))
    codes = _codes(network, variables, batch.images)
    conv_layers = sum(path[-1].key == "kernel" for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]) - 1
    assert codes.shape[1] > 0 and codes.mean() > 0.2  # the hook saw active and inactive units
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(axis=-1)
    expected = np.linalg.slogdet(codes.shape[1] - hamming.astype(np.float64))[1]
    assert proxies.naswot_score(network, variables, batch.images) == pytest.approx(expected, rel=1e-12)
    hooked = []
    with layers.relu_hook(hooked.append):
        network.features(variables, batch.images)
    assert len(hooked) == conv_layers  # one call per conv-BN-ReLU layer, none after the block
    assert not layers._relu_hooks


@pytest.mark.slow
def test_naswot_grows_with_width_and_with_units(specs, batch):
    """K_H sums one positive semi-definite agreement matrix per unit, so log det K_H can only
    grow as units are added; a 4x wider network of the same cell scores far higher."""
    narrow, wide = (nb101_net.network(specs[1], **{**TINY, "stem_channels": c}) for c in (8, 32))
    key = jax.random.PRNGKey(1)
    narrow_score = proxies.naswot_score(narrow, narrow.init(key), batch.images)
    wide_score = proxies.naswot_score(wide, wide.init(key), batch.images)
    assert wide_score > narrow_score + len(batch.images)  # about N log 4 apart

    codes = _codes(wide, wide.init(key), batch.images)
    half = codes[:, : codes.shape[1] // 2]
    agreements = [(c[:, None, :] == c[None, :, :]).sum(axis=-1).astype(np.float64) for c in (half, codes)]
    assert np.linalg.slogdet(agreements[1])[1] >= np.linalg.slogdet(agreements[0])[1]


@pytest.mark.slow
def test_synflow_is_positive_finite_and_ignores_the_images(specs, batch, other_batch):
    score = proxies.synflow(specs[2], batch, stem_channels=NARROW)
    assert np.isfinite(score) and score > 0
    assert proxies.synflow(specs[2], other_batch, stem_channels=NARROW) == score
    assert proxies.synflow(specs[2], other_batch.images, seed=1, stem_channels=NARROW) != score


@pytest.mark.slow
def test_loss_gradient_is_the_mean_cross_entropy_gradient(specs, batch):
    network = nb101_net.network(specs[3], **TINY)
    variables = network.init(jax.random.PRNGKey(2))
    grads = proxies.loss_gradient(network, variables, batch.images, batch.labels)

    def loss(params):
        logits, _ = network.apply({**variables, "params": params}, batch.images, train=True)
        log_p = np.asarray(jax.nn.log_softmax(logits), np.float64)
        return float(-np.mean(log_p[np.arange(len(batch.labels)), batch.labels]))

    # Along the dense kernel the loss is smooth (a log-softmax of features that do not move),
    # so a central difference checks the loss: mean cross-entropy on training-mode features.
    direction = np.random.default_rng(0).standard_normal(variables["params"]["dense"]["kernel"].shape)
    step = 1e-3

    def moved(sign):
        dense = {**variables["params"]["dense"], "kernel": variables["params"]["dense"]["kernel"] + sign * step * direction}
        return {**variables["params"], "dense": dense}

    finite_difference = (loss(moved(1)) - loss(moved(-1))) / (2 * step)
    analytic = float(np.vdot(np.asarray(grads["dense"]["kernel"], np.float64), direction))
    assert finite_difference == pytest.approx(analytic, rel=1e-3, abs=1e-4)

    pairs = proxies._weights(variables["params"], grads)
    conv_and_dense = [w for path, w in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
                      if path[-1].key == "kernel"]
    assert len(pairs) == len(conv_and_dense)
    assert proxies.snip_score(network, variables, batch.images, batch.labels) == pytest.approx(
        sum(float(jnp.sum(jnp.abs(w * g))) for w, g in pairs), rel=1e-6)
    assert proxies.grad_norm_score(network, variables, batch.images, batch.labels) == pytest.approx(
        sum(float(np.linalg.norm(np.asarray(g))) for _, g in pairs), rel=1e-5)


@pytest.mark.slow
def test_gradient_proxies_are_deterministic_under_the_seed(specs, batch):
    scores = {}
    for proxy in (proxies.snip, proxies.grad_norm):
        first = scores[proxy.__name__] = proxy(specs[4], batch, seed=0, stem_channels=NARROW)
        assert np.isfinite(first) and first > 0
        assert proxy(specs[4], batch, seed=0, stem_channels=NARROW) == first
        assert proxy(specs[4], batch, seed=1, stem_channels=NARROW) != first
    # The cell-level proxies score the network the other proxies build, on the same batch.
    network, variables = proxies._network(specs[4], NARROW, 0)
    assert scores == {
        "snip": proxies.snip_score(network, variables, batch.images, batch.labels),
        "grad_norm": proxies.grad_norm_score(network, variables, batch.images, batch.labels),
    }


def test_default_batch_is_class_balanced_cifar10(data_dir):
    default = proxies.cifar10_batch(20, seed=0, data_dir=data_dir)
    assert default.images.shape == (20, 32, 32, 3) and default.images.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(default.labels, minlength=10), 2)
    assert proxies.cifar10_batch(20, seed=0, data_dir=data_dir).images is default.images  # read once
    assert not default.images.flags.writeable


def test_params_and_flops_are_nb101_counts(table, specs):
    for spec in specs:
        row = table[table["hash"] == spec.hash()].iloc[0]
        assert proxies.params(spec) == spec.num_params() == row["trainable_parameters"]
        assert proxies.flops(spec) == spec.flops()


def test_bad_input_raises_one_line_errors(specs, batch):
    spec = specs[0]
    cases = [
        (lambda: proxies.naswot(spec, (batch.images * 255).astype(np.uint8)), ValueError, "standardize uint8"),
        (lambda: proxies.snip(spec, batch.images), ValueError, "needs labels"),
        (lambda: proxies.grad_norm(spec, (batch.images, batch.labels + 10)), ValueError, r"labels must lie in \[0, 10\)"),
        (lambda: proxies.naswot(spec, batch.images[0]), ValueError, r"\(N, H, W, 3\)"),
        (lambda: proxies.naswot(spec, batch_size=0), ValueError, "batch_size must be a positive integer"),
        (lambda: proxies.params("not a spec"), TypeError, "spec must be a ModelSpec"),
        (lambda: proxies.ntk(spec, data=batch), TypeError, "data must be NNGPData"),
        (lambda: proxies.score_proxies([spec], ["nngp_acc"], "x"), ValueError, "unknown proxies"),
        (lambda: proxies.score_proxies([spec], ["naswot"], "x", options={"naswot": {"batchsize": 2}}),
         ValueError, "has no options"),
        (lambda: proxies.score_proxies([spec], ["params"], "x", options={"naswot": {}}), ValueError,
         "not among the proxies"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_score_proxies_writes_and_resumes(specs, tmp_path, monkeypatch):
    calls = []

    def counting(spec, data=None, seed=0, *, scale=1.0):
        calls.append(spec.hash())
        return scale * spec.num_params()

    monkeypatch.setitem(proxies.PROXIES, "counting", counting)
    names = ["params", "counting"]
    first = proxies.score_proxies(specs[:3], names, "prx", options={"counting": {"scale": 2.0}},
                                  results_dir=tmp_path, progress=False, checkpoint_every=2)
    assert list(first.table.columns) == list(proxies.TABLE_COLUMNS)
    assert len(first.table) == 6 and (first.table["seconds"] >= 0).all()
    wide = proxies.wide_scores(first.table)
    assert list(wide.columns) == names
    for spec in specs[:3]:
        # The results store keeps 6 significant digits.
        assert wide.loc[spec.hash(), "params"] == pytest.approx(spec.num_params(), rel=1e-5)
        assert wide.loc[spec.hash(), "counting"] == pytest.approx(2 * spec.num_params(), rel=1e-5)
    assert first.provenance["architectures"] == 3

    again = proxies.score_proxies(specs, names, "prx", options={"counting": {"scale": 2.0}},
                                  results_dir=tmp_path, progress=False)
    assert len(again.table) == 10 and again.table.duplicated(["hash", "proxy"]).sum() == 0
    assert calls == [s.hash() for s in specs[:3]] + [s.hash() for s in specs[3:]]  # nothing recomputed
    with pytest.raises(ValueError, match="computed with other settings"):
        proxies.score_proxies(specs, names, "prx", results_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        proxies.score_proxies(specs, names, "prx", options={"counting": {"scale": 2.0}},
                              results_dir=tmp_path, resume=False, progress=False)


def test_joint_proxies_are_computed_in_one_call_and_default_options_dropped(specs, tmp_path, monkeypatch):
    calls = []

    def single(spec, data=None, seed=0, *, scale=1.0):
        raise AssertionError("a joint proxy was computed alone")

    def both(spec, data=None, seed=0, *, scale=1.0):
        calls.append(spec.hash())
        return {"a": scale, "b": -scale}

    monkeypatch.setitem(proxies.PROXIES, "a", single)
    monkeypatch.setitem(proxies.PROXIES, "b", single)
    monkeypatch.setattr(proxies, "JOINT", {("a", "b"): both})
    scored = proxies.score_proxies(specs[:2], ["b", "a", "params"], "joint", results_dir=tmp_path, progress=False,
                                   options={"a": {"scale": 3.0}, "b": {"scale": 3.0}, "params": {}})
    assert calls == [s.hash() for s in specs[:2]]
    wide = proxies.wide_scores(scored.table)
    assert (wide["a"] == 3.0).all() and (wide["b"] == -3.0).all()
    seconds = scored.table.pivot(index="hash", columns="proxy", values="seconds")
    np.testing.assert_array_equal(seconds["a"], seconds["b"])  # the joint call's time, on both rows
    assert scored.provenance["settings"]["options"] == {"a": {"scale": 3.0}, "b": {"scale": 3.0}}

    default = proxies.score_proxies(specs[:1], ["a", "b"], "default", results_dir=tmp_path, progress=False,
                                    options={"a": {"scale": 1.0}})
    assert default.provenance["settings"]["options"] == {}


def test_command_line_scores_the_architectures_of_a_result(specs, tmp_path, data_dir, capsys):
    source = pd.DataFrame({"hash": [s.hash() for s in specs for _ in range(2)], "nngp_acc": 0.5})
    results.write("nngp_run", source, {"description": "fake"}, tmp_path)
    argv = ["--from", "nngp_run", "--out", "zero", "--proxies", "params", "flops", "--limit", "3",
            "--results-dir", str(tmp_path), "--data-dir", str(data_dir)]
    assert proxies.main(argv) == 0
    assert "wrote 6 rows" in capsys.readouterr().out
    scored = results.read("zero", tmp_path)
    assert list(pd.unique(scored.table["hash"])) == [s.hash() for s in specs[:3]]  # the source's first 3
    assert scored.provenance["command"].startswith("python -m nngp_lib.proxies --from nngp_run")

    assert proxies.main(["--sample", "4", "--sample-seed", "3", "--out", "drawn", "--proxies", "params",
                         "--results-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    drawn = results.read("drawn", tmp_path)
    table = load_table(data_dir)
    assert drawn.table["hash"].tolist() == table.sample(4, random_state=3)["hash"].tolist()
    assert drawn.table["hash"].tolist()[:2] == sample_rows(table, 2, 3)["hash"].tolist()  # a prefix
    assert proxies.main(["--sample", "0", "--out", "none", "--data-dir", str(data_dir)]) == 2
    assert "sample size must be in 1..30001" in capsys.readouterr().err

    assert proxies.main(argv[:4] + ["--proxies", "naswot", "--option", "naswot.bad=1",
                                    "--results-dir", str(tmp_path)]) == 2
    assert "has no options ['bad']" in capsys.readouterr().err
    options = proxies._parse_options(["stem_channels=16", "naswot.batch_size=32"], ["naswot", "snip", "params"])
    assert options == {"naswot": {"stem_channels": 16, "batch_size": 32}, "snip": {"stem_channels": 16}}


def _synthetic(num: int, seed: int):
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(num)
    scores = pd.DataFrame({
        "good": truth + rng.standard_normal(num),
        "backwards": -truth - rng.standard_normal(num),
        "noise": rng.standard_normal(num),
    })
    return scores, truth


def test_orientation_and_rank_average(table):
    scores, truth = _synthetic(200, 0)
    orientation = proxies.fit_orientation(scores, truth)
    assert orientation.to_dict() == {"good": 1.0, "backwards": -1.0, "noise": orientation["noise"]}
    average = proxies.rank_average(scores[["good", "backwards"]], orientation)
    ranks = proxies.quantile_ranks(scores)
    np.testing.assert_allclose(average, (ranks["good"] + 1 - ranks["backwards"]) / 2)
    assert ranks.to_numpy().min() > 0 and ranks.to_numpy().max() < 1


@pytest.mark.slow
def test_held_out_combination_beats_its_parts_without_leaking():
    scores, truth = _synthetic(200, 1)
    table = proxies.held_out_comparison(scores, truth, {"both": ["good", "backwards"]}, num_splits=10, seed=0)
    assert set(table["kind"]) == {"single", proxies.RANK_AVERAGE, proxies.LINEAR_MODEL}
    assert len(table) == 10 * 5
    tau = table.groupby("score")["kendall_tau"].mean()
    # Two independent noisy views of the truth: combined they rank better than either.
    assert tau["both: rank average"] > max(tau["good"], tau["backwards"]) + 0.03
    assert tau["both: linear model on ranks"] > max(tau["good"], tau["backwards"]) + 0.03
    assert tau["backwards"] > 0.3  # oriented on the fitting set

    # Pure noise: a model fitted on the test set would score well above zero; held out it cannot.
    rng = np.random.default_rng(2)
    noise = pd.DataFrame(rng.standard_normal((40, 8)), columns=[f"n{i}" for i in range(8)])
    judged = proxies.held_out_comparison(noise, rng.standard_normal(40), {"all": list(noise.columns)},
                                         num_splits=20, seed=1)
    assert abs(judged.loc[judged["kind"] == proxies.LINEAR_MODEL, "kendall_tau"].mean()) < 0.08

    with pytest.raises(ValueError, match="at least 3 architectures on each side"):
        proxies.held_out_comparison(scores[:4], truth[:4], {}, test_fraction=0.5)
    with pytest.raises(ValueError, match="needs at least two columns"):
        proxies.held_out_comparison(scores, truth, {"one": ["good"]})
