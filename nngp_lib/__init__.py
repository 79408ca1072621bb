"""nngp_lib: NNGP-guided neural architecture search (Park et al., 2020), reproduced.

The flow, one module each::

    data (nngp_lib.data) -> spec (nngp_lib.spaces.nb101.ModelSpec) -> network (nngp_lib.networks)
      -> Monte-Carlo NNGP kernels (nngp_lib.kernels) -> inference, the eps sweep (nngp_lib.inference)
      -> results table (nngp_lib.scoring, nngp_lib.results) -> metrics and cost (nngp_lib.metrics, nngp_lib.cost)

``nngp_lib.nngp_accuracy(spec)`` scores one cell; importing the package itself loads no JAX.
"""

__version__ = "0.1.0"
__all__ = ["nngp_accuracy"]


def __getattr__(name: str):
    if name == "nngp_accuracy":  # lazy: JAX is imported only when scoring
        from nngp_lib.scoring import nngp_accuracy

        return nngp_accuracy
    raise AttributeError(f"module 'nngp_lib' has no attribute {name!r}")
