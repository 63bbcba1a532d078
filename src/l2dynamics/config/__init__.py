"""The one configuration schema shared by every command and study.

A config is flat (``lam: 1e-3``) or nested in sections (``optim: {name: sgd, lr: 0.1}``); both
normalize to the same flat :class:`Config`. Each key is declared once, beside its default, with
its constraint, unit and meaning (see ``constraints``); that declaration validates every value
(a one-line :class:`ConfigError` naming the key and what is allowed), lists the keys
(:func:`describe_keys`, ``l2dynamics keys``, the docs) and feeds the bad-input tests
(:func:`invalid_examples`). Rules that involve several keys are the short list ``CROSS_KEY_RULES``.

Conventions (see ``l2dynamics.l2.conventions``):

- ``lam`` is the paper's λ: the training loss is L(θ) + (λ/2)·‖θ‖² over the decayed parameters,
  i.e. the gradient gains λ·θ (= PyTorch's coupled ``weight_decay=λ``), for every optimizer.
- ``decoupled_wd`` is a different knob: θ ← θ − η·λ_d·θ before each optimizer step (AdamW).
- ``steps`` counts optimizer updates; physical time is Σ η over the updates (η·step at constant η).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from l2dynamics.config.constraints import (
    INT_MAX,
    Bool,
    Choice,
    Floats,
    Globs,
    Int,
    OrAuto,
    PlainMapping,
    Real,
    Str,
    key,
    short,
)
from l2dynamics.config.loading import load_config_file, parse_overrides
from l2dynamics.errors import ConfigError
from l2dynamics.names import DATASET_NAMES, MODEL_NAMES

__all__ = ["CONFIG_KEYS", "CROSS_KEY_RULES", "INT_MAX", "Config", "ConfigError", "InvalidValue",
           "SECTIONS", "describe_keys", "flatten", "invalid_examples", "load_config_file",
           "make_config", "parse_overrides"]

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("ce", "mse")
PARAMETERIZATIONS = ("standard", "ntk")
LR_SCHEDULES = ("constant", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float64")
AUTOCASTS = ("none", "bf16")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
NORMALIZATIONS = ("channel", "global", "none")
DECAY_RULES = ("all", "weights", "none")
# Which parameters λ decays unless told otherwise, in the engine (`decay_params`), in
# `split_decay` and in `decay_param_groups`: every parameter, as the paper's λ/2·‖θ‖² and
# google/autol2 do. "weights" (no biases or normalization gains) is the common AdamW practice.
DEFAULT_DECAY_PARAMS = "all"
LAM_SCHEDULES = ("constant", "autol2")
UNIT_FRACTION = Real(ge=0, lt=1)  # [0, 1)

# Section names accepted in nested configs; ``name`` inside a section means this flat key.
SECTIONS = {
    "data": "dataset",
    "model": "model",
    "optim": "optimizer",
    "l2": None,
    "train": None,
    "eval": None,
    "checkpoint": None,
}
_SECTION_EXAMPLES = {"data": "name: digits, n_train: 1000", "model": "name: fc, width: 256",
                     "optim": "name: sgd, lr: 0.1", "l2": "lam: 0.001", "train": "steps: 1000",
                     "eval": "eval_every: 100", "checkpoint": "checkpoint_every: 1000"}


# ``load_dataset``'s named arguments that a config key sets under another name; every other
# named argument (n_train, n_test, data_dir, download, device, dtype, augment, normalize) is a
# config key of the same name. tests/test_config.py checks this against its signature.
_LOAD_DATASET_ARGS = {"name": "dataset", "seed": "data_seed"}


def _data_option_owner(name: str) -> str | None:
    """The top-level key that owns `name` if it is put in ``data_options`` (else None): passed
    on as ``load_dataset(..., **data_options)``, it would clash with a named argument (a
    TypeError deep in the run) or silently mean another key."""
    if name in _LOAD_DATASET_ARGS:
        return _LOAD_DATASET_ARGS[name]
    return name if name in CONFIG_KEYS else None


@dataclass
class Config:
    """A fully specified training run: each key is ``key(default, constraint, help, unit=...)``.
    Build one with :func:`make_config` (validated); ``Config(...)`` checks nothing."""

    # --- data ---
    dataset: str = key("mnist1d", Choice(DATASET_NAMES), "dataset (`l2dynamics datasets`)")
    data_dir: str | None = key(None, Str(), "where mnist/cifar10 files live "
                               "(else $L2DYNAMICS_DATA, else ~/.cache/l2dynamics/data)")
    download: bool = key(False, Bool(), "fetch mnist/cifar10 when missing (needs a network)")
    n_train: int | None = key(None, Int(ge=1, optional=True), "class-balanced training subset "
                              "size (null: the dataset's default)", unit="examples")
    n_test: int | None = key(None, Int(ge=1, optional=True),
                             "test set size (null: the dataset's default)", unit="examples")
    n_val: int = key(0, Int(ge=0), "examples held out of the test pool as a validation set "
                     "(0: none); test metrics use the rest", unit="examples")
    data_seed: int = key(0, Int(ge=0, le=2**32 - 1),  # numpy's SeedSequence range
                         "seeds data generation and subsets, independent of `seed`")
    augment: bool = key(False, Bool(), "cifar10: 4-pixel pad + random crop + horizontal flip")
    normalize: str = key("channel", Choice(NORMALIZATIONS),
                         "input statistics from the train set: per channel, global or none")
    data_options: dict = key({}, PlainMapping("label_noise: 0.1", _data_option_owner,
                                              ("n_train", "seed")),
                             "dataset-specific options (teacher: input_dim, ...)")
    # --- model ---
    model: str = key("fc", Choice(MODEL_NAMES), "architecture")
    width: int | None = key(None, Int(ge=1, optional=True), "fc/cnn: units or channels; wrn: "
                            "widening factor k (null: the model's default)",
                            unit="units / channels / k")
    depth: int | None = key(None, Int(ge=1, optional=True), "fc: hidden layers; cnn: conv "
                            "layers; wrn: total depth d (null: the model's default)",
                            unit="layers")
    activation: str = key("relu", Str(), "relu | erf | tanh | gelu | linear (checked by the model)")
    bias: bool = key(True, Bool(), "layers have biases")
    parameterization: str = key("standard", Choice(PARAMETERIZATIONS),
                                "standard or ntk (fc only)")
    weight_var: float = key(2.0, Real(gt=0), "σ_w²: initial weight variance × fan_in",
                            unit="variance × fan_in")
    bias_var: float = key(0.0, Real(ge=0), "σ_b²: initial bias variance", unit="variance")
    norm: str | None = key(None, Str(), "none | bn | ln | wn (null: the model's default; "
                           "checked by the model)")
    # --- loss and L2 ---
    loss: str = key("ce", Choice(LOSSES), "ce: mean cross-entropy; mse: ½·Σ_classes "
                    "(f − onehot)², batch mean")
    lam: float = key(0.0, Real(ge=0), "λ, coupled L2: loss + (λ/2)·‖θ‖², gradient + λ·θ "
                     "(PyTorch weight_decay=λ)", unit="paper's λ")
    decoupled_wd: float = key(0.0, Real(ge=0), "decoupled decay (AdamW): θ ← θ − lr·wd·θ "
                              "before each step", unit="per lr·step")
    decay_params: Any = key(DEFAULT_DECAY_PARAMS, Globs(DECAY_RULES),
                            "which parameters the L2 term decays")
    lam_schedule: str = key("constant", Choice(LAM_SCHEDULES),
                            "autol2: λ starts at lam and is divided by autol2_factor on stalls")
    autol2_factor: float = key(10.0, Real(gt=1), "AutoL2: λ ← λ/factor at each decay",
                               unit="ratio")
    autol2_refractory: float = key(0.1, Real(ge=0), "AutoL2: wait refractory/λ steps (or "
                                   "/(η·λ) epochs) after a decay",
                                   unit="see autol2_refractory_unit")
    autol2_refractory_unit: str = key("steps", Choice(("steps", "lr_lam_epochs",
                                                       "relaxation")),
                                      "steps (released code: refractory/λ), lr_lam_epochs "
                                      "(its help text) or relaxation (refractory/(η·λ) steps: "
                                      "transfers across η)")
    autol2_preset: str = key("none", Choice(("none", "released-code", "transfer")),
                             "AutoL2 constants: released-code (google/autol2's, converted: "
                             "lam=2, refractory 2/λ steps) or transfer (η·lam = 0.04, "
                             "refractory 0.04/(η·λ) steps); lam must then be the preset's")
    autol2_every: int = key(10, Int(ge=1), "AutoL2: steps between measurements (next batch, "
                            "bare loss)", unit="updates")
    autol2_plateau: str = key("paper", Choice(("paper", "ema")), "stall test: paper (released "
                              "rule) or ema (smoothed, both series stall)")
    autol2_patience: int = key(5, Int(ge=1), "AutoL2 ema test: measurements without a new best "
                               "before a decay", unit="measurements")
    autol2_min_lam: float = key(0.0, Real(ge=0), "AutoL2: floor on λ (e.g. λ_pred for the "
                                "budget); 0: none", unit="paper's λ")
    project_norm: str = key("none", Choice(("none", "init", "unit")),
                            "hold each unit's ‖w‖ (at init or 1) after every step")
    project_params: Any = key("auto", Globs(("auto",), single=True),
                              "projected tensors: auto (detected scale-invariant) or globs")
    # --- optimizer ---
    optimizer: str = key("sgd", Choice(OPTIMIZERS), "sgd (with momentum/nesterov), adam, adamw")
    lr: float = key(0.1, Real(gt=0), "η, the learning rate", unit="per update")
    momentum: float = key(0.0, UNIT_FRACTION, "sgd heavy ball, PyTorch convention: "
                          "buf = μ·buf + g", unit="μ")
    nesterov: bool = key(False, Bool(), "sgd: Nesterov momentum (needs momentum > 0)")
    betas: tuple[float, float] = key((0.9, 0.999), Floats(UNIT_FRACTION, length=2),
                                     "adam/adamw: (β₁, β₂)")
    eps: float = key(1e-8, Real(gt=0), "adam/adamw: ε")
    lr_schedule: str = key("constant", Choice(LR_SCHEDULES), "after warm-up")
    lr_milestones: tuple[float, ...] = key((0.3, 0.6, 0.9), Floats(UNIT_FRACTION),
                                           "step schedule: where lr drops",
                                           unit="fractions of steps")
    lr_gamma: float = key(0.2, Real(gt=0), "step schedule: lr factor at each milestone",
                          unit="ratio")
    warmup_steps: int = key(0, Int(ge=0), "linear warm-up from lr/warmup_steps to lr",
                            unit="updates")
    # --- run ---
    batch_size: int = key(128, Int(ge=1), "per update; >= n_train means full-batch gradient "
                          "descent", unit="examples")
    steps: int = key(1000, Int(ge=1), "training length", unit="updates")
    seed: int = key(0, Int(ge=0), "model init, batch order and augmentation")
    device: str = key("auto", Choice(DEVICES), "auto: cuda if available")
    dtype: str = key("float32", Choice(DTYPES), "parameters, optimizer state and data "
                     "(the L2 term too)")
    # --- speed (GPU path; each changes arithmetic, so each is part of a run's identity) ---
    autocast: str = key("none", Choice(AUTOCASTS), "bf16: forward and loss under "
                        "torch.autocast(bfloat16)")
    channels_last: bool | str = key("auto", OrAuto(Bool()), "image models and data in NHWC "
                                    "memory layout; auto: where measured faster (conv models on "
                                    "CPU, see train.setup.CHANNELS_LAST_AUTO)")
    compile: str = key("none", Choice(COMPILE_MODES), "torch.compile mode of the training "
                       "forward (none: eager)")
    # --- probes (log-spaced evaluation clock) ---
    eval_per_decade: int = key(10, Int(ge=1, le=1000),  # denser: use eval_every
                               "evaluation points per decade of steps", unit="points")
    eval_every: int = key(0, Int(ge=0), "also evaluate every N steps (0: log clock only)",
                          unit="updates")
    eval_train_size: int = key(1024, Int(ge=0), "fixed training subset evaluated (0: the whole "
                               "train set)", unit="examples")
    eval_batch_size: int = key(0, Int(ge=0), "evaluation batch (0: per device, 256 on CPU "
                               "and 2048 elsewhere, see train.setup.EVAL_BATCH_AUTO)",
                               unit="examples")
    eval_budget: float = key(0.15, Real(ge=0), "most evaluation compute as a share of training "
                             "compute (a trained example costs 3 forward passes, an evaluated "
                             "one 1): intermediate points use a fixed test subset (≥ 2000), then "
                             "runs of ≥ 1000 steps a thinner clock; the last point the whole "
                             "test set; 0: every point on the whole test set",
                             unit="fraction of training compute")
    norms_per_tensor: bool = key(True, Bool(), "record ‖θ_i‖ of every parameter tensor")
    norm_probes: bool = key(False, Bool(), "per tensor: ‖∇L‖, ‖w‖·‖∇L‖, cos(w, ∇L), "
                            "effective LR, angle")
    norm_probes_per_unit: bool = key(False, Bool(), "+ per output unit (dim 0): ‖w_u‖, angle, "
                                     "‖ḡ_u‖ spread")
    # --- checkpoints ---
    checkpoint_every: int = key(0, Int(ge=0), "between checkpoints (0: only on interrupt)",
                                unit="updates")
    checkpoint_dir: str | None = key(None, Str(), "default: beside the store")
    name: str | None = key(None, Str(), "a label for the run")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready flat dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for name, value in out.items():
            if isinstance(value, tuple):
                out[name] = list(value)
        return out

    def replace(self, **changes: Any) -> Config:
        """A validated copy with `changes` applied."""
        return make_config({**self.to_dict(), **changes})


CONFIG_KEYS = tuple(f.name for f in fields(Config))


# --- rules that involve several keys (each: the values → an error message or None) -------------


def _autol2_starts_at_lam(v: dict[str, Any]) -> str | None:
    if v["lam_schedule"] == "autol2" and v["lam"] <= 0:
        return "lam_schedule=autol2 starts at lam, which must be > 0 (e.g. 0.1)"
    return None


def _autol2_preset_sets_its_constants(v: dict[str, Any]) -> str | None:
    """With an AutoL2 preset, lam must be its λ₀ (so the stored config says where λ started)
    and the refractory/factor keys must be left at their defaults or equal the preset's."""
    if v["autol2_preset"] == "none":
        return None
    if v["lam_schedule"] != "autol2":
        return f"autol2_preset={v['autol2_preset']} needs lam_schedule=autol2"
    from l2dynamics.config.autol2 import autol2_preset

    momentum = v["momentum"] if v["optimizer"] == "sgd" else 0.0
    c = autol2_preset(v["autol2_preset"], v["lr"], momentum)
    if not math.isclose(v["lam"], c["lam0"], rel_tol=1e-9):
        return (f"autol2_preset={v['autol2_preset']} starts at λ₀ = {c['lam0']:.6g} for "
                f"lr={v['lr']:g}, momentum={momentum:g}; set lam={c['lam0']:.6g} "
                f"(got lam={v['lam']:g})")
    for name, default in (("factor", 10.0), ("refractory", 0.1), ("refractory_unit", "steps")):
        value = v[f"autol2_{name}"]
        if value != default and value != c[name]:
            return (f"autol2_preset={v['autol2_preset']} sets autol2_{name}={c[name]!r}; "
                    f"drop autol2_{name}={value!r} or use autol2_preset=none")
    return None


