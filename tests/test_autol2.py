"""AutoL2 and the weight-decay schedules: the released rule, targets, conventions, state."""

import math
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autol2_reference import released_rule
from l2dynamics import AutoL2, ConfigError, L2Penalty
from l2dynamics.l2 import StepSchedule, decay_param_groups


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8),
                               torch.nn.Linear(8, 3))


@pytest.mark.parametrize("seed", range(12))
def test_matches_the_released_code_on_noisy_training_curves(seed):
    rng = np.random.default_rng(seed)
    n = 400
    t = np.arange(n)
    # improving then plateauing curves, quantized so that ties (<=, >=) happen
    loss = np.round(2.0 * np.exp(-t / rng.uniform(20, 200)) + rng.normal(0, 0.05, n), 2)
    acc = np.round(np.clip(1 - loss / 2 + rng.normal(0, 0.03, n), 0, 1) * 64) / 64
    lam0, factor, delay = rng.choice([0.1, 0.5, 2.0]), rng.choice([10.0, 3.0]), 0.1
    steps = [10 * k for k in range(len(loss))]  # measured every 10 steps from step 0
    expected = released_rule(list(zip(loss, acc, steps, strict=True)), lam0, factor, delay)
    sched = AutoL2(penalty=L2Penalty([], 0.0), lam0=lam0, factor=factor, refractory=delay)
    got = [sched.step(lm, a, global_step=10 * k) for k, (lm, a) in enumerate(zip(loss, acc,
                                                                                strict=True))]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert len(sched.events) == int(round(math.log(lam0 / got[-1], factor)))
    assert len(sched.events) >= 1  # the noisy plateaus do trigger decays


def test_drives_a_plain_torch_optimizer_and_masks_groups():
    model = _model()
    groups = decay_param_groups(model, "weights", lr=0.1)
    assert [g["decay"] for g in groups] == [True, False]
    assert len(groups[0]["params"]) == 2  # the two Linear weights; biases and LN gains not
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    sched = AutoL2(opt, lam0=0.1)
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0
    for k, (lm, acc) in enumerate([(1.0, 0.5), (0.9, 0.6), (0.95, 0.55), (0.96, 0.55)]):
        lam = sched.step(lm, acc, 10 * k)
    assert lam == pytest.approx(0.01) and sched.get_last_lambda() == lam
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.01)
    assert opt.param_groups[1]["weight_decay"] == 0
    assert sched.events == [{"step": 30, "lam_before": 0.1, "lam_after": pytest.approx(0.01),
                             "train_loss": 0.96, "train_accuracy": 0.55}]


def test_one_default_for_which_parameters_decay():
    """The helper, split_decay and the engine's config key share one default: every
    parameter, as the paper's λ/2·‖θ‖² (biases and LayerNorm gains of _model() included)."""
    from l2dynamics.config import DEFAULT_DECAY_PARAMS, make_config
    from l2dynamics.l2 import split_decay

    model = _model()
    assert make_config().decay_params == DEFAULT_DECAY_PARAMS == "all"
    groups = decay_param_groups(model)
    everything = {id(p) for p in model.parameters()}
    assert len(groups) == 1 and groups[0]["decay"] is True
    assert {id(p) for p in groups[0]["params"]} == everything
    assert split_decay(model).not_decayed == ()


