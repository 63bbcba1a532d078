"""The in-memory dataset record that every loader returns.

A :class:`Dataset` holds whole train and test splits as tensors on one device, airbench style:
batches are slices of these tensors, so there is no DataLoader between the data and the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the record is importable without torch
    import torch


@dataclass
class Dataset:
    """Train and test splits of one dataset, already on the target device.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        x_train, x_test: float inputs of shape ``(n, *input_shape)``, normalized as recorded in
            ``info["normalization"]``.
        y_train, y_test: ``int64`` class labels of shape ``(n,)`` for classification, or float
            targets of shape ``(n, 1)`` for regression.
        num_outputs: number of classes, or 1 for regression.
        task: ``"classification"`` or ``"regression"``.
        input_shape: shape of one input, e.g. ``(40,)`` or ``(3, 32, 32)`` (channels first).
        augment: ``augment(x_batch, generator) -> x_batch`` applied to a training batch on its
            device, all randomness drawn from ``generator``; ``None`` when augmentation is off.
        info: provenance (source files or generator arguments, subset sizes, normalization
            mean/std), plain Python values so that it can be stored as JSON.
        x_val, y_val: a validation set held out of the test pool (config key ``n_val``, see
            :func:`l2dynamics.train.setup.split_validation`), or ``None``: training is unchanged,
            λ is selected on it and the test metrics stay an unbiased report.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_outputs: int
    task: str
    input_shape: tuple[int, ...]
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    info: dict = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    @property
    def n_val(self) -> int:
        return 0 if self.x_val is None else len(self.x_val)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, task={self.task!r}, n_train={self.n_train}, "
            f"n_test={self.n_test}, n_val={self.n_val}, input_shape={self.input_shape}, "
            f"num_outputs={self.num_outputs}, device={self.x_train.device}, "
            f"dtype={self.x_train.dtype}, augment={self.augment is not None})"
        )
