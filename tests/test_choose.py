"""The λ selector: its premise rule (with a yes and a no control), its plateau lengths, its
accounting, its "λ hardly matters" rule, the route it takes end to end, and the CLI."""

import json
import math
from types import SimpleNamespace

import pytest

from l2dynamics.config import make_config
from l2dynamics.errors import ConfigError
from l2dynamics.studies.choose import (
    C_AGREEMENT,
    PLATEAU_K,
    Candidate,
    _assemble,
    _noise,
    _plateau_steps,
    check_premise,
    choose_lambda,
)
from l2dynamics.train.clock import effective_time

TINY = {"dataset": "mnist1d", "n_train": 300, "n_test": 600, "n_val": 300, "model": "fc",
        "width": 16, "depth": 2, "lr": 0.2, "batch_size": 64, "norms_per_tensor": False,
        "eval_per_decade": 5}


def _probe(lam: float, tstar: float, fits: bool = True, eta: float = 0.1) -> Candidate:
    return Candidate(lam, 1000, False, "probe", 0.8, 1.0 if fits else 0.5, fits, tstar,
                     lam * eta * tstar)


def test_premise_holds_when_tstar_scales_as_one_over_lambda():
    """Control that must say yes: t* = c/(η·λ) exactly, every probe fitting."""
    probes = [_probe(lam, 2.0 / (0.1 * lam)) for lam in (0.4, 0.1, 0.025)]
    check = check_premise(probes)
    assert check.holds and check.fitting_probes == 3
    assert check.c_spread == pytest.approx(1.0)
    assert "applies" in check.reason


def test_premise_fails_when_tstar_does_not_move_with_lambda():
    """Control that must say no: the same t* at every λ (c spans the λ range, ×16)."""
    check = check_premise([_probe(lam, 300.0) for lam in (0.4, 0.1, 0.025)])
    assert not check.holds and check.c_spread == pytest.approx(16.0)
    assert f"> ×{C_AGREEMENT:g}" in check.reason


def test_premise_fails_when_probes_do_not_fit_their_training_data():
    probes = [_probe(0.4, 50.0, fits=False), _probe(0.1, 200.0), _probe(0.025, 800, False)]
    check = check_premise(probes)
    assert not check.holds and check.fitting_probes == 1
    assert "λ = 0.4 (best training accuracy 0.500)" in check.reason


def test_plateau_steps_is_the_first_step_past_plateau_k_relaxation_times():
    cfg = make_config(TINY, momentum=0.5, warmup_steps=20)
    for lam in (0.05, 0.2, 1.0):
        s = _plateau_steps(cfg, lam, 5000)
        assert lam * effective_time(cfg, s) >= PLATEAU_K
        assert s == 10 or lam * effective_time(cfg, s - 1) < PLATEAU_K
    assert _plateau_steps(cfg, 1e-4, 5000) == 5000  # never plateaus within the budget


def _fake_runner(accs: dict[float, float], n_val: int = 1000) -> SimpleNamespace:
    cands = [Candidate(lam, 500, True, "search", acc, 1.0, True, 10.0, 1.0)
             for lam, acc in accs.items()]
    return SimpleNamespace(candidates=cands, cfg=SimpleNamespace(n_val=n_val), budget=500,
                           steps=1500, wall=1.0)


def test_lambda_hardly_matters_rule_against_the_evaluation_noise():
    premise = check_premise([])
    noise = _noise(0.80, 1000)
    assert noise == pytest.approx(2 * math.sqrt(2 * 0.8 * 0.2 / 1000))
    small = _assemble(_fake_runner({0.0: 0.80, 0.01: 0.80 + noise / 2}), 0.01, "search",
                      None, premise, premise)
    assert not small.matters and small.message.startswith("λ hardly matters")
    large = _assemble(_fake_runner({0.0: 0.80, 0.01: 0.80 + 2 * noise}), 0.01, "search",
                      None, premise, premise)
    assert large.matters and "points above λ = 0" in large.message
    # the interval: every λ within the noise of the best
    spread = _assemble(_fake_runner({0.0: 0.7, 0.01: 0.8, 0.04: 0.8 - noise / 3, 0.16: 0.6}),
                       0.01, "search", None, premise, premise)
    assert (spread.lam_low, spread.lam_high) == (0.01, 0.04)


@pytest.mark.slow
def test_choose_end_to_end_accounts_for_every_step(tmp_path):
    choice = choose_lambda(TINY, 400, store=tmp_path / "s.sqlite")
    roles = [c.role for c in choice.candidates]
    assert roles[:4] == ["λ = 0", "probe", "probe", "probe"]
    assert choice.compute_steps == sum(c.steps for c in choice.candidates)
    assert choice.final.steps == 400 and choice.final.lam == choice.lam
    assert choice.final.acc == max(c.acc for c in choice.candidates if c.full)
    assert choice.lam_low <= choice.lam <= choice.lam_high or choice.lam == 0.0
    assert choice.route == ("prediction" if choice.premise.holds else "search")
    # the probes stop at their plateau: PLATEAU_K relaxation times, shorter than the budget
    for probe in choice.candidates[1:4]:
        assert probe.steps < 400 and not probe.full
    assert choice.wall_seconds > 0
    # the premise check cites the recorded regime map (issue 22), shipped with the package
    assert choice.regime and f"Regime map: {choice.regime}" in choice.premise.reason
    assert "t* ∝ 1/λ held in" in choice.regime
    again = choose_lambda(TINY, 400, store=tmp_path / "s.sqlite")  # read back, same answer
    assert again.lam == choice.lam and again.compute_steps == choice.compute_steps


