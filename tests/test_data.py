"""Tests of l2dynamics.data: formats round-trip exactly, malformed files fail with one-line
DataErrors, subsets are class-balanced and seeded, normalization and augmentation are right."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from l2dynamics.data import (
    DATASET_NAMES,
    Dataset,
    available_datasets,
    load_dataset,
    offline,
    resolve_data_dir,
)
from l2dynamics.data.files import MNIST_FILES
from l2dynamics.data.transforms import balanced_subset, normalize, random_crop_flip
from l2dynamics.errors import ConfigError, DataError

# ------------------------------------------------------------------------------ file writers


def write_idx(path, arr, magic=None, *, truncate=0):
    """Write ``arr`` (uint8) as an IDX file, gzip-compressed when the name ends in .gz."""
    arr = np.asarray(arr, dtype=np.uint8)
    magic = 0x800 | arr.ndim if magic is None else magic
    data = struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes()
    data = data[: len(data) - truncate]
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def make_mnist(folder, n_train=40, n_test=20, gz=(True, False, False, True), seed=0):
    """Four MNIST files in ``folder`` (a mix of .gz and plain); returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        MNIST_FILES[0]: rng.integers(0, 256, (n_train, 28, 28)),
        MNIST_FILES[1]: rng.permutation(np.arange(n_train) % 10),
        MNIST_FILES[2]: rng.integers(0, 256, (n_test, 28, 28)),
        MNIST_FILES[3]: rng.permutation(np.arange(n_test) % 10),
    }
    for (name, arr), z in zip(arrays.items(), gz, strict=True):
        write_idx(folder / (name + ".gz" * z), arr)
    return arrays


def write_batch(path, data, labels, protocol=2):
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": list(labels), b"data": data}, f, protocol)


