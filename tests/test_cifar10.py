"""CIFAR-10: the official batches, the JPEG set in official order, standardization, NNGP
splits, and the download path (offline: the network is replaced in every test)."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from nngp_lib import config
from nngp_lib.data import cifar10, download
from nngp_lib.data.cifar10 import balanced_subsets, downsample, load_cifar10, nngp_split, standardize

# The shared copy's batches (documented in the data README): 1102 + 4 x 1017 training rows.
SHARED_TRAIN_ROWS = (1102, 1017, 1017, 1017, 1017)
SHARED_TEST_ROWS = 1017


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test reaches the network or writes to the user's cache."""

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def official_labels(data_dir):
    with open(data_dir / "cifar10" / cifar10.ORDER_FILE) as f:
        batches = json.load(f)
    return {
        "train": np.concatenate([batches[f"data_batch_{b}"] for b in range(1, 6)]),
        "test": np.asarray(batches["test_batch"]),
    }


@pytest.fixture(scope="module")
def train_batches(data_dir):
    return load_cifar10("train", source="batches", data_dir=data_dir)


# -- the official batches -----------------------------------------------------------------
def test_batches_hold_the_leading_rows_of_each_batch(train_batches, official_labels, data_dir):
    images, labels, indices = train_batches
    assert images.shape == (sum(SHARED_TRAIN_ROWS), 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and indices.dtype == np.int64
    expected = np.concatenate([b * 10_000 + np.arange(rows) for b, rows in enumerate(SHARED_TRAIN_ROWS)])
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(labels, official_labels["train"][indices])
    # Pixels: row r of data_batch_b, channel-major, is the image of index 10000 (b - 1) + r.
    with open(data_dir / "cifar10" / cifar10.BATCHES_DIR / "data_batch_3", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]
    for row in (0, 500, SHARED_TRAIN_ROWS[2] - 1):
        position = np.flatnonzero(indices == 20_000 + row)[0]
        np.testing.assert_array_equal(images[position, :, :, 0], raw[row, :1024].reshape(32, 32))
        np.testing.assert_array_equal(images[position, :, :, 2], raw[row, 2048:].reshape(32, 32))


def test_test_split(data_dir, official_labels):
    images, labels, indices = load_cifar10("test", source="batches", data_dir=data_dir)
    assert images.shape == (SHARED_TEST_ROWS, 32, 32, 3)
    np.testing.assert_array_equal(indices, np.arange(SHARED_TEST_ROWS))
    np.testing.assert_array_equal(labels, official_labels["test"][:SHARED_TEST_ROWS])


# -- the JPEG set in official order -------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "test"])
def test_jpegs_match_exact_pixels_in_official_order(data_dir, split):
    """The JPEG of each official index is the exact image up to compression error."""
    exact = load_cifar10(split, source="batches", data_dir=data_dir)
    sample = np.sort(np.random.default_rng(0).choice(exact.indices, size=150, replace=False))
    exact = load_cifar10(split, source="batches", indices=sample, data_dir=data_dir)
    jpeg = load_cifar10(split, source="images", indices=sample, data_dir=data_dir)
    np.testing.assert_array_equal(jpeg.labels, exact.labels)
    np.testing.assert_array_equal(jpeg.indices, sample)
    error = np.abs(jpeg.images.astype(np.int16) - exact.images).mean(axis=(1, 2, 3))
    assert error.mean() < 8.0  # the README: about 6/255
    # Order restored: each JPEG is much closer to its own image than to its neighbour's.
    neighbour = np.abs(jpeg.images[1:].astype(np.int16) - exact.images[:-1]).mean(axis=(1, 2, 3))
    assert error.max() < 20.0 and (error[1:] < neighbour / 2).all()


def test_jpeg_set_covers_the_whole_split(data_dir, official_labels):
    wanted = [49_999, 25_000, 0, 25_000]
    images, labels, indices = load_cifar10("train", source="images", indices=wanted, data_dir=data_dir)
    assert images.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(indices, wanted)
    np.testing.assert_array_equal(labels, official_labels["train"][wanted])
    np.testing.assert_array_equal(images[1], images[3])


def test_unpacked_folder_reads_like_the_zip(data_dir, tmp_path):
    root = tmp_path / "data" / "cifar10"
    root.mkdir(parents=True)
    (root / cifar10.ORDER_FILE).symlink_to(data_dir / "cifar10" / cifar10.ORDER_FILE)
    images = cifar10._find_sources(data_dir / "cifar10")["images"]
    wanted = np.array([3, 10_500, 42_000])
    for name in images.member_names("train", wanted):
        (root / cifar10.IMAGES_DIR / name).parent.mkdir(parents=True, exist_ok=True)
        (root / cifar10.IMAGES_DIR / name).write_bytes(images._read_members([name])[0])
    from_folder = load_cifar10("train", source="images", indices=wanted, data_dir=tmp_path / "data")
    from_zip = load_cifar10("train", source="images", indices=wanted, data_dir=data_dir)
    np.testing.assert_array_equal(from_folder.images, from_zip.images)


def test_auto_prefers_exact_pixels(data_dir, train_batches):
    first = load_cifar10("train", n=50, data_dir=data_dir)
    np.testing.assert_array_equal(first.images, train_batches.images[:50])
    # Index 5000 is not in the partial batches: auto reads the JPEGs.
    mixed = load_cifar10("train", indices=[0, 5000], data_dir=data_dir)
    jpeg = load_cifar10("train", source="images", indices=[0, 5000], data_dir=data_dir)
    np.testing.assert_array_equal(mixed.images, jpeg.images)


@pytest.mark.parametrize(
    "request_kwargs",
    [dict(n=sum(SHARED_TRAIN_ROWS) + 1), dict(indices=[0, 5000])],
)
def test_too_many_images_name_the_larger_source(data_dir, request_kwargs):
    expected = r"the python batches hold 5170 training images.*use source='images' \(all 50000"
    with pytest.raises(ValueError, match=expected) as error:
        load_cifar10("train", source="batches", data_dir=data_dir, **request_kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "bad_kwargs",
    [dict(split="valid"), dict(source="tfds"), dict(n=50_001), dict(indices=[-1]), dict(n=3, indices=[1])],
)
def test_bad_arguments(data_dir, bad_kwargs):
    with pytest.raises(ValueError):
        load_cifar10(data_dir=data_dir, **bad_kwargs)


# -- standardization and NNGP splits ------------------------------------------------------
def test_standardize_gives_zero_mean_unit_variance_channels(train_batches):
    images = train_batches.images[::5]  # 1034 images from all five batches
    x = standardize(images)
    assert x.dtype == np.float32 and x.shape == images.shape
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=0.05)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=0.05)
    restored = x * np.array(cifar10.CHANNEL_STD) + np.array(cifar10.CHANNEL_MEAN)
    np.testing.assert_allclose(restored, images, atol=1e-3)
    with pytest.raises(ValueError, match="channels last"):
        standardize(np.zeros((2, 3, 32, 32)))


