"""Readers for the standard MNIST and Fashion-MNIST (IDX) and CIFAR-10 (python pickle batches)
files, with an optional download (MNIST and CIFAR-10 only).

Where the files are expected is ``locate`` (light: ``l2dynamics datasets`` needs only that).
No torchvision: the formats are parsed here and every deviation from them (wrong magic, wrong
dims, truncated file, label out of range, an unexpected object in a pickle) is a one-line
:class:`DataError` naming the file. Loaders return raw ``uint8`` images, channels first.
"""

from __future__ import annotations

import gzip
import http.client
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from l2dynamics.data.dataset import Dataset
from l2dynamics.data.locate import (
    CIFAR10_DIR,
    CIFAR10_FILES,
    MNIST_FILES,
    cifar10_dirs,
    fashion_mnist_dirs,
    find_cifar10,
    find_fashion_mnist,
    find_mnist,
    missing_cifar10,
    missing_fashion_mnist,
    missing_mnist,
    mnist_dirs,
    mnist_path,
)
from l2dynamics.errors import DataError

MNIST_URLS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801  # uint8 data with 3 dims / 1 dim
TIMEOUT_S = 60


# -------------------------------------------------------------------------------------- MNIST


def read_idx(path: Path, magic: int, *, what: str = "mnist") -> np.ndarray:
    """Read an IDX file (plain or gzip) of unsigned bytes: 4-byte magic ``0x000008<ndim>``,
    ``ndim`` big-endian uint32 dims, then the data row-major. Returns a ``uint8`` array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{what}: cannot read {path}: {e}") from None
    if len(raw) < 4:
        raise DataError(f"{what}: {path} is {len(raw)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DataError(
            f"{what}: {path} has magic 0x{found:08x}, expected 0x{magic:08x} "
            f"(IDX uint8 with {magic & 0xFF} dims)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{what}: {path} is {len(raw)} bytes, shorter than its IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{what}: {path} is {len(raw)} bytes, expected {expected} for dims "
            f"{'x'.join(map(str, dims))} ({'truncated' if len(raw) < expected else 'extra data'})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable


def _read_mnist_split(images: Path, labels: Path,
                      what: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, IDX_IMAGES, what=what)
    if len(x) == 0:
        raise DataError(f"{what}: {images} holds 0 images; expected at least 1")
    if x.shape[1:] != (28, 28):
        raise DataError(f"{what}: {images} holds {x.shape[1]}x{x.shape[2]} images, expected 28x28")
    y = read_idx(labels, IDX_LABELS, what=what)
    if len(x) != len(y):
        raise DataError(f"{what}: {images} has {len(x)} images but {labels} has {len(y)} labels")
    if len(y) and y.max() > 9:
        raise DataError(f"{what}: {labels} has label {int(y.max())}, expected labels 0..9")
    return x[:, None], y  # (n, 1, 28, 28) channels first


def load_mnist(
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    data_dir: Path,
    download: bool,
    urls: str | Sequence[str] = tuple(MNIST_URLS),
) -> Dataset:
    """MNIST from the four standard IDX files (each plain or .gz) in ``<data_dir>/mnist/`` or
    ``<data_dir>``; with ``download=True`` missing files are fetched from the first working
    mirror in ``urls`` (base URLs, file names appended with ``.gz``)."""
    paths = find_mnist(data_dir)
    if paths is None and download:
        _download_mnist(data_dir, [urls] if isinstance(urls, str) else list(urls))
        paths = find_mnist(data_dir)
    if paths is None:
        raise DataError(_mnist_missing_message(data_dir))
    x_tr, y_tr = _read_mnist_split(paths[MNIST_FILES[0]], paths[MNIST_FILES[1]])
    x_te, y_te = _read_mnist_split(paths[MNIST_FILES[2]], paths[MNIST_FILES[3]])
    return _raw("mnist", x_tr, y_tr, x_te, y_te, {"source": str(paths[MNIST_FILES[0]].parent)})


def load_fashion_mnist(
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    data_dir: Path,
    download: bool,
) -> Dataset:
    """Fashion-MNIST from the four standard IDX files (each plain or .gz, the same names and
    format as MNIST) in ``<data_dir>/fashion_mnist/``, ``<data_dir>``, or where Debian's package
    ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist``). Never
    downloaded (``download`` is ignored): a missing dataset is a one-line DataError saying how
    to get it."""
    paths = find_fashion_mnist(data_dir)
    if paths is None:
        raise DataError(_fashion_missing_message(data_dir))
    what = "fashion_mnist"
    x_tr, y_tr = _read_mnist_split(paths[MNIST_FILES[0]], paths[MNIST_FILES[1]], what)
    x_te, y_te = _read_mnist_split(paths[MNIST_FILES[2]], paths[MNIST_FILES[3]], what)
    return _raw(what, x_tr, y_tr, x_te, y_te, {"source": str(paths[MNIST_FILES[0]].parent)})


def _fashion_missing_message(data_dir: Path) -> str:
    name = missing_fashion_mnist(data_dir)[0]
    where = " or ".join(str(d) for d in fashion_mnist_dirs(data_dir))
    return (f"fashion_mnist: expected file '{name}' or '{name}.gz' in {where}; get it with "
            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the four "
            "Fashion-MNIST IDX files in one of those folders (set --data-dir or L2DYNAMICS_DATA)")


def _mnist_missing_message(data_dir: Path, failure: str | None = None) -> str:
    name = missing_mnist(data_dir)[0]
    where = " or ".join(str(d) for d in mnist_dirs(data_dir))
    return f"mnist: expected file '{name}' or '{name}.gz' in {where}" + _hint(failure)


def _hint(failure: str | None) -> str:
    if failure is None:
        return " (set --data-dir or L2DYNAMICS_DATA, or pass download=True)"
    return f"; download failed ({failure}); put the files there by hand"


def _download_mnist(data_dir: Path, urls: list[str]) -> None:
    target = mnist_dirs(data_dir)[0]
    errors = []
    for name in MNIST_FILES:
        if mnist_path(target, name):
            continue
        for base in urls:
            url = base.rstrip("/") + f"/{name}.gz"
            try:
                _fetch(url, target / f"{name}.gz")
                break
            except DataError as e:
                errors.append(str(e))
        else:
            failure = errors[-1] if errors else "no URL given"
            raise DataError(_mnist_missing_message(data_dir, failure))


# ----------------------------------------------------------------------------------- CIFAR-10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    A pickle can name any importable callable (``os.system``...) and the standard loader calls
    it; here only the globals that numpy arrays pickle to are resolved, anything else is
    refused before it is looked up.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # numpy < 2 and the original python-2 files
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),  # numpy scalars, e.g. labels as np.int64
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with ``b"data"`` (uint8, N x 3072, channel
    planes R, G, B of 32 x 32 row-major) and ``b"labels"`` (N ints in 0..9). Returns
    ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``."""
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
    ) as e:
        raise DataError(f"cifar10: cannot unpickle {path}: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f"cifar10: {path} holds a {type(d).__name__}, expected a dict batch")
    data, labels = d.get(b"data", d.get("data")), d.get(b"labels", d.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"cifar10: {path} lacks b'data' (numpy array) or b'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"cifar10: {path} data is {data.dtype} {data.shape}, expected uint8 (N, 3072)"
        )
    if len(data) == 0:
        raise DataError(f"cifar10: {path} holds 0 images; expected uint8 (N, 3072) with N >= 1")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"cifar10: {path} labels are not integers") from None
    if labels.shape != (len(data),):
        raise DataError(
            f"cifar10: {path} has {len(data)} images but labels of shape {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"cifar10: {path} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    data_dir: Path,
    download: bool,
    url: str = CIFAR10_URL,
) -> Dataset:
    """CIFAR-10 from the python batches in ``<data_dir>/cifar-10-batches-py/`` or
    ``<data_dir>``; with ``download=True`` the archive at ``url`` is fetched and extracted."""
    paths = find_cifar10(data_dir)
    if paths is None and download:
        _download_cifar10(data_dir, url)
        paths = find_cifar10(data_dir)
    if paths is None:
        raise DataError(_cifar_missing_message(data_dir))
    train = [read_cifar_batch(paths[n]) for n in CIFAR10_FILES[:5]]
    x_te, y_te = read_cifar_batch(paths["test_batch"])
    x_tr, y_tr = np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
    return _raw("cifar10", x_tr, y_tr, x_te, y_te, {"source": str(paths["test_batch"].parent)})