def make_cifar(folder, per_batch=10, n_test=20, seed=0):
    """Five train batches and a test batch in ``folder``; returns (x_train, y_train, x_test,
    y_test) as written (uint8 (n, 3072), int labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.permutation(np.arange(per_batch) % 10)
        write_batch(folder / f"data_batch_{i}", x, y, protocol=2 + i % 4)  # protocols 2..5
        xs.append(x)
        ys.append(y)
    x_te = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y_te = np.arange(n_test) % 10
    write_batch(folder / "test_batch", x_te, y_te)
    return np.concatenate(xs), np.concatenate(ys), x_te, y_te


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- registry / API


def test_names_and_unknown_name():
    assert DATASET_NAMES == ("digits", "mnist1d", "teacher", "mnist", "fashion_mnist", "cifar10")
    with pytest.raises(ConfigError) as e:
        load_dataset("imagenet")
    assert all(n in one_line(e) for n in DATASET_NAMES)


def test_unknown_option_names_allowed():
    with pytest.raises(ConfigError, match="'widht'.*input_dim.*teacher_width"):
        load_dataset("teacher", widht=3)
    with pytest.raises(ConfigError, match="mnist1d takes no options"):
        load_dataset("mnist1d", foo=1)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "10"])
def test_n_must_be_positive_int(bad):
    with pytest.raises(ConfigError, match="n_train must be a positive integer"):
        load_dataset("digits", n_train=bad)


def test_other_arguments_validated():
    with pytest.raises(ConfigError, match="normalize must be one of channel, global, none"):
        load_dataset("digits", normalize="batch")
    with pytest.raises(ConfigError, match="dtype"):
        load_dataset("digits", dtype=torch.int64)
    with pytest.raises(ConfigError, match="device"):
        load_dataset("digits", device="gpu7")
    with pytest.raises(ConfigError, match="augment is only defined for cifar10"):
        load_dataset("digits", augment=True)
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("digits", seed=-1)


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("L2DYNAMICS_DATA", raising=False)
    assert resolve_data_dir() == resolve_data_dir(None)
    assert str(resolve_data_dir()).endswith(os.path.join(".cache", "l2dynamics", "data"))
    monkeypatch.setenv("L2DYNAMICS_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_available_datasets_reports_missing_then_found(tmp_path):
    infos = {i.name: i for i in available_datasets(tmp_path)}
    assert set(infos) == set(DATASET_NAMES)
    assert infos["digits"].available and infos["digits"].kind == "offline"
    assert infos["teacher"].options["teacher_width"] == 512
    mnist = infos["mnist"]
    assert mnist.kind == "files" and not mnist.available and mnist.location is None
    assert mnist.files == list(MNIST_FILES) and mnist.missing == list(MNIST_FILES)
    assert infos["cifar10"].missing == [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

    make_mnist(tmp_path / "mnist")
    make_cifar(tmp_path)  # directly in data_dir is accepted too
    infos = {i.name: i for i in available_datasets(tmp_path)}
    assert infos["mnist"].available and infos["mnist"].location == tmp_path / "mnist"
    assert infos["mnist"].missing == []
    assert infos["cifar10"].available and infos["cifar10"].location == tmp_path


# ------------------------------------------------------------------------------------ digits


def test_digits_split_values_and_determinism():
    from sklearn.datasets import load_digits

    d = load_dataset("digits", normalize="none")
    assert isinstance(d, Dataset) and d.input_shape == (64,) and d.num_outputs == 10
    assert (d.n_train, d.n_test) == (1257, 540)  # 30 % test
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    # every row is a digits image / 16, and the split is stratified
    x, y = load_digits(return_X_y=True)
    pool = {tuple(r): int(c) for r, c in zip(np.float32(x / 16), y, strict=True)}
    assert all(pool[tuple(r)] == int(c) for r, c in zip(d.x_test.numpy(), d.y_test, strict=True))
    frac = d.y_test.bincount() / (d.y_train.bincount() + d.y_test.bincount())
    assert torch.allclose(frac, torch.full((10,), 0.3, dtype=frac.dtype), atol=0.02)

    again = load_dataset("digits", normalize="none")
    other = load_dataset("digits", normalize="none", seed=1)
    assert torch.equal(d.x_train, again.x_train) and torch.equal(d.y_test, again.y_test)
    assert not torch.equal(d.x_train, other.x_train)


def test_digits_balanced_subsets_and_limits():
    d = load_dataset("digits", n_train=95, n_test=30, seed=3)
    assert d.y_train.bincount().tolist() == [10] * 5 + [9] * 5
    assert d.y_test.bincount().tolist() == [3] * 10
    assert d.info["n_train_available"] == 1257 and d.info["n_train"] == 95
    d2 = load_dataset("digits", n_train=95, n_test=30, seed=3)
    assert torch.equal(d.x_train, d2.x_train) and torch.equal(d.y_train, d2.y_train)
    with pytest.raises(ConfigError, match="at most 1257"):
        load_dataset("digits", n_train=5000)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)


def test_balanced_subset_errors_when_a_class_is_short():
    y = torch.tensor([0] * 10 + [1] * 3)
    g = torch.Generator().manual_seed(0)
    idx = balanced_subset(y, 7, 2, g)  # 4 of class 0, 3 of class 1
    assert y[idx].bincount().tolist() == [4, 3] and len(set(idx.tolist())) == 7
    with pytest.raises(ConfigError, match="at most 7"):
        balanced_subset(y, 8, 2, g)


# ------------------------------------------------------------------------------ normalization


def test_normalize_channel_global_none():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 5.0, 0.1])[None, :, None, None]
    x = torch.rand(64, 3, 8, 8, generator=g) * scale + scale
    xt = torch.rand(16, 3, 8, 8, generator=g)
    a, b, s = normalize(x, xt, "channel")
    assert torch.allclose(a.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(a.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-5)
    assert len(s["mean"]) == 3 and len(s["std"]) == 3
    mean, std = (torch.tensor(s[k])[None, :, None, None] for k in ("mean", "std"))
    assert torch.allclose(b, (xt - mean) / std, atol=1e-5)  # test uses the train statistics

    a, _, s = normalize(x, xt, "global")
    assert len(s["mean"]) == 1 and abs(a.mean()) < 1e-5 and abs(a.std(correction=0) - 1) < 1e-5
    a, b, s = normalize(x, xt, "none")
    assert a is x and b is xt and s == {"mode": "none"}
    # flat vectors: "channel" means one global scalar
    v = torch.rand(50, 7, generator=g) * torch.arange(1, 8)
    a, _, s = normalize(v, v, "channel")
    assert len(s["mean"]) == 1 and abs(a.std(correction=0) - 1) < 1e-5


# -------------------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("sub", ["mnist", "."])
def test_mnist_round_trip(tmp_path, sub):
    arrays = make_mnist(tmp_path / sub)
    d = load_dataset("mnist", data_dir=tmp_path, normalize="none")
    assert d.input_shape == (1, 28, 28) and d.x_train.shape == (40, 1, 28, 28)
    expect = torch.from_numpy(arrays[MNIST_FILES[0]].astype(np.float32) / np.float32(255))
    assert torch.equal(d.x_train[:, 0], expect)  # exact, not approximate
    assert d.y_train.tolist() == arrays[MNIST_FILES[1]].tolist()
    assert d.y_test.tolist() == arrays[MNIST_FILES[3]].tolist() and d.y_test.dtype == torch.int64
    assert d.augment is None

    n = load_dataset("mnist", data_dir=tmp_path)  # default: channel normalization
    assert abs(n.x_train.mean()) < 1e-5 and abs(n.x_train.std(correction=0) - 1) < 1e-5
    assert n.info["normalization"]["mean"][0] == pytest.approx(float(expect.double().mean()))


def test_mnist_subset_is_balanced(tmp_path):
    make_mnist(tmp_path / "mnist")
    d = load_dataset("mnist", data_dir=tmp_path, n_train=23, n_test=10, seed=5)
    assert d.y_train.bincount().tolist() == [3] * 3 + [2] * 7
    assert d.y_test.bincount().tolist() == [1] * 10
    with pytest.raises(ConfigError, match="at most 40"):
        load_dataset("mnist", data_dir=tmp_path, n_train=41)


def test_mnist_missing_names_files_and_both_folders(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = one_line(e)
    assert "'train-images-idx3-ubyte' or 'train-images-idx3-ubyte.gz'" in msg
    assert str(tmp_path / "mnist") in msg and f" or {tmp_path} " in msg and "L2DYNAMICS_DATA" in msg


@pytest.mark.parametrize(
    "broken, match",
    [
        ("truncate", "truncated"),
        ("magic", "magic 0x00000801, expected 0x00000803"),
        ("count", "has 40 images but .* has 39 labels"),
        ("label", "label 12"),
        ("dims", "27x28 images, expected 28x28"),
        ("gzip", "cannot read"),
    ],
)
def test_mnist_malformed(tmp_path, broken, match):
    arrays = make_mnist(tmp_path, gz=(False,) * 4)
    images, labels = tmp_path / MNIST_FILES[0], tmp_path / MNIST_FILES[1]
    if broken == "truncate":
        write_idx(images, arrays[MNIST_FILES[0]], truncate=5)
    elif broken == "magic":
        write_idx(images, arrays[MNIST_FILES[0]], magic=0x801)
    elif broken == "count":
        write_idx(labels, arrays[MNIST_FILES[1]][:-1])
    elif broken == "label":
        write_idx(labels, np.where(np.arange(40) == 7, 12, arrays[MNIST_FILES[1]]))
    elif broken == "dims":
        write_idx(images, arrays[MNIST_FILES[0]][:, :27])
    else:
        images.rename(images.with_suffix(".gz"))  # "gz" that is not gzip
    with pytest.raises(DataError, match=match) as e:
        load_dataset("mnist", data_dir=tmp_path)
    assert one_line(e).startswith("mnist: ") and "ubyte" in str(e.value)


def test_mnist_download_from_file_url(tmp_path):
    mirror = tmp_path / "mirror"
    arrays = make_mnist(mirror, gz=(True,) * 4)
    data = tmp_path / "data"
    urls = [(tmp_path / "nowhere").as_uri() + "/", mirror.as_uri()]  # first mirror fails
    d = load_dataset("mnist", data_dir=data, download=True, urls=urls, normalize="none")
    assert sorted(p.name for p in (data / "mnist").iterdir()) == sorted(
        f"{n}.gz" for n in MNIST_FILES
    )
    assert d.y_train.tolist() == arrays[MNIST_FILES[1]].tolist()
    # files present now: no download needed, even with a broken URL
    load_dataset("mnist", data_dir=data, download=True, urls="file:///nonexistent/")


def test_mnist_download_failure_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path, download=True, urls=[(tmp_path / "x").as_uri()])
    msg = one_line(e)
    assert "expected file 'train-images-idx3-ubyte'" in msg and "download failed" in msg
    assert "by hand" in msg and str(tmp_path / "mnist") in msg
    assert not any(p.suffix == ".part" for p in tmp_path.rglob("*"))


# ----------------------------------------------------------------------------------- CIFAR-10


def test_cifar_round_trip(tmp_path):
    x_tr, y_tr, x_te, y_te = make_cifar(tmp_path / "cifar-10-batches-py")
    d = load_dataset("cifar10", data_dir=tmp_path, normalize="none", dtype=torch.float64)
    assert d.input_shape == (3, 32, 32) and d.x_train.shape == (50, 3, 32, 32)
    assert d.x_train.dtype == torch.float64
    assert torch.equal(d.x_train.reshape(50, -1), torch.from_numpy(x_tr / 255.0))
    assert torch.equal(d.x_test[3, 1].flatten(), torch.from_numpy(x_te[3, 1024:2048] / 255.0))
    assert d.y_train.tolist() == y_tr.tolist() and d.y_test.tolist() == y_te.tolist()

    n = load_dataset("cifar10", data_dir=tmp_path)  # per-channel statistics of train
    assert torch.allclose(n.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(n.x_train.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-5)
    assert len(n.info["normalization"]["std"]) == 3

    s = load_dataset("cifar10", data_dir=tmp_path, n_train=25, n_test=10)
    assert s.y_train.bincount().tolist() == [3] * 5 + [2] * 5


@pytest.mark.parametrize(
    "data, labels, match",
    [
        (np.zeros((4, 3000), np.uint8), [0, 1, 2, 3], r"expected uint8 \(N, 3072\)"),
        (np.zeros((4, 3072), np.float32), [0, 1, 2, 3], "expected uint8"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2], "4 images but labels of shape"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2, 10], "labels outside 0..9"),
    ],
)
def test_cifar_malformed(tmp_path, data, labels, match):
    make_cifar(tmp_path)
    write_batch(tmp_path / "data_batch_3", data, labels)
    with pytest.raises(DataError, match=match) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "data_batch_3" in one_line(e)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_cifar_malicious_pickle_is_refused(tmp_path):
    make_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f)
    with pytest.raises(DataError, match="refused to load global .*system") as e:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "test_batch" in one_line(e)
    assert not marker.exists()


def test_cifar_missing(tmp_path):
    make_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="expected file 'data_batch_4' in .*cifar-10-batches-py or"):
        load_dataset("cifar10", data_dir=tmp_path)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_cifar_download_and_extract(tmp_path):
    src = tmp_path / "src"
    x_tr, y_tr, _, _ = make_cifar(src / "cifar-10-batches-py")
    members = {
        f"cifar-10-batches-py/{p.name}": p.read_bytes()
        for p in (src / "cifar-10-batches-py").iterdir()
    }
    _tar(tmp_path / "c.tar.gz", members)
    data = tmp_path / "data"
    d = load_dataset(
        "cifar10",
        data_dir=data,
        download=True,
        url=(tmp_path / "c.tar.gz").as_uri(),
        normalize="none",
    )
    assert d.y_train.tolist() == y_tr.tolist()
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-batches-py"]  # archive removed


def test_cifar_download_rejects_unsafe_tar(tmp_path):
    _tar(tmp_path / "evil.tar.gz", {"cifar-10-batches-py/../../escaped": b"x"})
    data, url = tmp_path / "data", (tmp_path / "evil.tar.gz").as_uri()
    with pytest.raises(DataError, match="unsafe archive member"):
        load_dataset("cifar10", data_dir=data, download=True, url=url)
    assert not (tmp_path / "escaped").exists() and not (data / "cifar-10-batches-py").exists()


def test_cifar_download_failure(tmp_path):
    url = (tmp_path / "no.tgz").as_uri()
    with pytest.raises(DataError, match="download failed.*by hand") as e:
        load_dataset("cifar10", data_dir=tmp_path, download=True, url=url)
    one_line(e)


# ------------------------------------------------------------------------------- augmentation


def slow_crop_flip(x, g, pad=4):
    """Reference: one image at a time, drawing the random numbers in the same order."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=g)
    flip = torch.rand(n, 1, generator=g) < 0.5
    out = []
    for i in range(n):
        crop = F.pad(x[i], (pad,) * 4)[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out)


