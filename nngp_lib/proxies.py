"""Training-free proxies of NB101 architectures, scored like the NNGP: the literature's side.

Beyond the paper: the zero-cost proxies that appeared alongside it score an
architecture from one randomly initialized network and one batch of data, without
training. Each is a plain function ``proxy(spec, data=None, seed=0, **options) -> float``
(higher is meant to be better) on the same NB101 networks
(:mod:`nngp_lib.spaces.nb101.jax_network`) and CIFAR-10 images as the NNGP score:

``naswot`` (Mellor et al., 2021, "Neural Architecture Search without Training")
    Binary activation codes c_i of every ReLU unit for each image i of a batch; the
    kernel ``K_H[i, j] = N_A - hamming(c_i, c_j)`` counts the units where images i and
    j agree (N_A units in all); the score is ``log |det K_H|``. Batch of 128; batch norm
    normalizes with the batch's statistics (training mode), so that every unit's
    pre-activation is centred over the batch; with the fresh moving statistics (mean 0,
    variance 1) batch norm would be nearly the identity.
``synflow`` (Tanaka et al., 2020, "Pruning neural networks without any data")
    Every parameter replaced by its absolute value, an all-ones input image, ``R`` the
    sum of the logits; the score is ``sum |theta * dR/dtheta|`` over the weights. Batch
    norm in inference mode with the initial moving statistics (mean 0, variance 1), so it
    only scales by ``1 / sqrt(1 + 1e-5)``: the network without batch norm, as the
    zero-cost-proxy reference computes it, up to that factor. ``R`` grows geometrically
    with depth (beyond float32's range for NB101), so it runs in float64.
``snip`` (Lee et al., 2019, "SNIP: Single-shot network pruning")
    Connection sensitivity ``sum |g * theta|`` over the weights, g the gradient of the
    mean cross-entropy of a labelled batch of 64 (training-mode batch norm).
``grad_norm``
    ``sum_l ||g_l||_2``: the Euclidean norms of the same gradient, per weight tensor,
    summed over the network's weight tensors.
``params``, ``flops``
    NB101's trainable-parameter count and the forward FLOPs of one image
    (:meth:`ModelSpec.num_params`, :meth:`ModelSpec.flops`): baselines that need no network.
``ntk``, ``nngp``
    Empirical-NTK (:mod:`nngp_lib.ntk`) and NNGP (:mod:`nngp_lib.scoring`) validation
    accuracy (best eps, the paper's choice) of one network, on the same images and the
    same network at the same width: the paper's NTK comparison as a paired proxy.

"Weights" are the conv kernels and the dense kernel, as in Abdelfattah et al. (2021,
"Zero-Cost Proxies for Lightweight NAS"), whose definitions of snip, grad_norm and
synflow these follow; batch-norm parameters and the dense bias are left out.
Initialization is NAS-Bench-101's (TF1 variance scaling for convs, Glorot-uniform dense;
:mod:`nngp_lib.networks.layers`): the network at ``seed`` is the first network of the NNGP
ensemble at that seed (before its batch-norm pass). ``data=None`` draws the default
batch: the ``batch_size`` training images of ``nngp_split(batch_size, 0, seed=data_seed)``,
class-balanced CIFAR-10 training images standardized as for the NNGP.

:func:`score_proxies` scores many architectures into a results table (one row per
architecture and proxy, with the seconds it took), resumable like
:func:`nngp_lib.scoring.score_many`; from the command line, on the architectures of
another result::

    python -m nngp_lib.proxies --sample 100 --sample-seed 0 --out nb101_proxies \
        --option stem_channels=64
    python -m nngp_lib.proxies --sample 24 --sample-seed 0 --out nb101_ntk --proxies ntk nngp \
        --option n_train=50 --option n_val=50 --option stem_channels=32

The end of the module combines proxies (rank average, a linear model on ranks) and
judges any score on held-out architectures only.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.experimental import enable_x64
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from nngp_lib import metrics
from nngp_lib import results as results_io
from nngp_lib.data.cifar10 import NUM_CLASSES, NNGPData, nngp_split
from nngp_lib.networks import Network, Variables, layers
from nngp_lib.spaces.nb101 import STEM_CHANNELS, ModelSpec

NASWOT_BATCH = 128  # Mellor et al.'s batch size
GRADIENT_BATCH = 64  # snip and grad_norm


class Batch(NamedTuple):
    """A batch of images and labels."""

    images: np.ndarray  # (N, H, W, 3) float32, standardized
    labels: np.ndarray | None  # (N,) int, or None for label-free proxies


# -- data -------------------------------------------------------------------------------------


def cifar10_batch(size: int, *, seed: int = 0, data_dir: str | os.PathLike | None = None) -> Batch:
    """``size`` class-balanced, standardized CIFAR-10 training images and their labels.

    The NNGP training images of ``nngp_split(size, 0, seed=seed)``; read once per
    (size, seed, folder) and cached (the arrays are read-only).
    """
    split = nngp_data(size, 0, seed=seed, data_dir=data_dir)
    return Batch(split.x_train, split.y_train)


def nngp_data(n_train: int, n_val: int, *, seed: int = 0,
              data_dir: str | os.PathLike | None = None) -> NNGPData:
    """:func:`nngp_lib.data.cifar10.nngp_split`, cached per arguments (read-only arrays)."""
    return _cached_split(int(n_train), int(n_val), int(seed), None if data_dir is None else str(data_dir))


@functools.lru_cache(maxsize=8)
def _cached_split(n_train: int, n_val: int, seed: int, data_dir: str | None) -> NNGPData:
    data = nngp_split(n_train, n_val, seed=seed, data_dir=data_dir)
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        array.flags.writeable = False
    return data


def _batch(data, batch_size: int, data_seed: int, data_dir, *, labels: bool) -> Batch:
    """The proxy's batch: ``data`` checked, or the default CIFAR-10 batch."""
    if data is None:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return cifar10_batch(int(batch_size), seed=data_seed, data_dir=data_dir)
    if isinstance(data, NNGPData):
        data = Batch(data.x_train, data.y_train)
    if isinstance(data, (np.ndarray, jax.Array)):
        images, targets = data, None
    elif isinstance(data, tuple) and len(data) == 2:
        images, targets = data
    else:
        raise TypeError(f"data must be images, (images, labels), a Batch, NNGPData or None, got {type(data).__name__}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, H, W, 3) batch, got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all():
        raise ValueError("images must be finite standardized floats; standardize uint8 pixels first")
    if labels:
        if targets is None:
            raise ValueError("this proxy needs labels: pass data=(images, labels)")
        targets = np.asarray(targets)
        if targets.shape != (len(images),) or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"labels must be ({len(images)},) integers, got {targets.dtype} {targets.shape}")
        if targets.min() < 0 or targets.max() >= NUM_CLASSES:
            raise ValueError(f"labels must lie in [0, {NUM_CLASSES}), got [{targets.min()}, {targets.max()}]")
    return Batch(images.astype(np.float32, copy=False), targets)