def test_choose_holds_out_a_validation_set_when_the_config_has_none(tmp_path, monkeypatch):
    seen = {}

    def fake_full_run_time(cfg, budget):
        seen["n_val"] = cfg.n_val
        raise ConfigError("stop here")

    monkeypatch.setattr("l2dynamics.studies.choose.full_run_time", fake_full_run_time)
    with pytest.raises(ConfigError, match="stop here"):
        choose_lambda({**TINY, "n_val": 0}, 100, store=tmp_path / "s.sqlite")
    assert seen["n_val"] == 300


def test_choose_refuses_a_task_without_accuracy(tmp_path):
    cfg = {"dataset": "teacher", "data_options": {"task": "regression"}, "n_train": 64,
           "n_test": 64, "n_val": 32, "model": "fc", "width": 8, "loss": "mse", "lr": 0.1}
    try:
        make_config(cfg)
    except ConfigError:
        pytest.skip("no regression teacher in this build")
    with pytest.raises(ConfigError, match="classification"):
        choose_lambda(cfg, 40, store=tmp_path / "s.sqlite")


@pytest.mark.slow
def test_cli_choose(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    config = tmp_path / "c.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["choose", str(config), "--budget", "300", "--store",
                                      str(tmp_path / "s.sqlite"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "premise:" in result.output and "compute:" in result.output
    saved = json.loads((out / "choice.json").read_text())
    assert saved["budget"] == 300 and saved["compute_runs"] == saved["compute_steps"] / 300
    missing = CliRunner().invoke(app, ["choose", "--budget", "300"])
    assert missing.exit_code == 2


@pytest.mark.slow
def test_premise_control_that_must_say_yes_end_to_end(tmp_path):
    """Through the whole pipeline, a network that fits its 64 training images within a few
    steps and a budget long enough that every probe's t* is set by L2 (c = λ·η·t* ≈ 0.85–1.2
    when this was written): the premise holds and the selector takes the prediction route,
    λ = ĉ/Φ(T). The benchmark's tasks are the controls that say no."""
    cfg = {"dataset": "digits", "n_train": 64, "n_val": 270, "model": "fc", "width": 512,
           "depth": 2, "lr": 0.5, "batch_size": 64, "norms_per_tensor": False,
           "eval_per_decade": 20}
    choice = choose_lambda(cfg, 16000, store=tmp_path / "s.sqlite")
    probes = [c for c in choice.candidates if c.role == "probe"]
    assert all(p.fits for p in probes) and choice.premise.holds, choice.premise.reason
    assert choice.premise.c_spread <= C_AGREEMENT
    assert choice.route == "prediction"
    c_hat = math.exp(sum(math.log(p.c) for p in probes) / len(probes))
    predicted = next(c for c in choice.candidates if c.role == "prediction")
    assert predicted.lam == pytest.approx(c_hat / (0.5 * 16000))
    assert choice.lam_low == pytest.approx(min(p.c for p in probes) / (0.5 * 16000))


def test_search_space_for_a_users_optuna_study():
    from l2dynamics.studies.choose import SEARCH_X, lambda_search_space, suggest_lambda
    from l2dynamics.studies.predict import ema_timescale_lambda

    cfg = make_config(TINY)  # η = 0.2
    low, high = lambda_search_space(cfg, 1000)
    assert (low, high) == pytest.approx((SEARCH_X[0] / 200, SEARCH_X[1] / 200))
    assert low < ema_timescale_lambda(cfg, 1000) < high
    choice = SimpleNamespace(lam_low=1e-3, lam_high=4e-3)
    assert lambda_search_space(cfg, 1000, choice=choice) == pytest.approx((2.5e-4, 1.6e-2))
    at_zero = SimpleNamespace(lam_low=0.0, lam_high=4e-3)  # λ = 0 was within the noise
    assert lambda_search_space(cfg, 1000, choice=at_zero) == pytest.approx((6.25e-5, 1.6e-2))
    with pytest.raises(ConfigError, match="widen"):
        lambda_search_space(cfg, 1000, widen=0.5)
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda trial: suggest_lambda(trial, cfg, 1000), n_trials=5)
    assert all(low <= t.params["lam"] <= high for t in study.trials)


def test_the_map_overrules_agreeing_probes_where_it_measured_the_law_failing(tmp_path,
                                                                              monkeypatch):
    import json

    from l2dynamics.studies import choose

    agree = choose.PremiseCheck(True, 3, [0.8, 0.9, 1.0], 1.25, "3 of 3 probes agree")
    monkeypatch.setattr(choose, "check_premise", lambda probes: agree)
    path = tmp_path / "map.json"
    rule = {"measured_on": "test", "sentence": "held above 1e6, failed below 1e5.",
            "boundary": {"holds": 1, "does_not_hold": 1, "other": 0, "separates": True,
                         "lowest_holding": 1e6, "highest_failing": 1e5}}
    path.write_text(json.dumps(rule))
    monkeypatch.setattr("l2dynamics.studies.study_regime.MAP_FILE", path)
    choice = choose_lambda(TINY, 200, store=tmp_path / "s.sqlite")
    assert choice.route == "search" and not choice.premise.holds
    assert "the map puts this config where t* ∝ 1/λ failed" in choice.premise.reason
    # a map whose verdicts no variable separates leaves the decision to the probes
    path.write_text(json.dumps({**rule, "boundary": {**rule["boundary"], "separates": False}}))
    agree.holds, agree.reason = True, "3 of 3 probes agree"
    choice = choose_lambda(TINY, 200, store=tmp_path / "s.sqlite")
    assert choice.route == "prediction" and "the probes decide" in choice.premise.reason
