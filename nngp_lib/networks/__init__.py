"""JAX networks of the search spaces, as pairs of pure functions in the style of
neural-tangents' ``stax``: ``init(key) -> variables`` and
``features(variables, images) -> (penultimate features, batch statistics)``.

``variables`` is ``{'params': pytree, 'batch_stats': pytree}``; gradients are taken with
respect to ``variables['params']``. Images are float32 NHWC arrays.
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
    """

    init: Callable[[jax.Array], Variables]
    features: Callable[..., tuple[jax.Array, Any]]
    apply: Callable[..., tuple[jax.Array, Any]]
    feature_dim: int
    flops: Callable[[int, int], int]


__all__ = ["Network", "Variables"]
