"""Where the MNIST, Fashion-MNIST and CIFAR-10 files are expected, and which are there or missing.

Kept apart from the readers in ``files`` (numpy, pickle, downloads) so that listing the datasets
(``available_datasets``, ``l2dynamics datasets``) imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_FILES = MNIST_FILES  # same four names, same IDX format
# Where Debian's package ``dataset-fashion-mnist`` installs the four .gz files (searched after
# the data folder, so files the user put there win). Tests patch this tuple.
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path("/usr/local/share/datasets/fashion-mnist"),
)
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def mnist_dirs(data_dir: Path) -> list[Path]:
    """Where the MNIST files may be, in order of preference."""
    return [data_dir / "mnist", data_dir]


def fashion_mnist_dirs(data_dir: Path) -> list[Path]:
    """Where the Fashion-MNIST files may be, in order of preference: the data folder's
    ``fashion_mnist/`` subfolder, the data folder itself, then the system folders."""
    return [data_dir / "fashion_mnist", data_dir, *FASHION_MNIST_SYSTEM_DIRS]


def cifar10_dirs(data_dir: Path) -> list[Path]:
    """Where the CIFAR-10 batches may be, in order of preference."""
    return [data_dir / CIFAR10_DIR, data_dir]


def mnist_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx(folders: list[Path]) -> dict[str, Path] | None:
    for folder in folders:
        paths = {name: mnist_path(folder, name) for name in MNIST_FILES}
        if all(paths.values()):
            return paths
    return None


def find_mnist(data_dir: Path) -> dict[str, Path] | None:
    """Paths of the four MNIST files (plain or .gz) in the first folder that has them all."""
    return _find_idx(mnist_dirs(data_dir))


def find_fashion_mnist(data_dir: Path) -> dict[str, Path] | None:
    """Paths of the four Fashion-MNIST files (plain or .gz) in the first folder of
    :func:`fashion_mnist_dirs` that has them all."""
    return _find_idx(fashion_mnist_dirs(data_dir))


def find_cifar10(data_dir: Path) -> dict[str, Path] | None:
    """Paths of the six CIFAR-10 batches in the first folder that has them all."""
    for folder in cifar10_dirs(data_dir):
        if all((folder / name).is_file() for name in CIFAR10_FILES):
            return {name: folder / name for name in CIFAR10_FILES}
    return None


def missing_mnist(data_dir: Path) -> list[str]:
    """Expected MNIST file names absent from the preferred folder (``[]`` when found)."""
    if find_mnist(data_dir):
        return []
    return [n for n in MNIST_FILES if mnist_path(mnist_dirs(data_dir)[0], n) is None]


def missing_fashion_mnist(data_dir: Path) -> list[str]:
    """Expected Fashion-MNIST file names absent from the preferred folder (``[]`` when found)."""
    if find_fashion_mnist(data_dir):
        return []
    return [n for n in FASHION_MNIST_FILES
            if mnist_path(fashion_mnist_dirs(data_dir)[0], n) is None]


def missing_cifar10(data_dir: Path) -> list[str]:
    """Expected CIFAR-10 batch names absent from the preferred folder (``[]`` when found)."""
    if find_cifar10(data_dir):
        return []
    return [n for n in CIFAR10_FILES if not (cifar10_dirs(data_dir)[0] / n).is_file()]
