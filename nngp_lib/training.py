"""Short gradient training of any search-space network, with optax: the baseline NNGP is
compared against (the paper's "shortened training").

Works with every :class:`~nngp_lib.networks.Network` (NAS-Bench-101 or MnasNet): it
only calls ``network.apply(variables, images, train=..., bn_momentum=...)``.

The defaults are NAS-Bench-101's training recipe (``nasbench/lib/config.py`` and
``model_builder.py``): RMSProp with decay 0.9, momentum 0.9 and epsilon 1.0 (TF1's
``RMSPropOptimizer``: epsilon inside the square root, mean square initialized to 1),
learning rate 0.2 (0.1 per TPU shard, 2 shards) with cosine decay to 0 over all
steps, batch size 256, L2 weight decay 1e-4 on every trainable variable (TF's
``l2_loss``: half the sum of squares), batch-norm momentum 0.997, softmax
cross-entropy. MnasNet's recipe (``tensorflow/tpu`` ``mnasnet_main.py``) differs in
epsilon 1e-3, learning rate 0.016 per 256 images with 5 warm-up epochs and an
exponential decay, weight decay 1e-5, label smoothing 0.1 and batch-norm momentum 0.99;
:data:`MNASNET_RECIPE` holds those that map onto the arguments here (the decay stays
cosine). ``optimizer='sgd'`` is SGD with momentum.

Compilation. By default (``jit_step=True``) one training step (forward, backward,
update) is compiled as a single XLA program, once per network and batch shape: the
fastest steps once compiled, the right choice on an accelerator and for long runs. On
a CPU, XLA takes minutes to compile a whole MnasNet network's step (15 minutes wall,
about 5 CPU-minutes, for a 10-MFLOP network at width 0.25 on the busy 2-core machine
this was written on); with ``jit_step=False`` the gradient is taken outside
``jax.jit``, so a network made of separately compiled layers
(:func:`nngp_lib.spaces.mnas.jax_network.layer_unit`) compiles layer by layer, once per layer
shape across all networks (about 40 CPU-seconds for that network), with steps as fast.
The optimizer update is then applied leaf by leaf, each leaf shape compiled
once. Both modes compute the same update.

No data augmentation (NAS-Bench-101 used random crops and flips): short runs on small
subsets are what this module is for. The last incomplete batch of an epoch is dropped
(each epoch reshuffles), so every step has the same shape and compiles once.
Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike

from nngp_lib.networks import Network, Variables
from nngp_lib.networks.layers import BN_MOMENTUM

# XLA's CPU backend spends most of a network's compile time in expensive LLVM passes;
# skipping them halves it (measured on MnasNet layers) without slowing the steps.
_CPU_COMPILER_OPTIONS = {"xla_llvm_disable_expensive_passes": True}

NASBENCH101_RECIPE: dict[str, Any] = dict(
    batch_size=256,
    learning_rate=0.2,
    optimizer="rmsprop",
    momentum=0.9,
    rmsprop_decay=0.9,
    rmsprop_epsilon=1.0,
    weight_decay=1e-4,
    label_smoothing=0.0,
    warmup_epochs=0.0,
    bn_momentum=0.997,
)
MNASNET_RECIPE: dict[str, Any] = dict(
    NASBENCH101_RECIPE,
    learning_rate=0.016,  # per 256 images; MnasNet scales it linearly with the batch size
    rmsprop_epsilon=1e-3,
    weight_decay=1e-5,
    label_smoothing=0.1,
    warmup_epochs=5.0,
    bn_momentum=0.99,
)


@dataclass(frozen=True)
class History:
    """What happened during :func:`train`.

    Attributes:
      loss: (steps,) training cross-entropy of each step's batch (without weight decay),
        in training-mode batch norm.
      learning_rate: (steps,) the learning rate each step used.
      epoch_loss: (epochs,) mean of ``loss`` over each epoch.
      seconds: wall time of the whole run, compilation included.
      compile_seconds: the part of it spent compiling the whole training step (once per
        network and batch shape); 0 with ``jit_step=False``, where the layers compile
        during the first step instead.
    """

    loss: np.ndarray
    learning_rate: np.ndarray
    epoch_loss: np.ndarray
    seconds: float
    compile_seconds: float

    @property
    def steps(self) -> int:
        return int(self.loss.size)


def train(
    network: Network,
    variables: Variables,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    batch_size: int = 256,
    learning_rate: float = 0.2,
    seed: int = 0,
    optimizer: Literal["rmsprop", "sgd"] = "rmsprop",
    momentum: float = 0.9,
    rmsprop_decay: float = 0.9,
    rmsprop_epsilon: float = 1.0,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.0,
    warmup_epochs: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
    num_classes: int | None = None,
    jit_step: bool = True,
) -> tuple[Variables, History]:
    """Train ``network`` from ``variables`` on images ``x`` and labels ``y``.

    Args:
      network: any search-space network.
      variables: ``{'params', 'batch_stats'}``, e.g. ``network.init(key)``; not modified.
      x: (N, H, W, 3) float32 standardized images.
      y: (N,) integer labels in ``[0, num_classes)``.
      epochs: passes over the data; each has ``N // batch_size`` steps.
      batch_size: images per step (at most N).
      learning_rate: peak learning rate; cosine decay to 0 over all steps, after a
        linear warm-up of ``warmup_epochs`` epochs from 0 if any.
      seed: seed of the batch order (the only randomness).
      optimizer: ``'rmsprop'`` (TF1 semantics, as NAS-Bench-101 and MnasNet) or ``'sgd'``
        (with ``momentum``; 0 for plain SGD).
      momentum, rmsprop_decay, rmsprop_epsilon: optimizer constants.
      weight_decay: coefficient of ``0.5 * sum(params ** 2)`` added to the loss.
      label_smoothing: optax's label smoothing of the one-hot targets.
      bn_momentum: momentum of the batch-norm moving statistics.
      num_classes: logits width; by default read from the network's outputs.
      jit_step: compile each step as one program (see the module docstring); False
        differentiates eagerly, for MnasNet networks on a CPU.

    Returns:
      ``(variables, history)``: the trained parameters with their moving batch-norm
      statistics, and a :class:`History`.

    Raises:
      ValueError: mismatched or malformed inputs, or a bad hyperparameter (one line).
    """
    start = time.perf_counter()
    x, y = _check_data(x, y)
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    if batch_size > len(y):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(y)} training images; lower it")
    if optimizer not in ("rmsprop", "sgd"):
        raise ValueError(f"optimizer must be 'rmsprop' or 'sgd', got {optimizer!r}")
    for name, value in (
        ("learning_rate", learning_rate), ("weight_decay", weight_decay), ("warmup_epochs", warmup_epochs)
    ):  # fmt: skip
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if not 0.0 <= bn_momentum <= 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1], got {bn_momentum!r}")

    classes = num_classes
    if classes is None:
        logits = jax.eval_shape(lambda v, im: network.apply(v, im)[0], variables, x[:1])
        classes = logits.shape[-1]
    if y.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes}), got a label {y.max()}")

    steps_per_epoch = len(y) // batch_size
    total_steps = epochs * steps_per_epoch
    warmup_steps = min(int(round(warmup_epochs * steps_per_epoch)), total_steps)
    rates = np.asarray(_schedule(learning_rate, warmup_steps, total_steps)(np.arange(total_steps)), np.float32)
    config = _StepConfig(
        optimizer, float(momentum), float(rmsprop_decay), float(rmsprop_epsilon), float(weight_decay),
        float(label_smoothing), float(bn_momentum), int(classes),
    )  # fmt: skip
    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = _init_optimizer(config, params)
    compile_start = time.perf_counter()
    example = (params, batch_stats, opt_state, x[:batch_size], y[:batch_size], rates[0])
    step = _compiled_step(network, config, example) if jit_step else _eager_step(network, config)
    compile_seconds = time.perf_counter() - compile_start

    rng = np.random.default_rng(seed)
    losses = []  # device scalars: reading each one would stall the step pipeline
    for epoch in range(epochs):
        order = rng.permutation(len(y))
        for i in range(steps_per_epoch):
            batch = order[i * batch_size : (i + 1) * batch_size]
            rate = rates[epoch * steps_per_epoch + i]
            params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, x[batch], y[batch], rate)
            losses.append(loss)
    losses = np.asarray(jax.device_get(losses), dtype=np.float64)
    history = History(
        loss=losses,
        learning_rate=rates.astype(np.float64),
        epoch_loss=losses.reshape(epochs, steps_per_epoch).mean(axis=1),
        seconds=time.perf_counter() - start,
        compile_seconds=compile_seconds,
    )
    return {"params": params, "batch_stats": batch_stats}, history


def evaluate(
    network: Network,
    variables: Variables,
    x: ArrayLike,
    y: ArrayLike,
    *,
    batch_size: int = 500,
    jit_forward: bool = True,
) -> float:
    """Accuracy of ``network`` on (N, H, W, 3) images ``x`` with (N,) labels ``y``, in
    inference mode (moving batch-norm statistics), ``batch_size`` images at a time.

    ``jit_forward=False`` runs the forward pass outside ``jax.jit``: a network of
    separately compiled layers (MnasNet's) then compiles layer by layer, reusing the
    inference-mode layers that NNGP scoring compiled for the same batch size, instead of
    compiling the whole network once more (the same logits either way).
    """
    x, y = _check_data(x, y)
    _check_positive_int("batch_size", batch_size)
    predict = _predictor(network) if jit_forward else _eager_predictor(network)
    correct = 0
    for begin in range(0, len(y), batch_size):
        predictions = np.asarray(predict(variables, x[begin : begin + batch_size]))
        correct += int(np.sum(predictions == y[begin : begin + batch_size]))
    return correct / len(y)


@functools.lru_cache(maxsize=8)
def _predictor(network: Network):
    return jax.jit(lambda variables, images: jnp.argmax(network.apply(variables, images)[0], axis=-1))


def _eager_predictor(network: Network):
    return lambda variables, images: jnp.argmax(network.apply(variables, jnp.asarray(images))[0], axis=-1)


class _StepConfig(NamedTuple):
    """Everything a training step depends on besides the network and shapes."""

    optimizer: str
    momentum: float
    rmsprop_decay: float
    rmsprop_epsilon: float
    weight_decay: float
    label_smoothing: float
    bn_momentum: float
    num_classes: int


def _optimizer(config: _StepConfig) -> optax.GradientTransformation:
    """The optimizer of one parameter array, its learning rate in the state (set by each step).

    Weight decay adds ``weight_decay * p`` to the gradient first: the gradient of TF's
    ``weight_decay * l2_loss(p)`` term, as NAS-Bench-101's loss has it.
    """

    def factory(learning_rate):
        if config.optimizer == "rmsprop":
            # TF1's RMSProp: mean square starts at 1, eps inside the square root, the
            # learning rate applied before the momentum accumulator (optax's order).
            inner = optax.rmsprop(
                learning_rate,
                decay=config.rmsprop_decay,
                eps=config.rmsprop_epsilon,
                initial_scale=1.0,
                momentum=config.momentum,
            )
        else:
            inner = optax.sgd(learning_rate, momentum=config.momentum or None)
        return optax.chain(optax.add_decayed_weights(config.weight_decay), inner)

    return optax.inject_hyperparams(factory)(learning_rate=0.0)


def _init_optimizer(config: _StepConfig, params) -> Any:
    """Per-leaf optimizer states, in the structure of ``params``."""
    tx = _optimizer(config)
    return jax.tree_util.tree_map(tx.init, params)


def _update_leaf(config: _StepConfig, grad, state, param, learning_rate):
    """One optimizer step of one parameter array: ``(new param, new state)``."""
    state = state._replace(hyperparams={**state.hyperparams, "learning_rate": learning_rate})
    update, state = _optimizer(config).update(grad, state, param)
    return param + update, state


def _apply_updates(update_leaf, grads, opt_state, params, learning_rate):
    """``update_leaf`` on every parameter array; returns (new params, new states)."""
    param_leaves, treedef = jax.tree_util.tree_flatten(params)
    updated = [
        update_leaf(grad, state, param, learning_rate)
        for grad, state, param in zip(treedef.flatten_up_to(grads), treedef.flatten_up_to(opt_state), param_leaves)
    ]
    return treedef.unflatten([u[0] for u in updated]), treedef.unflatten([u[1] for u in updated])


def _loss_fn(network: Network, config: _StepConfig, cross_entropy):
    def loss(params, batch_stats, images, labels):
        logits, new_stats = network.apply(
            {"params": params, "batch_stats": batch_stats}, images, train=True, bn_momentum=config.bn_momentum
        )
        return cross_entropy(logits, labels), new_stats

    return loss


def _cross_entropy(config: _StepConfig, logits, labels):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, config.num_classes), config.label_smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


# Compiled training steps by (network, config, argument shapes): a second train() of the
# same network (another seed, more epochs) does not compile again.
_STEP_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_STEP_CACHE_SIZE = 4


def _compiled_step(network: Network, config: _StepConfig, example_args: tuple):
    """The whole step as one compiled program."""
    leaves, treedef = jax.tree_util.tree_flatten(example_args)
    key = (network, config, treedef, tuple((np.shape(a), np.result_type(a).str) for a in leaves))
    if key in _STEP_CACHE:
        _STEP_CACHE.move_to_end(key)
        return _STEP_CACHE[key]
    loss = _loss_fn(network, config, functools.partial(_cross_entropy, config))
    update_leaf = functools.partial(_update_leaf, config)

    def step(params, batch_stats, opt_state, images, labels, learning_rate):
        (cross_entropy, new_stats), grads = jax.value_and_grad(loss, has_aux=True)(params, batch_stats, images, labels)
        params, opt_state = _apply_updates(update_leaf, grads, opt_state, params, learning_rate)
        return params, new_stats, opt_state, cross_entropy

    options = _CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    compiled = jax.jit(step).lower(*example_args).compile(compiler_options=options)
    _STEP_CACHE[key] = compiled
    while len(_STEP_CACHE) > _STEP_CACHE_SIZE:
        _STEP_CACHE.popitem(last=False)
    return compiled


@functools.lru_cache(maxsize=16)
def _jitted_parts(config: _StepConfig):
    """The loss head and the per-leaf update, jitted (compiled once per shape)."""
    return jax.jit(functools.partial(_cross_entropy, config)), jax.jit(functools.partial(_update_leaf, config))


def _eager_step(network: Network, config: _StepConfig):
    """The step with the gradient taken outside jit: compiles what the network compiles."""
    cross_entropy, update_leaf = _jitted_parts(config)
    grad = jax.value_and_grad(_loss_fn(network, config, cross_entropy), has_aux=True)

    def step(params, batch_stats, opt_state, images, labels, learning_rate):
        (loss, new_stats), grads = grad(params, batch_stats, images, labels)
        params, opt_state = _apply_updates(update_leaf, grads, opt_state, params, learning_rate)
        return params, new_stats, opt_state, loss

    return step


def _schedule(peak: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    cosine = optax.cosine_decay_schedule(peak, max(total_steps - warmup_steps, 1))
    if warmup_steps == 0:
        return cosine
    warmup = optax.linear_schedule(0.0, peak, warmup_steps)
    return optax.join_schedules([warmup, cosine], [warmup_steps])


def _check_data(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"x must be (N, H, W, 3) images, got shape {x.shape}")
    if y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"y must be (N,) labels for the N={x.shape[0]} images (N > 0), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"y must hold non-negative integer labels, got dtype {y.dtype}")
    return x, y.astype(np.int32)


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
