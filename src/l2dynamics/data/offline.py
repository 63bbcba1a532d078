"""Datasets that need no files: sklearn digits, MNIST-1D, and teacher-student data.

Each loader returns a :class:`Dataset` of raw CPU tensors (inputs float64, labels int64);
``load_dataset`` then subsets, moves, casts and normalizes. Generated datasets are built at the
requested sizes; ``digits`` returns its whole seeded split and is subsampled by the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from l2dynamics.data.dataset import Dataset
from l2dynamics.errors import ConfigError


def load_digits(
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    data_dir: Path,
    download: bool,
    test_fraction: float = 0.3,
    image: bool = False,
) -> Dataset:
    """sklearn's 8x8 digits (1797 images, 10 classes), pixels scaled from 0..16 to [0, 1].

    Split train/test with ``test_fraction`` of the examples in test, stratified by class and
    shuffled by ``seed``. Inputs are flat vectors of 64 pixels, or 1×8×8 images with
    ``image=True`` (for the convolutional models).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if not _is_real(test_fraction) or not 0 < test_fraction < 1:
        raise ConfigError(f"digits: test_fraction must be in (0, 1); got {test_fraction!r}")
    if not isinstance(image, bool):
        raise ConfigError(f"digits: image must be true or false; got {image!r}")
    x, y = sk_load_digits(return_X_y=True)
    shape = (1, 8, 8) if image else (64,)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 16.0, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return Dataset(
        "digits",
        _t(x_tr).reshape(-1, *shape),
        _t(y_tr, torch.long),
        _t(x_te).reshape(-1, *shape),
        _t(y_te, torch.long),
        num_outputs=10,
        task="classification",
        input_shape=shape,
        info={
            "source": "sklearn.datasets.load_digits",
            "pixel_max_raw": 16,
            "test_fraction": test_fraction,
        },
    )


def load_mnist1d(
    *, n_train: int | None, n_test: int | None, seed: int, data_dir: Path, download: bool
) -> Dataset:
    """MNIST-1D (Greydanus 2020): 40-sample 1-D signals of 10 digit templates.

    Generated with ``mnist1d.data.make_dataset`` and its default arguments, except
    ``num_samples``, ``train_split`` and ``seed``; the generator standardizes the whole set.
    Generation costs ~0.2 ms per example, so the arrays are cached under
    ``<data_dir>/mnist1d/`` keyed by sizes, seed and generator arguments, and reused.
    """
    n_train = 4000 if n_train is None else n_train
    n_test = 1000 if n_test is None else n_test
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    total = -(-(n_train + n_test) // 10) * 10  # make_dataset draws num_samples // 10 per class
    args.update(num_samples=total, train_split=n_train / total, seed=seed)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:10]
    path = data_dir / "mnist1d" / f"mnist1d_train{n_train}_test{n_test}_seed{seed}_{key}.npz"
    x, y = _read_cache(path)
    if x is None:
        x, y = _make_mnist1d(args)
        _write_cache(path, x=x, y=y)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()
    return Dataset(
        "mnist1d",
        x[:n_train],
        y[:n_train],
        x[n_train : n_train + n_test],
        y[n_train : n_train + n_test],
        num_outputs=10,
        task="classification",
        input_shape=(40,),
        info={"source": "mnist1d.data.make_dataset", "generator_args": args, "cache": str(path)},
    )


def _make_mnist1d(args: dict) -> tuple[np.ndarray, np.ndarray]:
    """Run the generator, leaving Python's and numpy's global RNG states as they were."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    # the generator's own train_split rounds; concatenate and let the caller split exactly
    return np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])


def _read_cache(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    try:
        with np.load(path) as f:
            return f["x"], f["y"]
    except FileNotFoundError:
        return None, None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None, None  # unreadable cache: regenerate and overwrite


def _write_cache(path: Path, **arrays: np.ndarray) -> None:
    """Write atomically (temp file + rename) so concurrent runs never read half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        warnings.warn(f"mnist1d: could not cache generated data at {path}: {e}", stacklevel=3)


TEACHER_TASKS = ("classification", "regression")


