"""Where the MNIST and CIFAR-10 files are expected, and which are there or missing.

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
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def mnist_dirs(data_dir: Path) -> list[Path]:
    """Where the MNIST files may be, in order of preference."""
    return [data_dir / "mnist", data_dir]


def cifar10_dirs(data_dir: Path) -> list[Path]:
    """Where the CIFAR-10 batches may be, in order of preference."""
    return [data_dir / CIFAR10_DIR, data_dir]


def mnist_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist(data_dir: Path) -> dict[str, Path] | None:
    """Paths of the four MNIST files (plain or .gz) in the first folder that has them all."""
    for folder in mnist_dirs(data_dir):
        paths = {name: mnist_path(folder, name) for name in MNIST_FILES}
        if all(paths.values()):
            return paths
    return None


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


def missing_cifar10(data_dir: Path) -> list[str]:
    """Expected CIFAR-10 batch names absent from the preferred folder (``[]`` when found)."""
    if find_cifar10(data_dir):
        return []
    return [n for n in CIFAR10_FILES if not (cifar10_dirs(data_dir)[0] / n).is_file()]
