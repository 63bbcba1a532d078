"""Datasets as whole tensors on the device: a registry of loaders and one entry point.

``load_dataset(name, ...)`` returns a :class:`Dataset` whose splits are already subset
(class-balanced), cast, normalized with training-set statistics, and moved to ``device``.
Offline datasets (``digits``, ``mnist1d``, ``teacher``) need no files; ``mnist`` and
``cifar10`` read the standard files from :func:`resolve_data_dir` (optionally downloading them);
``fashion_mnist`` reads them from there or from where Debian's ``dataset-fashion-mnist``
package installs them (never downloaded).

This module imports neither torch nor numpy: the registry names its loaders and augmentations
(which need them) and imports them when a dataset is loaded, and finds files with ``locate``, so
:func:`available_datasets` and ``l2dynamics datasets`` answer at once. ``load_dataset`` is
defined in ``data.loading`` and imported from there on first use.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2dynamics.data import locate
from l2dynamics.data.dataset import Dataset
from l2dynamics.names import DATASET_NAMES

if TYPE_CHECKING:
    from l2dynamics.data.loading import load_dataset

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetInfo",
    "available_datasets",
    "load_dataset",
    "resolve_data_dir",
]

ENV_DATA_DIR = "L2DYNAMICS_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/l2dynamics/data")
_COMMON = ("n_train", "n_test", "seed", "data_dir", "download")  # every loader takes these


@dataclass(frozen=True)
class _Spec:
    kind: str  # "offline" (nothing to find) or "files"
    description: str
    loader: str  # "module.function" in l2dynamics.data, imported on use (it needs torch)
    files: tuple[str, ...] = ()
    find: Callable[[Path], dict | None] | None = None
    missing: Callable[[Path], list[str]] | None = None
    augment: str | None = None  # "module.function": augment(x_batch, generator) -> x_batch

    def load(self) -> Callable[..., Dataset]:
        return _resolve(self.loader)

    @property
    def options(self) -> dict:
        """Dataset-specific keyword options and their defaults, read from the loader."""
        params = inspect.signature(self.load()).parameters.values()
        return {p.name: p.default for p in params if p.name not in _COMMON}


def _resolve(reference: str) -> Any:
    module, _, name = reference.rpartition(".")
    return getattr(importlib.import_module(f"l2dynamics.data.{module}"), name)


_REGISTRY: dict[str, _Spec] = {
    "digits": _Spec(
        "offline",
        "sklearn 8x8 digits, 1797 x 64 pixels in [0, 1], 10 classes, seeded stratified split",
        "offline.load_digits",
    ),
    "mnist1d": _Spec(
        "offline",
        "MNIST-1D signals of length 40, 10 classes, generated (and cached) at the "
        "requested sizes; default 4000 train / 1000 test",
        "offline.load_mnist1d",
    ),
    "teacher": _Spec(
        "offline",
        "x ~ N(0, I) labelled by a random ReLU teacher network (classification or "
        "regression); default 1000 train / 1000 test",
        "offline.load_teacher",
    ),
    "mnist": _Spec(
        "files",
        "MNIST 60000/10000 28x28 grey images from the IDX files (plain or .gz)",
        "files.load_mnist",
        locate.MNIST_FILES,
        locate.find_mnist,
        locate.missing_mnist,
    ),
    "fashion_mnist": _Spec(
        "files",
        "Fashion-MNIST 60000/10000 28x28 grey images of clothes, 10 classes, from the IDX files "
        "(plain or .gz); apt-get install dataset-fashion-mnist",
        "files.load_fashion_mnist",
        locate.FASHION_MNIST_FILES,
        locate.find_fashion_mnist,
        locate.missing_fashion_mnist,
    ),
    "cifar10": _Spec(
        "files",
        "CIFAR-10 50000/10000 32x32 colour images from the python batches",
        "files.load_cifar10",
        locate.CIFAR10_FILES,
        locate.find_cifar10,
        locate.missing_cifar10,
        augment="transforms.random_crop_flip",
    ),
}


@dataclass
class DatasetInfo:
    """What :func:`available_datasets` reports about one dataset.

    ``files`` are the expected file names (MNIST also accepts each with ``.gz``); ``location``
    is the folder where they were all found, else ``None``; ``missing`` lists the expected files
    absent from the preferred folder. Offline datasets are always available. ``options`` are the
    dataset-specific keyword options with their defaults, read from the loader's signature when
    asked for (which imports the loader, and torch with it).
    """

    name: str
    kind: str
    description: str
    files: list[str]
    location: Path | None
    available: bool
    missing: list[str] = field(default_factory=list)

    @property
    def options(self) -> dict:
        return _REGISTRY[self.name].options


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$L2DYNAMICS_DATA``, else
    ``~/.cache/l2dynamics/data``. Nothing is created."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def available_datasets(data_dir: str | os.PathLike | None = None) -> list[DatasetInfo]:
    """Every registered dataset, whether its files are present under ``data_dir``, and (as
    ``options``) its options with their defaults."""
    root = resolve_data_dir(data_dir)
    out = []
    for name, spec in _REGISTRY.items():
        found = spec.find(root) if spec.find else None
        location = next(iter(found.values())).parent if found else None
        out.append(
            DatasetInfo(
                name,
                spec.kind,
                spec.description,
                list(spec.files),
                location,
                available=spec.kind == "offline" or found is not None,
                missing=spec.missing(root) if spec.missing else [],
            )
        )
    return out


def __getattr__(name: str) -> Any:
    if name == "load_dataset":  # imports torch; see the module docstring
        from l2dynamics.data.loading import load_dataset

        globals()["load_dataset"] = load_dataset
        return load_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
