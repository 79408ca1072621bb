"""Networks of the search spaces, as pure functions in the style of neural-tangents'
``stax``: ``init(key) -> variables`` and
``features(variables, images) -> (penultimate features, batch statistics)``.

``variables`` is ``{'params': pytree, 'batch_stats': pytree}``; gradients are taken with
respect to ``variables['params']`` (JAX backends). Images are float32 NHWC arrays.
This package holds what the backends share: the :class:`Network` type, the jitted JAX
primitives (:mod:`.layers`) and a plain conv net (:mod:`.convnet`) for validating the
Monte-Carlo estimator against neural-tangents; the networks of a search space live
with the space (:mod:`nngp_lib.spaces`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

Variables = dict[str, Any]


class Network(NamedTuple):
    """A network of a search space.

    Attributes:
      init: ``init(key) -> variables``, deterministic in ``key``.
      features: ``features(variables, images, *, train=False, bn_momentum=0.997)
        -> ((N, feature_dim) penultimate features, batch_stats)``. With ``train`` batch
        norm uses the batch statistics and the returned moving statistics are updated
        (one step of momentum ``bn_momentum``); otherwise it uses the moving statistics and
        returns them unchanged.
      apply: like ``features`` but returns ``(N, num_labels)`` logits.
      feature_dim: width of the penultimate layer.
      flops: ``flops(height, width)``: floating-point operations of the convolutions
        and the readout for one image (a multiply-add counts two).
      featurizer: optional ``featurizer(variables) -> (images -> (N, feature_dim)
        features)`` in inference mode, for streaming many batches through one network:
        a backend does its per-network preparation (e.g. folding batch norm into the
        convolutions) once. None: use ``features``.
    """

    init: Callable[[jax.Array], Variables]
    features: Callable[..., tuple[jax.Array, Any]]
    apply: Callable[..., tuple[jax.Array, Any]]
    feature_dim: int
    flops: Callable[[int, int], int]
    featurizer: Callable[[Variables], Callable[[Any], Any]] | None = None


__all__ = ["Network", "Variables"]
