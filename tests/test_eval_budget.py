"""Evaluation within a stated budget: the plan (clock and test-subset size), the runs that follow
it (Trainer and the vectorized ensemble alike), and the per-device evaluation settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2dynamics import Trainer, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.probes.metrics import evaluate
from l2dynamics.train import EnsembleTrainer
from l2dynamics.train.clock import (
    EVAL_SUBSET_FLOOR,
    THIN_MIN_STEPS,
    TRAIN_COST_PER_EXAMPLE,
    eval_plan,
    eval_steps,
)
from l2dynamics.train.setup import eval_batch, eval_test_subset, use_channels_last

# MNIST-1D makes a test set of any size: 4,000 leaves room for subsets above the 2,000 floor
BIG_TEST = dict(dataset="mnist1d", n_train=600, n_test=4000, model="fc", width=24, depth=1,
                batch_size=32, lr=0.1, eval_per_decade=10, eval_train_size=256,
                norms_per_tensor=False, device="cpu", dtype="float64")


def _cost(plan) -> float:
    """Σ over the points of (test examples used + training-subset examples), recounted."""
    return float(sum(plan.test_size(int(s)) + plan.train_n for s in plan.clock))


@pytest.mark.parametrize("steps", [1000, 2000, 5000, 20000, 100_000])
@pytest.mark.parametrize("n_test", [500, 2000, 10_000, 50_000])
@pytest.mark.parametrize("budget", [0.05, 0.15, 0.5])
def test_plan_meets_the_budget_for_runs_of_a_thousand_steps(steps, n_test, budget):
    cfg = make_config(steps=steps, eval_budget=budget, batch_size=128)
    plan = eval_plan(cfg, n_test, 1024, 128)
    train = TRAIN_COST_PER_EXAMPLE * 128 * steps
    assert plan.train_cost == train and plan.eval_cost == _cost(plan)
    assert plan.clock[0] == 0 and plan.clock[-1] == steps and np.all(np.diff(plan.clock) > 0)
    assert plan.test_size(steps) == plan.full_n == n_test
    assert min(EVAL_SUBSET_FLOOR, n_test) <= plan.test_n <= n_test
    assert 1 <= plan.per_decade <= cfg.eval_per_decade
    final_alone = n_test + 1024 + (len(eval_steps(steps, 1)) - 1) * (
        min(EVAL_SUBSET_FLOOR, n_test) + 1024)
    if final_alone <= budget * train:  # the sparsest plan fits: so must the chosen one
        assert plan.within_budget and plan.eval_cost <= budget * train
    # what was given up was needed: one more point per decade, or the whole test set at the
    # intermediate points, would not have fitted
    if plan.per_decade < cfg.eval_per_decade:
        denser = eval_plan(make_config(cfg, eval_budget=0, eval_per_decade=plan.per_decade + 1),
                           n_test, 1024, 128)
        floor = min(EVAL_SUBSET_FLOOR, n_test)
        floor_cost = (len(denser.clock) - 1) * (floor + 1024) + n_test + 1024
        assert floor_cost > budget * train
    elif plan.test_n < n_test:
        assert (len(plan.clock) - 1) * (plan.test_n + 1 + 1024) + n_test + 1024 > budget * train


def test_budget_zero_is_the_whole_clock_on_the_whole_test_set():
    cfg = make_config(steps=2000, eval_budget=0, batch_size=128)
    plan = eval_plan(cfg, 10_000, 1024, 128)
    assert plan.clock.tolist() == eval_steps(2000, 10).tolist()
    assert plan.test_n == plan.full_n == 10_000 and plan.within_budget
    # the case: a 2,000-step CNN run, batch 128, 10,000 test images, 1,024 train ones
    old = len(plan.clock) * (10_000 + 1024) / (3 * 128 * 2000)
    assert plan.fraction == pytest.approx(old) and old > 0.4
    new = eval_plan(make_config(cfg, eval_budget=0.15), 10_000, 1024, 128)
    assert new.fraction <= 0.15 and new.clock.tolist() == plan.clock.tolist()
    assert EVAL_SUBSET_FLOOR <= new.test_n < 10_000


def test_larger_budgets_never_evaluate_less():
    cfg = make_config(steps=3000, batch_size=64)
    plans = [eval_plan(make_config(cfg, eval_budget=b), 8000, 512, 64)
             for b in (0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)]
    keys = [(p.per_decade, p.test_n) for p in plans]
    assert keys == sorted(keys) and keys[0] < keys[-1]


@pytest.mark.parametrize("steps", [10, 300, THIN_MIN_STEPS - 1])
def test_short_runs_keep_their_clock_and_shrink_only_the_subset(steps):
    cfg = make_config(steps=steps, eval_per_decade=20, batch_size=128)
    plan = eval_plan(cfg, 10_000, 1024, 128)
    assert plan.clock.tolist() == eval_steps(steps, 20).tolist() and plan.per_decade == 20
    assert plan.test_n == EVAL_SUBSET_FLOOR and not plan.within_budget
    long = eval_plan(make_config(cfg, steps=THIN_MIN_STEPS), 10_000, 1024, 128)
    assert long.per_decade < 20  # from THIN_MIN_STEPS on, the clock thins to meet the budget


def test_eval_every_tail_is_kept_under_the_budget():
    cfg = make_config(steps=2000, eval_every=500, eval_budget=0.01, batch_size=128)
    plan = eval_plan(cfg, 10_000, 1024, 128)
    assert {500, 1000, 1500, 2000} <= set(plan.clock.tolist())


def test_subset_depends_on_data_seed_only():
    a = Trainer(make_config(BIG_TEST, steps=400, seed=0, lam=0.0))
    b = Trainer(make_config(BIG_TEST, steps=400, seed=5, lam=1e-3))
    assert a.plan.test_n < a.plan.full_n  # the runs below use a subset
    x0, _ = eval_test_subset(a.data, 3000, 0)
    x1, _ = eval_test_subset(a.data, 3000, 1)
    torch.testing.assert_close(a._test_subset[0], b._test_subset[0])
    torch.testing.assert_close(a._test_subset[0], x0[:a.plan.test_n])  # nested prefixes
    assert not torch.equal(x0, x1)


def test_trainer_evaluates_the_subset_and_records_its_size():
    cfg = make_config(BIG_TEST, steps=400, eval_budget=2.5)  # room for more than the floor
    trainer = Trainer(cfg)
    plan = trainer.plan
    assert 2000 <= plan.test_n < 4000 and plan.within_budget
    x, y = eval_test_subset(trainer.data, plan.test_n, cfg.data_seed)
    loss0, acc0 = evaluate(trainer.model, x, y, trainer.loss_fn, classification=True,
                           batch_size=trainer.eval_batch_size)  # the model at init = step 0
    result = trainer.run()
    hist = result.history.set_index("step")
    assert result.summary["best_test_n"] == hist.loc[result.summary["best_step"], "test_n"]
    assert hist.index.tolist() == plan.clock.tolist()
    assert (hist["test_n"].iloc[:-1] == plan.test_n).all() and hist["test_n"].iloc[-1] == 4000
    assert hist.loc[0, "test_loss"] == pytest.approx(loss0, rel=1e-12)
    assert hist.loc[0, "test_acc"] == acc0
    full = Trainer(make_config(cfg, eval_budget=0)).run().history.set_index("step")
    assert (full["test_n"] == 4000).all()
    # the final point is the whole test set under either plan: same run, same numbers
    assert hist["test_loss"].iloc[-1] == pytest.approx(full["test_loss"].iloc[-1], rel=1e-9)


def test_ensemble_follows_each_members_plan():
    """Members of different lengths get different subset sizes; each is its lone run."""
    members = [dict(lam=0.0, steps=300, seed=0), dict(lam=1e-3, steps=500, seed=1),
               dict(lam=3e-3, steps=500, seed=2)]
    cfgs = [make_config(BIG_TEST, eval_budget=2.3, **m) for m in members]
    lone = [Trainer(c) for c in cfgs]
    assert len({t.plan.test_n for t in lone}) == 2 and all(
        t.plan.test_n < 4000 for t in lone)
    separate = [t.run() for t in lone]
    ensemble = EnsembleTrainer(cfgs).run()
    for a, b in zip(separate, ensemble, strict=True):
        ha, hb = a.history.drop(columns="wall_time"), b.history.drop(columns="wall_time")
        assert ha["step"].tolist() == hb["step"].tolist()
        assert ha["test_n"].tolist() == hb["test_n"].tolist()
        np.testing.assert_allclose(ha.to_numpy(float), hb.to_numpy(float), rtol=1e-9)


def test_device_settings_resolve_from_measurements():
    cpu = torch.device("cpu")
    assert eval_batch(make_config(), cpu) == 256
    assert eval_batch(make_config(eval_batch_size=64), cpu) == 64
    assert use_channels_last(make_config(model="cnn"), cpu)
    assert use_channels_last(make_config(model="wrn"), cpu)
    assert not use_channels_last(make_config(model="fc"), cpu)
    assert not use_channels_last(make_config(model="cnn", channels_last=False), cpu)
    assert use_channels_last(make_config(model="fc", channels_last="true"), cpu)
    assert not use_channels_last(make_config(model="cnn"), torch.device("cuda"))


def test_new_keys_are_validated():
    assert make_config().eval_budget == 0.15 and make_config().channels_last == "auto"
    assert make_config(channels_last="AUTO").channels_last == "auto"
    with pytest.raises(ConfigError, match="eval_budget"):
        make_config(eval_budget=-0.1)
    with pytest.raises(ConfigError, match="channels_last.*auto"):
        make_config(channels_last="sometimes")
    with pytest.raises(ConfigError, match="eval_batch_size"):
        make_config(eval_batch_size=-1)