def _network(spec: ModelSpec, stem_channels: int, seed: int) -> tuple[Network, Variables]:
    """NB101 network of ``spec`` and the NNGP ensemble's network 0 at ``seed``."""
    from nngp_lib.spaces.nb101 import jax_network as nb101_net

    network = nb101_net.network(spec, stem_channels=stem_channels)
    init_key, _ = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 0))
    return network, network.init(init_key)


# -- the proxies as functions of a network ------------------------------------------------------


def naswot_score(network: Network, variables: Variables, images: np.ndarray) -> float:
    """Mellor et al.'s score ``log |det K_H|`` of a network on a batch of images.

    Args:
      network: any :class:`~nngp_lib.networks.Network` whose ReLUs are
        :func:`~nngp_lib.networks.layers.conv_bn_relu` layers (NB101's all are).
      variables: its variables.
      images: (N, H, W, 3) float32.

    Returns:
      ``log |det K_H|`` with ``K_H[i, j]`` the number of ReLU units on which images i
      and j agree (both active or both inactive); ``-inf`` when ``K_H`` is singular
      (e.g. two images with identical codes). The network runs once, batch norm in
      training mode; ``K_H`` is accumulated layer by layer, exact in float64.
    """
    kernel = np.zeros((len(images), len(images)))

    def accumulate(activations: jax.Array) -> None:
        kernel[...] += np.asarray(_agreements(activations), np.float64)

    with layers.relu_hook(accumulate):
        network.features(variables, images, train=True)
    if not kernel.any():
        raise ValueError("the network has no ReLU layer: NASWOT needs conv_bn_relu layers")
    return float(np.linalg.slogdet(kernel)[1])


@jax.jit
def _agreements(activations: jax.Array) -> jax.Array:
    """(N, N) number of units where two images' codes agree: ``(N_A + s s^T) / 2``, s = +-1."""
    signs = jnp.where(activations.reshape(len(activations), -1) > 0, 1.0, -1.0)
    # Entries are integers below 2^24 for any NB101 layer: exact in float32.
    return (signs.shape[1] + signs @ signs.T) / 2


