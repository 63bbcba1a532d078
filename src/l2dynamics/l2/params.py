"""Which parameters are decayed: an explicit, inspectable rule.

Rules: ``"all"`` (every parameter, as google/autol2 does), ``"weights"`` (tensors with ≥ 2
dimensions: excludes biases, normalization gains/shifts and weight-norm gains), ``"none"``, or a
list of glob patterns over parameter names (``fnmatch``), where ``"!pattern"`` excludes; a name
is decayed when it matches some positive pattern and no negative one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch

from l2dynamics.config import DEFAULT_DECAY_PARAMS
from l2dynamics.errors import ConfigError


@dataclass(frozen=True)
class DecaySplit:
    """The resolved rule: names (in ``model.named_parameters()`` order) with and without decay."""

    rule: str | tuple[str, ...]
    decayed: tuple[str, ...]
    not_decayed: tuple[str, ...]

    def to_dict(self) -> dict:
        rule = self.rule if isinstance(self.rule, str) else list(self.rule)
        return {"rule": rule, "decayed": list(self.decayed), "not_decayed": list(self.not_decayed)}


def split_decay(model: torch.nn.Module, rule: str | Sequence[str] = DEFAULT_DECAY_PARAMS
                ) -> DecaySplit:
    """Resolve `rule` against `model`'s parameters (trainable ones only). The default,
    ``"all"``, is the engine's (:data:`l2dynamics.config.DEFAULT_DECAY_PARAMS`)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if isinstance(rule, str):
        if rule == "all":
            keep = [True] * len(named)
        elif rule == "weights":
            keep = [p.ndim >= 2 for _, p in named]
        elif rule == "none":
            keep = [False] * len(named)
        else:
            raise ConfigError(f"decay_params={rule!r}: use 'all', 'weights', 'none' or patterns")
        frozen_rule: str | tuple[str, ...] = rule
    else:
        patterns = tuple(rule)
        positive = [p for p in patterns if not p.startswith("!")]
        negative = [p[1:] for p in patterns if p.startswith("!")]
        if not positive:
            positive = ["*"]
        def matches(name: str, globs: list[str]) -> bool:
            return any(fnmatchcase(name, g) for g in globs)

        keep = [matches(n, positive) and not matches(n, negative) for n, _ in named]
        unused = [p for p in positive + negative if not any(fnmatchcase(n, p) for n, _ in named)]
        if unused:
            raise ConfigError(
                f"decay_params pattern(s) {unused} match no parameter; names look like "
                f"{', '.join(n for n, _ in named[:4])}"
            )
        frozen_rule = patterns
    return DecaySplit(
        rule=frozen_rule,
        decayed=tuple(n for (n, _), k in zip(named, keep, strict=True) if k),
        not_decayed=tuple(n for (n, _), k in zip(named, keep, strict=True) if not k),
    )
