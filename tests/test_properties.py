"""Property-based tests (hypothesis): the config parser and the t* estimators on arbitrary input.

- Config: any mapping, any ``key=value`` override and any bytes in a config file give either a
  valid :class:`Config` or a one-line :class:`ConfigError`, never another exception; every valid
  config round-trips through ``to_dict``, YAML and JSON, and its nested form equals its flat form.
- t*: monotone, constant, decreasing, noisy and NaN-ridden curves never crash the estimators or
  the per-run table, fits and verdict built on them; every t* is a step of the curve (so inside
  the time range); a curve that never falls is flagged as not having peaked (censored); a clean
  bump is found near its centre.

Settings are modest (≤ 80 examples, no deadline) so the file runs in well under 30 s.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from l2dynamics.analysis.peak import estimate_peak, smooth_log_time
from l2dynamics.analysis.tstar import (
    censored_tstar,
    tstar_fits,
    tstar_summary,
    tstar_table,
    tstar_verdict,
)
from l2dynamics.analysis.verdicts import VERDICTS
from l2dynamics.config import (
    CONFIG_KEYS,
    DECAY_RULES,
    LOSSES,
    LR_SCHEDULES,
    NORMALIZATIONS,
    SECTIONS,
    Config,
    load_config_file,
    make_config,
    parse_overrides,
)
from l2dynamics.data import DATASET_NAMES
from l2dynamics.errors import ConfigError
from l2dynamics.models import MODEL_NAMES
from l2dynamics.train import eval_steps

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- config: arbitrary input never crashes ----------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=6) | st.sampled_from(["nan", "inf", "-1", "1e400", "true", "sgd",
                                                    "digits", "0x10", "1_000", ""]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
keys = st.sampled_from(CONFIG_KEYS + tuple(SECTIONS)) | st.text(max_size=8)
sections = st.fixed_dictionaries({}, optional={
    name: st.dictionaries(st.sampled_from(("name", "lr", "lam", "steps", "width", "bogus")),
                          values, max_size=3) for name in SECTIONS})


def _config_or_config_error(*sources) -> Config | None:
    try:
        return make_config(*sources)
    except ConfigError as err:  # the only exception a user's input may raise
        assert "\n" not in str(err) and str(err)
        return None


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6), sections)
def test_any_mapping_gives_a_config_or_a_config_error(flat, nested):
    cfg = _config_or_config_error({**nested, **flat})
    if cfg is not None:  # whatever was accepted is a valid config that round-trips
        assert make_config(cfg.to_dict()) == cfg


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(CONFIG_KEYS + ("optim.lr", "data.name", "x.y", "",
                                                         "lam.", ".lam"))
                          | st.text(max_size=6), st.text(max_size=12)), max_size=5))
def test_any_override_gives_a_config_or_a_config_error(pairs):
    items = [f"{k}={v}" for k, v in pairs]
    try:
        overrides = parse_overrides(items)
    except ConfigError:
        return
    _config_or_config_error(overrides)


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       st.sampled_from([".yaml", ".json"]))
def test_any_config_file_gives_data_or_a_config_error(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("cfg") / f"c{suffix}"
    path.write_bytes(content)
    try:
        data = load_config_file(path)
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    assert isinstance(data, dict)
    _config_or_config_error(data)


# --- config: valid input round-trips ----------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def valid_configs(draw) -> dict:
    steps = draw(st.integers(1, 10**7))
    optimizer = draw(st.sampled_from(("sgd", "adam", "adamw")))
    momentum = draw(st.floats(0, 0.99, **finite)) if optimizer == "sgd" else 0.0
    out = {
        "dataset": draw(st.sampled_from(DATASET_NAMES)),
        "model": draw(st.sampled_from(MODEL_NAMES)),
        "width": draw(st.none() | st.integers(1, 4096)),
        "depth": draw(st.none() | st.integers(1, 40)),
        "n_train": draw(st.none() | st.integers(1, 60000)),
        "data_seed": draw(st.integers(0, 2**32 - 1)),
        "normalize": draw(st.sampled_from(NORMALIZATIONS)),
        "data_options": draw(st.dictionaries(st.sampled_from(("label_noise", "input_dim")),
                                             st.integers(0, 100), max_size=2)),
        "bias": draw(st.booleans()),
        "weight_var": draw(st.floats(1e-3, 10, **finite)),
        "bias_var": draw(st.floats(0, 10, **finite)),
        "loss": draw(st.sampled_from(LOSSES)),
        "lam": draw(st.floats(0, 10, **finite)),
        "decoupled_wd": draw(st.floats(0, 1, **finite)),
        "decay_params": draw(st.sampled_from(DECAY_RULES)
                             | st.lists(st.from_regex(r"!?[a-z*.]{1,8}", fullmatch=True),
                                        min_size=1, max_size=3)),
        "optimizer": optimizer,
        "lr": draw(st.floats(1e-6, 10, **finite)),
        "momentum": momentum,
        "nesterov": draw(st.booleans()) if momentum > 0 else False,
        "betas": draw(st.tuples(st.floats(0, 0.999, **finite), st.floats(0, 0.999, **finite))),
        "eps": draw(st.floats(1e-12, 1, **finite)),
        "lr_schedule": draw(st.sampled_from(LR_SCHEDULES)),
        "lr_milestones": tuple(draw(st.lists(st.floats(0, 0.99, **finite), max_size=4))),
        "warmup_steps": draw(st.integers(0, steps - 1)),
        "batch_size": draw(st.integers(1, 4096)),
        "steps": steps,
        "seed": draw(st.integers(0, 2**63 - 1)),
        "device": draw(st.sampled_from(("auto", "cpu"))),
        "dtype": draw(st.sampled_from(("float32", "float64"))),
        "eval_per_decade": draw(st.integers(1, 1000)),
        "eval_every": draw(st.integers(0, 10**6)),
        "checkpoint_every": draw(st.integers(0, 10**6)),
        "name": draw(st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                         max_size=20)),
    }
    keep = draw(st.sets(st.sampled_from(sorted(out)), min_size=1))  # any subset: defaults fill
    needed = {"optimizer", "momentum", "nesterov", "steps", "warmup_steps"}
    return {k: v for k, v in out.items() if k in keep or k in needed}


@SETTINGS
@given(valid_configs())
def test_valid_configs_are_accepted_and_round_trip(tmp_path_factory, flat):
    cfg = make_config(flat)
    for key, value in flat.items():
        expected = tuple(value) if isinstance(value, tuple) else value
        assert getattr(cfg, key) == expected, key
    assert make_config(cfg.to_dict()) == cfg
    assert cfg.replace() == cfg
    folder = tmp_path_factory.mktemp("rt")
    (folder / "c.yaml").write_text(yaml.safe_dump(cfg.to_dict(), allow_unicode=True))
    (folder / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert make_config(load_config_file(folder / "c.yaml")) == cfg
    assert make_config(load_config_file(folder / "c.json")) == cfg


@SETTINGS
@given(valid_configs())
def test_nested_sections_equal_the_flat_form(flat):
    nested: dict = {}
    where = {"dataset": ("data", "name"), "n_train": ("data", "n_train"),
             "optimizer": ("optim", "name"), "lr": ("optim", "lr"), "lam": ("l2", "lam"),
             "steps": ("train", "steps"), "model": ("model", "name"), "width": ("model", "width")}
    for key, value in flat.items():
        section, sub = where.get(key, (None, key))
        if section is None:
            nested[key] = value
        else:
            nested.setdefault(section, {})[sub] = value
    assert make_config(nested) == make_config(flat)


@SETTINGS
@given(valid_configs(), st.sampled_from(["lam", "lr", "steps", "seed", "batch_size"]),
       st.sampled_from([-1, 0, math.nan, math.inf, -math.inf, "x", [1], {"a": 1}, True, None]))
def test_one_bad_value_is_named_in_the_error(flat, key, bad):
    allowed_zero = {"lam", "seed"}
    assume(not (bad == 0 and not isinstance(bad, bool) and key in allowed_zero))
    with pytest.raises(ConfigError) as info:
        make_config({**flat, key: bad}, warmup_steps=0)
    assert str(info.value).startswith(key) or f"{key}=" in str(info.value) or key in str(
        info.value)


# --- t*: estimators on arbitrary curves ---------------------------------------------------------

STEPS = eval_steps(20_000, per_decade=15)[1:].astype(float)  # the log clock, 1 … 20 000


@st.composite
def curves(draw) -> tuple[str, np.ndarray, np.ndarray]:
    """(kind, steps, accuracy) on a prefix of the log clock."""
    n = draw(st.integers(3, len(STEPS)))
    steps = STEPS[:n]
    kind = draw(st.sampled_from(["rising", "constant", "falling", "noisy", "bump", "nan"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = sorted(draw(st.tuples(st.floats(0, 1, **finite), st.floats(0, 1, **finite))))
    if kind == "rising":
        acc = np.sort(rng.uniform(lo, hi, n))
    elif kind == "falling":
        acc = np.sort(rng.uniform(lo, hi, n))[::-1].copy()
    elif kind == "constant":
        acc = np.full(n, lo)
    elif kind == "noisy":
        acc = np.clip(rng.uniform(lo, hi, n) + rng.normal(0, 0.05, n), 0, 1)
    else:
        center = steps[draw(st.integers(0, n - 1))]
        acc = lo + (hi - lo) * np.exp(-((np.log10(steps) - math.log10(center)) / 0.4) ** 2)
        if kind == "nan":
            acc[rng.random(n) < draw(st.floats(0, 1, **finite))] = np.nan
    return kind, steps, acc


@SETTINGS
@given(curves(), st.floats(0.01, 1.0, **finite), st.floats(0, 0.1, **finite))
def test_estimators_never_crash_and_stay_on_the_clock(curve, window, delta):
    kind, steps, acc = curve
    est = estimate_peak(steps, acc, window=window, delta=delta)
    if not np.isfinite(acc).any():
        assert all(math.isnan(est.get(e)) for e in ("raw", "smoothed", "onset"))
        return
    on_clock = set(steps.tolist())
    for name in ("raw", "smoothed", "onset"):
        t = est.get(name)
        assert t in on_clock and steps[0] <= t <= steps[-1]  # inside the time range
        censored_tstar(steps, acc, t, window=window, min_drop=0.01)  # never raises
    assert est.onset <= est.smoothed
    assert est.peak_raw == np.nanmax(acc)
    if kind == "rising":  # the peak is at the end, or flagged as not reached
        assert est.raw == steps[np.flatnonzero(acc == acc.max())[0]]
        for name in ("raw", "smoothed"):
            assert est.get(name) == steps[-1] or censored_tstar(
                steps, acc, est.get(name), window=window, min_drop=0.01)
    if kind == "constant":
        assert est.raw == est.onset == steps[0]
        assert censored_tstar(steps, acc, est.smoothed, window=window, min_drop=0.01)
    if kind == "falling":
        assert est.raw == steps[0] and est.onset == steps[0]


@SETTINGS
@given(st.floats(math.log10(30), math.log10(2000), **finite), st.floats(0.3, 0.9, **finite),
       st.floats(0, 0.01, **finite), st.integers(0, 2**32 - 1))
def test_a_clean_bump_is_found_near_its_centre(log_center, height, noise, seed):
    acc = 0.1 + height * np.exp(-((np.log10(STEPS) - log_center) / 0.5) ** 2)
    acc = acc + np.random.default_rng(seed).normal(0, noise, STEPS.size)
    est = estimate_peak(STEPS, acc)
    assert abs(math.log10(est.smoothed) - log_center) < 0.25  # a quarter decade
    assert not censored_tstar(STEPS, acc, est.smoothed, window=0.2, min_drop=0.01)


@SETTINGS
@given(st.lists(st.floats(0, 1, **finite) | st.just(math.nan), min_size=1, max_size=40),
       st.floats(0, 2, **finite))
def test_smoothing_stays_within_the_data(values, window):
    steps = STEPS[:len(values)]
    out = smooth_log_time(steps, values, window)
    finite_values = [v for v in values if not math.isnan(v)]
    assert out.shape == steps.shape
    if finite_values:
        ok = out[np.isfinite(out)]
        assert np.all(ok >= min(finite_values) - 1e-12) and np.all(ok <= max(finite_values)
                                                                    + 1e-12)


# --- t*: the whole per-run pipeline on random runs ----------------------------------------------


class CurveStore:
    """The two RunStore reads that tstar_table makes, over in-memory curves."""

    def __init__(self, runs: list[dict]):
        self.runs = runs

    def list_runs(self, ids=None):
        return [{"id": r["id"], "status": "finished", "summary": {"n_test": 500},
                 "config": {"lam": r["lam"], "lr": r["lr"], "momentum": 0.0, "seed": r["seed"],
                            "steps": int(r["steps"][-1]), "n_test": 500}}
                for r in self.runs if ids is None or r["id"] in ids]

    def series(self, ids, names):
        rows = [(r["id"], name, s, v) for r in self.runs if r["id"] in ids
                for name, vals in (("test_acc", r["acc"]), ("train_acc", r["train"]))
                if name in names for s, v in zip(r["steps"], vals, strict=True)]
        return pd.DataFrame(rows, columns=["run_id", "name", "step", "value"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(curves(), st.sampled_from([0.0, 1e-3, 1e-2, 1e-1]),
                          st.sampled_from([0.01, 0.1]), st.integers(0, 3),
                          st.floats(0.5, 1, **finite)), min_size=1, max_size=8))
def test_tstar_table_fits_and_verdict_never_crash(runs):
    store = CurveStore([{"id": i + 1, "steps": c[1], "acc": c[2], "lam": lam, "lr": lr,
                         "seed": seed, "train": np.full(c[1].size, train)}
                        for i, (c, lam, lr, seed, train) in enumerate(runs)])
    table = tstar_table(store)
    assert len(table) == len(runs)
    for (kind, steps, _), row in zip((r[0] for r in runs), table.itertuples(), strict=True):
        for name in ("raw", "smoothed", "onset"):
            t = getattr(row, f"tstar_{name}")
            assert math.isnan(t) or steps[0] <= t <= steps[-1]
        if kind in ("rising", "constant"):  # never fell: no usable peak
            assert row.censored_raw and row.censored_smoothed and row.peak_at_end
    for estimator in ("raw", "smoothed", "onset"):
        summary = tstar_summary(table, estimator=estimator)
        fits = tstar_fits(table, estimator=estimator)
        assert len(summary) == table.groupby(["lr", "lam"]).ngroups
        assert set(fits["verdict"]) <= set(VERDICTS)
        assert (fits["used"] <= fits["runs"]).all()
        tstar_verdict(table, estimator=estimator)
