"""The MnasNet search space (Tan et al., 2019) as the paper samples it (its sections 3.2, C.2).

=====================  ==========================================================
module                 holds
=====================  ==========================================================
:mod:`.spec`           :class:`MnasSpec` and the space; the layer plan (params, FLOPs)
:mod:`.jax_network`    the plan run in JAX
:mod:`.data`           label-subsampled NNGP image sets (CIFAR-10, ImageNet folders)
:mod:`.study`          the paper's MNAS study: NNGP against short training and reward
=====================  ==========================================================

:func:`nngp_accuracy` scores a spec (Algorithm 1); importing this package loads no JAX.
"""

from __future__ import annotations

from nngp_lib.inference import InferenceResult, nngp_inference
from nngp_lib.spaces.mnas.data import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_ENSEMBLE,
    PAPER_IMAGENET_SETTINGS,
    ImageFolder,
    LabelSubset,
    cifar10_label_subset,
    image_folder_label_subset,
    load_image_folder,
    standardize_imagenet,
)
from nngp_lib.spaces.mnas.spec import (
    CONV,
    CONV_OPS,
    DCONV,
    EXPANSION,
    FILTER_MULTIPLIERS,
    HEAD_CHANNELS,
    IDENTITY,
    KERNEL_SIZES,
    LAYER_DELTAS,
    MBCONV3,
    MBCONV6,
    MOBILENET_V2_BLOCKS,
    NO_SKIP,
    NUM_BLOCKS,
    SE_RATIOS,
    SKIP_OPS,
    STEM_CHANNELS,
    VARIANTS,
    BaselineBlock,
    BlockSpec,
    Conv,
    Layer,
    MnasSpec,
    SqueezeExcite,
    Variant,
    VariantName,
    flops,
    layer_plan,
    mobilenet_v2,
    num_params,
    plan_flops,
    resolve_num_classes,
    sample_mnas,
    space_size,
)


def nngp_accuracy(
    spec: MnasSpec,
    data: LabelSubset,
    *,
    ensemble: int = PAPER_ENSEMBLE,
    seed: int = 0,
    width_multiplier: float = 1.0,
    bn_momentum: float = 0.997,
    batch_size: int = 100,
) -> InferenceResult:
    """NNGP validation accuracy of ``spec`` on ``data`` (the paper's Algorithm 1).

    Builds the network of ``data.dataset``'s variant (CIFAR-10 or ImageNet strides),
    computes the Monte-Carlo NNGP kernels of ``ensemble`` random initializations
    (:func:`nngp_lib.kernels.monte_carlo_nngp`; batch norm set by one training-mode pass
    of momentum ``bn_momentum``) and runs the eps sweep
    (:func:`nngp_lib.inference.nngp_inference`).

    Returns:
      The :class:`~nngp_lib.inference.InferenceResult`: ``best_accuracy`` is the
      paper's number (best over eps), ``loo_val_accuracy`` the one with eps chosen
      without validation labels.
    """
    # JAX loads with these: the space itself needs only NumPy.
    from nngp_lib import kernels
    from nngp_lib.spaces.mnas import jax_network

    network = jax_network.network(
        spec, variant=data.dataset, num_classes=data.num_labels, width_multiplier=width_multiplier
    )
    k_tt, k_vt = kernels.monte_carlo_nngp(
        network, data.x_train, data.x_val, ensemble=ensemble, seed=seed, bn_momentum=bn_momentum, batch_size=batch_size
    )
    return nngp_inference(k_tt, k_vt, data.y_train, data.y_val, num_classes=data.num_labels)