def test_augment_matches_reference_and_is_seeded():
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = random_crop_flip(x, torch.Generator().manual_seed(7))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, random_crop_flip(x, torch.Generator().manual_seed(7)))
    assert torch.equal(a, slow_crop_flip(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, random_crop_flip(x, torch.Generator().manual_seed(8)))


def test_augment_is_a_shifted_copy_with_uniform_offsets_and_fair_flips():
    """Identify each output among all 9 x 9 x 2 crops of its padded input: exactly one matches,
    and offsets and flips have the right frequencies (tolerances ~5 binomial sigmas)."""
    n, pad = 4000, 4
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5  # no zeros
    out = random_crop_flip(x, torch.Generator().manual_seed(2), pad)
    padded = F.pad(x, (pad,) * 4)
    hits = torch.zeros(n, 2 * pad + 1, 2 * pad + 1, 2, dtype=torch.bool)
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, :, dy : dy + 8, dx : dx + 8]
            hits[:, dy, dx, 0] = (out == crop).flatten(1).all(1)
            hits[:, dy, dx, 1] = (out == crop.flip(-1)).flatten(1).all(1)
    assert (hits.flatten(1).sum(1) == 1).all()
    freq_dy = hits.any(3).any(2).float().mean(0)
    assert torch.allclose(freq_dy, torch.full_like(freq_dy, 1 / 9), atol=0.025)
    assert abs(hits[..., 1].any(2).any(1).float().mean() - 0.5) < 0.04