def synflow_score(network: Network, variables: Variables, image_shape: Sequence[int] = (32, 32, 3)) -> float:
    """Tanaka et al.'s synaptic flow ``sum |theta * dR/dtheta|`` over the weights.

    Every parameter and batch-norm statistic is replaced by its absolute value and cast
    to float64; ``R`` is the sum of the logits of one all-ones image of ``image_shape``
    in inference mode. Computed in float64 (``R`` overflows float32 for NB101).

    Returns:
      The score, positive and finite for any NB101 network; independent of any data.
    """
    with enable_x64():
        absolute = jax.tree_util.tree_map(lambda a: jnp.abs(jnp.asarray(a, jnp.float64)), variables)
        ones = jnp.ones((1, *image_shape), jnp.float64)

        def flow(params):
            logits, _ = network.apply({**absolute, "params": params}, ones, train=False)
            return jnp.sum(logits)

        grads = jax.grad(flow)(absolute["params"])
        total = sum(float(jnp.sum(jnp.abs(w * g))) for w, g in _weights(absolute["params"], grads))
    if not np.isfinite(total):
        raise FloatingPointError("synflow overflowed float64; the network is too deep or wide for it")
    return total


def loss_gradient(network: Network, variables: Variables, images: np.ndarray, labels: np.ndarray):
    """Gradient of the mean cross-entropy of a labelled batch w.r.t. ``variables['params']``
    (batch norm in training mode, with the batch's statistics)."""
    one_hot = jax.nn.one_hot(labels, NUM_CLASSES)

    def loss(params):
        logits, _ = network.apply({**variables, "params": params}, images, train=True)
        return -jnp.mean(jnp.sum(one_hot * jax.nn.log_softmax(logits), axis=-1))

    return jax.grad(loss)(variables["params"])


def snip_score(network: Network, variables: Variables, images: np.ndarray, labels: np.ndarray) -> float:
    """Lee et al.'s connection sensitivity ``sum |g * theta|`` over the weights (see
    :func:`loss_gradient` for g)."""
    return _snip(_weights(variables["params"], loss_gradient(network, variables, images, labels)))


def grad_norm_score(network: Network, variables: Variables, images: np.ndarray, labels: np.ndarray) -> float:
    """``sum_l ||g_l||_2``, the Euclidean norm of the loss gradient of each weight tensor
    summed over tensors (Abdelfattah et al.'s grad_norm; see :func:`loss_gradient`)."""
    return _grad_norm(_weights(variables["params"], loss_gradient(network, variables, images, labels)))


def _snip(pairs) -> float:
    return sum(float(jnp.sum(jnp.abs(w * g))) for w, g in pairs)


def _grad_norm(pairs) -> float:
    return sum(float(jnp.linalg.norm(g.ravel())) for _, g in pairs)


