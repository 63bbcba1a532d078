"""``load_dataset``: a registered dataset's splits, subset, cast, normalized and on the device."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from l2dynamics.data import _REGISTRY, DATASET_NAMES, _resolve, _Spec, resolve_data_dir, transforms
from l2dynamics.data.dataset import Dataset
from l2dynamics.errors import ConfigError


def load_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    augment: bool = False,
    normalize: str = "channel",
    **options,
) -> Dataset:
    """Load dataset ``name`` onto ``device``.

    Args:
        n_train, n_test: split sizes. Generated datasets (``mnist1d``, ``teacher``) are built
            at these sizes; the others are subsampled class-balanced (``n // C`` per class, the
            remainder one each to the first classes) with a generator seeded by ``seed``.
            ``None``: the dataset's default (the full split for file datasets).
        data_dir: data folder, see :func:`resolve_data_dir` (also holds the mnist1d cache).
        download: fetch missing ``mnist``/``cifar10`` files (ignored by offline datasets).
        seed: seeds the split (digits), the generator (mnist1d, teacher) and the subsets.
        dtype: floating dtype of the inputs (and of regression targets).
        augment: attach the dataset's batch augmentation (defined for ``cifar10`` only).
        normalize: ``"channel"`` | ``"global"`` | ``"none"``, statistics from the train split;
            see :func:`l2dynamics.data.transforms.normalize`.
        **options: dataset-specific options, see ``available_datasets()[i].options``.
    """
    spec, device = _check_arguments(name, options, n_train, n_test, seed, normalize, dtype,
                                    device, augment)
    seed = int(seed)
    raw = spec.load()(n_train=n_train, n_test=n_test, seed=seed,
                      data_dir=resolve_data_dir(data_dir), download=download, **options)
    pool = {"n_train_available": raw.n_train, "n_test_available": raw.n_test}
    x_tr, y_tr = _take(raw, raw.x_train, raw.y_train, n_train, "n_train", _generator(seed, 1))
    x_te, y_te = _take(raw, raw.x_test, raw.y_test, n_test, "n_test", _generator(seed, 2))

    work = torch.float64 if dtype == torch.float64 else torch.float32  # stats in >= fp32
    pixel_max = raw.info.get("pixel_max")  # integer pixels are scaled to [0, 1] on the device
    x_tr, x_te = (_to_float(x, device, work, pixel_max) for x in (x_tr, x_te))
    x_tr, x_te, stats = transforms.normalize(x_tr, x_te, normalize)
    y_dtype = torch.long if raw.task == "classification" else dtype
    info = {**raw.info, **pool, "n_train": len(x_tr), "n_test": len(x_te), "seed": seed,
            "normalization": stats}
    return replace(raw, x_train=x_tr.to(dtype), y_train=y_tr.to(device, y_dtype),
                   x_test=x_te.to(dtype), y_test=y_te.to(device, y_dtype),
                   augment=_resolve(spec.augment) if augment else None, info=info)


def _check_arguments(name, options, n_train, n_test, seed, normalize, dtype, device,
                     augment) -> tuple[_Spec, torch.device]:
    """The registry entry of ``name`` and the device, once every argument is known good (else
    a one-line ConfigError)."""
    if name not in DATASET_NAMES:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    spec = _REGISTRY[name]
    allowed = spec.options
    for key in options:
        if key not in allowed:
            choices = f"allowed: {', '.join(allowed)}" if allowed else f"{name} takes no options"
            raise ConfigError(f"{name}: unknown option {key!r}; {choices}")
    for arg, value in (("n_train", n_train), ("n_test", n_test)):
        if value is not None and (not _is_int(value) or value < 1):
            raise ConfigError(f"{name}: {arg} must be a positive integer or None; got {value!r}")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"{name}: seed must be an integer in [0, 2**32); got {seed!r}")
    if normalize not in transforms.NORMALIZE_MODES:
        modes = ", ".join(transforms.NORMALIZE_MODES)
        raise ConfigError(f"normalize must be one of {modes}; got {normalize!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch.dtype, e.g. torch.float32; got {dtype}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        msg = f"device must be a torch device such as 'cpu' or 'cuda:0'; got {device!r}"
        raise ConfigError(msg) from None
    if augment and spec.augment is None:
        raise ConfigError(f"augment is only defined for cifar10; got dataset {name!r}")
    return spec, device


def _take(raw: Dataset, x, y, n: int | None, arg: str, g: torch.Generator):
    """The first/whole split, or a seeded subset of ``n`` (class-balanced for classification)."""
    if n is None or n == len(x):
        return x, y
    if n > len(x):
        raise ConfigError(f"{raw.name}: {arg}={n} but only {len(x)} exist; use at most {len(x)}")
    if raw.task == "classification":
        idx = transforms.balanced_subset(y, n, raw.num_outputs, g, what=f"{raw.name}: {arg}")
    else:
        idx = torch.randperm(len(x), generator=g)[:n]
    return x[idx], y[idx]


def _to_float(x: torch.Tensor, device: torch.device, dtype: torch.dtype, pixel_max: int | None):
    """Move first (uint8 is 4x smaller to transfer), then cast and divide by ``pixel_max``."""
    x = x.to(device).to(dtype)
    return x.div_(pixel_max) if pixel_max else x


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per (seed, stream)."""
    (state,) = np.random.SeedSequence([seed, stream]).generate_state(1)
    return torch.Generator().manual_seed(int(state))


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