def test_augment_attached_only_when_asked(tmp_path):
    make_cifar(tmp_path)
    assert load_dataset("cifar10", data_dir=tmp_path).augment is None
    d = load_dataset("cifar10", data_dir=tmp_path, augment=True)
    batch = d.augment(d.x_train[:8], torch.Generator().manual_seed(0))
    assert batch.shape == (8, 3, 32, 32)
    with pytest.raises(ConfigError, match="augment is only defined for cifar10"):
        load_dataset("mnist1d", augment=True, data_dir=tmp_path)


# ------------------------------------------------------------------------------------ mnist1d


def test_mnist1d_sizes_cache_and_rng_untouched(tmp_path, monkeypatch):
    state = np.random.get_state()[1].copy()
    d = load_dataset("mnist1d", n_train=300, n_test=2000, data_dir=tmp_path, normalize="none")
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG left as it was
    assert d.x_train.shape == (300, 40) and d.x_test.shape == (2000, 40)
    assert d.input_shape == (40,) and d.num_outputs == 10
    assert d.y_test.bincount(minlength=10).min() > 150  # all classes present
    assert d.info["generator_args"]["seed"] == 0
    (cache,) = (tmp_path / "mnist1d").iterdir()
    assert cache.suffix == ".npz"

    monkeypatch.setattr(offline, "_make_mnist1d", lambda args: pytest.fail("regenerated"))
    again = load_dataset("mnist1d", n_train=300, n_test=2000, data_dir=tmp_path, normalize="none")
    assert torch.equal(d.x_train, again.x_train) and torch.equal(d.y_test, again.y_test)


