"""CIFAR-10 in its official order, from the official python batches or from JPEG images.

Every image is identified by its *official index* within its split: training image
``i`` is row ``i % 10000`` of ``data_batch_{i // 10000 + 1}``, test image ``i`` is row
``i`` of ``test_batch``. Two sources are read, both under ``<data>/cifar10/``:

``"batches"``
    ``cifar-10-batches-py/`` (the official "python version"): exact pixels. A batch may
    hold fewer than its 10,000 rows (the leading ones); the shared copy holds 1102, 1017,
    1017, 1017, 1017 training rows (5170 images) and 1017 test rows.
``"images"``
    ``cifar-10-images.zip`` (or the unpacked folder ``cifar-10-images/``) with
    ``official_order_labels.json``: all 60,000 images, JPEG-compressed (mean absolute
    error about 6/255), stored as ``<split>/<class>/NNNN.jpg`` where ``NNNN`` counts the
    images of that class through the batches in order; the label sequence of each batch
    restores the official order. Decoding needs Pillow; a request for more than a tenth
    of a split decodes the whole split once (about 20 s) into a ``.npy`` file in
    :func:`nngp_lib.config.cache_dir` (150 MB for the training split), read from then on.

When neither is present the official archive is downloaded into the cache
(:func:`nngp_lib.data.download.ensure_cifar10`), which gives complete batches.

Images are ``uint8`` arrays of shape ``(N, 32, 32, 3)`` (NHWC, RGB).
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Protocol, Sequence

import numpy as np

from nngp_lib import config
from nngp_lib.data import download

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (32, 32, 3)
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
BATCH_SIZE = 10_000
BATCH_FILES = {"train": tuple(f"data_batch_{b}" for b in range(1, 6)), "test": ("test_batch",)}

# The paper's standardization (its supplementary material, section C.1).
CHANNEL_MEAN = (125.3, 123.0, 113.9)
CHANNEL_STD = (63.0, 62.1, 66.7)

BATCHES_DIR = download.CIFAR10_BATCHES_DIR
IMAGES_ZIP = "cifar-10-images.zip"
IMAGES_DIR = "cifar-10-images"
ORDER_FILE = "official_order_labels.json"

# A request for more than this fraction of a split decodes the whole split once and
# keeps it as a .npy file in the cache (50,000 JPEGs take about 20 s to decode).
_FULL_DECODE_FRACTION = 0.1

_SPLIT_WORDS = {"train": "training", "test": "test"}

Split = Literal["train", "test"]
Source = Literal["auto", "batches", "images"]


class CIFAR10(NamedTuple):
    """Images with their labels and official indices, row-aligned."""

    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64 in 0..9
    indices: np.ndarray  # (N,) int64 official indices within the split


@dataclass(frozen=True, eq=False)
class NNGPData:
    """Disjoint, class-balanced NNGP training and validation sets (standardized images).

    Both come from the official *training* split; ``*_indices`` are official indices
    into it, sorted, so a result can name exactly which images it used.
    """

    x_train: np.ndarray  # (n_train, 32, 32, 3) float32
    y_train: np.ndarray  # (n_train,) int64
    x_val: np.ndarray  # (n_val, 32, 32, 3) float32
    y_val: np.ndarray  # (n_val,) int64
    train_indices: np.ndarray  # (n_train,) int64
    val_indices: np.ndarray  # (n_val,) int64
    source: str  # "batches" (exact pixels) or "images" (JPEG)
    seed: int


# -- public API ---------------------------------------------------------------------------
def load_cifar10(
    split: Split = "train",
    *,
    source: Source = "auto",
    n: int | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    data_dir: str | os.PathLike | None = None,
) -> CIFAR10:
    """Load CIFAR-10 images in official order.

    Args:
      split: ``"train"`` (50,000 official images) or ``"test"`` (10,000).
      source: ``"batches"`` (exact pixels, possibly partial), ``"images"`` (JPEG, all),
        or ``"auto"``: the batches when they hold every requested image, else the images.
      n: the first ``n`` images the source holds, in official order. For partial batches
        these are not the official indices ``0..n-1``: check ``indices``.
      indices: official indices to load, in the given order (repeats allowed). At most
        one of ``n`` and ``indices``; with neither, the whole split (``"batches"``: all
        the rows they hold).
      data_dir: the data folder (default :func:`nngp_lib.config.data_dir`).

    Returns:
      ``CIFAR10(images, labels, indices)``: (N, 32, 32, 3) uint8, (N,) int64, (N,) int64.

    Raises:
      ValueError: a bad argument, or more images than the source holds (one line naming
        the source that holds more).
      DataNotFoundError: no CIFAR-10 files and no network.
    """
    _check_split(split)
    if n is not None and indices is not None:
        raise ValueError("pass at most one of n and indices")
    size = SPLIT_SIZES[split]
    if n is not None:
        if not 0 <= int(n) <= size:
            raise ValueError(f"n must be in 0..{size} for the {split} split, got {n}")
        n = int(n)
    if indices is not None:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= size):
            raise ValueError(f"official {split} indices must be in 0..{size - 1}")

    def shortfall(candidate: _Source) -> str | None:
        held, _ = candidate.pool(split)
        if n is not None:
            return None if n <= held.size else f"n={n} asked"
        if indices is not None:
            missing = indices[~np.isin(indices, held)]
            if missing.size == 0:
                return None
            return f"{missing.size} requested indices are not among them (first: {missing[0]})"
        if held.size == size or (source != "auto"):
            return None
        return f"the whole split ({size}) asked"

    chosen = _resolve_source(source, data_dir, split, shortfall)
    held, held_labels = chosen.pool(split)
    if indices is None:
        positions = np.arange(held.size if n is None else n)
    else:
        positions = np.searchsorted(held, indices)
    wanted = held[positions]
    return CIFAR10(chosen.pixels(split, wanted), held_labels[positions], wanted)


def standardize(images: np.ndarray) -> np.ndarray:
    """The paper's per-channel standardization: ``(images - mean) / std``, as float32.

    Args:
      images: (..., 3) channels-last RGB values in 0..255 (any numeric dtype).

    Returns the same shape, float32, with channel means (125.3, 123.0, 113.9) and
    standard deviations (63.0, 62.1, 66.7) removed.
    """
    images = np.asarray(images)
    if images.ndim == 0 or images.shape[-1] != 3:
        raise ValueError(f"standardize expects channels last (..., 3), got shape {images.shape}")
    mean = np.asarray(CHANNEL_MEAN, dtype=np.float32)
    std = np.asarray(CHANNEL_STD, dtype=np.float32)
    return (images.astype(np.float32) - mean) / std


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Images averaged over non-overlapping ``factor x factor`` blocks of pixels.

    A cheaper input for the Monte-Carlo networks: an NB101 network's FLOPs fall with the
    number of pixels (at ``factor`` 2 its feature maps shrink from 32, 16, 8 to 16, 8, 4).

    Args:
      images: ``(N, H, W, C)`` images.
      factor: block side; it must divide ``H`` and ``W``. 1 returns ``images`` unchanged.

    Returns ``(N, H / factor, W / factor, C)`` images of the same dtype.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"downsample expects (N, H, W, C) images, got shape {images.shape}")
    _, height, width, channels = images.shape
    if not (isinstance(factor, (int, np.integer)) and factor >= 1 and height % factor == 0 and width % factor == 0):
        raise ValueError(f"downsample factor must be a positive divisor of {height}x{width} (e.g. 2), got {factor!r}")
    if factor == 1:
        return images
    blocks = images.reshape(len(images), height // factor, factor, width // factor, factor, channels)
    return blocks.mean(axis=(2, 4), dtype=np.float64).astype(images.dtype, copy=False)


def balanced_subsets(
    labels: np.ndarray,
    sizes: Sequence[int],
    *,
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
) -> tuple[np.ndarray, ...]:
    """Disjoint, class-balanced random subsets of positions into ``labels``.

    A subset of size ``n`` takes ``n // num_classes`` examples of every class; the
    ``n % num_classes`` remaining ones go one each to classes drawn at random (so class
    counts differ by at most one). Each class's examples are shuffled once and dealt out
    to the subsets in order, so the subsets never overlap.

    Args:
      labels: (M,) integer labels in ``0..num_classes-1``.
      sizes: the size of each subset.
      seed: seed of the selection; the result is a deterministic function of
        (labels, sizes, seed, num_classes).

    Returns one sorted int64 array of positions per subset.

    Raises ValueError (one line) when a class has too few examples.
    """
    labels = np.asarray(labels)
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise ValueError(f"subset sizes must be non-negative, got {sizes}")
    quota_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
    quota_rng = np.random.default_rng(quota_seed)
    quotas = np.zeros((len(sizes), num_classes), dtype=np.int64)
    for row, size in enumerate(sizes):
        quotas[row] = size // num_classes
        quotas[row, quota_rng.choice(num_classes, size % num_classes, replace=False)] += 1
    available = np.bincount(labels, minlength=num_classes)
    needed = quotas.sum(axis=0)
    short = np.flatnonzero(needed > available)
    if short.size:
        c = short[0]
        raise ValueError(
            f"class {c} has {available[c]} examples, {needed[c]} needed for disjoint "
            f"class-balanced subsets of sizes {sizes}"
        )
    shuffle_rng = np.random.default_rng(shuffle_seed)
    bounds = np.concatenate([np.zeros((1, num_classes), np.int64), np.cumsum(quotas, axis=0)])
    subsets: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in range(num_classes):
        members = shuffle_rng.permutation(np.flatnonzero(labels == c))
        for row in range(len(sizes)):
            subsets[row].append(members[bounds[row, c] : bounds[row + 1, c]])
    return tuple(np.sort(np.concatenate(parts)).astype(np.int64) for parts in subsets)


def nngp_split(
    n_train: int,
    n_val: int,
    *,
    seed: int = 0,
    source: Source = "auto",
    data_dir: str | os.PathLike | None = None,
) -> NNGPData:
    """Seeded, class-balanced, disjoint NNGP training and validation sets.

    Both are drawn from the official training split (as in the paper) with
    :func:`balanced_subsets`, among the images the source holds, and standardized with
    :func:`standardize`. ``"auto"`` uses the exact pixels of the batches when they hold
    enough images of every class, else the JPEG images. The selection depends on that
    pool: the same seed picks different images from the shared partial batches (5170
    images) than from the complete official ones (50,000); ``train_indices`` and
    ``val_indices`` record which were used.

    Raises ValueError when the source holds too few images of a class.
    """
    if n_train < 1 or n_val < 0:
        raise ValueError(f"need n_train >= 1 and n_val >= 0, got n_train={n_train}, n_val={n_val}")
    sizes = (int(n_train), int(n_val))
    selections: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def shortfall(candidate: _Source) -> str | None:
        held, labels = candidate.pool("train")
        try:
            selections[candidate.name] = balanced_subsets(labels, sizes, seed=seed)
        except ValueError as error:
            return f"too few for n_train={n_train}, n_val={n_val}: {error}"
        return None

    chosen = _resolve_source(source, data_dir, "train", shortfall)
    held, labels = chosen.pool("train")
    train_pos, val_pos = selections[chosen.name]
    pixels = chosen.pixels("train", held[np.concatenate([train_pos, val_pos])])
    x = standardize(pixels)
    return NNGPData(
        x_train=x[: train_pos.size],
        y_train=labels[train_pos],
        x_val=x[train_pos.size :],
        y_val=labels[val_pos],
        train_indices=held[train_pos],
        val_indices=held[val_pos],
        source=chosen.name,
        seed=seed,
    )


# -- sources ------------------------------------------------------------------------------
class _Source(Protocol):
    name: str
    description: str

    def pool(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(official indices held, ascending; their labels), both (M,) int64."""

    def pixels(self, split: str, indices: np.ndarray) -> np.ndarray:
        """(N, 32, 32, 3) uint8 images of held official indices."""


