"""A study is one unit: declared parameters, the registry, the suites, and each study's verdict
rules judged on synthetic results (no training), with controls that must say yes and no."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from l2dynamics.analysis.verdicts import (
    Claim,
    ratio_claim,
    slope_claim,
    test_noise_se,
    within_noise_claim,
)
from l2dynamics.cli import app
from l2dynamics.config.constraints import Choice, Floats, Int, PlainMapping, Real
from l2dynamics.errors import ConfigError
from l2dynamics.studies.base import describe_params, make_params, param, parse_sets
from l2dynamics.studies.registry import STUDIES, get_study
from l2dynamics.studies.suite import SUITES, load_suite, resolve_study

runner = CliRunner()

# --- parameters -------------------------------------------------------------------------------


@dataclass
class P:
    n: int = param(3, Int(ge=1), "a count")
    rate: float = param(0.5, Real(gt=0, le=1), "a rate")
    mode: str = param("a", Choice(("a", "b")), "a mode")
    lams: tuple[float, ...] = param((1.0, 2.0), Floats(Real(gt=0)), "a grid")
    base: dict = param({"x": {"y": 1}}, PlainMapping('lr: 0.1'), "a mapping")
    cap: int | None = param(None, Int(ge=1, optional=True), "an optional cap")


def test_make_params_validates_against_the_declarations():
    p = make_params(P, {"n": 5, "lams": "0.1, 0.2", "base.x.y": 2, "base.z": 3, "cap": 4})
    assert (p.n, p.lams, p.base, p.cap) == (5, (0.1, 0.2), {"x": {"y": 2}, "z": 3}, 4)
    assert P().base == {"x": {"y": 1}}  # defaults are copied, never shared or mutated
    for overrides, fragment in (({"m": 1}, "unknown parameter 'm'"),
                                ({"mdoe": "a"}, "did you mean 'mode'"),
                                ({"n": 0}, "n must be >= 1"),
                                ({"n": 1.5}, "n must be an integer"),
                                ({"rate": 2}, "rate must be <= 1"),
                                ({"rate": float("nan")}, "rate must be a finite number"),
                                ({"mode": "c"}, "use one of: a, b"),
                                ({"lams": [1.0, -1.0]}, "lams must be > 0"),
                                ({"base": 3}, "base must be a mapping"),
                                ({"n.x": 1}, "n is not a mapping"),
                                ({"cap": 0}, "cap must be >= 1")):
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
            make_params(P, overrides)


def test_parse_sets_reads_yaml_values():
    assert parse_sets(["a=1", "b=[1, 2]", "c.d=x", "e=1.5e-3"]) == \
        {"a": 1, "b": [1, 2], "c.d": "x", "e": 1.5e-3}
    assert make_params(P, parse_sets(["rate=1e-3"])).rate == 1e-3  # YAML reads "1e-3" as text
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["novalue"])


def test_describe_params_lists_type_default_constraint_and_help():
    rows = {r["key"]: r for r in describe_params(P)}
    assert rows["n"]["allowed"] == ">= 1" and rows["n"]["help"] == "a count"
    assert rows["mode"]["allowed"] == "one of a, b"
    assert rows["lams"]["type"] == "list[float]" and rows["cap"]["allowed"] == ">= 1 or null"


@pytest.mark.parametrize("key", list(STUDIES))
def test_every_study_refuses_the_invalid_values_its_declarations_name(key):
    """The bad values are drawn from each parameter's declared constraint: a new parameter
    is tested by declaring it."""
    from l2dynamics.studies.base import invalid_params

    study = get_study(key)
    drawn = invalid_params(study.Params)
    assert {name for name, _, _ in drawn} == {r["key"] for r in describe_params(study.Params)}
    for name, value, says in drawn:
        with pytest.raises(ConfigError) as caught:
            make_params(study.Params, {name: value})
        assert says in str(caught.value), (name, value, str(caught.value))


# --- registry and suites ----------------------------------------------------------------------


@pytest.mark.parametrize("key", list(STUDIES))
def test_every_registered_study_loads_and_its_defaults_validate(key):
    study = get_study(key)
    assert study.key == key and study.title and study.paper
    make_params(study.Params)
    assert all(r["help"] for r in describe_params(study.Params)), "every parameter has help"


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_entry_names_a_study_and_valid_params(suite):
    spec = load_suite(suite)
    assert spec.entries and len(set(spec.keys())) == len(spec.keys())
    for entry in spec.entries:
        key, study, params = resolve_study(entry.key, suite)
        assert key == entry.key and study.key == entry.study
        for name, value in entry.params.items():
            top, *inside = name.split(".")
            got = getattr(params, top)
            for part in inside:  # "sweep.grid.seed": an entry inside a mapping parameter
                got = got[part]
            expected = tuple(value) if isinstance(value, list) and not inside else value
            assert got == expected, name


def test_resolve_study_prefers_the_registry_then_the_suites():
    key, study, params = resolve_study("theory")
    assert study.key == "theory" and params.widths == (256, 1024, 2048)  # the study's defaults
    key, study, params = resolve_study("theory", "mini")
    assert params.widths == (64, 512)  # the mini suite's entry
    key, study, params = resolve_study("cnn_tstar")
    assert (key, study.key, params.split_by) == ("cnn_tstar", "tstar", "norm")
    with pytest.raises(ConfigError, match="did you mean 'tstar'"):
        resolve_study("tsar")
    with pytest.raises(ConfigError, match="suite 'mini' has no study 'wrn_tstar'"):
        resolve_study("wrn_tstar", "mini")


def test_cli_study_errors_are_one_line_and_studies_lists_parameters(tmp_path):
    bad = runner.invoke(app, ["study", "tstar", "--set", "estimatr=onset", "--out",
                              str(tmp_path / "x")])
    assert bad.exit_code == 2 and "did you mean 'estimator'" in bad.output
    assert not (tmp_path / "x").exists()
    shown = runner.invoke(app, ["studies", "tstar"])
    assert shown.exit_code == 0 and "estimator" in shown.output and "onset" in shown.output
    listed = runner.invoke(app, ["studies"])
    assert listed.exit_code == 0 and "paper:cnn_tstar" in listed.output


# --- shared verdict rules -----------------------------------------------------------------------


def test_test_noise_se_is_the_binomial_standard_error():
    assert test_noise_se(0.9, 10_000) == pytest.approx(0.003)
    assert math.isnan(test_noise_se(0.9, None)) and math.isnan(test_noise_se(0.9, 0))


def test_slope_claim_holds_only_when_the_interval_excludes_zero():
    assert slope_claim("c", {"slope": -1.0, "ci_low": -1.2, "ci_high": -0.8, "points": 6},
                       -1.0).verdict == "holds"
    assert slope_claim("c", {"slope": 0.0, "ci_low": -0.2, "ci_high": 0.2, "points": 6},
                       -1.0).verdict == "does not hold"
    assert slope_claim("c", {"slope": -0.5, "ci_low": -1.5, "ci_high": 0.5, "points": 6},
                       -1.0).verdict == "undetermined"
    assert slope_claim("c", {"slope": math.nan, "used": 1}, -1.0).verdict == "undetermined"


def test_noise_and_ratio_claims():
    assert within_noise_claim("c", 0.004, 0.003, 2.0).verdict == "holds"
    assert within_noise_claim("c", 0.01, 0.003, 2.0).verdict == "does not hold"
    assert within_noise_claim("c", 0.01, math.nan, 2.0).verdict == "undetermined"
    assert ratio_claim("c", [1.01, 0.98], 0.05).verdict == "holds"
    assert ratio_claim("c", [1.01, 1.2], 0.05).verdict == "does not hold"
    with pytest.raises(ValueError, match="verdict"):
        Claim("c", "m", "maybe")


# --- each study's claims on synthetic results ---------------------------------------------------


def _tstar_runs(tstar_of_lam, lams=(1e-3, 2e-3, 4e-3, 8e-3), seeds=(0, 1, 2), lr=0.1,
                peak=lambda lam: 0.9, jitter=0.03):
    """A runs table as `analysis.tstar.tstar_table` makes it, with t* given per λ."""
    rng = np.random.default_rng(0)
    rows = []
    for lam in (0.0, *lams):
        for seed in seeds:
            t = tstar_of_lam(lam) * math.exp(jitter * rng.standard_normal()) if lam else 5e4
            row = {"run_id": len(rows), "status": "finished", "lam": lam, "lr": lr,
                   "momentum": 0.0, "seed": seed, "steps": 10 * t, "fits_train": True,
                   "peak_acc": peak(lam) + 0.002 * rng.standard_normal(),
                   "test_noise_se": 0.003, "peak_at_end": False}
            for name in ("raw", "smoothed", "onset"):
                row.update({f"tstar_{name}": t, f"c_{name}": lam * t, f"c_eta_{name}": lam * lr * t,
                            f"censored_{name}": lam == 0, f"budget_checks_{name}": 2,
                            f"budget_dependent_{name}": False})
            rows.append(row)
    return pd.DataFrame(rows)


def test_tstar_claims_say_yes_for_an_inverse_law_and_no_for_a_constant():
    from l2dynamics.studies.study_tstar import TstarPart, part_claims

    law = part_claims(TstarPart("", _tstar_runs(lambda lam: 30.0 / (0.1 * lam))), "smoothed")
    flat = part_claims(TstarPart("", _tstar_runs(lambda lam: 2000.0)), "smoothed")
    slope = {c.claim.split(" (")[0]: c for c in law}
    assert slope["t* ∝ 1/λ"].verdict == "holds"
    assert "c·η = λ·Φ(t*)" in slope["t* ∝ 1/λ"].measured
    assert {c.claim.split(" (")[0]: c for c in flat}["t* ∝ 1/λ"].verdict == "does not hold"
    hardly = [c for c in law if c.claim.startswith("performance at t*")][0]
    assert hardly.verdict == "holds"
    varying = part_claims(TstarPart("", _tstar_runs(lambda lam: 30.0 / (0.1 * lam),
                                                    peak=lambda lam: 0.9 - 10 * lam)),
                          "smoothed")
    assert [c for c in varying if c.claim.startswith("performance at t*")][0].verdict == \
        "does not hold"


def test_equilibrium_and_projection_claims():
    from l2dynamics.studies.study_norm_equilibrium import equilibrium_claims
    from l2dynamics.studies.study_norm_projection import projection_claim

    def row(case, tensor, norm, angle, half=0.005, drift=0.5):
        return {"case": case, "tensor": tensor, "norm_ratio": norm, "angle_ratio": angle,
                "norm_ratio_low": norm - half, "norm_ratio_high": norm + half,
                "angle_ratio_low": angle - half, "angle_ratio_high": angle + half,
                "norm_ratio_rw": 0.8, "angle_ratio_rw": 1.2, "batches": 5,
                "drift_per_tau_pct": drift, "stationary": abs(drift) <= 2.0}

    table = pd.DataFrame([row("sgd", "a", 1.01, 1.0), row("sgd", "b", 0.99, 1.005),
                          row("adamw", "a", 0.90, 0.995),
                          row("adam", "a", 1.0, 1.0, half=0.03),  # too imprecise to tell
                          row("sgdm", "a", 1.0, 1.0, drift=-5.0),  # not stationary
                          row("sgdm", "b", 0.9, 1.0, drift=3.0)])
    claims = {c.claim: c for c in equilibrium_claims(table)}
    norm = "equilibrium ‖w‖ within ±2 % of the prediction from the measured statistics"
    angle = "RMS angular update within ±2 % of the prediction from the measured statistics"
    assert claims[f"sgd: {norm}"].verdict == "holds"
    assert claims[f"sgd: {angle}"].verdict == "holds"
    assert claims[f"adamw: {norm}"].verdict == "does not hold"
    assert claims[f"adamw: {angle}"].verdict == "holds"
    assert claims[f"adam: {norm}"].verdict == "undetermined"
    # no verdict without stationarity, even where the ratio is far off; the text says why
    assert claims[f"sgdm: {norm}"].verdict == "undetermined"
    assert "0 of 2 tensors stationary" in claims[f"sgdm: {norm}"].measured
    assert "a ‖w‖² trend -5.0 %" in claims[f"sgdm: {norm}"].measured
    assert "batch-means" in claims[f"sgd: {norm}"].ci and "n = 5" in claims[f"sgd: {norm}"].ci

    rng = np.random.default_rng(0)

    def frame(shift_at_1e2, noise=0.002, seeds=5):
        return pd.DataFrame([{"mode": "projected", "lam": lam, "seed": s,
                              "test_error": 0.3 + (shift_at_1e2 if lam == 1e-2 else 0.0)
                              + noise * rng.standard_normal()}
                             for lam in (0.0, 1e-3, 1e-2, 1e-1) for s in range(seeds)])
    assert projection_claim(frame(0.0), 2000).verdict == "holds"
    assert projection_claim(frame(0.05), 2000).verdict == "does not hold"
    # noisy seeds: the intervals reach past the margin, so flatness is not shown
    assert projection_claim(frame(0.0, noise=0.02), 2000).verdict == "undetermined"
    assert projection_claim(frame(0.0, seeds=1), 2000).verdict == "undetermined"


def test_grid_tuning_bridge_traces_and_theory_claims():
    from l2dynamics.studies.study_norm_bridge import bridge_claims
    from l2dynamics.studies.study_norm_grid import grid_claims
    from l2dynamics.studies.study_norm_traces import traces_claims
    from l2dynamics.studies.study_theory import theory_claims
    from l2dynamics.studies.study_tuning import tuning_claims

    fit = {"p": 0.5, "q": 0.5, "n": 9, "p_holds": True, "q_holds": True,
           "ci_p": [0.4, 0.6], "ci_q": [0.4, 0.6]}
    r2 = {"predicted_combination": 0.9, "lr_alone": 0.3, "lam_alone": 0.2}
    assert [c.verdict for c in grid_claims("sgd", {"fit_gbar_normalized": fit,
                                                   "collapse_r2": r2})] == ["holds", "holds"]
    assert [c.verdict for c in grid_claims("adam", {"fit_gbar_normalized": {
        **fit, "q_holds": False}, "collapse_r2": {**r2, "lr_alone": 0.95}})] == \
        ["does not hold", "does not hold"]

    def method(name, finals):
        return {"name": name, "finals": finals, "mean": float(np.mean(finals)), "lams": [1e-3]}
    grid = method("grid best", [0.900, 0.902, 0.899, 0.901, 0.898])
    res = {"methods": [grid, method("prediction λ_pred", [0.899, 0.901, 0.899, 0.900, 0.898]),
                       method("AutoL2 (paper rule)", [0.85, 0.86, 0.84, 0.85, 0.85]),
                       method("AutoL2 noisy", [0.93, 0.87, 0.91, 0.86, 0.92])],
           "predictions": ["prediction λ_pred"], "best_lam": 1e-3,
           "prediction": {"ok": True, "lam": 1e-3, "lam_low": 5e-4, "lam_high": 2e-3,
                          "compute_fraction": 0.3}}
    verdicts = [c.verdict for c in tuning_claims(res, ["AutoL2 (paper rule)", "AutoL2 noisy"])]
    # first how much L2 matters (no grid table here: undetermined), then the methods; the
    # noisy AutoL2 is too imprecise to tell
    assert verdicts == ["undetermined", "holds", "does not hold", "undetermined"]
    res["prediction"] = {"ok": False, "message": "under-fits"}
    assert tuning_claims(res, [])[1].verdict == "undetermined"

    part = {"fit": {"slope": -1.0, "ci_low": -1.1, "ci_high": -0.9, "used": 4}}
    wide = {"fit": {"slope": -1.0, "ci_low": -1.3, "ci_high": -0.7, "used": 4}}
    none = {"fit": {"slope": math.nan, "used": 1}}
    assert [c.verdict for c in bridge_claims({"norms": {"none": part, "bn": none}})] == \
        ["holds", "undetermined"]
    assert bridge_claims({"norms": {"bn": wide}})[0].verdict == "consistent"  # wider than margin

    def decayed(scale, windows=20, drift=-5e-4, lr=0.1, lam=0.01):
        """Windows of 50 updates obeying the SGD identity (times `scale` on ‖w‖²), with drift."""
        rng = np.random.default_rng(1)
        grad = 1.0 + 0.05 * rng.standard_normal(windows)
        norm_ms = scale * (lr ** 2 * grad - drift) / (lr * lam * (2 - lr * lam))
        return {"tensor": "w", "lam": lam, "step": list(50.0 * np.arange(1, windows + 1)),
                "norm": list(np.sqrt(norm_ms)), "pred_norm": [1.0] * windows,
                "updates": [50.0] * windows, "norm_ms": list(norm_ms), "grad_ms": list(grad),
                "norm_drift": [drift] * windows, "angle_rms": [0.1] * windows,
                "relaxation_steps": 1 / (4 * lr * lam)}

    runs = [{"tensor": "w", "lam": 0.0, "step": [10.0], "norm": [1.02], "pred_norm": [1.0]},
            decayed(1.0), decayed(1.1), decayed(1.0, windows=3)]
    claims = traces_claims({"runs": runs, "lr": 0.1})
    assert [c.verdict for c in claims] == ["holds", "holds", "does not hold", "undetermined"]
    assert "at equilibrium" in claims[1].measured  # a constant ‖w‖² trend: none
    falling = decayed(1.0)
    falling["norm_ms"] = list(np.array(falling["norm_ms"]) * np.linspace(1.2, 0.8, 20))
    assert "not yet at equilibrium" in traces_claims({"runs": [falling], "lr": 0.1})[0].measured
    assert "batch-means" in claims[1].ci

    fits = pd.DataFrame([{"time": "t_peak", "range": "all λ", "slope": -1.0, "ci_low": -1.1,
                          "ci_high": -0.9, "points": 5}])
    network = pd.DataFrame([
        {"source": "network", "width": 64, "time": "t_peak", "lams": 3, "slope": -1.0,
         "ci_low": -1.2, "ci_high": -0.85, "points": 15},
        {"source": "network", "width": 512, "time": "t_peak", "lams": 3, "slope": -0.5,
         "ci_low": -0.6, "ci_high": -0.4, "points": 15},
        {"source": "network", "width": 512, "time": "t_lazy_end", "lams": 1, "slope": -1.0,
         "ci_low": -1.1, "ci_high": -0.9, "points": 5},
        {"source": "flow", "width": 64, "time": "t_peak", "lams": 3, "slope": 0.0,
         "ci_low": -0.1, "ci_high": 0.1, "points": 15}])
    comparisons = pd.DataFrame({"width": [64, 512], "loss_rel_err_lazy_max": [0.2, 0.3]})
    labels = {"t_peak": "accuracy peak", "t_lazy_end": "departure from the lazy regime"}
    claims = theory_claims(fits, network, comparisons, labels)
    assert [c.verdict for c in claims] == ["holds", "holds", "does not hold", "undetermined",
                                           "does not hold"]


@pytest.mark.parametrize("key", ["tstar", "convnet4_projection"])
def test_a_study_without_its_data_is_refused_before_anything_is_written(tmp_path, key):
    out = tmp_path / "out"
    result = runner.invoke(app, ["study", key, "--suite", "paper", "--data-dir",
                                 str(tmp_path / "nodata"), "--out", str(out)])
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "expected file" in errors[0]  # after at most a progress line
    assert not out.exists()


def test_the_t_star_description_is_read_from_the_design_that_ran():
    from l2dynamics.studies.study_tstar import describe_design

    key, study, params = resolve_study("tstar", "toy")
    text = describe_design(params.sweep, params)
    assert f"{len(params.sweep['grid']['seed'])} seeds" in text
    assert f"every λ to {params.fixed_budget} steps" in text
    fewer = make_params(study.Params, {"sweep.grid.seed": [0, 1], "fixed_budget": 0})
    assert "2 seeds" in describe_design(fewer.sweep, fewer) and "second arm" not in \
        describe_design(fewer.sweep, fewer)


def test_store_progress_reads_steps_of_running_runs_from_the_store(tmp_path):
    """Runs trained elsewhere (worker processes, an ensemble) show their steps as the store
    has them; a stored run counts as done and not in the rate."""
    from l2dynamics.config import make_config
    from l2dynamics.store import RunStore
    from l2dynamics.studies.runs import StoreProgress

    configs = [make_config(dataset="digits", steps=1000, lam=lam) for lam in (0.0, 1e-3, 1e-2)]
    path = tmp_path / "s.sqlite"
    lines: list[str] = []
    with RunStore(path) as store:
        done = store.create_run(configs[0].to_dict(), steps_total=1000, seed=0, device="cpu")
        store.finish_run(done, "finished", steps_done=1000, wall_seconds=1.0)
        progress = StoreProgress(configs, path, lines.append)
        assert progress.line(progress.steps_done(store), progress.start) == \
            "runs 0/3 done, steps 1,000/3,000 (33 %), 0 s"
        running = [store.create_run(c.to_dict(), steps_total=1000, seed=0, device="cpu")
                   for c in configs[1:]]
        store.add_metrics(running[0], [(250, 0.0, "train_loss", 1.0)], steps_done=250)
        store.add_metrics(running[1], [(250, 0.0, "train_loss", 1.0)], steps_done=250)
        progress.runs_done(1, 3)
        # 500 steps in 10 s since the start: 1,500 left at 50 steps/s
        assert progress.line(progress.steps_done(store), progress.start + 10) == \
            "runs 1/3 done, steps 1,500/3,000 (50 %), 10 s, about 30 s left"
        other = store.create_run(make_config(dataset="digits", steps=5).to_dict(),
                                 steps_total=5, seed=0, device="cpu")  # not this batch's
        store.add_metrics(other, [(5, 0.0, "train_loss", 1.0)], steps_done=5)
        assert progress.steps_done(store) == 1500


def test_store_progress_logs_while_a_batch_trains(tmp_path):
    from l2dynamics.config import make_config
    from l2dynamics.studies.runs import StoreProgress, train_through_store

    configs = [make_config(dataset="digits", steps=300, lam=lam, n_train=64)
               for lam in (0.0, 1e-2)]
    lines: list[str] = []
    with StoreProgress(configs, tmp_path / "s.sqlite", lines.append,
                       every_seconds=0.05) as progress:
        train_through_store(configs, tmp_path / "s.sqlite")
        progress.runs_done(2, 2)
    assert lines and all(line.startswith("runs ") and "/600 (" in line for line in lines)
    assert lines[-1].startswith("runs 2/2 done, steps 600/600 (100 %)")  # the end is logged


def test_store_progress_never_creates_the_store(tmp_path):
    # A progress thread that created the file raced the batch: the Ray executor's "all done?"
    # check (create=False) then found a SQLite file without its tables and failed the study.
    import time

    from l2dynamics.config import make_config
    from l2dynamics.studies.runs import StoreProgress, train_through_store

    path = tmp_path / "s.sqlite"
    configs = [make_config(dataset="digits", steps=50, n_train=64)]
    lines: list[str] = []
    with StoreProgress(configs, path, lines.append, every_seconds=0.01) as progress:
        time.sleep(0.3)
        assert not path.exists()
        train_through_store(configs, path)  # the batch creates it; progress then reads it
        time.sleep(0.3)
        progress.runs_done(1, 1)
    assert lines and lines[-1].startswith("runs 1/1 done, steps 50/50 (100 %)")


def test_store_progress_that_cannot_read_the_store_says_so_once(tmp_path):
    from l2dynamics.config import make_config
    from l2dynamics.studies.runs import StoreProgress

    lines: list[str] = []
    with StoreProgress([make_config(dataset="digits", steps=10)], tmp_path, lines.append,
                       every_seconds=0.01):
        pass  # tmp_path is a folder: no store can be opened there
    assert len(lines) == 1 and lines[0].startswith("progress unavailable from here on")


def test_gaps_are_written_in_words():
    from l2dynamics.studies.study_tuning import points_text

    assert points_text(0.0443) == "4.43 points below"
    assert points_text(-0.003) == "0.30 points above"
    assert points_text(0.0) == "level with"
    assert points_text(float("nan")) == "an unknown distance from"


def test_tstar_verdict_on_an_empty_store_says_what_to_do():
    import pandas as pd

    from l2dynamics.analysis.tstar import tstar_verdict
    from l2dynamics.errors import ConfigError

    with pytest.raises(ConfigError, match="no runs to judge"):
        tstar_verdict(pd.DataFrame())
