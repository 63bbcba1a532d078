"""The one configuration schema shared by every command and study.

A config is flat (``lam: 1e-3``) or nested in sections (``optim: {name: sgd, lr: 0.1}``); both
normalize to the same flat :class:`Config`. Every value is validated here, once, with a message
that names the field and what is allowed, so that nothing downstream starts on bad input.

Conventions (see ``l2dynamics.l2.conventions``):

- ``lam`` is the paper's λ: the training loss is L(θ) + (λ/2)·‖θ‖² over the decayed parameters,
  i.e. the gradient gains λ·θ (= PyTorch's coupled ``weight_decay=λ``), for every optimizer.
- ``decoupled_wd`` is a different knob: θ ← θ − η·λ_d·θ before each optimizer step (AdamW).
- ``steps`` counts optimizer updates; physical time is Σ η over the updates (η·step at constant η).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from l2dynamics.data import DATASET_NAMES
from l2dynamics.errors import ConfigError
from l2dynamics.models import MODEL_NAMES

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
LAM_SCHEDULES = ("constant", "autol2")
INT_MAX = 2**63 - 1  # integers are stored as SQLite INTEGER (int64) and seeded into torch

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


@dataclass
class Config:
    """A fully specified training run. Units and conventions are stated per field."""

    # --- data ---
    dataset: str = "mnist1d"
    data_dir: str | None = None  # where mnist/cifar10 files live (else $L2DYNAMICS_DATA)
    download: bool = False  # fetch mnist/cifar10 when missing (needs a network)
    n_train: int | None = None  # class-balanced training subset size (None: dataset default)
    n_test: int | None = None  # test set size (None: dataset default)
    data_seed: int = 0  # seeds data generation and subsets, independent of `seed`
    augment: bool = False  # cifar10: 4-pixel pad + random crop + horizontal flip
    normalize: str = "channel"  # "channel" | "global" | "none" (statistics of the train set)
    data_options: dict = field(default_factory=dict)  # dataset-specific (teacher: input_dim, ...)
    # --- model ---
    model: str = "fc"
    width: int | None = None  # fc/cnn: units or channels; wrn: widening factor k
    depth: int | None = None  # fc: hidden layers; cnn: conv layers; wrn: total depth d
    activation: str = "relu"
    bias: bool = True
    parameterization: str = "standard"  # "standard" | "ntk" (fc only)
    weight_var: float = 2.0  # σ_w²: weight variance × fan_in
    bias_var: float = 0.0  # σ_b²
    norm: str | None = None  # "none" | "bn" | "ln" | "wn"; None: the model's default
    # --- loss and L2 ---
    loss: str = "ce"  # "ce" (mean cross-entropy) | "mse" (½·Σ_classes (f − onehot)², batch mean)
    lam: float = 0.0  # coupled L2: loss + (lam/2)·‖θ‖²  (gradient + lam·θ)
    decoupled_wd: float = 0.0  # decoupled decay: θ ← θ − lr·decoupled_wd·θ per step (AdamW)
    decay_params: Any = "all"  # "all" | "weights" | "none" | list of glob patterns ("!x" excludes)
    lam_schedule: str = "constant"  # "constant" | "autol2" (λ starts at lam, ÷ factor on stalls)
    autol2_factor: float = 10.0  # AutoL2: λ ← λ/factor at each decay
    autol2_refractory: float = 0.1  # AutoL2: wait refractory/λ steps (or /(η·λ) epochs) after one
    autol2_refractory_unit: str = "steps"  # "steps" (released code) | "lr_lam_epochs" (its help)
    autol2_every: int = 10  # AutoL2: optimizer steps between measurements (next batch, bare loss)
    autol2_plateau: str = "paper"  # "paper" (released rule) | "ema" (smoothed, both series stall)
    autol2_patience: int = 5  # AutoL2 "ema" test: measurements without a new best before a decay
    autol2_min_lam: float = 0.0  # AutoL2: floor on λ (e.g. λ_pred for the budget); 0: none
    project_norm: str = "none"  # "none" | "init" | "unit": hold each unit's ‖w‖ after every step
    project_params: Any = "auto"  # projected tensors: "auto" (detected scale-invariant) | globs
    # --- optimizer ---
    optimizer: str = "sgd"  # "sgd" (with momentum/nesterov) | "adam" | "adamw"
    lr: float = 0.1  # η, per optimizer update
    momentum: float = 0.0  # heavy-ball coefficient (PyTorch convention: buf = μ·buf + g)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)  # Adam(W)
    eps: float = 1e-8  # Adam(W)
    lr_schedule: str = "constant"  # "constant" | "step" | "cosine" (after warm-up)
    lr_milestones: tuple[float, ...] = (0.3, 0.6, 0.9)  # step schedule: fractions of `steps`
    lr_gamma: float = 0.2  # step schedule: factor at each milestone
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr
    # --- run ---
    batch_size: int = 128  # examples per update; ≥ n_train means full-batch gradient descent
    steps: int = 1000  # optimizer updates
    seed: int = 0  # model init, batch order and augmentation
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "mps"
    dtype: str = "float32"  # parameters, optimizer state and data (the L2 term is in this dtype)
    # --- speed (GPU path; each changes arithmetic, so each is part of a run's identity) ---
    autocast: str = "none"  # "bf16": forward and loss under torch.autocast(bfloat16)
    channels_last: bool = False  # image models and data in NHWC memory layout
    compile: str = "none"  # torch.compile mode of the training forward ("none": eager)
    # --- probes (log-spaced evaluation clock) ---
    eval_per_decade: int = 10  # evaluation points per decade of steps
    eval_every: int = 0  # also evaluate every N steps (0: log clock only)
    eval_train_size: int = 1024  # fixed training subset evaluated (0: the whole train set)
    eval_batch_size: int = 2048
    norms_per_tensor: bool = True  # record ‖θ_i‖ of every parameter tensor
    norm_probes: bool = False  # per tensor: ‖∇L‖, ‖w‖·‖∇L‖, cos(w, ∇L), effective LR, angle
    norm_probes_per_unit: bool = False  # + per output unit (dim 0): ‖w_u‖, angle, ‖ḡ_u‖ spread
    # --- checkpoints ---
    checkpoint_every: int = 0  # steps between checkpoints (0: only on interrupt)
    checkpoint_dir: str | None = None  # default: beside the store
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready flat dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    def replace(self, **changes: Any) -> Config:
        """A validated copy with `changes` applied."""
        return make_config({**self.to_dict(), **changes})


CONFIG_KEYS = tuple(f.name for f in fields(Config))


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

    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r}")
        if key in SECTIONS and key not in CONFIG_KEYS and value is None:
            continue  # an empty section ("optim:" with every key commented out)
        if key in SECTIONS and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                target = SECTIONS[key] if sub_key == "name" and SECTIONS[key] else sub_key
                if target == "name" or target not in CONFIG_KEYS:
                    raise ConfigError(_unknown_key_message(f"{key}.{sub_key}"))
                put(target, sub_value, f"{key}.{sub_key}")
        elif key in CONFIG_KEYS:
            put(key, value, key)
        elif key in SECTIONS:
            raise ConfigError(f"config section '{key}' must be a mapping of keys to values, "
                              f"e.g. {key}: {{{_SECTION_EXAMPLES[key]}}}; got {_short(value)}")
        else:
            raise ConfigError(_unknown_key_message(key))
    return flat


def _validate_project_params(values: dict[str, Any]) -> None:
    rule = values["project_params"]
    if rule == "auto":
        return
    if isinstance(rule, str):
        rule = [rule]
    if (not isinstance(rule, (list, tuple)) or not rule
            or not all(isinstance(x, str) and x for x in rule)):
        raise ConfigError(f"project_params must be 'auto' or a non-empty list of glob patterns "
                          f"over parameter names, got {values['project_params']!r}")
    values["project_params"] = list(rule)


def _unknown_key_message(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key.split(".")[-1], CONFIG_KEYS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown config key {key!r}{hint}; run `l2dynamics keys` to list them"


class _DataLoader(yaml.SafeLoader):
    """YAML as plain data: the safe loader (no ``!!python/...`` tags, nothing is called) that
    also refuses a key given twice in one mapping instead of keeping the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" then overriding keys is YAML's own idiom
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # unhashable: the safe loader reports it
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicate = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if duplicate is not None:
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def load_config_file(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """Read a YAML or JSON config file as data (never evaluated; see `_DataLoader`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a YAML or JSON file")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text()
        data = (json.loads(text, object_pairs_hook=_unique_pairs) if path.suffix == ".json"
                else yaml.load(text, Loader=_DataLoader))  # a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as err:  # ValueError: JSON, UTF-8, duplicate keys
        raise ConfigError(f"{what} {path} is not valid YAML/JSON: {_one_line(err)}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} {path} must hold a mapping of keys to values")
    return dict(data)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (values as YAML scalars/lists); ``a.b=v`` sets nested keys."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        target = out
        *parents, leaf = key.split(".")
        for parent in parents:
            existing = target.setdefault(parent, {})
            if not isinstance(existing, dict):
                raise ConfigError(f"override {item!r} conflicts with {f'{parent}={existing}'!r}")
            target = existing
        target[leaf] = value
    return out


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _short(value: Any) -> str:
    """repr of `value` cut to 60 characters, for huge numbers and long strings in messages."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's limit on digits for str()
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    return text if len(text) <= 60 else text[:56] + " ..."


# --- validation -------------------------------------------------------------------------------


def _validate(flat: dict[str, Any]) -> Config:
    defaults = Config()
    values = {key: flat.get(key, getattr(defaults, key)) for key in CONFIG_KEYS}
    v = _Validator(values)
    v.choice("dataset", DATASET_NAMES)
    v.optional_str("data_dir")
    v.boolean("download")
    v.integer("n_train", minimum=1, optional=True)
    v.integer("n_test", minimum=1, optional=True)
    v.integer("data_seed", minimum=0, maximum=2**32 - 1)  # numpy's SeedSequence range
    v.boolean("augment")
    v.choice("normalize", NORMALIZATIONS)
    if not isinstance(values["data_options"], Mapping):
        raise ConfigError("data_options must be a mapping of dataset options, "
                          "e.g. {label_noise: 0.1}")
    values["data_options"] = dict(values["data_options"])
    try:  # stored as JSON with the run: plain data only
        json.dumps(values["data_options"], allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data_options must hold plain data (numbers, strings, lists, "
                          f"mappings), got {_short(values['data_options'])}: {err}") from None
    v.choice("model", MODEL_NAMES)
    v.integer("width", minimum=1, optional=True)
    v.integer("depth", minimum=1, optional=True)
    v.optional_str("activation")
    v.boolean("bias")
    v.choice("parameterization", PARAMETERIZATIONS)
    v.number("weight_var", positive=True)
    v.number("bias_var", minimum=0.0)
    v.optional_str("norm")
    v.choice("loss", LOSSES)
    v.number("lam", minimum=0.0)
    v.number("decoupled_wd", minimum=0.0)
    _validate_decay_rule(values)
    v.choice("lam_schedule", LAM_SCHEDULES)
    v.number("autol2_factor", positive=True)
    if values["autol2_factor"] <= 1:
        raise ConfigError(f"autol2_factor must be > 1 (λ is divided by it), got "
                          f"{values['autol2_factor']!r}")
    v.number("autol2_refractory", minimum=0.0)
    v.choice("autol2_refractory_unit", ("steps", "lr_lam_epochs"))
    v.integer("autol2_every", minimum=1)
    v.choice("autol2_plateau", ("paper", "ema"))
    v.choice("project_norm", ("none", "init", "unit"))
    _validate_project_params(values)
    v.integer("autol2_patience", minimum=1)
    v.number("autol2_min_lam", minimum=0.0)
    if values["lam_schedule"] == "autol2" and values["lam"] <= 0:
        raise ConfigError("lam_schedule=autol2 starts at lam, which must be > 0 (e.g. 0.1)")
    v.choice("optimizer", OPTIMIZERS)
    v.number("lr", positive=True)
    v.number("momentum", minimum=0.0, below=1.0)
    v.boolean("nesterov")
    if values["nesterov"] and values["momentum"] == 0:
        raise ConfigError("nesterov=true needs momentum > 0 (got momentum=0)")
    if values["optimizer"] != "sgd" and (values["momentum"] or values["nesterov"]):
        raise ConfigError(
            "momentum/nesterov apply to optimizer 'sgd' only "
            f"(got optimizer={values['optimizer']!r}); use betas for adam/adamw"
        )
    v.number_list("betas", length=2, minimum=0.0, below=1.0)
    v.number("eps", positive=True)
    v.choice("lr_schedule", LR_SCHEDULES)
    v.number_list("lr_milestones", minimum=0.0, below=1.0)
    v.number("lr_gamma", positive=True)
    v.integer("warmup_steps", minimum=0)
    v.integer("batch_size", minimum=1)
    v.integer("steps", minimum=1)
    v.integer("seed", minimum=0)
    v.choice("device", DEVICES)
    v.choice("dtype", DTYPES)
    v.choice("autocast", AUTOCASTS)
    if values["autocast"] != "none" and values["dtype"] != "float32":
        raise ConfigError(f"autocast={values['autocast']!r} needs dtype='float32' (got "
                          f"dtype={values['dtype']!r}); autocast lowers float32 operations")
    v.boolean("channels_last")
    v.choice("compile", COMPILE_MODES)
    v.integer("eval_per_decade", minimum=1, maximum=1000)  # denser: use eval_every
    v.integer("eval_every", minimum=0)
    v.integer("eval_train_size", minimum=0)
    v.integer("eval_batch_size", minimum=1)
    v.boolean("norms_per_tensor")
    v.boolean("norm_probes")
    v.boolean("norm_probes_per_unit")
    if values["norm_probes_per_unit"] and not values["norm_probes"]:
        raise ConfigError("norm_probes_per_unit=true adds to the per-tensor probes and needs "
                          "norm_probes=true (got norm_probes=false)")
    v.integer("checkpoint_every", minimum=0)
    v.optional_str("checkpoint_dir")
    v.optional_str("name")
    if values["warmup_steps"] >= values["steps"]:
        raise ConfigError(
            f"warmup_steps={values['warmup_steps']} must be smaller than steps={values['steps']}"
        )
    return Config(**values)


def _validate_decay_rule(values: dict[str, Any]) -> None:
    rule = values["decay_params"]
    if isinstance(rule, str):
        if rule not in DECAY_RULES:
            raise ConfigError(
                f"decay_params={rule!r} is not allowed; use one of {', '.join(DECAY_RULES)} "
                "or a list of glob patterns over parameter names"
            )
    elif isinstance(rule, (list, tuple)) and rule and all(isinstance(p, str) for p in rule):
        values["decay_params"] = list(rule)
    else:
        raise ConfigError(
            "decay_params must be 'all', 'weights', 'none' or a non-empty list of glob patterns"
        )


class _Validator:
    """Coerces and checks values in place; messages name the field and the allowed values."""

    def __init__(self, values: dict[str, Any]):
        self.values = values

    def choice(self, key: str, allowed: Iterable[str]) -> None:
        value = self.values[key]
        allowed = tuple(allowed)
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(f"{key}={value!r} is not allowed; use one of: {', '.join(allowed)}")

    def optional_str(self, key: str) -> None:
        value = self.values[key]
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")

    def boolean(self, key: str) -> None:
        value = self.values[key]
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            value = value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        self.values[key] = value

    def _to_float(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        except OverflowError:  # an int beyond the float range
            raise ConfigError(f"{key} must be a finite number, got {_short(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number

    def number(self, key: str, *, minimum: float | None = None, positive: bool = False,
               below: float | None = None) -> None:
        number = self._to_float(key, self.values[key])
        self._check_range(key, number, minimum, positive, below)
        self.values[key] = number

    @staticmethod
    def _check_range(key: str, number: float, minimum: float | None, positive: bool,
                     below: float | None) -> None:
        if positive and number <= 0:
            raise ConfigError(f"{key} must be > 0, got {number:g}")
        if minimum is not None and number < minimum:
            raise ConfigError(f"{key} must be >= {minimum:g}, got {number:g}")
        if below is not None and number >= below:
            raise ConfigError(f"{key} must be < {below:g}, got {number:g}")

    def number_list(self, key: str, *, length: int | None = None, minimum: float | None = None,
                    below: float | None = None) -> None:
        value = self.values[key]
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list of numbers, got {value!r}")
        if length is not None and len(value) != length:
            raise ConfigError(f"{key} must have {length} numbers, got {len(value)}")
        numbers = tuple(self._to_float(key, item) for item in value)
        for number in numbers:
            self._check_range(key, number, minimum, False, below)
        self.values[key] = numbers

    def integer(self, key: str, *, minimum: int | None = None, optional: bool = False,
                maximum: int = INT_MAX) -> None:
        value = self.values[key]
        if value is None and optional:
            return
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(float(value)) if float(value).is_integer() else value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {_short(value)}")
        if value > maximum:
            raise ConfigError(f"{key} must be <= {maximum}, got {_short(value)}")
        self.values[key] = value