def test_mnist1d_seed_and_corrupt_cache(tmp_path):
    a = load_dataset("mnist1d", n_train=50, n_test=20, data_dir=tmp_path)
    b = load_dataset("mnist1d", n_train=50, n_test=20, data_dir=tmp_path, seed=1)
    assert not torch.equal(a.x_train, b.x_train)
    for p in (tmp_path / "mnist1d").iterdir():
        p.write_bytes(b"garbage")
    c = load_dataset("mnist1d", n_train=50, n_test=20, data_dir=tmp_path)
    assert torch.equal(a.x_train, c.x_train)


# ------------------------------------------------------------------------------------ teacher


def test_teacher_classification():
    d = load_dataset("teacher", n_train=500, n_test=300, input_dim=8, teacher_width=64)
    assert d.x_train.shape == (500, 8) and d.input_shape == (8,) and d.task == "classification"
    assert d.y_train.dtype == torch.int64 and d.num_outputs == 10
    assert d.y_test.bincount(minlength=10).min() > 0  # standardized logits: all classes used
    again = load_dataset("teacher", n_train=500, n_test=300, input_dim=8, teacher_width=64)
    assert torch.equal(d.x_train, again.x_train) and torch.equal(d.y_train, again.y_train)
    # the test set does not depend on n_train (compare raw inputs: normalization uses train)
    kw = dict(n_test=300, input_dim=8, teacher_width=64, normalize="none")
    small = load_dataset("teacher", n_train=500, **kw)
    big = load_dataset("teacher", n_train=900, **kw)
    assert torch.equal(small.x_test, big.x_test) and torch.equal(small.y_test, big.y_test)


