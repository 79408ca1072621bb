"""Fetching the official data files: download, MD5 check, extraction, atomic writes.

Only CIFAR-10 is downloaded on demand (163 MB from its Toronto page). NAS-Bench-101's
TFRecord (2 GB, :data:`NB101_FULL_URL`) is a one-off conversion the user runs with
:func:`nngp_lib.data.tfrecord.convert_tfrecord`, so it is named here but never fetched.

Network access goes through ``urlopen`` arguments that default to
:func:`urllib.request.urlopen` (looked up at call time), so tests replace it and never
touch the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from nngp_lib import config

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BATCHES_DIR = "cifar-10-batches-py"

NB101_FULL_URL = "https://storage.googleapis.com/nasbench/nasbench_full.tfrecord"
NB101_ONLY108_URL = "https://storage.googleapis.com/nasbench/nasbench_only108.tfrecord"

_CHUNK = 1 << 20
_log = logging.getLogger(__name__)

# Signature of urllib.request.urlopen: (url, timeout=...) -> a context manager of a binary stream.
Urlopen = Callable[..., Any]


class ChecksumError(ValueError):
    """A downloaded file does not have the expected MD5; it has been deleted."""


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dst`` to write to; on normal exit move it onto ``dst``.

    On any exception the temporary file is removed and ``dst`` is left untouched, so a
    reader never sees a half-written file. The parent folder is created if needed.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Not created here (mkstemp would make it 0600): the writer creates it, umask applies.
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def md5_of(path: str | os.PathLike) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` (and delete ``path``) unless its MD5 is ``expected``."""
    actual = md5_of(path)
    if actual != expected.lower():
        Path(path).unlink(missing_ok=True)
        raise ChecksumError(
            f"corrupt download {path}: md5 {actual}, expected {expected}; the file was deleted, "
            "try again (or fetch it by hand and set NNGP_NAS_DATA)"
        )


def fetch(
    url: str,
    dst: str | os.PathLike,
    *,
    md5: str,
    urlopen: Urlopen | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dst`` atomically and check its MD5.

    Raises ``OSError`` (``urllib.error.URLError``, ``TimeoutError``) when the network
    fails and :class:`ChecksumError` when the content is corrupt; in both cases ``dst``
    is not created.
    """
    urlopen = urllib.request.urlopen if urlopen is None else urlopen
    dst = Path(dst)
    _log.info("downloading %s to %s", url, dst)
    with atomic_path(dst) as tmp:
        with urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        verify_md5(tmp, md5)
    return dst


def ensure_cifar10(
    cache: str | os.PathLike | None = None,
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    urlopen: Urlopen | None = None,
) -> Path:
    """The ``cifar10`` folder of the download cache, holding the official python batches.

    Downloads and extracts the official archive into ``<cache>/cifar10/`` when
    ``cifar-10-batches-py/`` is not there yet (``cache`` defaults to
    :func:`nngp_lib.config.cache_dir`). The archive is deleted after extraction.

    Raises:
      DataNotFoundError: the network is unreachable (one line naming ``NNGP_NAS_DATA``).
      ChecksumError: the download is corrupt.
    """
    root = Path(config.cache_dir() if cache is None else cache) / "cifar10"
    batches = root / CIFAR10_BATCHES_DIR
    if (batches / "test_batch").is_file():
        return root
    archive = root / CIFAR10_ARCHIVE
    try:
        fetch(url, archive, md5=md5, urlopen=urlopen)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise config.DataNotFoundError(
            f"downloading {url} to {root} failed ({reason}): set {config.DATA_ENV} to a folder "
            f"holding cifar10/{CIFAR10_BATCHES_DIR} or pass data_dir=..."
        ) from error
    extract_tar(archive, batches, member_prefix=CIFAR10_BATCHES_DIR)
    archive.unlink()
    return root


def extract_tar(archive: str | os.PathLike, dst: str | os.PathLike, *, member_prefix: str) -> Path:
    """Extract the folder ``member_prefix`` of a tar archive to ``dst`` atomically.

    The members are unpacked into a temporary folder next to ``dst`` (with tarfile's
    ``data`` filter: no absolute paths, links out of the tree or device files) and the
    folder is renamed onto ``dst`` only when complete. Raises ``ValueError`` when the
    archive has no such folder.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if Path(m.name).parts[:1] == (member_prefix,)]
            if not members:
                raise ValueError(f"{archive} has no folder {member_prefix}/; is it the right archive?")
            tar.extractall(tmp, members=members, filter="data")
        os.replace(tmp / member_prefix, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