def test_nngp_split_is_balanced_disjoint_and_seeded(data_dir, official_labels):
    data = nngp_split(200, 100, seed=0, data_dir=data_dir)
    assert data.source == "batches"
    assert data.x_train.shape == (200, 32, 32, 3) and data.x_train.dtype == np.float32
    assert data.x_val.shape == (100, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), np.full(10, 20))
    np.testing.assert_array_equal(np.bincount(data.y_val, minlength=10), np.full(10, 10))
    assert np.intersect1d(data.train_indices, data.val_indices).size == 0
    assert (np.diff(data.train_indices) > 0).all()
    np.testing.assert_array_equal(data.y_train, official_labels["train"][data.train_indices])
    exact = load_cifar10("train", source="batches", indices=data.val_indices, data_dir=data_dir)
    np.testing.assert_array_equal(data.x_val, standardize(exact.images))

    again = nngp_split(200, 100, seed=0, data_dir=data_dir)
    np.testing.assert_array_equal(again.train_indices, data.train_indices)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    other = nngp_split(200, 100, seed=1, data_dir=data_dir)
    assert not np.array_equal(other.train_indices, data.train_indices)


def test_nngp_split_beyond_the_batches(data_dir, tmp_path):
    with pytest.raises(ValueError, match="too few for n_train=3000, n_val=2000.*source='images'"):
        nngp_split(3000, 2000, source="batches", data_dir=data_dir)
    # Batches of 3 rows beside the real JPEG set: auto falls back to the JPEGs.
    root = tmp_path / "cifar10"
    _write_fake_batches(root / cifar10.BATCHES_DIR, rows=3)
    for name in (cifar10.IMAGES_ZIP, cifar10.ORDER_FILE):
        (root / name).symlink_to(data_dir / "cifar10" / name)
    data = nngp_split(20, 10, data_dir=tmp_path)
    assert data.source == "images"
    jpeg = load_cifar10("train", source="images", indices=data.train_indices, data_dir=data_dir)
    np.testing.assert_array_equal(data.x_train, standardize(jpeg.images))


