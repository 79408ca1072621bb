"""NNGP data for the MnasNet study: label-subsampled image sets, as the paper draws them
from ImageNet (its section 3.2), from CIFAR-10 or from an ImageNet-style folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np

# -- NNGP scoring with label-subsampled data ------------------------------------------------

# The paper's MNAS settings on ImageNet (its section 3.2): (number of labels, n_train,
# n_val), all with ensemble 4. The validation images come from a split of the training set.
PAPER_IMAGENET_SETTINGS = ((1000, 8000, 50000), (100, 1000, 5000), (100, 8000, 5000))
PAPER_ENSEMBLE = 4

# The paper's ImageNet preprocessing (its section C.2): channel means and standard
# deviations of RGB values in 0..255, shortest side to 256, center crop 224.
IMAGENET_MEAN = (123.7, 116.3, 103.5)
IMAGENET_STD = (58.4, 57.1, 57.4)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")


@dataclass(frozen=True, eq=False)
class LabelSubset:
    """Disjoint, class-balanced NNGP training and validation images of ``num_labels`` classes.

    Attributes:
      x_train, x_val: (n, H, W, 3) and (m, H, W, 3) float32 standardized images.
      y_train, y_val: (n,) and (m,) int64 labels in ``0..num_labels-1``; label ``i`` is
        the dataset's class ``classes[i]``.
      classes: the chosen classes, ascending (CIFAR-10 label numbers or folder names).
      train_ids, val_ids: which images: official CIFAR-10 training indices, or file paths.
      dataset: ``'cifar10'`` or ``'imagenet'``, which is also the network variant to score with.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: tuple
    train_ids: np.ndarray
    val_ids: np.ndarray
    dataset: str

    @property
    def num_labels(self) -> int:
        return len(self.classes)


def cifar10_label_subset(
    num_labels: int = 10,
    n_train: int = 1000,
    n_val: int = 1000,
    *,
    seed: int = 0,
    source: Literal["auto", "batches", "images"] = "auto",
    data_dir: str | os.PathLike | None = None,
) -> LabelSubset:
    """NNGP images of ``num_labels`` CIFAR-10 classes drawn at random, as the paper does
    with ImageNet's classes.

    The classes are a seeded uniform choice; the images are drawn from the official
    training split with :func:`nngp_lib.data.cifar10.balanced_subsets` and standardized
    with the paper's CIFAR-10 statistics. With all 10 labels this is exactly
    :func:`~nngp_lib.data.cifar10.nngp_split` with the same seed and source.

    Args:
      num_labels: classes to keep, 1..10.
      n_train, n_val: image counts, spread evenly over the chosen classes.
      seed: seed of the class choice and of the image choice.
      source: ``'batches'`` (exact pixels), ``'images'`` (JPEG, all 50,000), or
        ``'auto'``: the batches when they hold enough images of every chosen class.
      data_dir: the data folder (default :func:`nngp_lib.config.data_dir`).

    Raises:
      ValueError: bad counts, or too few images of a class in the source (one line).
    """
    from nngp_lib.config import DataNotFoundError
    from nngp_lib.data import cifar10

    _check_counts(num_labels, n_train, n_val, cifar10.NUM_CLASSES)
    classes = _choose_classes(cifar10.NUM_CLASSES, num_labels, seed)
    candidates = ("batches", "images") if source == "auto" else (source,)
    for attempt, candidate in enumerate(candidates):
        try:
            pool = cifar10.load_cifar10("train", source=candidate, data_dir=data_dir)
            kept = np.flatnonzero(np.isin(pool.labels, classes))
            labels = np.searchsorted(classes, pool.labels[kept])
            train_pos, val_pos = cifar10.balanced_subsets(labels, (n_train, n_val), seed=seed, num_classes=num_labels)
            break
        except (ValueError, DataNotFoundError):
            if attempt == len(candidates) - 1:
                raise
    train, val = kept[train_pos], kept[val_pos]
    return LabelSubset(
        x_train=cifar10.standardize(pool.images[train]),
        y_train=labels[train_pos].astype(np.int64),
        x_val=cifar10.standardize(pool.images[val]),
        y_val=labels[val_pos].astype(np.int64),
        classes=tuple(int(c) for c in classes),
        train_ids=pool.indices[train],
        val_ids=pool.indices[val],
        dataset="cifar10",
    )