def _nesterov_needs_momentum(v: dict[str, Any]) -> str | None:
    if v["nesterov"] and v["momentum"] == 0:
        return "nesterov=true needs momentum > 0 (got momentum=0)"
    return None


def _momentum_is_sgd_only(v: dict[str, Any]) -> str | None:
    if v["optimizer"] != "sgd" and (v["momentum"] or v["nesterov"]):
        return (f"momentum/nesterov apply to optimizer 'sgd' only (got optimizer="
                f"{v['optimizer']!r}); use betas for adam/adamw")
    return None


def _autocast_needs_float32(v: dict[str, Any]) -> str | None:
    if v["autocast"] != "none" and v["dtype"] != "float32":
        return (f"autocast={v['autocast']!r} needs dtype='float32' (got dtype={v['dtype']!r}); "
                "autocast lowers float32 operations")
    return None


def _unit_probes_need_tensor_probes(v: dict[str, Any]) -> str | None:
    if v["norm_probes_per_unit"] and not v["norm_probes"]:
        return ("norm_probes_per_unit=true adds to the per-tensor probes and needs "
                "norm_probes=true (got norm_probes=false)")
    return None


def _val_within_test(v: dict[str, Any]) -> str | None:
    """n_val against an explicit n_test (a null n_test is checked when the data are loaded)."""
    if v["n_val"] and v["n_test"] is not None and v["n_val"] >= v["n_test"]:
        return (f"n_val={v['n_val']} must be smaller than the test set (n_test={v['n_test']}): "
                "the validation set is taken out of the test pool")
    return None


