import dataclasses
import json
import math
import re

import pytest

from l2dynamics.config import (
    CONFIG_KEYS,
    CROSS_KEY_RULES,
    Config,
    describe_keys,
    invalid_examples,
    load_config_file,
    make_config,
    parse_overrides,
)
from l2dynamics.errors import ConfigError

CORE_KEYS = ("dataset", "model", "width", "depth", "parameterization", "optimizer", "lr",
             "momentum", "lam", "decoupled_wd", "batch_size", "steps", "seed", "loss")


def test_core_keys_exist():
    assert set(CORE_KEYS) <= set(CONFIG_KEYS)


def test_flat_and_nested_give_the_same_config():
    flat = make_config({"dataset": "digits", "model": "fc", "width": 64, "optimizer": "sgd",
                        "lr": 0.05, "lam": 1e-3, "momentum": 0.9})
    nested = make_config({"data": {"name": "digits"}, "model": {"name": "fc", "width": 64},
                          "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                          "l2": {"lam": 1e-3}})
    assert flat == nested


def test_yaml_strings_for_numbers_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lam: 1e-3\nlr: '0.2'\nsteps: 1e3\n")  # PyYAML reads 1e-3 as a string
    cfg = make_config(load_config_file(path))
    assert cfg.lam == 1e-3 and cfg.lr == 0.2 and cfg.steps == 1000


def test_overrides_parse_types_and_nesting():
    over = parse_overrides(["lam=0.01", "bias=false", "betas=[0.8, 0.99]",
                            "data_options.label_noise=0.1", "name=my run"])
    cfg = make_config(over, dataset="teacher")
    assert cfg.lam == 0.01 and cfg.bias is False and cfg.betas == (0.8, 0.99)
    assert cfg.data_options == {"label_noise": 0.1} and cfg.name == "my run"


def test_round_trip_through_dict():
    cfg = make_config(lam=3e-4, lr_milestones=[0.5], decay_params=["*.weight", "!fc*"])
    assert make_config(cfg.to_dict()) == cfg
    assert cfg.replace(lam=0.0).lam == 0.0


@pytest.mark.parametrize("overrides, field", [
    ({"lam": -1e-3}, "lam"),
    ({"lam": math.nan}, "lam"),
    ({"lam": "inf"}, "lam"),
    ({"lr": 0}, "lr"),
    ({"lr": "fast"}, "lr"),
    ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"batch_size": -4}, "batch_size"),
    ({"momentum": 1.0}, "momentum"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"model": "transformer"}, "model"),
    ({"optimizer": "lion"}, "optimizer"),
    ({"loss": "hinge"}, "loss"),
    ({"parameterization": "mup"}, "parameterization"),
    ({"decay_params": "some"}, "decay_params"),
    ({"bias": "maybe"}, "bias"),
    ({"nesterov": True}, "nesterov"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum"),
    ({"betas": [0.9]}, "betas"),
    ({"warmup_steps": 5000, "steps": 100}, "warmup_steps"),
    ({"lamda": 0.1}, "lamda"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        make_config(overrides)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'lam'"):
        make_config({"lamb": 0.1})


def test_defaults_are_valid():
    assert make_config() == Config()


def test_shipped_configs_are_valid():
    from pathlib import Path

    import l2dynamics.studies
    from l2dynamics.sweep import load_sweep

    root = Path(__file__).parent.parent / "configs"
    paper = Path(l2dynamics.studies.__file__).parent / "suites" / "paper_configs"
    sweep_dirs = ("sweeps", "paper")  # sweep specs; everything else is a run config
    runs = sorted(p for p in root.rglob("*.yaml") if not set(sweep_dirs) & set(p.parts))
    sweeps = sorted(p for d in (root / "sweeps", root / "paper", paper) for p in d.glob("*.yaml"))
    assert runs and len(sweeps) >= 6
    for path in runs:
        make_config(load_config_file(path))
    for path in sweeps:
        assert len(load_sweep(path).configs()) > 0


# --- the declarations: one per key, driving validation, `l2dynamics keys` and the docs ----------


def test_describe_keys_has_one_row_per_key_with_the_promised_fields():
    rows = describe_keys()
    assert [r["key"] for r in rows] == list(CONFIG_KEYS)
    for row in rows:
        assert list(row) == ["key", "type", "default", "allowed", "unit", "help"]
        assert row["type"] and row["allowed"] and row["help"], row
        assert isinstance(row["unit"], str)
        json.dumps(row, allow_nan=False)  # JSON-ready, for the docs' key table
    by_key = {r["key"]: r for r in rows}
    assert by_key["lr"]["allowed"] == "> 0" and by_key["lam"]["allowed"] == ">= 0"
    assert by_key["momentum"]["allowed"] == "[0, 1)"
    assert by_key["optimizer"]["allowed"] == "one of sgd, adam, adamw"
    assert by_key["n_train"]["allowed"] == ">= 1 or null"
    assert by_key["data_seed"]["allowed"] == "[0, 4294967295]"
    assert by_key["steps"] == {"key": "steps", "type": "int", "default": 1000, "allowed": ">= 1",
                               "unit": "updates", "help": "training length"}
    assert by_key["betas"]["default"] == [0.9, 0.999]


def test_defaults_satisfy_their_declarations():
    defaults = Config()
    for f in dataclasses.fields(Config):
        f.metadata["constraint"].check(f.name, getattr(defaults, f.name))


def test_invalid_examples_cover_every_key_and_the_float_edge_cases():
    drawn = invalid_examples()
    assert {d.key for d in drawn} == set(CONFIG_KEYS)
    for name in ("lam", "lr", "momentum", "eps"):
        values = [d.value for d in drawn if d.key == name]
        assert any(isinstance(v, float) and math.isnan(v) for v in values)
        assert math.inf in values and -math.inf in values
    # each is refused on its own (tests/test_bad_inputs.py checks every one, API and CLI)
    for d in drawn[:: max(1, len(drawn) // 25)]:
        with pytest.raises(ConfigError, match=re.escape(d.says)):
            make_config({d.key: d.value})


def test_choice_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'adamw'"):
        make_config(optimizer="AdamW")


def test_cross_key_rules_are_a_short_explicit_list():
    assert 1 <= len(CROSS_KEY_RULES) <= 10
    assert all(rule(Config().__dict__) is None for rule in CROSS_KEY_RULES)  # defaults pass


def test_the_names_config_accepts_are_the_registries():
    from l2dynamics.data import available_datasets
    from l2dynamics.models import MODEL_NAMES, model_defaults

    by_key = {r["key"]: r for r in describe_keys()}
    assert by_key["model"]["allowed"] == "one of " + ", ".join(MODEL_NAMES)
    assert all(model_defaults(name) for name in MODEL_NAMES)
    datasets = [info.name for info in available_datasets()]
    assert by_key["dataset"]["allowed"] == "one of " + ", ".join(datasets)


# --- data_options may not carry a key that has a top-level config key (issue 16) ---------------


@pytest.mark.parametrize("option, top", [("n_train", "n_train"), ("n_test", "n_test"),
                                         ("seed", "data_seed"), ("data_dir", "data_dir"),
                                         ("augment", "augment"), ("normalize", "normalize"),
                                         ("dtype", "dtype"), ("download", "download"),
                                         ("device", "device"), ("name", "dataset"),
                                         ("data_seed", "data_seed"), ("lr", "lr")])
def test_data_options_refuse_top_level_keys(option, top):
    with pytest.raises(ConfigError) as info:
        make_config(dataset="digits", data_options={option: 1})
    message = str(info.value)
    assert "\n" not in message and "data_options" in message and f"set {top} " in message


def test_every_named_argument_of_load_dataset_is_refused_in_data_options():
    import inspect

    from l2dynamics.data.loading import load_dataset

    named = [p.name for p in inspect.signature(load_dataset).parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for name in named:
        with pytest.raises(ConfigError, match="data_options"):
            make_config(data_options={name: 1})
    # the datasets' own options are still accepted
    assert make_config(dataset="teacher", data_options={"label_noise": 0.1}).data_options


def test_cli_refuses_a_top_level_key_in_data_options_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    result = CliRunner().invoke(app, ["train", "-q", "--store", str(tmp_path / "r.sqlite"),
                                      "--set", "dataset=digits", "--set", "steps=2",
                                      "--set", "data_options.n_train=3000"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and "set n_train" in lines[0]
    assert not (tmp_path / "r.sqlite").exists()