class _Batches:
    name = "batches"
    description = "the python batches"

    def __init__(self, folder: Path):
        self.folder = folder

    def _read(self, split: str) -> CIFAR10:
        files = [self.folder / name for name in BATCH_FILES[split]]
        for path in files:
            if not path.is_file():
                raise config.DataNotFoundError(config.missing_data_message("CIFAR-10 batch", path))
        signature = tuple(path.stat().st_mtime_ns for path in files)
        return _read_batches(str(self.folder.resolve()), split, signature)

    def pool(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        batches = self._read(split)
        return batches.indices, batches.labels

    def pixels(self, split: str, indices: np.ndarray) -> np.ndarray:
        batches = self._read(split)
        return batches.images[np.searchsorted(batches.indices, indices)]


@functools.lru_cache(maxsize=2)
def _read_batches(folder: str, split: str, signature: tuple[int, ...]) -> CIFAR10:
    """All rows of a split's batch files (read-only arrays; cached per file versions)."""
    del signature  # cache key only
    images, labels, indices = [], [], []
    for batch, name in enumerate(BATCH_FILES[split]):
        path = Path(folder) / name
        with open(path, "rb") as f:
            # The official format is a pickle; only read files you trust.
            content = pickle.load(f, encoding="bytes")
        try:
            data = np.asarray(content[b"data"], dtype=np.uint8)
            batch_labels = np.asarray(content[b"labels"], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path} is not a CIFAR-10 python batch (needs b'data' and b'labels')") from None
        rows = data.shape[0]
        if data.shape != (rows, 3072) or batch_labels.shape != (rows,) or rows > BATCH_SIZE:
            raise ValueError(
                f"{path}: expected data (N, 3072) and N labels with N <= {BATCH_SIZE}, got data "
                f"{data.shape} and {batch_labels.shape[0]} labels"
            )
        images.append(data.reshape(rows, 3, 32, 32).transpose(0, 2, 3, 1))  # CHW rows -> HWC
        labels.append(batch_labels)
        indices.append(batch * BATCH_SIZE + np.arange(rows, dtype=np.int64))
    result = CIFAR10(np.concatenate(images), np.concatenate(labels), np.concatenate(indices))
    for array in result:
        array.setflags(write=False)
    return result


class _Images:
    name = "images"
    description = "the JPEG images"

    def __init__(self, container: Path, order_file: Path):
        self.container = container  # the zip file or the unpacked folder
        self.order_file = order_file

    def pool(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        labels, _ = _official_order(str(self.order_file))[split]
        return np.arange(labels.size, dtype=np.int64), labels

    def member_names(self, split: str, indices: np.ndarray) -> list[str]:
        """``<split>/<class>/NNNN.jpg`` of each official index."""
        labels, ranks = _official_order(str(self.order_file))[split]
        return [f"{split}/{CLASS_NAMES[labels[i]]}/{ranks[i]:04d}.jpg" for i in indices]

    def pixels(self, split: str, indices: np.ndarray) -> np.ndarray:
        large = indices.size > _FULL_DECODE_FRACTION * SPLIT_SIZES[split]
        cached = self._decoded_split(split, build=large)
        if cached is not None:
            return np.asarray(cached[indices])
        return _decode_jpegs(self._read_members(self.member_names(split, indices)))

    def _read_members(self, names: list[str]) -> list[bytes]:
        if self.container.is_dir():
            return [(self.container / name).read_bytes() for name in names]
        stat = self.container.stat()
        archive = _open_zip(str(self.container.resolve()), stat.st_mtime_ns, stat.st_size)
        try:
            return [archive.read(name) for name in names]
        except KeyError as error:
            raise ValueError(
                f"{self.container} lacks {error.args[0]}; is it the CIFAR-10 JPEG set?"
            ) from None

    def _decoded_split(self, split: str, *, build: bool) -> np.ndarray | None:
        """The whole split decoded, memory-mapped from the cache (zip files only)."""
        if self.container.is_dir():
            return None
        import PIL

        stat = self.container.stat()
        cache = (
            config.cache_dir() / "cifar10" / "decoded"
            / f"{split}-{stat.st_size}-{stat.st_mtime_ns}-pillow{PIL.__version__}.npy"
        )  # fmt: skip
        if not cache.is_file():
            if not build:
                return None
            indices = np.arange(SPLIT_SIZES[split])
            images = _decode_jpegs(self._read_members(self.member_names(split, indices)))
            with download.atomic_path(cache) as tmp, open(tmp, "wb") as f:
                np.save(f, images)
        return np.load(cache, mmap_mode="r")


@functools.lru_cache(maxsize=2)
def _open_zip(path: str, mtime_ns: int, size: int) -> zipfile.ZipFile:
    """An open zip (reading the directory of 60,000 members takes about a second)."""
    del mtime_ns, size  # cache key only
    return zipfile.ZipFile(path)


@functools.lru_cache(maxsize=2)
def _official_order(order_file: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split: (labels in official order, rank of each image within its class)."""
    with open(order_file) as f:
        batches = json.load(f)
    order = {}
    for split, names in BATCH_FILES.items():
        try:
            labels = np.concatenate([np.asarray(batches[name], dtype=np.int64) for name in names])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{order_file} lacks the label list of a batch of {list(names)}") from None
        if labels.shape != (SPLIT_SIZES[split],) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise ValueError(
                f"{order_file}: the {split} labels must be {SPLIT_SIZES[split]} values in 0..9"
            )
        # rank[i] = number of earlier images of the same class: its NNNN in the file name.
        by_class = np.argsort(labels, kind="stable")
        first_of_class = np.searchsorted(labels[by_class], labels[by_class], side="left")
        ranks = np.empty_like(labels)
        ranks[by_class] = np.arange(labels.size) - first_of_class
        labels.setflags(write=False)
        ranks.setflags(write=False)
        order[split] = (labels, ranks)
    return order


def _decode_jpegs(blobs: list[bytes]) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "reading CIFAR-10 JPEGs (source='images') needs Pillow: pip install pillow"
        ) from None
    images = np.empty((len(blobs), *IMAGE_SHAPE), dtype=np.uint8)
    for i, blob in enumerate(blobs):
        with Image.open(io.BytesIO(blob)) as image:
            if image.size != IMAGE_SHAPE[:2]:
                raise ValueError(f"a CIFAR-10 JPEG is {image.size[0]}x{image.size[1]}, not 32x32")
            images[i] = np.asarray(image.convert("RGB"))
    return images


# -- finding the files --------------------------------------------------------------------
def _find_sources(root: Path) -> dict[str, _Source]:
    found: dict[str, _Source] = {}
    if (root / BATCHES_DIR).is_dir():
        found["batches"] = _Batches(root / BATCHES_DIR)
    order_file = root / ORDER_FILE
    for container in (root / IMAGES_DIR, root / IMAGES_ZIP):
        if container.exists() and order_file.is_file():
            found["images"] = _Images(container, order_file)
            break
    return found


def _resolve_source(
    source: str,
    data_dir: str | os.PathLike | None,
    split: str,
    shortfall: Callable[[_Source], str | None],
) -> _Source:
    """The source to read, checked with ``shortfall(source) -> None | reason it falls short``."""
    if source not in ("auto", "batches", "images"):
        raise ValueError(f"source must be 'auto', 'batches' or 'images', got {source!r}")
    root = config.data_dir(data_dir) / "cifar10"
    found = _find_sources(root)
    if source == "images" and "images" not in found:
        raise config.DataNotFoundError(
            config.missing_data_message(
                f"the CIFAR-10 JPEG set ({IMAGES_ZIP} or {IMAGES_DIR}/, with {ORDER_FILE})", root
            )
            + "; or use source='batches'"
        )
    if not found or (source == "batches" and "batches" not in found):
        try:
            found["batches"] = _Batches(download.ensure_cifar10() / BATCHES_DIR)
        except config.DataNotFoundError as error:
            raise config.DataNotFoundError(
                f"CIFAR-10 not found under {root} (expected {BATCHES_DIR}/ with "
                f"{', '.join(BATCH_FILES['train'] + BATCH_FILES['test'])}, or {IMAGES_ZIP} with "
                f"{ORDER_FILE}); {error}"
            ) from error
    names = [source] if source != "auto" else [k for k in ("batches", "images") if k in found]
    reasons = []
    for name in names:
        reason = shortfall(found[name])
        if reason is None:
            return found[name]
        held, _ = found[name].pool(split)
        reasons.append(f"{found[name].description} hold {held.size} {_SPLIT_WORDS[split]} images, {reason}")
    size = SPLIT_SIZES[split]
    if "images" in names:
        hint = "ask for fewer images"
    elif "images" in found:
        hint = f"use source='images' (all {size}, JPEG-compressed) or ask for fewer images"
    else:
        hint = (
            f"add cifar10/{IMAGES_ZIP} and {ORDER_FILE} (all {size}, JPEG-compressed) and use "
            "source='images', or ask for fewer images"
        )
    raise ValueError("; ".join(reasons) + f": {hint}")


def _check_split(split: str) -> None:
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