def _weights(params, grads) -> list[tuple[jax.Array, jax.Array]]:
    """(weight, gradient) pairs of the conv and dense kernels, in tree order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    grad_leaves = jax.tree_util.tree_leaves(grads)
    return [(w, g) for (path, w), g in zip(leaves, grad_leaves) if path[-1].key == "kernel"]


# -- the proxies as functions of a cell --------------------------------------------------------


def naswot(
    spec: ModelSpec,
    data: Batch | tuple | np.ndarray | NNGPData | None = None,
    seed: int = 0,
    *,
    batch_size: int = NASWOT_BATCH,
    stem_channels: int = STEM_CHANNELS,
    data_seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """NASWOT score (:func:`naswot_score`) of the NB101 network of ``spec``.

    Args:
      spec: the cell.
      data: images (an array, ``(images, labels)``, a :class:`Batch` or the training
        images of an :class:`NNGPData`); None: ``batch_size`` default CIFAR-10 images
        (:func:`cifar10_batch` with ``data_seed``).
      seed: the network's initialization (network 0 of the NNGP ensemble at this seed).
      stem_channels: width of the network (NB101: 128).
    """
    images = _batch(data, batch_size, data_seed, data_dir, labels=False).images
    return naswot_score(*_network(spec, stem_channels, seed), images)


def synflow(
    spec: ModelSpec,
    data: Batch | tuple | np.ndarray | NNGPData | None = None,
    seed: int = 0,
    *,
    stem_channels: int = STEM_CHANNELS,
) -> float:
    """Synflow (:func:`synflow_score`) of the NB101 network of ``spec``.

    ``data`` only sets the image shape (default 32x32x3): the input is all ones.
    """
    shape = (32, 32, 3) if data is None else _batch(data, 1, 0, None, labels=False).images.shape[1:]
    return synflow_score(*_network(spec, stem_channels, seed), shape)


def snip(
    spec: ModelSpec,
    data: Batch | tuple | NNGPData | None = None,
    seed: int = 0,
    *,
    batch_size: int = GRADIENT_BATCH,
    stem_channels: int = STEM_CHANNELS,
    data_seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """SNIP (:func:`snip_score`) of the NB101 network of ``spec`` on a labelled batch
    (arguments as :func:`naswot`; ``data`` needs labels)."""
    return gradient_proxies(spec, data, seed, batch_size=batch_size, stem_channels=stem_channels,
                            data_seed=data_seed, data_dir=data_dir)["snip"]


def grad_norm(
    spec: ModelSpec,
    data: Batch | tuple | NNGPData | None = None,
    seed: int = 0,
    *,
    batch_size: int = GRADIENT_BATCH,
    stem_channels: int = STEM_CHANNELS,
    data_seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """grad_norm (:func:`grad_norm_score`) of the NB101 network of ``spec`` on a labelled
    batch (arguments as :func:`naswot`; ``data`` needs labels)."""
    return gradient_proxies(spec, data, seed, batch_size=batch_size, stem_channels=stem_channels,
                            data_seed=data_seed, data_dir=data_dir)["grad_norm"]


def gradient_proxies(
    spec: ModelSpec,
    data: Batch | tuple | NNGPData | None = None,
    seed: int = 0,
    *,
    batch_size: int = GRADIENT_BATCH,
    stem_channels: int = STEM_CHANNELS,
    data_seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, float]:
    """``{"snip": ..., "grad_norm": ...}`` from one loss gradient: what :func:`snip` and
    :func:`grad_norm` return with the same arguments, for the cost of one of them."""
    batch = _batch(data, batch_size, data_seed, data_dir, labels=True)
    network, variables = _network(spec, stem_channels, seed)
    grads = loss_gradient(network, variables, batch.images, batch.labels)
    pairs = _weights(variables["params"], grads)
    return {"snip": _snip(pairs), "grad_norm": _grad_norm(pairs)}


def params(spec: ModelSpec, data: Any = None, seed: int = 0) -> float:
    """NB101's trainable-parameter count of the cell's network (``data`` and ``seed`` unused)."""
    return float(_spec(spec).num_params())


def flops(spec: ModelSpec, data: Any = None, seed: int = 0) -> float:
    """Forward FLOPs of one 32x32 image through the cell's network (``data`` and ``seed`` unused)."""
    return float(_spec(spec).flops())