def _cifar_missing_message(data_dir: Path, failure: str | None = None) -> str:
    name = missing_cifar10(data_dir)[0]
    where = " or ".join(str(d) for d in cifar10_dirs(data_dir))
    return f"cifar10: expected file '{name}' in {where}" + _hint(failure)


def _download_cifar10(data_dir: Path, url: str) -> None:
    archive = data_dir / "cifar-10-python.tar.gz"
    try:
        _fetch(url, archive)
    except DataError as e:
        raise DataError(_cifar_missing_message(data_dir, str(e))) from None
    extract_tar(archive, data_dir, CIFAR10_DIR)
    archive.unlink()


def extract_tar(archive: Path, dest: Path, folder: str) -> None:
    """Extract ``folder`` from a tar archive into ``dest``, refusing unsafe members.

    Members with absolute paths, ``..`` components, links or device files make the whole
    archive a :class:`DataError`. Extraction goes to a temporary folder first and the result is
    renamed into place, so a failure never leaves a half-extracted ``dest/folder``.
    """
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                p = PurePosixPath(m.name)
                if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                    raise DataError(f"{archive}: refusing unsafe archive member {m.name!r}")
            with tempfile.TemporaryDirectory(dir=dest, prefix=".extract-") as tmp:
                if hasattr(tarfile, "data_filter"):  # python >= 3.11.4: a second line of defence
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover
                    tar.extractall(tmp, members=members)
                if not (Path(tmp) / folder).is_dir():
                    raise DataError(f"{archive}: archive has no folder '{folder}'")
                if (dest / folder).exists():
                    shutil.rmtree(dest / folder)
                os.replace(Path(tmp) / folder, dest / folder)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"cannot extract {archive}: {e}") from None


# ------------------------------------------------------------------------------------ helpers


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` via a temporary file, so ``dest`` is whole or absent."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            shutil.copyfileobj(r, f, length=1 << 20)
        os.replace(tmp, dest)
    except (OSError, ValueError, http.client.HTTPException) as e:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"{url}: {' '.join(str(e).split())}") from None  # one line


def _raw(name: str, x_tr, y_tr, x_te, y_te, info: dict) -> Dataset:
    import torch  # here, not at the top: `available_datasets` (find_*, missing_*) needs no torch

    return Dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(x_tr)),
        torch.as_tensor(y_tr, dtype=torch.long),
        torch.from_numpy(np.ascontiguousarray(x_te)),
        torch.as_tensor(y_te, dtype=torch.long),
        num_outputs=10,
        task="classification",
        input_shape=tuple(x_tr.shape[1:]),
        info={**info, "pixel_max": 255},
    )