def load_teacher(
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    data_dir: Path,
    download: bool,
    input_dim: int = 32,
    teacher_width: int = 512,
    teacher_depth: int = 2,
    num_classes: int = 10,
    label_noise: float = 0.0,
    task: str = "classification",
    noise_std: float = 0.0,
) -> Dataset:
    """Teacher-student data: x ~ N(0, I_input_dim) labelled by a random ReLU network.

    The teacher has ``teacher_depth`` hidden layers of ``teacher_width`` units, no biases,
    weights ~ N(0, 2/fan_in) (He, so activations keep their scale) and readout
    ~ N(0, 1/fan_in). Its outputs are then standardized per output with the mean and std over
    4096 reference inputs (a fixed readout bias and scale): post-ReLU features share a large
    positive mean, and without this the argmax would give one or two classes nearly all labels.

    Classification: label = argmax of the ``num_classes`` outputs; with ``label_noise=p`` a
    random fraction p of the *train* labels is replaced by uniformly random classes (which may
    equal the clean one); test labels stay clean. Regression: y = the scalar output (unit
    variance), shape (n, 1), plus ``noise_std * N(0, 1)`` on train only.

    Teacher, train inputs, test inputs and noise use separate streams derived from ``seed``, so
    the teacher and the test set do not change when ``n_train`` or the noise changes.
    """
    n_train = 1000 if n_train is None else n_train
    n_test = 1000 if n_test is None else n_test
    _check_teacher(input_dim, teacher_width, teacher_depth, num_classes, label_noise, task,
                   noise_std)
    states = np.random.SeedSequence(seed).generate_state(4)
    g_teacher, g_train, g_test, g_noise = (torch.Generator().manual_seed(int(s)) for s in states)
    f64 = torch.float64
    out_dim = num_classes if task == "classification" else 1
    teacher = _teacher_network(g_teacher, input_dim, [teacher_width] * teacher_depth, out_dim)
    x_tr = torch.randn(n_train, input_dim, generator=g_train, dtype=f64)
    x_te = torch.randn(n_test, input_dim, generator=g_test, dtype=f64)
    y_tr, y_te = teacher(x_tr), teacher(x_te)
    info = {
        "source": "teacher",
        "input_dim": input_dim,
        "teacher_width": teacher_width,
        "teacher_depth": teacher_depth,
        "task": task,
        "seed": seed,
    }
    if task == "classification":
        y_tr, y_te = y_tr.argmax(1), y_te.argmax(1)
        n_noisy = round(label_noise * n_train)
        noisy = torch.randperm(n_train, generator=g_noise)[:n_noisy]
        y_tr[noisy] = torch.randint(0, num_classes, (n_noisy,), generator=g_noise)
        info.update(num_classes=num_classes, label_noise=label_noise, n_noisy=n_noisy)
    else:
        y_tr = y_tr + noise_std * torch.randn(n_train, 1, generator=g_noise, dtype=f64)
        info.update(noise_std=noise_std)
    return Dataset(
        "teacher",
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_outputs=out_dim,
        task=task,
        input_shape=(input_dim,),
        info=info,
    )


def _check_teacher(input_dim: int, teacher_width: int, teacher_depth: int, num_classes: int,
                   label_noise: float, task: str, noise_std: float) -> None:
    _check_int("input_dim", input_dim, 1)
    _check_int("teacher_width", teacher_width, 1)
    _check_int("teacher_depth", teacher_depth, 0)
    _check_int("num_classes", num_classes, 2)
    if task not in TEACHER_TASKS:
        raise ConfigError(f"teacher: task must be one of {', '.join(TEACHER_TASKS)}; got {task!r}")
    if not _is_real(label_noise) or not 0 <= label_noise <= 1:
        raise ConfigError(f"teacher: label_noise must be in [0, 1]; got {label_noise!r}")
    if not _is_real(noise_std) or not noise_std >= 0:
        raise ConfigError(f"teacher: noise_std must be >= 0; got {noise_std!r}")
    if task == "regression" and label_noise:
        raise ConfigError("teacher: label_noise applies to task='classification'; use noise_std")
    if task == "classification" and noise_std:
        raise ConfigError("teacher: noise_std applies to task='regression'; use label_noise")


def _teacher_network(g: torch.Generator, input_dim: int, hidden_widths: list[int],
                     out_dim: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The teacher f(x) drawn from `g`: bias-free ReLU layers of `hidden_widths` (He init), a
    readout ~ N(0, 1/fan_in), and outputs standardized over 4096 reference inputs."""
    f64 = torch.float64
    widths = [input_dim, *hidden_widths]
    hidden = [
        torch.randn(a, b, generator=g, dtype=f64) * (2 / a) ** 0.5
        for a, b in zip(widths[:-1], widths[1:], strict=True)
    ]
    readout = torch.randn(widths[-1], out_dim, generator=g, dtype=f64) / widths[-1] ** 0.5

    def features(x: torch.Tensor) -> torch.Tensor:
        for w in hidden:
            x = torch.relu(x @ w)
        return x @ readout

    ref = features(torch.randn(4096, input_dim, generator=g, dtype=f64))
    mean, std = ref.mean(0), ref.std(0)

    def teacher(x: torch.Tensor) -> torch.Tensor:
        return (features(x) - mean) / std

    return teacher


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"teacher: {name} must be an integer >= {low}; got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _t(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)
