"""The registry: every study by key, as ``"module:Class"`` so that listing keys imports nothing.

A new study is one module (a :class:`~l2dynamics.studies.base.Study` subclass), one line here
and one line in a suite (``studies/suites/*.yaml``); the CLI (``l2dynamics study KEY``,
``l2dynamics studies``), the suites and the HTML report pick it up without further code.
"""

from __future__ import annotations

import difflib
import importlib

from l2dynamics.errors import ConfigError
from l2dynamics.studies.base import Study

STUDIES: dict[str, str | type[Study]] = {
    "tstar": "l2dynamics.studies.study_tstar:TstarStudy",
    "theory": "l2dynamics.studies.study_theory:TheoryUnit",
    "tuning": "l2dynamics.studies.study_tuning:TuningStudy",
    "predict": "l2dynamics.studies.study_predict:PredictStudy",
    "norm_equilibrium": "l2dynamics.studies.study_norm_equilibrium:NormEquilibriumStudy",
    "norm_traces": "l2dynamics.studies.study_norm_traces:NormTracesStudy",
    "norm_grid": "l2dynamics.studies.study_norm_grid:NormGridStudy",
    "norm_projection": "l2dynamics.studies.study_norm_projection:NormProjectionStudy",
    "norm_bridge": "l2dynamics.studies.study_norm_bridge:NormBridgeStudy",
    "fmnist_tstar": "l2dynamics.studies.study_fmnist:FashionTstarStudy",
    "fmnist_tuning": "l2dynamics.studies.study_fmnist:FashionTuningStudy",
    "fmnist_cnn_bn": "l2dynamics.studies.study_cnn_bn:CnnBnStudy",
    "regime": "l2dynamics.studies.study_regime:RegimeStudy",
}


def get_study(key: str) -> Study:
    """An instance of the study registered as `key` (ConfigError with "did you mean")."""
    if key not in STUDIES:
        close = difflib.get_close_matches(key, list(STUDIES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"no study {key!r}{hint} (studies: {', '.join(STUDIES)})")
    target = STUDIES[key]
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
    cls = target
    if cls.key != key:
        raise RuntimeError(f"registry entry {key!r} names {cls.__name__}, whose key is "
                           f"{cls.key!r}")
    return cls()
