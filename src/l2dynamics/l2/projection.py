"""The ‖w‖ = const update (van Laarhoven 2017, §"direct weight normalization update").

For a weight whose output is normalized, L(c·w) = L(w): λ only sets ‖w‖ and through it the
effective learning rate. Holding the norm fixed removes that knob: after every optimizer step
each unit (row / filter: everything but dim 0) of each projected tensor is rescaled back to its
target norm, w ← w · target/‖w‖. ``target="init"`` keeps each unit's initial norm,
``"unit"`` uses 1. With SGD the direction then moves by η/target² per unit gradient, whatever λ
(λ only changes the step by the factor 1/(1 − ηλ), see the module's tests).

Which tensors: only those whose loss is scale-invariant should be projected (projecting a
readout changes the function). :class:`~l2dynamics.train.Trainer` resolves
``project_params="auto"`` by numerical detection on the first batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from l2dynamics.errors import ConfigError

TARGETS = ("init", "unit")


def unit_norms(weight: torch.Tensor) -> torch.Tensor:
    """Per output unit L2 norms (all dims but 0 flattened), in float64."""
    return weight.detach().reshape(weight.shape[0], -1).double().norm(dim=1)


class NormProjection:
    """Rescales each unit of the given tensors to its target norm; ``apply()`` after a step."""

    def __init__(self, named: Sequence[tuple[str, torch.nn.Parameter]], target: str = "init"):
        if target not in TARGETS:
            raise ConfigError(f"project_norm {target!r} is not allowed; use none, "
                              f"{', '.join(TARGETS)}")
        bad = [n for n, p in named if p.ndim < 2]
        if bad:
            raise ConfigError(f"project_params: {bad} have fewer than 2 dimensions; only weight "
                              "tensors (a unit per row or filter) can be projected")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.target = target
        self.targets = [unit_norms(p) if target == "init" else torch.ones(p.shape[0],
                        dtype=torch.float64, device=p.device) for p in self.params]

    @torch.no_grad()
    def apply(self) -> None:
        for p, target in zip(self.params, self.targets, strict=True):
            norms = unit_norms(p).clamp_min(torch.finfo(torch.float64).tiny)
            scale = (target / norms).to(p.dtype)
            p.mul_(scale.reshape(-1, *([1] * (p.ndim - 1))))

    def state_dict(self) -> dict[str, Any]:
        return {"names": self.names, "target": self.target,
                "targets": [t.cpu() for t in self.targets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["names"]) != self.names:
            raise ConfigError("projection state is for other tensors: "
                              f"{state['names']} vs {self.names}")
        self.targets = [t.to(p.device) for t, p in zip(state["targets"], self.params,
                                                        strict=True)]
