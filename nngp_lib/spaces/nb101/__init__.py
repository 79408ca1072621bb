"""The NAS-Bench-101 space (Ying et al., 2019): a cell's spec, its network's layer plan,
the networks that run the plan, and the whole space of 423,624 cells.

=====================  ==========================================================
module                 holds
=====================  ==========================================================
:mod:`.spec`           :class:`ModelSpec`: validation, pruning, the official hash
:mod:`.plan`           the layer plan of a cell's CIFAR-10 network (params, FLOPs)
:mod:`.jax_network`    the plan run in JAX (any device; gradients; neural-tangents)
:mod:`.torch_network`  the plan run by PyTorch's oneDNN (the fast CPU path)
:mod:`.space`          the enumerated space, cached; sampling
=====================  ==========================================================

:func:`network` builds the network of a cell on a chosen backend.
"""

from __future__ import annotations

from nngp_lib.data.nb101_table import load_table
from nngp_lib.networks import Network
from nngp_lib.spaces.nb101.plan import (
    CONV,
    DENSE,
    GLOBAL_AVGPOOL,
    IMAGE_SIZE,
    MAXPOOL,
    NB101_CIFAR10,
    NUM_LABELS,
    NUM_MODULES_PER_STACK,
    NUM_STACKS,
    STEM_CHANNELS,
    Layer,
    NetworkConfig,
    NetworkPlan,
    Step,
    compute_vertex_channels,
    network_layers,
    network_plan,
)
from nngp_lib.spaces.nb101.space import (
    PAD_LABEL,
    SPACE_SIZE,
    SearchSpace,
    build_search_space,
    enumerate_space,
    permutation_sample,
    random_spec,
    sample_specs,
    search_space,
)
from nngp_lib.spaces.nb101.spec import (
    AVAILABLE_OPS,
    CONV1X1,
    CONV3X3,
    INPUT,
    MAX_EDGES,
    MAX_VERTICES,
    MAXPOOL3X3,
    OUTPUT,
    ModelSpec,
    hash_module,
    prune,
    specs_from_table,
)


def network(spec: ModelSpec, *, backend: str = "auto", **config) -> Network:
    """The CIFAR-10 network of ``spec`` on ``backend`` ('auto', 'jax' or 'torch', see
    :mod:`nngp_lib.backends`); ``config`` as :func:`.jax_network.network`
    (``stem_channels``, ``num_stacks``, ``modules_per_stack``, ``num_labels``)."""
    from nngp_lib import backends

    if backends.resolve(backend) == "torch":
        from nngp_lib.spaces.nb101 import torch_network as module
    else:
        from nngp_lib.spaces.nb101 import jax_network as module
    return module.network(spec, **config)


__all__ = [
    "AVAILABLE_OPS", "CONV", "CONV1X1", "CONV3X3", "DENSE", "GLOBAL_AVGPOOL", "IMAGE_SIZE", "INPUT", "MAX_EDGES",
    "MAX_VERTICES", "MAXPOOL", "MAXPOOL3X3", "NB101_CIFAR10", "NUM_LABELS", "NUM_MODULES_PER_STACK", "NUM_STACKS",
    "OUTPUT", "PAD_LABEL", "SPACE_SIZE", "STEM_CHANNELS", "Layer", "ModelSpec", "NetworkConfig", "NetworkPlan",
    "SearchSpace", "Step", "build_search_space", "compute_vertex_channels", "enumerate_space", "hash_module",
    "load_table", "network", "network_layers", "network_plan", "permutation_sample", "prune", "random_spec",
    "sample_specs",
    "search_space", "specs_from_table",
]
