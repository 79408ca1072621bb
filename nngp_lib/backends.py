"""Which backend runs the networks: JAX everywhere, PyTorch (oneDNN) where it is faster.

Scoring spends its time in forward passes of random networks. Both backends run the
same layer plan with the same weights (:mod:`nngp_lib.spaces.nb101.plan`); they differ
in speed. On x86 CPUs oneDNN's convolutions beat XLA's by 1.3-2x on NB101's shapes
(``make bench`` measures both on the machine at hand), so ``'auto'`` takes PyTorch
when it is installed and JAX computes on the CPU, and JAX otherwise (on a GPU, or
without PyTorch). Gradients (the SNIP / grad-norm proxies), the empirical NTK and the
neural-tangents checks always use JAX.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

BACKENDS = ("jax", "torch")
CHOICES = ("auto", *BACKENDS)


def torch_available() -> bool:
    """Whether PyTorch can be imported (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def resolve(backend: str = "auto") -> str:
    """The backend ``backend`` names: ``'jax'`` or ``'torch'``; ``'auto'`` as the module says.

    Raises:
      ValueError: an unknown name, or ``'torch'`` without PyTorch installed (one line
        naming the fix).
    """
    if backend not in CHOICES:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(CHOICES)}")
    if backend == "torch" and not torch_available():
        raise ValueError("backend 'torch' needs PyTorch: `pip install torch==2.13.0` (CPU build), or use backend 'jax'")
    if backend != "auto":
        return backend
    if not torch_available():
        return "jax"
    import jax

    return "torch" if jax.default_backend() == "cpu" else "jax"


def version(backend: str) -> str:
    """``'<backend> <version>'`` of a resolved backend, for provenance (e.g. 'torch 2.13.0+cpu')."""
    backend = resolve(backend)
    package = {"jax": "jaxlib", "torch": "torch"}[backend]
    description = f"{backend} {metadata.version(package)}"
    if backend == "torch":
        import torch

        description += f" ({torch.get_num_threads()} threads, oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'})"
    else:
        import jax

        description += f" ({jax.default_backend()})"
    return description
