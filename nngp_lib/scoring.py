"""Score architectures by NNGP validation accuracy: one spec, or many into a results table.

This is Algorithm 1 of the paper end to end::

    data   = nngp_split(n_train, n_val)                       # CIFAR-10, class-balanced
    K_tt, K_vt = Monte-Carlo NNGP kernels of k random networks  # nngp_lib.kernels
    result = nngp_inference(K_tt, K_vt, y_train, y_val)       # eps sweep, nngp_lib.inference

Several settings of one architecture share their work: the penultimate features of the
largest ensemble on the largest image sets are computed once, and a smaller setting
uses the first k networks and a nested, class-balanced subset of the images. So a row
for (k=1, n_train=100) and one for (k=2, n_train=200) of the same architecture differ
only by the networks and images added, as in a real ensemble that grows.

Batch scoring writes one row per (architecture, setting) through
:mod:`nngp_lib.results`: a Parquet part per finished chunk of architectures, written
atomically, resuming from the rows already present, with a provenance record. The
chunks run in this process or on a Dask cluster (:mod:`nngp_lib.cluster`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from nngp_lib import results as results_io
from nngp_lib.data.cifar10 import NNGPData, balanced_subsets, downsample, nngp_split
from nngp_lib.inference import nngp_inference_from_features
from nngp_lib.spaces.nb101 import STEM_CHANNELS, ModelSpec

DOWNSAMPLE_FACTORS = (1, 2, 4)  # CIFAR-10's 32x32 -> 32, 16, 8: NB101 networks still halve them twice


@dataclass(frozen=True)
class Setting:
    """One NNGP scoring setting (the paper varies ensemble, n_train and n_val).

    Attributes:
      ensemble: k, the number of random networks averaged into the kernel.
      n_train: NNGP training images (class-balanced, from the official training split).
      n_val: NNGP validation images (disjoint from the training images).
      seed: seed of the network initializations.
      data_seed: seed of the image selection.
      bn_momentum: batch-norm momentum of the one training-mode pass that sets the
        moving statistics (NB101's 0.997; 0 makes them the batch statistics).
      width_multiplier: channels of the Monte-Carlo networks relative to NB101's
        (a cheaper estimate: cost falls with its square).
      downsample_factor: the networks see the images averaged over blocks of this many
        pixels a side (1: as they are; 2: CIFAR-10 at 16x16; see
        :func:`nngp_lib.data.cifar10.downsample`): a cheaper estimate, cost falls with
        the number of pixels.
    """

    ensemble: int = 2
    n_train: int = 100
    n_val: int = 200
    seed: int = 0
    data_seed: int = 0
    bn_momentum: float = 0.997
    width_multiplier: float = 1.0
    downsample_factor: int = 1

    def __post_init__(self):
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")
        if self.n_train < 10 or self.n_val < 10:
            raise ValueError(
                f"need n_train >= 10 and n_val >= 10 (one image per class), got "
                f"n_train={self.n_train}, n_val={self.n_val}"
            )
        if not 0.0 <= self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1], got {self.bn_momentum}")
        if not 0.0 < self.width_multiplier <= 4.0:
            raise ValueError(f"width_multiplier must be in (0, 4], got {self.width_multiplier}")
        if self.downsample_factor not in DOWNSAMPLE_FACTORS:
            raise ValueError(f"downsample_factor must be one of {DOWNSAMPLE_FACTORS}, got {self.downsample_factor}")

    @property
    def network_key(self) -> tuple:
        """Settings that share networks (and so can share features)."""
        return (self.seed, self.bn_momentum, self.width_multiplier, self.downsample_factor)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def stem_channels(width_multiplier: float) -> int:
    """Stem channels of the Monte-Carlo networks at a width multiplier (NB101: 128)."""
    return max(1, round(STEM_CHANNELS * width_multiplier))


SETTING_COLUMNS = tuple(field.name for field in dataclasses.fields(Setting))
SETTING_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Setting)}


def complete_settings(table: pd.DataFrame) -> pd.DataFrame:
    """A results table with every setting column: a column missing from a run recorded
    before that setting existed is filled with the setting's default, which that run used."""
    missing = {c: SETTING_DEFAULTS[c] for c in SETTING_COLUMNS if c not in table.columns}
    return table.assign(**missing) if missing else table


def _with_setting_defaults(previous: results_io.Results) -> results_io.Results:
    """A run recorded before a setting existed, with that setting's default (which it used),
    and before a score existed, with that score missing (NaN) on its rows."""
    recorded = dict(previous.provenance.get("settings", {}))
    recorded["settings"] = [{**SETTING_DEFAULTS, **s} for s in recorded.get("settings", [])]
    table = complete_settings(previous.table)
    missing = {c: np.nan for c in _LATER_SCORE_COLUMNS if c not in table.columns}
    return dataclasses.replace(previous, table=table.assign(**missing) if missing else table,
                               provenance={**previous.provenance, "settings": recorded})


SCORE_COLUMNS = (
    "nngp_acc", "nngp_eps", "nngp_acc_loo", "nngp_eps_loo",
    "nngp_acc_centered", "nngp_eps_centered", "nngp_acc_loo_centered", "nngp_eps_loo_centered",
    "seconds",
)
# Scores added after runs were recorded: such a run reads (and resumes) with them missing (NaN).
_LATER_SCORE_COLUMNS = SCORE_COLUMNS[4:8]


def nngp_accuracy(
    spec: ModelSpec,
    *,
    ensemble: int = 2,
    n_train: int = 100,
    n_val: int = 200,
    seed: int = 0,
    data_seed: int = 0,
    bn_momentum: float = 0.997,
    width_multiplier: float = 1.0,
    downsample_factor: int = 1,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """NNGP validation accuracy of one NB101 cell on CIFAR-10 (the paper's score).

    The best accuracy over the paper's eps grid; see :func:`score_spec` for the
    leave-one-out variant and the timing.
    """
    setting = Setting(ensemble, n_train, n_val, seed, data_seed, bn_momentum, width_multiplier, downsample_factor)
    data = nngp_split(n_train, n_val, seed=data_seed, data_dir=data_dir)
    return float(score_spec(spec, [setting], data)[0]["nngp_acc"])


def score_spec(spec: ModelSpec, settings: Sequence[Setting], data: NNGPData, *, backend: str = "auto") -> list[dict]:
    """Score one architecture at several settings, sharing networks, features and fits.

    Args:
      spec: the cell.
      settings: settings with the same ``data_seed``; each needs ``n_train <= len(data.y_train)``
        and ``n_val <= len(data.y_val)``.
      data: the largest image sets (from :func:`nngp_split` with that ``data_seed``).
      backend: which backend runs the networks ('auto', 'jax', 'torch'; see
        :mod:`nngp_lib.backends`). The backends compute the same networks; scores agree
        to float32 rounding.

    Returns one dict per setting with the setting's fields, ``hash`` and the scores:
    ``nngp_acc`` (best over eps, as the paper reports), ``nngp_eps``, ``nngp_acc_loo``
    (eps chosen by leave-one-out on the training images), ``nngp_eps_loo``, the same
    four of the centered kernel (``nngp_acc_centered``, ...; see
    :func:`nngp_lib.inference.nngp_inference_from_features`) and ``seconds`` (wall
    time of the forward passes this setting used, apportioned by images).

    Network i of a group is run only on the images of the settings with more than i
    networks, so adding a k = 1 setting with many images to k = 4 settings with few
    costs the one network's passes, not four.
    """
    from nngp_lib.spaces import nb101

    for setting in settings:
        if setting.n_train > len(data.y_train) or setting.n_val > len(data.y_val):
            raise ValueError(
                f"setting needs {setting.n_train} training and {setting.n_val} validation images, "
                f"data has {len(data.y_train)} and {len(data.y_val)}; pass a larger nngp_split"
            )
    groups: dict[tuple, list[Setting]] = {}
    for setting in settings:
        groups.setdefault(setting.network_key, []).append(setting)

    rows: dict[Setting, dict] = {}
    spec_hash = spec.hash()
    for (seed, bn_momentum, width, factor), group in groups.items():
        n_train = max(s.n_train for s in group)
        n_val = max(s.n_val for s in group)
        positions = {s: _nested_subsets(data, s, n_train, n_val) for s in group}
        network = nb101.network(spec, backend=backend, stem_channels=stem_channels(width))
        x_train = downsample(data.x_train[:n_train], factor)
        x_val = downsample(data.x_val[:n_val], factor)
        features, seconds = _group_features(network, group, positions, x_train, x_val, seed, bn_momentum)
        f_train, f_val = features[:, :n_train], features[:, n_train:]
        for setting in group:
            rows[setting] = {"hash": spec_hash, **setting.as_dict(), "seconds": seconds[setting]}
        # Settings differing only in n_val share one fit, restricted to each's images.
        fits: dict[tuple[int, int], list[Setting]] = {}
        for setting in group:
            fits.setdefault((setting.ensemble, setting.n_train), []).append(setting)
        for (ensemble, _), members in fits.items():
            train_pos = positions[members[0]][0]
            val_union = np.unique(np.concatenate([positions[s][1] for s in members]))
            for suffix, center in (("", False), ("_centered", True)):
                fit = nngp_inference_from_features(
                    f_train[:ensemble, train_pos], f_val[:ensemble, val_union], data.y_train[train_pos],
                    data.y_val[val_union], center=center, return_val_labels=True,
                )
                for setting in members:
                    val_pos = positions[setting][1]
                    result = fit.restricted(np.searchsorted(val_union, val_pos), data.y_val[val_pos])
                    rows[setting].update({
                        f"nngp_acc{suffix}": result.best_accuracy,
                        f"nngp_eps{suffix}": result.best_eps,
                        f"nngp_acc_loo{suffix}": result.loo_val_accuracy,
                        f"nngp_eps_loo{suffix}": result.loo_eps,
                    })
    return [{column: rows[s][column] for column in ("hash", *SETTING_COLUMNS, *SCORE_COLUMNS)} for s in settings]


def _group_features(network, group, positions, x_train, x_val, seed, bn_momentum):
    """Features of the settings of one network group: ``((k, n + m, D) array, seconds per setting)``.

    Network i computes only the images some setting with more than i networks uses;
    other entries stay 0 and no setting reads them.
    """
    from nngp_lib import kernels

    n_train = len(x_train)
    ensemble = max(s.ensemble for s in group)
    features = np.zeros((ensemble, n_train + len(x_val), network.feature_dim))
    seconds = {s: 0.0 for s in group}
    for index in range(ensemble):
        users = [s for s in group if s.ensemble > index]
        needed = np.unique(np.concatenate([np.concatenate([positions[s][0], n_train + positions[s][1]]) for s in users]))
        images = np.concatenate([x_train, x_val])[needed]
        start = time.perf_counter()
        features[index, needed] = kernels.member_features(network, index, x_train, images, seed=seed,
                                                          bn_momentum=bn_momentum)
        elapsed = time.perf_counter() - start
        for s in users:
            seconds[s] += elapsed * (s.n_train + s.n_val) / len(needed)
    return features, seconds


def _nested_subsets(data: NNGPData, setting: Setting, n_train: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced positions of a smaller setting inside the largest image sets."""
    if setting.n_train == n_train:
        train_pos = np.arange(n_train)
    else:
        (train_pos,) = balanced_subsets(data.y_train[:n_train], [setting.n_train], seed=setting.data_seed)
    if setting.n_val == n_val:
        val_pos = np.arange(n_val)
    else:
        (val_pos,) = balanced_subsets(data.y_val[:n_val], [setting.n_val], seed=setting.data_seed)
    return train_pos, val_pos


@dataclass(frozen=True)
class ScoringJob:
    """What every task of a run shares, sent once to each worker (``client.scatter``).

    Attributes:
      settings: the run's settings.
      data: the largest image sets of the run.
      backend: the requested backend ('auto', 'jax', 'torch'), resolved where the task runs.
      precompile: compile the JAX primitives before a process's first architecture.
    """

    settings: tuple[Setting, ...]
    data: NNGPData
    backend: str = "auto"
    precompile: bool = False


_PRECOMPILED: set[tuple] = set()  # per process: the (settings, image shape, backend) already compiled


def score_chunk(job: ScoringJob, chunk: Sequence[tuple[int, ModelSpec, tuple[Setting, ...]]]) -> tuple[list[dict], str]:
    """Score one chunk of (position, architecture, settings still to do): ``(rows, backend version)``.

    The task of a run, in this process or on a Dask worker; see :func:`score_spec`.
    """
    from nngp_lib import backends

    backend = backends.resolve(job.backend)
    key = (job.settings, job.data.x_train.shape[1:3], backend)
    if job.precompile and key not in _PRECOMPILED:
        _precompile(job.settings, job.data.x_train.shape[1:3], backend)
        _PRECOMPILED.add(key)
    rows = [row for _, spec, todo in chunk for row in score_spec(spec, todo, job.data, backend=backend)]
    return rows, backends.version(backend)


KEY_COLUMNS = ("hash", *SETTING_COLUMNS)


def score_many(
    specs: Iterable[ModelSpec],
    settings: Sequence[Setting],
    name: str,
    *,
    description: str = "NNGP scores of NAS-Bench-101 architectures",
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    resume: bool = True,
    checkpoint_every: int = 5,
    chunk_size: int | None = None,
    client=None,
    progress: bool = True,
    command: str | None = None,
    precompile: bool | None = None,
    backend: str = "auto",
    coverage: Mapping[Setting, int] | None = None,
) -> results_io.Results:
    """Score many architectures at several settings into the run ``name`` (a folder of Parquet parts).

    The architectures are cut into chunks of ``chunk_size`` (default ``checkpoint_every``);
    a chunk is one task scoring its architectures at every setting still to do (so the
    settings share features, :func:`score_spec`) and one Parquet part, written as soon as
    it finishes (:func:`nngp_lib.results.write_part`). Tasks run in this process, or on
    the Dask cluster of ``client`` (:func:`nngp_lib.cluster.connect`): the images and
    settings are scattered once to every worker, the chunks submitted, and the parts
    written here as they complete; a chunk retried after its worker died replaces its
    own part, so no row is written twice.

    (architecture, setting) pairs already in the result are kept and not recomputed when
    ``resume`` is true (a legacy CSV result is converted to a folder); otherwise an
    existing result is an error, so that nothing is overwritten by accident. A second
    run on the same name while one writes it fails at once (:func:`nngp_lib.results.run_lock`).
    ``precompile`` compiles every primitive an NB101 network can call before a process's
    first architecture (about a minute, then no architecture compiles anything); by
    default only for 20 or more specs. ``backend`` runs the networks
    (:mod:`nngp_lib.backends`); the provenance lists every backend and version that
    contributed rows (``backends``), across resumed sessions and workers.

    ``coverage`` scores a setting on a prefix of ``specs`` only: ``coverage[s]`` is the
    number of first specs that setting ``s`` is scored on (settings not in it: all). A
    row's value does not depend on it, so it is recorded in the provenance but is not
    one of the run's settings: a run can be resumed with another coverage.
    """
    settings = list(dict.fromkeys(settings))
    if not settings:
        raise ValueError("no settings given: pass at least one Setting")
    coverage = dict(coverage or {})
    unknown = [s for s in coverage if s not in settings]
    if unknown:
        raise ValueError(f"coverage names a setting that is not scored, {unknown[0]}: "
                         "give coverage of the settings only")
    if any(int(n) < 1 for n in coverage.values()):
        raise ValueError("coverage must be at least 1 architecture per setting: leave a setting out instead")
    data_seeds = {s.data_seed for s in settings}
    if len(data_seeds) != 1:
        raise ValueError(f"one data_seed per run, got {sorted(data_seeds)}: score each in its own result")
    chunk_size = checkpoint_every if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    specs = list(specs)
    run_settings = {"settings": [s.as_dict() for s in settings], "architectures": len(specs)}
    columns = ["hash", *SETTING_COLUMNS, *SCORE_COLUMNS]

    with results_io.run_lock(name, results_dir):
        table, provenance = results_io.open_parts_run(
            name, run_settings, columns, KEY_COLUMNS, description=description, command=command, resume=resume,
            results_dir=results_dir, upgrade=_with_setting_defaults,
        )
        done = set(zip(table["hash"], *(table[c] for c in SETTING_COLUMNS)))
        data = nngp_split(max(s.n_train for s in settings), max(s.n_val for s in settings),
                          seed=settings[0].data_seed, data_dir=data_dir)
        provenance["data"] = {"source": data.source, "seed": data.seed,
                              "n_train": int(len(data.y_train)), "n_val": int(len(data.y_val))}
        provenance["workers"] = "in-process" if client is None else str(client.scheduler.address)
        if coverage:
            provenance["coverage"] = [{**s.as_dict(), "architectures": min(int(coverage[s]), len(specs))}
                                      for s in settings if s in coverage]
        else:
            provenance.pop("coverage", None)
        rows_written = len(table)
        results_io.write_provenance(name, provenance, results_dir, rows=rows_written)

        pending = []  # (position in specs, spec, settings to do)
        for position, spec in enumerate(specs):
            spec_hash = spec.hash()
            todo = tuple(s for s in settings if position < coverage.get(s, len(specs))
                         and (spec_hash, *s.as_dict().values()) not in done)
            if todo:
                pending.append((position, spec, todo))
        chunks = [pending[i:i + chunk_size] for i in range(0, len(pending), chunk_size)]
        job = ScoringJob(tuple(settings), data, backend, len(specs) >= 20 if precompile is None else precompile)

        bar = tqdm(total=len(specs), initial=len(specs) - len(pending), desc=f"scoring {name}", unit="arch",
                   disable=not progress)
        with bar:
            for chunk, (rows, version) in _run_chunks(job, chunks, client):
                results_io.write_part(name, pd.DataFrame(rows, columns=columns), provenance, results_dir,
                                      position=chunk[0][0])
                rows_written += len(rows)
                provenance["backends"] = sorted({*provenance.get("backends", []), version})
                results_io.write_provenance(name, provenance, results_dir, rows=rows_written)
                bar.update(len(chunk))
    return results_io.read(name, results_dir)


def _run_chunks(job: ScoringJob, chunks: list, client):
    """``(chunk, score_chunk's result)`` for every chunk, in the order they finish."""
    if client is None:
        for chunk in chunks:
            yield chunk, score_chunk(job, chunk)
        return
    from distributed import as_completed

    shared = client.scatter(job, broadcast=True)
    futures = {client.submit(score_chunk, shared, chunk, pure=False): chunk for chunk in chunks}
    for future in as_completed(futures):
        yield futures[future], future.result()


def score_sample(
    name: str,
    num_architectures: int,
    *,
    ensembles: Sequence[int] = (2,),
    n_trains: Sequence[int] = (100,),
    n_vals: Sequence[int] = (200,),
    seed: int = 0,
    width_multiplier: float = 1.0,
    downsample_factor: int = 1,
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    command: str | None = None,
    progress: bool = False,
    backend: str = "auto",
) -> results_io.Results:
    """:func:`score_many` on a seeded sample of the NB101 table at a grid of settings.

    The sample is :func:`nngp_lib.data.nb101_table.sample_rows` (``num_architectures``,
    ``seed``: a prefix of the same permutation as ``nngp-nas score-table --sample``);
    every combination of ``ensembles``, ``n_trains`` and ``n_vals`` is scored, with
    ``seed`` for the networks and the images, at one ``width_multiplier`` and
    ``downsample_factor``. The chapters' fallback when no cached run
    exists, and a one-call full-scale run.
    """
    import itertools

    from nngp_lib.data import nb101_table
    from nngp_lib.spaces.nb101 import specs_from_table

    drawn = nb101_table.sample_rows(nb101_table.load_table(data_dir), num_architectures, seed)
    settings = [
        Setting(ensemble=k, n_train=n, n_val=m, seed=seed, data_seed=seed, width_multiplier=width_multiplier,
                downsample_factor=downsample_factor)
        for k, n, m in itertools.product(ensembles, n_trains, n_vals)
    ]
    return score_many(
        specs_from_table(drawn), settings, name, results_dir=results_dir, data_dir=data_dir, progress=progress,
        description=f"NNGP scores of {num_architectures} NAS-Bench-101 architectures drawn with seed {seed}",
        command=command, backend=backend,
    )


def _precompile(settings: Sequence[Setting], image_shape: tuple[int, int], backend: str = "jax") -> None:
    """Compile the JAX primitives of every NB101 network the settings' passes can call on
    images of ``image_shape`` (height, width) before downsampling: all of them for the
    JAX backend, the initializers only for PyTorch (which compiles nothing itself)."""
    from nngp_lib import kernels
    from nngp_lib.spaces.nb101 import jax_network as nb101_net

    n_train = max(s.n_train for s in settings)
    n_val = max(s.n_val for s in settings)
    batch = kernels.inference_batch_size(n_train, n_val)
    height, width = image_shape
    for multiplier, factor in sorted({(s.width_multiplier, s.downsample_factor) for s in settings}):
        nb101_net.precompile(batch_size=batch, train_batch_size=kernels.default_bn_batch(n_train),
                             stem_channels=stem_channels(multiplier), image_size=(height // factor, width // factor),
                             forward=backend == "jax")