def test_teacher_label_noise_fraction():
    kw = dict(n_train=5000, n_test=500, input_dim=8, teacher_width=64, num_classes=10)
    clean = load_dataset("teacher", **kw)
    noisy = load_dataset("teacher", label_noise=0.3, **kw)
    assert torch.equal(clean.x_train, noisy.x_train) and torch.equal(clean.y_test, noisy.y_test)
    changed = (clean.y_train != noisy.y_train).float().mean().item()
    # 1500 labels redrawn uniformly, 9/10 of them change: 0.27 +- 0.0023 (binomial sigma)
    assert abs(changed - 0.3 * 0.9) < 0.012
    assert noisy.info["n_noisy"] == 1500


def test_teacher_regression():
    d = load_dataset(
        "teacher", task="regression", n_train=400, n_test=200, teacher_depth=1, dtype=torch.float64
    )
    assert d.y_train.shape == (400, 1) and d.y_test.shape == (200, 1)
    assert d.y_train.dtype == torch.float64 and d.num_outputs == 1 and d.task == "regression"
    assert 0.7 < d.y_test.std() < 1.3  # outputs standardized on a reference sample
    noisy = load_dataset(
        "teacher",
        task="regression",
        n_train=400,
        n_test=200,
        teacher_depth=1,
        noise_std=0.5,
        dtype=torch.float64,
    )
    resid = noisy.y_train - d.y_train
    assert 0.4 < resid.std() < 0.6 and torch.equal(noisy.y_test, d.y_test)


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"task": "ranking"}, "task must be one of classification, regression"),
        ({"label_noise": 1.5}, "label_noise must be in"),
        ({"task": "regression", "label_noise": 0.1}, "label_noise applies to"),
        ({"noise_std": 0.1}, "noise_std applies to"),
        ({"teacher_width": 0}, "teacher_width must be an integer >= 1"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
    ],
)
def test_teacher_options_validated(opts, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("teacher", **opts)


def test_registry_holds_exactly_the_torch_free_names():
    from l2dynamics import names
    from l2dynamics.data import _REGISTRY, _resolve

    assert tuple(_REGISTRY) == DATASET_NAMES == names.DATASET_NAMES
    for spec in _REGISTRY.values():  # every lazily named loader and augmentation resolves
        assert callable(spec.load())
        assert spec.augment is None or callable(_resolve(spec.augment))
