"""A CPU-sized replay of the paper's MNAS study (its sections 3.2, 4.2 and figure 7) on CIFAR-10.

The paper samples 10k networks of the MnasNet space, trains each for 5 epochs on
ImageNet (giving the 5-epoch accuracy and MnasNet's reward), scores each with NNGP
inference on label-subsampled ImageNet sets, and trains the top 10 by each measure
for 400 epochs to get their ground truth. None of that ImageNet work can be redone
here (no ImageNet, no accelerator), so :func:`run_study` measures, for each network of
a seeded sample, on CIFAR-10 and at a reduced width:

* ``nngp_acc`` / ``nngp_acc_loo``: NNGP validation accuracy
  (:func:`nngp_lib.spaces.mnas.nngp_accuracy`) on a class-balanced CIFAR-10 subset of
  ``nngp_labels`` random classes, the paper's label-subsampled setting carried over
  to CIFAR-10 (best eps, and eps chosen by leave-one-out);
* ``short_acc``: validation accuracy after ``short_epochs`` epochs of training
  (:func:`nngp_lib.training.train`), the paper's 5-epoch accuracy;
* ``truth_acc``: validation accuracy after ``long_epochs > short_epochs`` epochs of
  a separate training run (its own cosine schedule, as each NAS-Bench-101 budget):
  a **stand-in** for the paper's 400-epoch ImageNet ground truth, not a ground truth;
* ``reward``: MnasNet's reward ``ACC x (LAT / TAR)^w`` with ``ACC = short_acc``,
  ``w = -0.07`` (Tan et al. 2019) and forward FLOPs standing in for the latency, the
  target being MobileNetV2's FLOPs for the same variant and width (:func:`mnas_reward`);
* ``params``, ``flops`` of the network actually trained, and the wall seconds of each part.

Both trainings use the same initialization and batch order, SGD with momentum and a
cosine decay, no augmentation; trained accuracies are measured on images disjoint
from their training images. The table is written through :mod:`nngp_lib.results`
after every network, and a run resumes from the networks already in it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nngp_lib import results as results_io
from nngp_lib.spaces import mnas
from nngp_lib.spaces.mnas import LabelSubset, MnasSpec

MNASNET_REWARD_EXPONENT = -0.07  # w of MnasNet's soft latency constraint (Tan et al. 2019, eq. 2)
VARIANT = "cifar10"

COLUMNS = (
    "index", "hash", "spec", "params", "flops", "nngp_acc", "nngp_acc_loo", "short_acc", "truth_acc",
    "reward", "seconds_nngp", "seconds_short", "seconds_truth",
)  # fmt: skip


@dataclass(frozen=True)
class StudySettings:
    """Everything :func:`run_study` measures a network with (besides the network).

    Attributes:
      width_multiplier: channels of every network relative to the space's (for all
        measures: NNGP networks and trained networks are the same).
      nngp_labels: CIFAR-10 classes drawn at random for the NNGP sets (1..10).
      nngp_train, nngp_val: NNGP training and validation images (class-balanced).
      ensemble: random networks averaged into the NNGP kernel (the paper: 4).
      train_images, val_images: images the networks are trained on and the disjoint
        images their accuracy is measured on (all 10 classes, class-balanced).
      short_epochs: the short training (the paper's 5 epochs on ImageNet).
      long_epochs: the longer training whose accuracy is the stand-in ground truth.
      batch_size, learning_rate, momentum, weight_decay: SGD with momentum, cosine decay.
      bn_momentum: batch-norm momentum of the trainings. Lower than MnasNet's 0.99: the
        moving statistics that evaluation uses must forget their initial values (mean 0,
        variance 1) within a few dozen steps (0.99 ** 30 = 0.74, 0.9 ** 30 = 0.04).
      reward_exponent: w of the reward ``ACC x (FLOPs / target)^w``.
      seed: seed of network initializations (NNGP and training) and batch order.
      data_seed: seed of the image and class choices.
    """

    width_multiplier: float = 0.25
    nngp_labels: int = 10
    nngp_train: int = 100
    nngp_val: int = 100
    ensemble: int = 1
    train_images: int = 256
    val_images: int = 200
    short_epochs: int = 2
    long_epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    bn_momentum: float = 0.9
    reward_exponent: float = MNASNET_REWARD_EXPONENT
    seed: int = 0
    data_seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.width_multiplier, (int, float)) and 0 < self.width_multiplier <= 4):
            raise ValueError(f"width_multiplier must be a number in (0, 4], got {self.width_multiplier!r}")
        for name in ("nngp_labels", "nngp_train", "nngp_val", "ensemble", "train_images", "val_images",
                     "short_epochs", "long_epochs", "batch_size"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.long_epochs <= self.short_epochs:
            raise ValueError(
                f"long_epochs ({self.long_epochs}) must exceed short_epochs ({self.short_epochs}): "
                "the longer training is the stand-in ground truth"
            )
        if self.batch_size > self.train_images:
            raise ValueError(f"batch_size {self.batch_size} exceeds train_images {self.train_images}; lower it")
        for name in ("learning_rate", "weight_decay"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not 0 <= self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in [0, 1], got {self.bn_momentum!r}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def target_flops(self) -> int:
        """The reward's target: MobileNetV2's forward FLOPs for one CIFAR-10 image at this width."""
        return mnas.flops(mnas.mobilenet_v2(), variant=VARIANT, width_multiplier=self.width_multiplier)


def mnas_reward(
    accuracy: ArrayLike, cost: ArrayLike, target: float, exponent: float = MNASNET_REWARD_EXPONENT
) -> np.ndarray:
    """MnasNet's soft-constraint reward ``accuracy * (cost / target) ** exponent``.

    MnasNet (Tan et al. 2019, eq. 2) uses the measured latency as ``cost`` and
    ``exponent = -0.07`` (on both sides of the target); any positive cost works, e.g.
    forward FLOPs. Arrays broadcast; returns float64.

    Raises:
      ValueError: a cost or target that is not positive (one line).
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target must be positive (the cost the reward is measured against), got {target!r}")
    if np.any(~(cost > 0)):
        raise ValueError("cost must be positive (a latency or a FLOP count) for every network")
    return accuracy * (cost / target) ** exponent


@dataclass(frozen=True, eq=False)
class StudyData:
    """The images of a study: the NNGP sets, and the training and validation images."""

    nngp: LabelSubset
    training: LabelSubset

    @classmethod
    def load(cls, settings: StudySettings, data_dir: str | os.PathLike | None = None) -> "StudyData":
        nngp = mnas.cifar10_label_subset(
            settings.nngp_labels, settings.nngp_train, settings.nngp_val, seed=settings.data_seed, data_dir=data_dir
        )
        training = mnas.cifar10_label_subset(
            10, settings.train_images, settings.val_images, seed=settings.data_seed, data_dir=data_dir
        )
        return cls(nngp, training)


def measure_network(spec: MnasSpec, settings: StudySettings, data: StudyData) -> dict:
    """Every measure of one network (the columns of :data:`COLUMNS` but ``index``).

    The seconds include the compilation of layers no earlier network had.
    """
    import jax

    from nngp_lib import training
    from nngp_lib.spaces.mnas import jax_network as mnas_networks

    width = settings.width_multiplier
    flops = mnas.flops(spec, variant=VARIANT, width_multiplier=width)
    row = {
        "hash": spec.hash(),
        "spec": spec.to_json(),
        "params": mnas.num_params(spec, variant=VARIANT, width_multiplier=width),
        "flops": flops,
    }
    start = time.perf_counter()
    nngp = mnas.nngp_accuracy(spec, data.nngp, ensemble=settings.ensemble, seed=settings.seed, width_multiplier=width)
    row.update(nngp_acc=nngp.best_accuracy, nngp_acc_loo=nngp.loo_val_accuracy)
    row["seconds_nngp"] = time.perf_counter() - start

    network = mnas_networks.network(spec, variant=VARIANT, width_multiplier=width)
    initial = network.init(jax.random.PRNGKey(settings.seed))
    images = data.training
    for column, epochs in (("short", settings.short_epochs), ("truth", settings.long_epochs)):
        start = time.perf_counter()
        trained, _ = training.train(
            network, initial, images.x_train, images.y_train, epochs=epochs, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, optimizer="sgd", momentum=settings.momentum,
            weight_decay=settings.weight_decay, bn_momentum=settings.bn_momentum, seed=settings.seed,
            jit_step=False,
        )  # fmt: skip
        # Batches of the NNGP passes' size reuse their compiled inference-mode layers.
        row[f"{column}_acc"] = training.evaluate(
            network, trained, images.x_val, images.y_val, batch_size=100, jit_forward=False
        )
        row[f"seconds_{column}"] = time.perf_counter() - start
    row["reward"] = float(mnas_reward(row["short_acc"], flops, settings.target_flops(), settings.reward_exponent))
    return row


def run_study(
    specs: Iterable[MnasSpec],
    settings: StudySettings,
    name: str,
    *,
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    resume: bool = True,
    description: str | None = None,
    command: str | None = None,
    progress: bool = False,
) -> results_io.Results:
    """Measure every network of ``specs`` into the result ``name`` (one row each, :data:`COLUMNS`).

    ``index`` is the network's position in ``specs``. Networks already in the result
    (same hash) are skipped when ``resume`` is true, so a run grows or resumes with a
    longer sample of the same seed (:func:`nngp_lib.spaces.mnas.sample_mnas` draws a prefix of
    the longer sample); an existing result of other settings, or any existing result
    with ``resume=False``, is an error rather than overwritten. The table is written
    atomically after every network.
    """
    from tqdm import tqdm

    specs = list(specs)
    recorded = {**settings.as_dict(), "target_flops": settings.target_flops(), "variant": VARIANT}
    table, provenance = results_io.open_run(
        name, recorded, COLUMNS, resume=resume, results_dir=results_dir, command=command,
        description=description or f"MNAS study on CIFAR-10 ({len(specs)} networks)",
    )
    # The rows do not depend on the sample size, so a run may be resumed with a longer
    # (or shorter) sample: the record names the latest command and keeps the earlier ones.
    for key, value in {"description": description, "command": command}.items():
        if value is not None and value != provenance.get(key):
            provenance.setdefault(f"earlier_{key}s", []).append(provenance.get(key))
            provenance[key] = value
    done = set(table["hash"])
    todo = [(i, spec) for i, spec in enumerate(specs) if spec.hash() not in done]
    if todo:
        data = StudyData.load(settings, data_dir)
        provenance["data"] = {
            "nngp_classes": list(data.nngp.classes),
            "nngp_train_ids_head": [int(i) for i in data.nngp.train_ids[:5]],
            "training_val_ids_head": [int(i) for i in data.training.val_ids[:5]],
        }
    for index, spec in tqdm(todo, desc=f"MNAS study {name}", disable=not progress):
        row = {"index": index, **measure_network(spec, settings, data)}
        new = pd.DataFrame([row], columns=list(COLUMNS))
        table = new if table.empty else pd.concat([table, new], ignore_index=True)
        provenance["architectures"] = int(len(table))
        results_io.write(name, table, provenance, results_dir)
    if not results_io.exists(name, results_dir):  # an empty sample still leaves a (header-only) result
        results_io.write(name, table, provenance, results_dir)
    return results_io.read(name, results_dir)


def selection_summary(
    table: pd.DataFrame,
    selectors: Sequence[str],
    *,
    truth: str = "truth_acc",
    top_k: int = 10,
    num_trials: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Figure 7 (left) of the paper: the best ``truth`` among the ``top_k`` networks by each selector.

    Each column of ``selectors`` ranks all networks of ``table`` once (ties broken at
    random); ``'random'`` picks ``top_k`` networks uniformly, ``num_trials`` times.

    Returns:
      One row per selector (index) with ``best`` (mean over trials of the best truth
      among the selected; one trial for a column), ``sem`` (its standard error, 0 for
      a column) and ``trials``.
    """
    from nngp_lib.metrics import discovered_performance

    values = table[truth].to_numpy(dtype=np.float64)
    n = len(values)
    if not 1 <= top_k <= n:
        raise ValueError(f"need 1 <= top_k <= number of networks, got top_k={top_k} with {n} networks")
    rows = {}
    rng = np.random.default_rng(seed)
    for selector in [*selectors, "random"]:
        if selector == "random":
            # A fresh random score per trial: its top_k of all networks is a uniform k-subset.
            trials = np.array([values[rng.permutation(n)[:top_k]].max() for _ in range(num_trials)])
        else:
            if selector not in table:
                raise ValueError(f"selector {selector!r} is not a column of the table")
            trials = discovered_performance(table[selector].to_numpy(np.float64), values, n, top_k=top_k,
                                            num_trials=1, seed=seed)  # fmt: skip
        sem = trials.std(ddof=1) / np.sqrt(trials.size) if trials.size > 1 else 0.0
        rows[selector] = {"best": trials.mean(), "sem": sem, "trials": trials.size}
    return pd.DataFrame.from_dict(rows, orient="index")