def _warmup_within_steps(v: dict[str, Any]) -> str | None:
    if v["warmup_steps"] >= v["steps"]:
        return f"warmup_steps={v['warmup_steps']} must be smaller than steps={v['steps']}"
    return None


CROSS_KEY_RULES: tuple[Callable[[dict[str, Any]], str | None], ...] = (
    _autol2_starts_at_lam, _autol2_preset_sets_its_constants, _nesterov_needs_momentum,
    _momentum_is_sgd_only,
    _autocast_needs_float32, _unit_probes_need_tensor_probes, _warmup_within_steps,
    _val_within_test)


# --- building and validating ------------------------------------------------------------------


def make_config(*sources: Mapping[str, Any] | Config | None, **overrides: Any) -> Config:
    """Merge mappings (flat or nested, later wins) and keyword overrides into a valid Config."""
    flat: dict[str, Any] = {}
    for source in sources:
        if source is None:
            continue
        if isinstance(source, Config):
            flat.update(source.to_dict())
        elif isinstance(source, Mapping):
            flat.update(flatten(source))
        else:
            raise ConfigError(f"config must be a mapping, got {type(source).__name__}")
    flat.update(flatten(overrides))
    return _validate(flat)


def _validate(flat: dict[str, Any]) -> Config:
    """Each key through its declared constraint (coerced), then the cross-key rules."""
    defaults = Config()
    values = {f.name: f.metadata["constraint"].check(
        f.name, flat[f.name] if f.name in flat else getattr(defaults, f.name))
        for f in fields(Config)}
    for rule in CROSS_KEY_RULES:
        message = rule(values)
        if message is not None:
            raise ConfigError(message)
    return Config(**values)


