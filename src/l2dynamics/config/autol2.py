"""AutoL2 presets: the constants of google/autol2 in our units, and the same constants in units
that transfer across learning rates (used by the config's ``autol2_preset`` and by
:meth:`l2dynamics.l2.AutoL2.from_preset`; here, below the l2 layer, so that the config can
check ``lam`` against a preset)."""

from __future__ import annotations

import math
from typing import Any

from l2dynamics.errors import ConfigError

AUTOL2_PRESETS = ("released-code", "transfer", "default")

#: google/autol2's flags (``-L2=0.1``: λ_c of CE/10 + λ_c·Σθ², refractory 0.1/λ_c steps, ÷10)
#: and the per-step shrink they give at its η_c = 0.2: η·λ₀ = 2·η_c·λ_c = 0.04, in our units.
RELEASED_LAM_CODE, RELEASED_LR_CODE, RELEASED_REFRACTORY_CODE = 0.1, 0.2, 0.1


def autol2_preset(name: str, lr: float, momentum: float = 0.0) -> dict[str, Any]:
    """The AutoL2 constants of a named preset, in our units, for a run at learning rate `lr`
    (per step) with heavy-ball momentum `momentum` (SGD's μ; 0 for Adam/AdamW): ``lam0``,
    ``factor``, ``refractory`` and ``refractory_unit``.

    - ``"released-code"``: google/autol2's flags converted with
      :func:`~l2dynamics.l2.lam_lr_from_autol2_code` (λ = 20·λ_c, η = η_c/10): λ₀ = 2.0 and a
      refractory period of 0.1/λ_c = 2.0/λ steps. Its dynamics equal the released loop's when
      ``lr`` = η_c/10; at another η the same λ is a different per-step shrink.
    - ``"transfer"``: the same constants in the units the dynamics see, the per-step shrink
      η·λ₀ = 0.04 and a refractory period of 0.04 relaxation times 1/(η·λ)
      (``refractory_unit="relaxation"``): equal to ``"released-code"`` at η = 0.02 (the
      released η_c = 0.2), and the same schedule in η·λ·t at any η. With momentum μ the
      shrink per step is η·λ/(1 − μ) once the momentum has built up, so η here is the
      effective η/(1 − μ) (and :meth:`~l2dynamics.l2.AutoL2.from_preset` counts relaxation
      times with it).
    - ``"default"``: this class's defaults (λ₀ = 0.1 and 0.1/λ steps in *our* λ, 20× away
      from the released code's; kept for the runs that used them).
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) \
            or lr <= 0:
        raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
            or not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be a number in [0, 1), got {momentum!r}")
    lam_code = RELEASED_LAM_CODE
    if name == "released-code":
        return {"lam0": 20.0 * lam_code, "factor": 10.0,
                "refractory": RELEASED_REFRACTORY_CODE * 20.0, "refractory_unit": "steps"}
    shrink = 2.0 * RELEASED_LR_CODE * lam_code  # η·λ = 2·η_c·λ_c
    if name == "transfer":
        return {"lam0": shrink * (1.0 - momentum) / lr, "factor": 10.0,
                "refractory": RELEASED_REFRACTORY_CODE * 2.0 * RELEASED_LR_CODE,
                "refractory_unit": "relaxation"}
    if name == "default":
        return {"lam0": 0.1, "factor": 10.0, "refractory": 0.1, "refractory_unit": "steps"}
    raise ConfigError(f"AutoL2 preset {name!r} is not one of {', '.join(AUTOL2_PRESETS)}")
