"""The λ predictor: effective time, the formula, the under-fitting step-down, honest failure."""

import math

import pytest

from l2dynamics import ConfigError, make_config
from l2dynamics.studies.predict import effective_time, predict_lambda

BASE = dict(dataset="digits", n_train=300, n_test=540, width=32, batch_size=32, lr=0.1,
            norms_per_tensor=False)


def test_effective_time_counts_schedule_and_momentum():
    assert effective_time(make_config(BASE), 1000) == pytest.approx(100.0)
    assert effective_time(make_config(BASE, momentum=0.9), 1000) == pytest.approx(1000.0)
    stepped = make_config(BASE, steps=1000, lr_schedule="step", lr_milestones=[0.5],
                          lr_gamma=0.1)
    assert effective_time(stepped, 1000) == pytest.approx(0.1 * 500 + 0.01 * 500)
    assert effective_time(make_config(BASE, optimizer="adam", lr=1e-3), 100) == pytest.approx(0.1)


def test_prediction_follows_the_released_formula():
    pred = predict_lambda(BASE, 4000, lam_ref=0.02, probe_k=4.0, seeds=(0, 1, 2))
    assert pred.ok and len(pred.attempts) == 1 and pred.lam_ref == 0.02
    probe = pred.attempts[0]
    assert probe.steps == math.ceil(4.0 / (0.1 * 0.02)) and all(probe.fits_train)
    # constant η, same momentum: λ_pred = λ_ref·t*_ref/T (within the rounding of t* to steps)
    assert pred.lam == pytest.approx(0.02 * pred.tstar_ref / 4000, rel=2e-3)
    assert pred.c_eta == pytest.approx(pred.lam * 0.1 * 4000, rel=2e-3)
    assert pred.lam_low <= pred.lam <= pred.lam_high
    assert pred.probe_steps == 3 * probe.steps and pred.compute_fraction == pred.probe_steps / 4000


def test_equal_momentum_in_probe_and_run_cancels():
    """Probe and full run share μ = 0.9: (1 − μ) cancels and λ_pred = λ_ref·t*/T, as without
    momentum. (Whether Φ's momentum factor is *right* across different μ is the benchmark's.)"""
    heavy = predict_lambda({**BASE, "momentum": 0.9}, 2000, lam_ref=0.02, probe_k=1.0,
                           seeds=(0,))
    assert heavy.ok
    # with equal μ in probe and run, (1 − μ) cancels: λ_pred = λ_ref·t*/T either way
    assert heavy.lam == pytest.approx(0.02 * heavy.tstar_ref / 2000, rel=2e-3)


def test_under_fitting_probe_steps_lambda_down_and_reports_it():
    pred = predict_lambda(BASE, 4000, lam_ref=2.0, probe_k=1.0, seeds=(0, 1), step_down=10.0)
    assert len(pred.attempts) >= 2 and not pred.attempts[0].fits_train[0]
    # the second seed of a rejected λ is not run, and not counted
    assert len(pred.attempts[0].tstars) == 1 and len(pred.attempts[-1].tstars) == 2
    assert pred.probe_steps == sum(a.steps * len(a.tstars) for a in pred.attempts)
    assert pred.ok and pred.lam_ref == pytest.approx(2.0 / 10 ** (len(pred.attempts) - 1))
    stuck = predict_lambda(BASE, 4000, lam_ref=2.0, probe_k=1.0, seeds=(0,), max_attempts=1)
    assert not stuck.ok and math.isnan(stuck.lam) and "under-fits" in stuck.message


def test_no_usable_peak_is_said_not_guessed():
    pred = predict_lambda(BASE, 4000, lam_ref=0.01, probe_k=0.05, seeds=(0,),
                          estimator="smoothed")
    assert not pred.ok and "no usable t*" in pred.message and "probe_k" in pred.message


@pytest.mark.parametrize("kwargs, field", [({"budget": 0}, "budget"),
                                           ({"estimator": "mean"}, "estimator"),
                                           ({"seeds": ()}, "seeds"),
                                           ({"probe_k": -1.0}, "probe_k"),
                                           ({"lam_ref": 0.0}, "lam_ref")])
def test_bad_arguments(kwargs, field):
    args = {"budget": 100, **kwargs}
    with pytest.raises(ConfigError, match=field):
        predict_lambda(BASE, args.pop("budget"), **args)