def ntk(
    spec: ModelSpec,
    data: NNGPData | None = None,
    seed: int = 0,
    *,
    n_train: int = 100,
    n_val: int = 100,
    stem_channels: int = STEM_CHANNELS,
    bn_momentum: float = layers.BN_MOMENTUM,
    memory_budget: int | None = None,
    data_seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """Empirical-NTK validation accuracy, best eps (:func:`nngp_lib.ntk.ntk_inference`).

    ``data`` is an :class:`NNGPData`; None: ``nngp_split(n_train, n_val, seed=data_seed)``.
    """
    from nngp_lib import ntk as ntk_module

    data = _nngp_images(data, n_train, n_val, data_seed, data_dir)
    budget = {} if memory_budget is None else {"memory_budget": memory_budget}
    result, _ = ntk_module.ntk_inference(_spec(spec), data, seed=seed, stem_channels=stem_channels,
                                         bn_momentum=bn_momentum, **budget)
    return result.best_accuracy


def nngp(
    spec: ModelSpec,
    data: NNGPData | None = None,
    seed: int = 0,
    *,
    ensemble: int = 1,
    n_train: int = 100,
    n_val: int = 100,
    stem_channels: int = STEM_CHANNELS,
    bn_momentum: float = layers.BN_MOMENTUM,
    data_seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """NNGP validation accuracy, best eps (:func:`nngp_lib.scoring.score_spec`), with the
    arguments of :func:`ntk`: at ``ensemble=1`` the NTK's network and images."""
    from nngp_lib import scoring

    data = _nngp_images(data, n_train, n_val, data_seed, data_dir)
    setting = scoring.Setting(ensemble, len(data.y_train), len(data.y_val), seed, data_seed, bn_momentum,
                              stem_channels / STEM_CHANNELS)
    (row,) = scoring.score_spec(_spec(spec), [setting], data)
    return row["nngp_acc"]


def _nngp_images(data, n_train, n_val, data_seed, data_dir) -> NNGPData:
    if data is None:
        return nngp_data(n_train, n_val, seed=data_seed, data_dir=data_dir)
    if not isinstance(data, NNGPData):
        raise TypeError(f"data must be NNGPData (from nngp_split) or None, got {type(data).__name__}")
    return data


def _spec(spec) -> ModelSpec:
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    return spec


Proxy = Callable[..., float]

PROXIES: dict[str, Proxy] = {
    "naswot": naswot,
    "synflow": synflow,
    "snip": snip,
    "grad_norm": grad_norm,
    "params": params,
    "flops": flops,
    "ntk": ntk,
    "nngp": nngp,
}
"""Every proxy by name: ``PROXIES[name](spec, data=None, seed=0, **options) -> float``."""

JOINT: dict[tuple[str, ...], Callable[..., dict[str, float]]] = {("snip", "grad_norm"): gradient_proxies}
"""Proxies computed together when scored with the same options (one gradient for both)."""

ZERO_COST = ("naswot", "synflow", "snip", "grad_norm", "params", "flops")
"""The proxies :func:`score_proxies` computes by default (no NTK, no NNGP)."""

LABELS = {"naswot": "NASWOT", "synflow": "synflow", "snip": "SNIP", "grad_norm": "grad_norm",
          "params": "parameters", "flops": "FLOPs", "ntk": "NTK", "nngp": "NNGP"}
"""Display names."""


# -- many architectures into a results table ---------------------------------------------------

TABLE_COLUMNS = ("hash", "proxy", "seed", "score", "seconds")


def score_proxies(
    specs: Iterable[ModelSpec],
    names: Sequence[str] = ZERO_COST,
    name: str = "nb101_proxies",
    *,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    description: str = "training-free proxies of NAS-Bench-101 architectures",
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    resume: bool = True,
    checkpoint_every: int = 5,
    progress: bool = True,
    command: str | None = None,
) -> results_io.Results:
    """Score many architectures with several proxies into the result ``name``.

    Args:
      specs: the cells.
      names: proxies of :data:`PROXIES`.
      name: result name (:mod:`nngp_lib.results`).
      seed: initialization seed passed to every proxy.
      options: per-proxy keyword options, e.g. ``{"naswot": {"batch_size": 64}}``; values
        equal to the proxy's defaults are dropped (the provenance records the others).
      data_dir: data folder, passed to the proxies that read data.
      resume: keep the rows already in ``name`` (same proxies, seed and options) and
        score only the missing (architecture, proxy) pairs; otherwise an existing result
        is an error. More architectures may be added to a result this way.
      checkpoint_every: rewrite the table (atomically) after this many architectures.

    Returns:
      The result: one row per (architecture, proxy) with columns ``hash``, ``proxy``,
      ``seed``, ``score`` and ``seconds``: the wall time of that proxy on that
      architecture, including the network's construction and, the first time a layer
      shape is met, its compilation (compare medians). Proxies of :data:`JOINT` with the
      same options are computed in one call (snip and grad_norm share their gradient);
      each of their rows records the time of that call, what either costs alone.
    """
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in PROXIES]
    if not names or unknown:
        raise ValueError(f"unknown proxies {unknown or names}: choose among {sorted(PROXIES)}")
    options = _checked_options(options or {}, names)
    run_settings = {"proxies": names, "seed": seed, "options": options}
    units = _units(names, options)
    calls = {
        unit: functools.partial(JOINT[unit] if len(unit) > 1 else PROXIES[unit[0]], seed=seed,
                                **options.get(unit[0], {}), **_data_dir_option(unit[0], data_dir))
        for unit in units
    }
    specs = list(specs)

    table, provenance = results_io.open_run(
        name, run_settings, TABLE_COLUMNS, description=description, command=command, resume=resume,
        results_dir=results_dir,
    )

    done = set(zip(table["hash"], table["proxy"]))
    new_rows: list[dict] = []
    pending = 0
    for spec in tqdm(specs, desc=f"proxies {name}", disable=not progress):
        spec_hash = _spec(spec).hash()
        todo = [unit for unit in units if any((spec_hash, p) not in done for p in unit)]
        for unit in todo:
            start = time.perf_counter()
            scores = calls[unit](spec)
            seconds = time.perf_counter() - start
            scores = scores if isinstance(scores, dict) else {unit[0]: scores}
            for proxy in unit:
                if (spec_hash, proxy) not in done:
                    new_rows.append({"hash": spec_hash, "proxy": proxy, "seed": seed,
                                     "score": float(scores[proxy]), "seconds": seconds})
                    done.add((spec_hash, proxy))
        pending += bool(todo)
        if pending >= checkpoint_every:
            table = _append(table, new_rows)
            _write(name, table, provenance, results_dir)
            new_rows, pending = [], 0
    table = _append(table, new_rows)
    _write(name, table, provenance, results_dir)
    return results_io.read(name, results_dir)


def _units(names: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The calls one architecture needs: joint groups whose members share options, else single proxies."""
    units, covered = [], set()
    for group in JOINT:
        if all(p in names for p in group) and all(options.get(p, {}) == options.get(group[0], {}) for p in group):
            units.append(group)
            covered.update(group)
    return units + [(p,) for p in names if p not in covered]


def _checked_options(options: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-proxy options without the values equal to the proxy's defaults, sorted by proxy."""
    checked = {}
    for proxy in sorted(options):
        if proxy not in names:
            raise ValueError(f"options given for {proxy!r}, which is not among the proxies {list(names)}")
        parameters = inspect.signature(PROXIES[proxy]).parameters
        accepted = sorted(_accepted(proxy) - {"data_dir"})
        bad = sorted(set(options[proxy]) - set(accepted))
        if bad:
            raise ValueError(f"proxy {proxy!r} has no options {bad}; it accepts {accepted}")
        values = {k: v for k, v in sorted(options[proxy].items()) if v != parameters[k].default}
        if values:
            checked[proxy] = values
    return checked


def wide_scores(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`score_proxies` table as (architectures, proxies) scores, index ``hash``."""
    missing = [c for c in ("hash", "proxy", "score") if c not in table.columns]
    if missing:
        raise ValueError(f"not a proxies table: it lacks columns {missing}")
    if table.duplicated(["hash", "proxy"]).any():
        raise ValueError("proxies table repeats a (hash, proxy) row: it mixes two runs")
    wide = table.pivot(index="hash", columns="proxy", values="score")
    order = [p for p in PROXIES if p in wide.columns] + [p for p in wide.columns if p not in PROXIES]
    return wide[order].astype(np.float64)


def _write(name, table, provenance, results_dir) -> None:
    provenance["architectures"] = int(table["hash"].nunique())
    results_io.write(name, table, provenance, results_dir)


def _append(table: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return table
    new = pd.DataFrame(rows, columns=table.columns)
    return new if table.empty else pd.concat([table, new], ignore_index=True)


def _accepted(proxy: str) -> set[str]:
    signature = inspect.signature(PROXIES[proxy])
    return {p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY}


def _data_dir_option(proxy: str, data_dir) -> dict:
    return {"data_dir": data_dir} if data_dir is not None and "data_dir" in _accepted(proxy) else {}


def score_result_architectures(
    source: str | results_io.Results,
    name: str = "nb101_proxies",
    names: Sequence[str] = ZERO_COST,
    *,
    limit: int | None = None,
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> results_io.Results:
    """:func:`score_proxies` on the architectures of another result (e.g. ``"nb101_nngp"``).

    Args:
      source: a result with a ``hash`` column (NB101 hashes of the table): its name (read
        from ``results_dir``) or the result itself.
      name, names: the proxies' result and the proxies.
      limit: score the first ``limit`` of them, in the source's order (None: all). A run of
        ``nngp-nas score-table --sample`` lists its architectures in a seeded random order,
        so this is a random sample, and the same one while the source run grows.
      kwargs: passed to :func:`score_proxies` (``seed``, ``options``, ``progress``, ...).
    """
    from nngp_lib.data import nb101_table
    from nngp_lib.spaces.nb101 import specs_from_table

    if isinstance(source, str):
        source = results_io.read(source, results_dir)
    source_name = source.name
    hashes = pd.unique(source.table["hash"])
    if limit is not None:
        if not 0 < limit:
            raise ValueError(f"limit must be a positive number of architectures, got {limit}")
        hashes = hashes[:limit]
    table = nb101_table.load_table(data_dir).set_index("hash")
    missing = [h for h in hashes if h not in table.index]
    if missing:
        raise ValueError(
            f"{len(missing)} architectures of {source_name!r} (e.g. {missing[0]}) are not in the NB101 table"
        )
    kwargs.setdefault("description", f"training-free proxies of the architectures of {source_name!r}")
    return score_proxies(specs_from_table(table.loc[list(hashes)]), names, name, results_dir=results_dir,
                         data_dir=data_dir, **kwargs)


# -- combining proxies and judging scores on held-out architectures -----------------------------


def quantile_ranks(scores: pd.DataFrame) -> pd.DataFrame:
    """Each column's average ranks divided by (N + 1): values in (0, 1), ties averaged."""
    return scores.rank(method="average") / (len(scores) + 1)


def fit_orientation(scores: pd.DataFrame, truth: ArrayLike) -> pd.Series:
    """+1 or -1 per column: the sign of its Spearman correlation with ``truth`` (+1 when
    that is zero or undefined). Some proxies rank NB101 backwards (e.g. grad_norm)."""
    truth = np.asarray(truth, dtype=np.float64)
    signs = {c: np.sign(metrics.spearman(scores[c].to_numpy(np.float64), truth)) for c in scores.columns}
    return pd.Series({c: -1.0 if s < 0 else 1.0 for c, s in signs.items()}, name="orientation")


def rank_average(scores: pd.DataFrame, orientation: pd.Series | None = None) -> pd.Series:
    """Mean of the columns' quantile ranks, each column flipped where ``orientation`` is -1."""
    ranks = quantile_ranks(scores)
    if orientation is not None:
        flipped = orientation.reindex(scores.columns) < 0
        ranks.loc[:, flipped] = 1.0 - ranks.loc[:, flipped]
    return ranks.mean(axis=1).rename("rank average")


@dataclass(frozen=True)
class RankRegression:
    """Least squares of the truth's quantile rank on the proxies' quantile ranks.

    Ranks are taken within each set of architectures (the fitting set, then any set it is
    applied to), so the model transfers between sets of different score scales.
    """

    columns: tuple[str, ...]
    coefficients: np.ndarray  # (P,)
    intercept: float

    @classmethod
    def fit(cls, scores: pd.DataFrame, truth: ArrayLike) -> "RankRegression":
        from sklearn.linear_model import LinearRegression

        truth_ranks = pd.Series(np.asarray(truth, dtype=np.float64)).rank().to_numpy() / (len(scores) + 1)
        model = LinearRegression().fit(quantile_ranks(scores).to_numpy(), truth_ranks)
        return cls(tuple(scores.columns), model.coef_.copy(), float(model.intercept_))

    def predict(self, scores: pd.DataFrame) -> pd.Series:
        ranks = quantile_ranks(scores[list(self.columns)]).to_numpy()
        return pd.Series(ranks @ self.coefficients + self.intercept, index=scores.index, name="linear model")


RANK_AVERAGE = "rank average"
LINEAR_MODEL = "linear model on ranks"


def held_out_comparison(
    scores: pd.DataFrame,
    truth: ArrayLike,
    combinations: Mapping[str, Sequence[str]],
    *,
    num_splits: int = 20,
    test_fraction: float = 0.5,
    top_fraction: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Single proxies and combinations of them, judged on held-out architectures only.

    Each split draws a seeded random ``test_fraction`` of the architectures as the test
    set; the rest is the fitting set. On the fitting set each single proxy gets its
    orientation (:func:`fit_orientation`) and each combination its orientations (rank
    average, :func:`rank_average`) or its :class:`RankRegression` (linear model); all are
    then scored on the test set only: Kendall's tau-b, Spearman's rho and PQETP at the
    test set's top ``top_fraction`` of the truth (the AUROC of finding those).

    Args:
      scores: (N, P) proxies, one column each, no NaN.
      truth: (N,) ground truth.
      combinations: name -> columns to combine; each gives two scores,
        ``"<name>: rank average"`` and ``"<name>: linear model on ranks"``.
      num_splits: number of random splits.
      test_fraction: share of architectures held out in each split.
      top_fraction: the PQETP threshold is the truth's (1 - top_fraction) quantile in the test set.
      seed: seed of the splits.

    Returns:
      Long DataFrame: ``split``, ``score``, ``kind`` (``"single"``, ``"rank average"``
      or ``"linear model on ranks"``), ``kendall_tau``, ``spearman``, ``pqetp``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape != (len(scores),):
        raise ValueError(f"truth must have shape ({len(scores)},) to match scores, got {truth.shape}")
    if scores.isna().to_numpy().any() or np.isnan(truth).any():
        raise ValueError("scores or truth hold NaN: drop those architectures first")
    for combination, columns in combinations.items():
        absent = [c for c in columns if c not in scores.columns]
        if absent or len(columns) < 2:
            raise ValueError(f"combination {combination!r} needs at least two columns of scores; missing {absent}")
    num_test = int(round(test_fraction * len(scores)))
    if not 0.0 < test_fraction < 1.0 or num_test < 3 or len(scores) - num_test < 3:
        raise ValueError(
            f"need at least 3 architectures on each side of a split: {len(scores)} architectures with "
            f"test_fraction={test_fraction}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for split in range(num_splits):
        test = np.zeros(len(scores), bool)
        test[rng.choice(len(scores), num_test, replace=False)] = True
        fit_scores, fit_truth = scores[~test], truth[~test]
        test_scores, test_truth = scores[test], truth[test]
        orientation = fit_orientation(fit_scores, fit_truth)
        held_out = {c: ("single", orientation[c] * test_scores[c]) for c in scores.columns}
        for combination, columns in combinations.items():
            columns = list(columns)
            held_out[f"{combination}: {RANK_AVERAGE}"] = (
                RANK_AVERAGE, rank_average(test_scores[columns], orientation[columns]))
            model = RankRegression.fit(fit_scores[columns], fit_truth)
            held_out[f"{combination}: {LINEAR_MODEL}"] = (LINEAR_MODEL, model.predict(test_scores))
        threshold = np.quantile(test_truth, 1.0 - top_fraction)
        for label, (kind, values) in held_out.items():
            values = values.to_numpy(np.float64)
            rows.append({
                "split": split, "score": label, "kind": kind,
                "kendall_tau": metrics.kendall_tau(values, test_truth),
                "spearman": metrics.spearman(values, test_truth),
                "pqetp": metrics.pqetp(values, test_truth, threshold),
            })
    return pd.DataFrame(rows)


# -- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, prog: str = "python -m nngp_lib.proxies", epilog: str | None = None) -> int:
    """``nngp-nas proxies (--from RESULT | --sample N) --out NAME [...]`` (also ``python -m nngp_lib.proxies``)."""
    parser = argparse.ArgumentParser(
        prog=prog, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score the architectures of a result with training-free proxies.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--from", dest="source", help="result whose architectures are scored")
    which.add_argument("--sample", type=int, help="a seeded random sample of this many rows of the NB101 table "
                       "(as nngp-nas score-table --sample: the same architectures, in the same order)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--out", required=True, help="result to write (resumed if it exists)")
    parser.add_argument("--proxies", nargs="+", default=list(ZERO_COST), choices=sorted(PROXIES))
    parser.add_argument("--limit", type=int, default=None, help="score the source's first this many architectures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the networks")
    parser.add_argument("--option", action="append", default=[], metavar="[PROXY.]KEY=VALUE",
                        help="proxy option (JSON value); without PROXY., for every chosen proxy accepting KEY")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        options = _parse_options(args.option, args.proxies)
        command = f"{prog} " + " ".join(argv if argv is not None else sys.argv[1:])
        if args.source is not None:
            result = score_result_architectures(
                args.source, args.out, args.proxies, limit=args.limit, results_dir=args.results_dir,
                data_dir=args.data_dir, seed=args.seed, options=options, command=command)
        else:
            from nngp_lib.data import nb101_table
            from nngp_lib.spaces.nb101 import specs_from_table

            drawn = nb101_table.sample_rows(nb101_table.load_table(args.data_dir), args.sample, args.sample_seed)
            result = score_proxies(
                specs_from_table(drawn[: args.limit]), args.proxies, args.out, results_dir=args.results_dir,
                data_dir=args.data_dir, seed=args.seed, options=options, command=command,
                description=f"training-free proxies of {args.sample} NAS-Bench-101 architectures drawn with seed "
                f"{args.sample_seed}")
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"nngp_lib.proxies: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(result.table)} rows to {result.path}")
    return 0


def _parse_options(items: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--option {item!r} must be KEY=VALUE or PROXY.KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        proxy, _, key = key.rpartition(".")
        targets = [proxy] if proxy else [p for p in names if key in _accepted(p)]
        if not targets:
            raise ValueError(f"no chosen proxy accepts option {key!r}")
        for target in targets:
            if target not in names:
                raise ValueError(f"option {item!r} names proxy {target!r}, which is not among {list(names)}")
            options.setdefault(target, {})[key] = value
    return options


if __name__ == "__main__":
    sys.exit(main())