def test_refractory_period_in_steps_and_in_lr_lam_epochs():
    def decays(**kw):
        sched = AutoL2(penalty=L2Penalty([], 0.0), lam0=0.01, **kw)
        # a flat curve stalls at every measurement: decays come as fast as the rule allows
        for k in range(60):
            sched.step(1.0, 0.5, 10 * k)
        return [e["step"] for e in sched.events]

    # steps: 0.1/λ = 10 steps at λ = 0.01 (first chance: the 3rd measurement, step 20), then
    # 100 at 1e-3 (next decay at the first measurement after step 120)
    assert decays() == [20, 130]
    # epochs·η·λ: 0.1·spe/(η·λ) steps = 0.1·5/(0.5·0.01) = 100 steps at λ = 0.01
    assert decays(refractory_unit="lr_lam_epochs", steps_per_epoch=5, lr=0.5)[:1] == [110]
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        AutoL2(penalty=L2Penalty([], 0.0), refractory_unit="lr_lam_epochs")


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(3)
    data = [(float(lm), float(a)) for lm, a in zip(np.round(rng.random(200), 1),
                                                   np.round(rng.random(200), 1), strict=True)]
    full = AutoL2(penalty=L2Penalty([], 0.0), lam0=1.0)
    expected = [full.step(lm, a, 10 * k) for k, (lm, a) in enumerate(data)]
    first = AutoL2(penalty=L2Penalty([], 0.0), lam0=1.0)
    for k, (lm, a) in enumerate(data[:77]):
        first.step(lm, a, 10 * k)
    state = first.state_dict()
    penalty = L2Penalty([], 0.0)
    second = AutoL2(penalty=penalty, lam0=1.0)
    second.load_state_dict(state)
    assert penalty.lam == first.get_last_lambda()
    rest = [second.step(lm, a, 10 * k) for k, (lm, a) in enumerate(data[77:], start=77)]
    assert rest == expected[77:]
    assert second.events == full.events


def test_conventions_write_the_right_number():
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    StepSchedule(opt, 0.05, convention="decoupled")
    assert opt.param_groups[0]["weight_decay"] == 0.05
    StepSchedule(opt, 1e-4, convention="independent")  # θ ← (1 − 1e-4)·θ whatever η
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(1e-4 / 0.01)
    penalty = L2Penalty([], 0.0)
    AutoL2(penalty=penalty, lam0=0.3, convention="decoupled")
    assert penalty.decoupled_wd == 0.3 and penalty.lam == 0.0
    # the independent convention really decays by (1 − λ_i) per step in torch's AdamW
    w = torch.nn.Parameter(torch.ones(3))
    adamw = torch.optim.AdamW([w], lr=0.5)
    StepSchedule(adamw, 0.01, convention="independent")
    w.grad = torch.zeros(3)
    adamw.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.99))