def test_cli_predict(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    sets = [x for k, v in BASE.items() for x in ("--set", f"{k}={v}")]
    runner = CliRunner()
    res = runner.invoke(app, ["predict", "--budget", "4000", *sets, "--lam-ref", "0.02",
                              "--seeds", "0", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    figure = tmp_path / "figures" / "predict" / "prediction.png"
    assert "λ_pred =" in res.output and figure.stat().st_size > 10_000
    failed = runner.invoke(app, ["predict", "--budget", "4000", *sets, "--lam-ref", "0.01",
                                 "--probe-k", "0.05", "--estimator", "smoothed", "--seeds",
                                 "0", "--out", str(tmp_path / "failed")])
    assert failed.exit_code == 1 and "no prediction" in failed.output
    bad = runner.invoke(app, ["predict", "--budget", "0", *sets])
    assert bad.exit_code == 2 and "budget" in bad.output


def test_an_under_fitting_probe_is_stopped_early_and_counted_as_run():
    # λ = 2 on digits cannot fit the training data; probe_k = 8 would run 40 steps of η·λ = 0.2
    fast = predict_lambda(BASE, 4000, lam_ref=2.0, probe_k=8.0, seeds=(0,), max_attempts=1)
    slow = predict_lambda(BASE, 4000, lam_ref=2.0, probe_k=8.0, seeds=(0,), max_attempts=1,
                          early_stop=False)
    first, full = fast.attempts[0], slow.attempts[0]
    assert not first.fits_train[0] and not full.fits_train[0]
    assert first.steps_done[0] < full.steps_done[0] == full.steps
    assert fast.probe_steps == first.steps_done[0] < slow.probe_steps


def test_underfit_stop_never_stops_a_rising_run():
    from types import SimpleNamespace

    from l2dynamics.studies.predict import UnderfitStop

    stop = UnderfitStop(lam=1.0, threshold=0.99)
    trainer = SimpleNamespace(rows=[], request_stop=lambda: pytest.fail("stopped a rising run"))
    for k in range(1, 200):  # accuracy rising steadily (0.003 per record), physical time k·0.05
        trainer.rows.append((k, 0.05 * k, "train_acc", 0.3 + 0.003 * k))
        stop.on_step_end(trainer, k, None)
    stopped = []
    flat = SimpleNamespace(rows=[], request_stop=lambda: stopped.append(True))
    stop = UnderfitStop(lam=1.0, threshold=0.99)
    for k in range(1, 200):
        flat.rows.append((k, 0.05 * k, "train_acc", 0.6))
        stop.on_step_end(flat, k, None)
        if stopped:
            break
    assert stopped and stop.stopped_at == 40  # λ·Φ = 2.0: the first moment it may judge


def test_ema_timescale_rule_is_a_fixed_c_eta():
    from l2dynamics import ema_timescale_lambda

    cfg = make_config(BASE)
    assert ema_timescale_lambda(cfg, 4000, fraction=0.25) == pytest.approx(1 / (0.25 * 0.1 * 4000))
    # τ = 1/(ηλ) counts the long-time step η/(1 − μ) under momentum
    heavy = make_config(BASE, momentum=0.9, lr=0.01)
    assert ema_timescale_lambda(heavy, 4000) == pytest.approx(ema_timescale_lambda(cfg, 4000))
    for bad in (0.0, 1.5, math.nan):
        with pytest.raises(ConfigError, match="fraction"):
            ema_timescale_lambda(cfg, 4000, fraction=bad)


def test_public_api_names():
    import l2dynamics

    for name in ("predict_lambda", "AutoL2", "StepSchedule", "WeightDecaySchedule",
                 "decay_param_groups", "ema_timescale_lambda", "LambdaPrediction"):
        assert hasattr(l2dynamics, name) and name in l2dynamics.__all__


def test_a_step_down_longer_than_the_budget_is_not_run():
    # λ = 2 under-fits; the step-down to 0.2 would need 1/(0.1·0.2) = 50 steps > 40
    pred = predict_lambda(BASE, 40, lam_ref=2.0, probe_k=1.0, seeds=(0,), step_down=10.0)
    assert not pred.ok and len(pred.attempts) == 1
    assert "shorter than 40 steps" in pred.message and "short grid" in pred.message
    wider = predict_lambda(BASE, 40, lam_ref=2.0, probe_k=1.0, seeds=(0,), step_down=10.0,
                           max_probe_steps=60, max_attempts=2)
    assert len(wider.attempts) == 2
    with pytest.raises(ConfigError, match="max_probe_steps"):
        predict_lambda(BASE, 40, max_probe_steps=0)


# --- a learning-rate schedule: Φ_full of the budget's own run, the probe at the initial η ------

STEPPED = dict(BASE, lr_schedule="step", lr_milestones=[0.3, 0.6, 0.9], lr_gamma=0.2)


def _stub_probe(tstars):
    from l2dynamics.studies.predict import ProbeAttempt

    def probe(cfg, lam, steps, seeds, *args, **kwargs):
        import pandas as pd

        n = len(tstars)
        history = pd.DataFrame({"step": [0, 10, 100, 1000], "test_acc": [0.1, 0.5, 0.9, 0.9]})
        return ProbeAttempt(lam, steps, list(tstars), [True] * n, [False] * n,
                            histories=[history] * n, steps_done=[steps] * n)
    return probe


def test_lambda_for_a_scheduled_budget_does_not_depend_on_the_unused_steps(monkeypatch):
    """The milestones are fractions of the run's own length: the full run of the budget T has
    them at 0.3·T, 0.6·T, 0.9·T whatever `steps` the config carries (issue 16: λ_pred was
    0.0085 or 0.0182 for the same probe, depending only on `steps`)."""
    from l2dynamics.studies import predict as module

    monkeypatch.setattr(module, "_probe", _stub_probe([100.0, 120.0, 110.0]))
    budget = 4000
    preds = [predict_lambda({**STEPPED, "steps": steps}, budget, lam_ref=0.02, seeds=(0, 1, 2))
             for steps in (1000, budget, 20000)]
    for pred in preds[1:]:
        assert (pred.lam, pred.lam_low, pred.lam_high) == pytest.approx(
            (preds[0].lam, preds[0].lam_low, preds[0].lam_high), rel=1e-12)
    # Φ_full(T) for a run whose steps = T: drops at 1200, 2400 and 3600
    phi_full = 0.1 * (1200 + 0.2 * 1200 + 0.04 * 1200 + 0.008 * 400)
    assert effective_time(make_config(STEPPED, steps=budget), budget) == pytest.approx(phi_full)
    # the probe runs at the schedule's initial η: Φ_probe(t*) = η·t*
    assert preds[0].lam == pytest.approx(0.02 * 0.1 * 110.0 / phi_full, rel=1e-9)
    assert preds[0].c_eta == pytest.approx(0.02 * 0.1 * 110.0, rel=1e-9)


def test_ema_timescale_rule_uses_the_budget_run_of_a_schedule():
    from l2dynamics import ema_timescale_lambda

    ema = [ema_timescale_lambda({**STEPPED, "steps": s}, 4000) for s in (1000, 4000, 20000)]
    assert ema == pytest.approx([ema[1]] * 3, rel=1e-12)
    phi_full = 0.1 * (1200 + 0.2 * 1200 + 0.04 * 1200 + 0.008 * 400)
    assert ema[1] == pytest.approx(1 / (0.25 * phi_full))


def test_the_probe_trains_at_the_schedules_initial_lr_with_its_warmup(monkeypatch):
    """A step/cosine schedule squeezed into the probe would change η during the probe; the
    probe runs at the initial η (constant after the run's warm-up, which it keeps)."""
    from l2dynamics.studies import predict as module
    from l2dynamics.train import Trainer

    seen = []

    class Recording(Trainer):
        def __init__(self, cfg, *args, **kwargs):
            seen.append(cfg)
            super().__init__(cfg, *args, **kwargs)

    monkeypatch.setattr(module, "Trainer", Recording)
    cfg = {**STEPPED, "warmup_steps": 20, "steps": 300}
    pred = predict_lambda(cfg, 3000, lam_ref=0.05, probe_k=1.0, seeds=(0,), max_attempts=1)
    probe = seen[0]
    assert probe.lr_schedule == "constant" and probe.warmup_steps == 20 and probe.lr == 0.1
    # long enough for λ·Φ = probe_k despite the warm-up's slower start
    assert 0.05 * effective_time(probe, probe.steps) >= 1.0 > 0.05 * effective_time(
        probe, probe.steps - 1)
    assert "constant" in pred.probe_schedule and "warm-up" in pred.probe_schedule


@pytest.mark.parametrize("tstars, method", [([100.0, 120.0, 110.0], "t-interval"),
                                            ([100.0, 120.0], "seed range"),
                                            ([100.0], "single seed")])
def test_the_interval_is_the_small_sample_seed_interval(monkeypatch, tstars, method):
    from l2dynamics.analysis.intervals import seed_interval
    from l2dynamics.studies import predict as module

    monkeypatch.setattr(module, "_probe", _stub_probe(tstars))
    pred = predict_lambda(BASE, 4000, lam_ref=0.02, seeds=tuple(range(len(tstars))))
    assert pred.interval_method == method and pred.seeds == len(tstars)
    iv = seed_interval(tstars, level=0.95)
    assert pred.lam_low == pytest.approx(0.02 * 0.1 * max(0, round(iv.low)) / 400, rel=1e-9)
    assert pred.lam_high == pytest.approx(0.02 * 0.1 * round(iv.high) / 400, rel=1e-9)


def test_the_predict_study_states_the_probe_schedule_and_the_interval(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app
    from l2dynamics.studies import predict as module

    monkeypatch.setattr(module, "_probe", _stub_probe([100.0, 120.0, 110.0]))
    sets = [x for k, v in {**STEPPED, "lr_milestones": "[0.3,0.6,0.9]"}.items()
            for x in ("--set", f"{k}={v}")]
    res = CliRunner().invoke(app, ["predict", "--budget", "4000", *sets, "--lam-ref", "0.02",
                                   "--seeds", "0,1,2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "constant η = 0.1" in text and "step schedule laid out over T" in text
    assert "95 % t-interval, 3 seeds" in text