def test_balanced_subsets_with_remainders():
    labels = np.repeat(np.arange(10), 8)
    first, second = balanced_subsets(labels, (25, 13), seed=3)
    assert first.size == 25 and second.size == 13 and np.intersect1d(first, second).size == 0
    for subset in (first, second):
        counts = np.bincount(labels[subset], minlength=10)
        assert counts.max() - counts.min() <= 1
    reseeded = balanced_subsets(labels, (25, 13), seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(reseeded, (first, second)))
    with pytest.raises(ValueError, match="class 0 has 8 examples, 9 needed"):
        balanced_subsets(labels, (50, 40))


# -- missing data and the download path ---------------------------------------------------
def test_missing_data_is_a_one_line_error_naming_the_variable(tmp_path):
    with pytest.raises(config.DataNotFoundError) as error:
        load_cifar10(data_dir=tmp_path / "empty")
    message = str(error.value)
    assert "\n" not in message and config.DATA_ENV in message
    assert "data_batch_1" in message and cifar10.IMAGES_ZIP in message and download.CIFAR10_URL in message
    with pytest.raises(config.DataNotFoundError, match=config.DATA_ENV):
        load_cifar10(source="images", data_dir=tmp_path / "empty")


def _fake_batches(rows: int) -> dict[str, bytes]:
    """Pickled batches in the official format with ``rows`` random images each."""
    rng = np.random.default_rng(0)
    return {
        name: pickle.dumps(
            {b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8), b"labels": [1] * rows}
        )
        for name in cifar10.BATCH_FILES["train"] + cifar10.BATCH_FILES["test"]
    }


def _write_fake_batches(folder, rows: int) -> None:
    folder.mkdir(parents=True)
    for name, content in _fake_batches(rows).items():
        (folder / name).write_bytes(content)


def _fake_official_archive(rows: int = 3) -> bytes:
    """A tar.gz with the official layout and tiny batches."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in _fake_batches(rows).items():
            info = tarfile.TarInfo(f"{download.CIFAR10_BATCHES_DIR}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _serving(content: bytes):
    def urlopen(url, timeout=None):
        return io.BytesIO(content)

    return urlopen


def test_download_extracts_the_official_layout(tmp_path):
    archive = _fake_official_archive()
    md5 = hashlib.md5(archive).hexdigest()
    root = download.ensure_cifar10(
        tmp_path, url="https://example.invalid/c.tgz", md5=md5, urlopen=_serving(archive)
    )
    assert root == tmp_path / "cifar10"
    assert sorted(p.name for p in root.iterdir()) == [download.CIFAR10_BATCHES_DIR]  # archive removed
    images, labels, indices = load_cifar10("test", source="batches", data_dir=tmp_path)
    assert images.shape == (3, 32, 32, 3) and labels.tolist() == [1, 1, 1] and indices.tolist() == [0, 1, 2]
    train = load_cifar10("train", source="batches", data_dir=tmp_path)
    assert train.indices.tolist() == [b * 10_000 + r for b in range(5) for r in range(3)]


def test_corrupt_download_is_deleted(tmp_path):
    archive = _fake_official_archive()
    with pytest.raises(download.ChecksumError, match="md5") as error:
        download.ensure_cifar10(tmp_path, md5="0" * 32, urlopen=_serving(archive))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "cifar10").exists() or list((tmp_path / "cifar10").iterdir()) == []


def test_verify_md5(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"not the official archive")
    download.verify_md5(path, hashlib.md5(b"not the official archive").hexdigest())
    assert path.exists()
    with pytest.raises(download.ChecksumError, match="was deleted"):
        download.verify_md5(path, download.CIFAR10_MD5)
    assert not path.exists()


def test_downsample_averages_blocks_and_rejects_bad_factors(train_batches):
    images = standardize(train_batches.images[:5])
    half = downsample(images, 2)
    assert half.shape == (5, 16, 16, 3) and half.dtype == np.float32
    np.testing.assert_allclose(half[2, 7, 9], images[2, 14:16, 18:20].mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(half.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=1e-5)  # means kept
    assert downsample(images, 1) is images
    assert downsample(images[:, :, :16], 4).shape == (5, 8, 4, 3)
    for bad in (3, 0, 64, 2.0):
        with pytest.raises(ValueError, match="downsample factor must be a positive divisor of 32x32") as error:
            downsample(images, bad)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) images"):
        downsample(images[0], 2)