def test_step_schedules():
    penalty = L2Penalty([], 0.0)
    step = StepSchedule(penalty=penalty, lam0=1.0, kind="step", milestones=[10, 20], gamma=0.5)
    assert [step.step(t) for t in (0, 9, 10, 19, 20, 100)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert penalty.lam == 0.25
    cos = StepSchedule(penalty=penalty, lam0=1.0, kind="cosine", total_steps=100, lam_end=0.1)
    assert cos.step(0) == 1.0 and cos.step(50) == pytest.approx(0.55)
    assert cos.step(100) == pytest.approx(0.1) and cos.step(500) == pytest.approx(0.1)
    lin = StepSchedule(penalty=penalty, lam0=1.0, kind="linear", total_steps=10)
    assert lin.step(5) == pytest.approx(0.5)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    lr_sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    follow = StepSchedule(opt, 1e-3, kind="follow_lr")
    opt.step()
    lr_sched.step()
    assert follow.step(1) == pytest.approx(5e-4) and opt.param_groups[0]["weight_decay"] == 5e-4


@pytest.mark.parametrize("kwargs, field", [
    ({"factor": 1.0}, "factor"), ({"factor": -2}, "factor"), ({"lam0": -0.1}, "lam0"),
    ({"lam0": math.nan}, "lam0"), ({"refractory": -1}, "refractory"),
    ({"refractory_unit": "epochs"}, "refractory_unit"), ({"convention": "adamw"}, "convention"),
    ({"min_lam": -1}, "min_lam"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        AutoL2(penalty=L2Penalty([], 0.0), **kwargs)


def test_needs_exactly_one_target_and_finite_measurements():
    opt = torch.optim.SGD(_model().parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="exactly one target"):
        AutoL2()
    with pytest.raises(ConfigError, match="exactly one target"):
        AutoL2(opt, penalty=L2Penalty([], 0.0))
    with pytest.raises(ConfigError, match="finite"):
        AutoL2(opt).step(math.nan, 0.5, 0)


def test_min_lam_is_a_floor():
    sched = AutoL2(penalty=L2Penalty([], 0.0), lam0=1.0, min_lam=0.05, refractory=0.0)
    for k in range(50):
        sched.step(1.0, 0.5, 10 * k)
    assert sched.get_last_lambda() == 0.05 and len(sched.events) == 2


def test_plain_pytorch_example_runs():
    """The README's two-line example, as a script that uses nothing else from l2dynamics."""
    path = Path(__file__).parent.parent / "examples" / "autol2_plain_pytorch.py"
    result = runpy.run_path(str(path))
    assert result["sched"].events, "the example should show at least one decay"
    assert result["sched"].get_last_lambda() < 0.1


ENGINE = {"dataset": "digits", "model": "fc", "width": 32, "lr": 0.1, "lam": 0.1,
          "lam_schedule": "autol2", "eval_per_decade": 10, "norms_per_tensor": False}


def test_engine_runs_autol2_from_the_config_and_stores_lambda(tmp_path):
    from l2dynamics import RunStore, Trainer, make_config

    with RunStore(tmp_path / "s.sqlite") as store:
        trainer = Trainer(make_config(ENGINE, steps=600), store=store)
        result = trainer.run()
    events = trainer.autol2.schedule.events
    assert result.status == "finished" and len(events) >= 2
    lam = result.history.set_index("step")["lam"]
    assert lam.iloc[0] == 0.1 and lam.is_monotonic_decreasing
    assert set(np.round(np.log10(lam.unique()), 9)) <= {-1.0, -2.0, -3.0, -4.0, -5.0, -6.0}
    # the stored λ at each evaluation is the one the last decay before it set
    for step, value in lam.items():
        before = [e["lam_after"] for e in events if e["step"] <= step]
        expected = before[-1] if before else 0.1
        assert value == pytest.approx(expected)
    assert all(e["step"] % 10 == 0 for e in events)


def test_autol2_run_resumes_exactly(tmp_path):
    from l2dynamics import RunStore, Trainer, make_config, train

    class StopAt:
        def on_step_end(self, trainer, step, loss):
            if step == 230:
                trainer.request_stop()

    cfg = make_config(ENGINE, steps=500, checkpoint_every=100)
    reference = train(cfg)
    with RunStore(tmp_path / "s.sqlite") as store:
        first = Trainer(cfg, store=store, callbacks=[StopAt()])
        assert first.run().status == "interrupted"
        resumed = Trainer.resume(store, first.run_id)
        result = resumed.run()
    keep = [c for c in reference.history.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(result.history[keep], reference.history[keep])
    ref_trainer = Trainer(cfg)
    ref_trainer.run()
    assert resumed.autol2.schedule.events == ref_trainer.autol2.schedule.events


def test_autol2_config_is_validated_and_not_vectorized():
    from l2dynamics import make_config
    from l2dynamics.train import vectorizable

    with pytest.raises(ConfigError, match="lam_schedule"):
        make_config(ENGINE, lam_schedule="exp")
    with pytest.raises(ConfigError, match="lam must be > 0|must be > 0"):
        make_config(ENGINE, lam=0.0)
    with pytest.raises(ConfigError, match="autol2_factor"):
        make_config(ENGINE, autol2_factor=1.0)
    configs = [make_config(ENGINE, seed=s) for s in (0, 1)]
    assert "lam_schedule" in vectorizable(configs)


def test_cli_train_reports_the_decays(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    res = CliRunner().invoke(app, ["train", "--set", "dataset=digits", "--set", "lam=0.1",
                                   "--set", "lam_schedule=autol2", "--set", "steps=300",
                                   "--set", "width=32", "--store", str(tmp_path / "s.sqlite")])
    assert res.exit_code == 0, res.output
    assert "AutoL2 decays at step" in " ".join(res.output.split())
    bad = CliRunner().invoke(app, ["train", "--set", "lam_schedule=autol2", "--set", "lam=0",
                                   "--store", str(tmp_path / "t.sqlite")])
    assert bad.exit_code == 2 and "lam_schedule" in bad.output


def _ema_sched(**kwargs):
    return AutoL2(penalty=L2Penalty([], 0.0), lam0=1.0, refractory=0.0, plateau="ema",
                  **kwargs)


def test_ema_plateau_waits_for_both_smoothed_series_to_stall():
    sched = _ema_sched(ema=0.5, patience=3)
    # the loss keeps falling while the accuracy is flat: the paper's rule would decay, this not
    for k in range(30):
        sched.step(1.0 / (k + 1), 0.5, 10 * k)
    assert sched.events == []
    paper = AutoL2(penalty=L2Penalty([], 0.0), lam0=1.0, refractory=0.0)
    for k in range(30):
        paper.step(1.0 / (k + 1), 0.5, 10 * k)
    assert paper.events, "the released rule decays on a flat accuracy"
    # both flat: a decay after `patience` measurements without a new best, then a new phase
    start = len(sched.events)
    for k in range(30, 34):
        sched.step(1.0 / 30, 0.5, 10 * k)
    # the averages still move towards the flat values for a while; then 3 stalls → one decay
    for k in range(34, 60):
        sched.step(1.0 / 30, 0.5, 10 * k)
        if len(sched.events) > start:
            break
    assert len(sched.events) == start + 1 and sched.get_last_lambda() == pytest.approx(0.1)
    assert sched.since_best == 0


def test_ema_plateau_state_round_trip_and_validation():
    a = _ema_sched(ema=0.8, patience=2)
    rng = np.random.default_rng(0)
    series = [(1 + 0.1 * rng.standard_normal(), 0.5 + 0.05 * rng.standard_normal())
              for _ in range(80)]
    for k, (loss, acc) in enumerate(series[:40]):
        a.step(loss, acc, 10 * k)
    b = _ema_sched(ema=0.8, patience=2)
    b.load_state_dict(a.state_dict())
    for k, (loss, acc) in enumerate(series[40:], start=40):
        assert a.step(loss, acc, 10 * k) == b.step(loss, acc, 10 * k)
    assert a.events == b.events and a.events
    for kwargs, field in (({"plateau": "smooth"}, "plateau"), ({"ema": 1.0}, "ema"),
                          ({"patience": 0}, "patience")):
        with pytest.raises(ConfigError, match=field):
            AutoL2(penalty=L2Penalty([], 0.0), **kwargs)


def test_autol2_variant_config_keys_reach_the_schedule():
    from l2dynamics import Trainer, make_config

    trainer = Trainer(make_config(ENGINE, steps=10, autol2_plateau="ema", autol2_patience=7,
                                  autol2_min_lam=1e-3))
    sched = trainer.autol2.schedule
    assert (sched.plateau, sched.patience, sched.min_lam) == ("ema", 7, 1e-3)
    for key, value in (("autol2_plateau", "smooth"), ("autol2_patience", 0),
                       ("autol2_min_lam", -1.0)):
        with pytest.raises(ConfigError, match=key):
            make_config(ENGINE, **{key: value})


def _adamw_like():
    """AdamW, and Adam with torch's decoupled_weight_decay flag (the same algorithm)."""
    yield torch.optim.AdamW(_model().parameters(), lr=0.01)
    if "decoupled_weight_decay" in torch.optim.Adam(_model().parameters()).defaults:
        yield torch.optim.Adam(_model().parameters(), lr=0.01, decoupled_weight_decay=True)


@pytest.mark.parametrize("make", [
    lambda opt: StepSchedule(opt, 0.05),
    lambda opt: StepSchedule(opt, 0.05, convention="coupled"),
    lambda opt: AutoL2(opt, lam0=0.1),
])
def test_coupled_lambda_is_refused_on_a_decoupled_optimizer(make):
    """AdamW's weight_decay is decoupled (θ ← (1 − η·λ_d)·θ, outside the moments): writing
    the paper's coupled λ there would silently train a different algorithm."""
    for opt in _adamw_like():
        before = [g["weight_decay"] for g in opt.param_groups]
        with pytest.raises(ConfigError) as info:
            make(opt)
        message = str(info.value)
        assert "\n" not in message and "decoupled" in message
        assert "convention='decoupled'" in message and "torch.optim.Adam" in message
        assert [g["weight_decay"] for g in opt.param_groups] == before  # nothing written


def test_decoupled_conventions_are_refused_on_a_coupled_optimizer():
    """The mirror: λ_d written into Adam's (or momentum SGD's) coupled weight_decay would go
    through the moments / the momentum buffer. Plain SGD, where the two coincide, is allowed."""
    for convention in ("decoupled", "independent"):
        adam = torch.optim.Adam(_model().parameters(), lr=0.01)
        with pytest.raises(ConfigError, match="convention='coupled'.*AdamW"):
            StepSchedule(adam, 0.05, convention=convention)
        heavy = torch.optim.SGD(_model().parameters(), lr=0.1, momentum=0.9)
        with pytest.raises(ConfigError, match="momentum"):
            AutoL2(heavy, lam0=0.05, convention=convention)
        plain = torch.optim.SGD(_model().parameters(), lr=0.1)
        StepSchedule(plain, 0.05, convention=convention)  # θ ← θ − η(g + wd·θ): exact


def test_the_class_help_says_which_optimizer_takes_which_convention():
    for cls in (StepSchedule, AutoL2):
        doc = " ".join(cls.__mro__[-2].__doc__.split())  # WeightDecaySchedule's docstring
        assert "AdamW" in doc and "convention='decoupled'" in doc


def test_schedules_warn_when_they_overwrite_a_users_weight_decay():
    import warnings

    from l2dynamics.l2 import StepSchedule

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1, weight_decay=5e-4)
    with pytest.warns(UserWarning, match="overwrites weight_decay=0.0005") as record:
        StepSchedule(opt, lam0=1e-3)
    assert record[0].filename == __file__  # points at the user's line, not at the library
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        StepSchedule(torch.optim.SGD([p], lr=0.1), lam0=1e-3)  # weight_decay 0: silent
        StepSchedule(torch.optim.SGD([p], lr=0.1, weight_decay=1e-3), lam0=1e-3)  # same value
        AutoL2(torch.optim.SGD([{"params": [p], "decay": False, "weight_decay": 5e-4}],
                               lr=0.1), lam0=0.1)  # a group marked decay: False is not touched


def test_step_schedule_counts_its_own_steps_and_reports_per_group_values():
    from l2dynamics.l2 import StepSchedule

    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}],
                            weight_decay=0.0)
    sched = StepSchedule(opt, lam0=1e-3, kind="step", milestones=[3], gamma=0.1,
                         convention="independent")
    lams = [sched.step() for _ in range(4)]  # torch style: no step argument
    assert lams == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert sched.get_last_lambda() == pytest.approx(1e-4)
    assert sched.get_last_weight_decay() == pytest.approx([1e-4 / 0.1, 1e-4 / 0.01])
    assert sched.step(1) == pytest.approx(1e-3)  # an explicit step still works
    assert sched.step() == pytest.approx(1e-3) and sched.global_step == 2


def test_every_schedule_docstring_lists_the_conventions():
    from l2dynamics.l2 import StepSchedule, WeightDecaySchedule

    for cls in (WeightDecaySchedule, StepSchedule, AutoL2):
        doc = cls.__doc__
        assert all(f'"{c}"' in doc or f"``'{c}'``" in doc or f"'{c}'" in doc
                   for c in ("coupled", "decoupled", "independent")), cls


def test_autol2_counts_steps_when_told_its_measurement_interval():
    p = torch.nn.Parameter(torch.ones(2))
    counted = AutoL2(torch.optim.SGD([p], lr=0.1), lam0=0.1, every=10)
    given = AutoL2(torch.optim.SGD([p], lr=0.1), lam0=0.1)
    values = [(1.0, 0.5), (0.9, 0.6), (0.95, 0.55), (0.97, 0.52), (0.99, 0.5), (1.0, 0.5)] * 5
    for i, (loss, acc) in enumerate(values):
        assert counted.step(loss, acc) == given.step(loss, acc, 10 * i)
    assert counted.events == given.events and counted.events
    with pytest.raises(ConfigError, match="every=10"):
        given.step(1.0, 0.5)
    with pytest.raises(ConfigError, match="every must be"):
        AutoL2(torch.optim.SGD([p], lr=0.1), every=0)
