"""The backends run one plan: same weights, same features, same NNGP scores; JAX alone suffices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from nngp_lib import backends, scoring
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table, sample_rows
from nngp_lib.spaces import nb101
from nngp_lib.spaces.nb101 import jax_network

torch_network = pytest.importorskip("nngp_lib.spaces.nb101.torch_network")

ROOT = Path(__file__).resolve().parent.parent
# Both kinds of stack and every wiring at little compute; 8x8 real images.
TINY = dict(stem_channels=8, num_stacks=2, modules_per_stack=2)


def _features(plan):
    """What a plan exercises: its op kinds, and the wiring steps by kind."""
    found = set()
    for step in plan.steps:
        layer = step.layer
        if layer.kind == nb101.CONV:
            found.add("projection" if "projection" in layer.name else f"conv{layer.kernel}x{layer.kernel}")
        elif layer.kind == nb101.MAXPOOL:
            found.add("maxpool3x3" if layer.stride == 1 else "downsample")
        else:
            found.add(layer.kind)
    return found


@pytest.fixture(scope="module")
def covering_specs(data_dir):
    """At least 20 table cells that together use every op, projection, truncation, sum and
    concatenation: the first cells of a seeded sample that add something new, then others."""
    specs = nb101.specs_from_table(sample_rows(load_table(data_dir), 400, seed=3))
    chosen, covered = [], set()
    for spec in specs:
        new = _features(spec.network_plan(nb101.NetworkConfig(**TINY, image_size=8))) - covered
        if new:
            chosen.append(spec)
            covered |= new
    chosen += [s for s in specs if s not in chosen][: max(0, 20 - len(chosen))]
    assert covered >= {"conv3x3", "conv1x1", "maxpool3x3", "downsample", "projection", "truncate", "add", "concat",
                       "global_avgpool", "dense"}
    return chosen


@pytest.fixture(scope="module")
def images(data_dir) -> np.ndarray:
    """(6, 8, 8, 3) real standardized CIFAR-10 images (block means of 32x32)."""
    x = nngp_split(6, 0, seed=0, data_dir=data_dir).x_train
    return x.reshape(6, 8, 4, 8, 4, 3).mean(axis=(2, 4))


def _compare(spec, images, **config):
    jax_net = jax_network.network(spec, **config)
    torch_net = torch_network.network(spec, **config)
    variables = jax_net.init(jax.random.PRNGKey(7))
    # Training mode: the moving statistics each backend sets.
    _, jax_stats = jax_net.features(variables, images, train=True, bn_momentum=0.5)
    _, torch_stats = torch_net.features(variables, images, train=True, bn_momentum=0.5)
    assert set(jax_stats) == set(torch_stats) == {layer.name for layer in spec.network_plan(
        nb101.NetworkConfig(**config)).convs}
    for name in jax_stats:
        for key in ("mean", "var"):
            # Rounding grows with depth: tolerances relative to each layer's largest statistic.
            expected = np.asarray(jax_stats[name][key])
            np.testing.assert_allclose(torch_stats[name][key], expected, rtol=1e-4,
                                       atol=1e-4 * np.abs(expected).max(), err_msg=f"{name} {key}")
    # Inference mode with those statistics: features and logits.
    trained = {**variables, "batch_stats": jax_stats}
    expected = np.asarray(jax_net.features(trained, images)[0])
    got = torch_net.featurizer(trained)(images)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(torch_net.apply(trained, images)[0], jax_net.apply(trained, images)[0],
                               rtol=2e-4, atol=1e-4)


def test_same_weights_give_the_same_features_in_every_backend(covering_specs, images):
    assert len(covering_specs) >= 20
    for spec in covering_specs:
        _compare(spec, images, **TINY)


def test_same_features_at_nasbench101s_size(data_dir):
    """One full network (stem 128, 3 stacks of 3 cells) on real 32x32 images."""
    spec = nb101.specs_from_table(load_table(data_dir).iloc[[11]])[0]
    x = nngp_split(4, 0, seed=1, data_dir=data_dir).x_train
    _compare(spec, x)


def test_odd_image_sizes_pool_like_tensorflow(covering_specs, data_dir):
    """'same' 2x2 stride-2 pooling of odd sizes pads the end (ceil_mode in torch)."""
    x = nngp_split(2, 0, seed=0, data_dir=data_dir).x_train[:, :15, :13]
    _compare(covering_specs[0], x, **TINY)


def test_backends_give_the_same_nngp_scores(data_dir):
    specs = nb101.specs_from_table(sample_rows(load_table(data_dir), 3, seed=0))
    settings = [scoring.Setting(ensemble=2, n_train=60, n_val=60, width_multiplier=0.125),
                scoring.Setting(ensemble=1, n_train=30, n_val=60, width_multiplier=0.125)]
    data = nngp_split(60, 60, seed=0, data_dir=data_dir)
    for spec in specs:
        rows = {backend: scoring.score_spec(spec, settings, data, backend=backend) for backend in ("jax", "torch")}
        for jax_row, torch_row in zip(rows["jax"], rows["torch"]):
            for column in ("nngp_acc", "nngp_acc_loo", "nngp_acc_centered", "nngp_acc_loo_centered"):
                # Float32 rounding may flip an argmax: one validation image at most.
                assert abs(jax_row[column] - torch_row[column]) <= 1 / 60 + 1e-12, (spec, column)


def test_backend_choice_and_errors():
    assert backends.resolve("jax") == "jax"
    assert backends.resolve("torch") == "torch"
    assert backends.resolve("auto") == ("torch" if jax.default_backend() == "cpu" else "jax")
    assert backends.version("torch").startswith("torch 2.")
    assert backends.version("jax").startswith("jax 0.")
    with pytest.raises(ValueError, match="unknown backend 'tf': use one of auto, jax, torch") as error:
        backends.resolve("tf")
    assert "\n" not in str(error.value)
    assert isinstance(nb101.network(nb101.ModelSpec([[0, 1], [0, 0]], ["input", "output"]), backend="torch",
                                    stem_channels=8).featurizer, type(lambda: 0))


_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # as if PyTorch were not installed
from nngp_lib import backends
assert not backends.torch_available() and backends.resolve("auto") == "jax"
try:
    backends.resolve("torch")
except ValueError as error:
    assert "pip install torch==2.13.0" in str(error), error
else:
    raise AssertionError("backend 'torch' resolved without PyTorch")
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-m", "not slow", "tests/test_scoring.py", "tests/test_kernels.py"]))
"""


def test_the_library_scores_with_jax_alone():
    """Without PyTorch, 'auto' falls back to JAX and the scoring and kernel tests pass."""
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