def image_folder_label_subset(
    root: str | os.PathLike,
    num_labels: int,
    n_train: int,
    n_val: int,
    *,
    seed: int = 0,
) -> LabelSubset:
    """NNGP images of ``num_labels`` random classes of an ImageNet-style folder, as the paper.

    Classes are a seeded uniform choice among the sub-folders of ``root`` (e.g.
    ImageNet's ``train/``); both image sets come from those folders, disjoint and
    class-balanced (the paper's validation images are a held-out part of the training
    set too), with :func:`load_image_folder`'s preprocessing. See
    :data:`PAPER_IMAGENET_SETTINGS` for the paper's sizes.
    """
    from nngp_lib.data.cifar10 import balanced_subsets

    folders = _class_folders(Path(root))
    _check_counts(num_labels, n_train, n_val, len(folders))
    classes = [folders[i] for i in _choose_classes(len(folders), num_labels, seed)]
    per_class = -(-n_train // num_labels) + -(-n_val // num_labels)
    loaded = load_image_folder(root, classes, per_class, seed=seed)
    train_pos, val_pos = balanced_subsets(loaded.labels, (n_train, n_val), seed=seed, num_classes=num_labels)
    paths = np.asarray(loaded.paths, dtype=object)
    return LabelSubset(
        x_train=loaded.images[train_pos],
        y_train=loaded.labels[train_pos],
        x_val=loaded.images[val_pos],
        y_val=loaded.labels[val_pos],
        classes=tuple(classes),
        train_ids=paths[train_pos],
        val_ids=paths[val_pos],
        dataset="imagenet",
    )


def _check_counts(num_labels: int, n_train: int, n_val: int, available: int) -> None:
    if not _is_count(num_labels) or not 1 <= num_labels <= available:
        raise ValueError(f"num_labels must be an integer in 1..{available}, got {num_labels!r}")
    if n_train < num_labels or n_val < num_labels:
        raise ValueError(
            f"need at least one image per label: n_train={n_train} and n_val={n_val} must be >= num_labels={num_labels}"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _choose_classes(total: int, num_labels: int, seed: int) -> np.ndarray:
    """A seeded uniform choice of ``num_labels`` of ``total`` classes, ascending."""
    # Its own stream, so the class choice does not shift the image choice of the same seed.
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    return np.sort(rng.choice(total, num_labels, replace=False))


# -- ImageNet-style image folders -----------------------------------------------------------


class ImageFolder(NamedTuple):
    """Preprocessed images of an image folder, row-aligned."""

    images: np.ndarray  # (N, crop, crop, 3) float32 standardized (uint8 with standardize=False)
    labels: np.ndarray  # (N,) int64: position of the image's class in ``classes``
    paths: tuple[str, ...]
    classes: tuple[str, ...]


def load_image_folder(
    root: str | os.PathLike,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    *,
    seed: int = 0,
    resize: int = 256,
    crop: int = 224,
    standardize: bool = True,
) -> ImageFolder:
    """Images of ``root/<class>/<image>`` (ImageNet's ``train/`` layout) with the paper's
    preprocessing: shortest side scaled to ``resize`` (Pillow's bilinear filter, which
    antialiases when shrinking; the other side ``int(resize * long / short)``, as
    torchvision's ``Resize``), center crop ``crop x crop`` (offsets rounded as
    torchvision's ``CenterCrop``), RGB standardized with :data:`IMAGENET_MEAN` and
    :data:`IMAGENET_STD`. No augmentation.

    Args:
      root: the folder of class folders.
      classes: class folder names, in label order; all sub-folders (sorted) by default.
      per_class: images per class, a seeded random choice among the class's files
        (sorted by name first); all of them by default.
      seed: seed of that choice.
      resize, crop: the preprocessing sizes (``crop <= resize``).
      standardize: False keeps uint8 pixels (4 times less memory).

    Returns:
      An :class:`ImageFolder`, ordered by class then file name. 8,000 images of
      224x224 take 4.8 GB as float32.

    Raises:
      FileNotFoundError: ``root`` is not a folder (one line naming the layout).
      ValueError: an unknown class, a class with too few images, an unreadable image.
    """
    root = Path(root)
    if not (isinstance(crop, int) and isinstance(resize, int) and 1 <= crop <= resize):
        raise ValueError(f"need integers 1 <= crop <= resize, got crop={crop!r}, resize={resize!r}")
    folders = _class_folders(root)
    classes = list(folders if classes is None else classes)
    unknown = [c for c in classes if c not in folders]
    if unknown:
        raise ValueError(f"class {unknown[0]!r} is not a folder of {root} (it has {len(folders)} class folders)")
    if per_class is not None and not (_is_count(per_class) and per_class >= 1):
        raise ValueError(f"per_class must be a positive integer or None, got {per_class!r}")
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if per_class is not None:
            if len(files) < per_class:
                raise ValueError(f"class {name!r} has {len(files)} images in {root}, per_class={per_class} asked")
            files = [files[i] for i in np.sort(rng.choice(len(files), per_class, replace=False))]
        paths += files
        labels += [label] * len(files)
    pixels = np.empty((len(paths), crop, crop, 3), np.uint8)
    for i, path in enumerate(paths):
        pixels[i] = _resize_and_crop(path, resize, crop)
    images = standardize_imagenet(pixels) if standardize else pixels
    return ImageFolder(images, np.asarray(labels, np.int64), tuple(str(p) for p in paths), tuple(classes))


def standardize_imagenet(images: np.ndarray) -> np.ndarray:
    """``(images - IMAGENET_MEAN) / IMAGENET_STD`` per channel, as float32; (..., 3) RGB in 0..255."""
    images = np.asarray(images)
    if images.ndim == 0 or images.shape[-1] != 3:
        raise ValueError(f"expected channels-last RGB images (..., 3), got shape {images.shape}")
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return (images.astype(np.float32) - mean) / std


def _class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} not found: expected {root}/<class>/<image>.JPEG (ImageNet's train/ layout)"
        )
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"{root} has no class folders: expected {root}/<class>/<image>.JPEG")
    return folders


def _resize_and_crop(path: Path, resize: int, crop: int) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError("reading image folders needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            if width <= height:
                size = (resize, int(resize * height / width))
            else:
                size = (int(resize * width / height), resize)
            image = image.resize(size, Image.BILINEAR)
            left = int(round((size[0] - crop) / 2.0))
            top = int(round((size[1] - crop) / 2.0))
            return np.asarray(image.crop((left, top, left + crop, top + crop)))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} is not a readable image ({error})") from None