def flatten(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested sections into flat keys; reject unknown keys with the allowed names, and
    a key set twice in one mapping (``lr`` and ``optim.lr``) rather than let one silently win."""
    flat: dict[str, Any] = {}
    where: dict[str, str] = {}

    def put(target: str, value: Any, spelled: str) -> None:
        if target in flat:
            raise ConfigError(f"{target} is set twice, as '{where[target]}' and '{spelled}'; "
                              "set it in one place")
        flat[target], where[target] = value, spelled

    for name, value in mapping.items():
        if not isinstance(name, str):
            raise ConfigError(f"config keys must be strings, got {short(name)}")
        if name in SECTIONS and name not in CONFIG_KEYS and value is None:
            continue  # an empty section ("optim:" with every key commented out)
        if name in SECTIONS and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                target = SECTIONS[name] if sub_key == "name" and SECTIONS[name] else sub_key
                if target == "name" or target not in CONFIG_KEYS:
                    raise ConfigError(_unknown_key_message(f"{name}.{sub_key}"))
                put(target, sub_value, f"{name}.{sub_key}")
        elif name in CONFIG_KEYS:
            put(name, value, name)
        elif name in SECTIONS:
            raise ConfigError(f"config section '{name}' must be a mapping of keys to values, "
                              f"e.g. {name}: {{{_SECTION_EXAMPLES[name]}}}; got {short(value)}")
        else:
            raise ConfigError(_unknown_key_message(name))
    return flat


def _unknown_key_message(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(str(name).split(".")[-1], CONFIG_KEYS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown config key {name!r}{hint}; run `l2dynamics keys` to list them"


# --- the declarations as data: docs, `l2dynamics keys`, tests ----------------------------------


def describe_keys() -> list[dict[str, Any]]:
    """One row per config key, in declaration order: ``key``, ``type``, ``default`` (JSON-ready),
    ``allowed`` (what the constraint accepts, e.g. ``"> 0"``, ``"[0, 1)"``), ``unit`` (may be
    empty) and ``help``."""
    defaults = Config().to_dict()
    return [{"key": f.name, "type": f.metadata["constraint"].type_name(),
             "default": defaults[f.name], "allowed": f.metadata["constraint"].allowed(),
             "unit": f.metadata["unit"], "help": f.metadata["help"]} for f in fields(Config)]


class InvalidValue(NamedTuple):
    """A value that `key` refuses on its own, and a fragment of the one-line message it gets."""

    key: str
    value: Any
    says: str


def invalid_examples() -> list[InvalidValue]:
    """Values every key must refuse, drawn from its declaration: below/above its range, outside
    its choices, of the wrong type, NaN/±inf and beyond float range for numbers."""
    return [InvalidValue(f.name, value, says) for f in fields(Config)
            for value, says in f.metadata["constraint"].invalid()]

