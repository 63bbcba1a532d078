"""The validation split (config key ``n_val``): held out of the test pool, never the training set.

A run with ``n_val`` > 0 trains exactly as with ``n_val`` = 0 (same training data, same batches),
records ``val_loss``/``val_acc`` on the whole validation set at every evaluation point, and its
test metrics use the remaining ``n_test − n_val`` examples. The vectorized ensemble records the
same names and values as a lone Trainer (float64: to 1e-9, see tests/test_ensemble.py).
"""

import numpy as np
import pytest
import torch

from l2dynamics import Trainer, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.probes.metrics import evaluate
from l2dynamics.train import EnsembleTrainer, load_run_data
from l2dynamics.train.clock import eval_plan

TINY = dict(dataset="digits", n_train=300, n_test=200, width=16, depth=1, batch_size=32,
            lr=0.1, lam=1e-3, steps=50, eval_per_decade=5, device="cpu")
N_VAL = 60
CPU = torch.device("cpu")


def _rows(x: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted(tuple(r) for r in x.reshape(len(x), -1).tolist())


def test_training_trajectory_is_bit_identical_to_no_validation_set():
    plain, held = Trainer(make_config(TINY)), Trainer(make_config(TINY, n_val=N_VAL))
    a, b = plain.run().history, held.run().history
    assert a["step"].tolist() == b["step"].tolist()
    train_cols = ["train_loss", "train_acc", "weight_norm", "lam_time", "phys_time",
                  *[c for c in a.columns if c.startswith("norm/")]]
    for col in train_cols:
        assert a[col].tolist() == b[col].tolist(), col
    for (name, p), (_, q) in zip(plain.model.named_parameters(), held.model.named_parameters(),
                                 strict=True):
        assert torch.equal(p, q), name


def test_val_and_test_partition_the_original_test_pool():
    cfg = make_config(TINY, dtype="float64")
    pool = load_run_data(cfg, CPU, torch.float64)
    split = load_run_data(cfg.replace(n_val=N_VAL), CPU, torch.float64)
    assert torch.equal(split.x_train, pool.x_train) and torch.equal(split.y_train, pool.y_train)
    assert (split.n_val, split.n_test, pool.n_val) == (N_VAL, 200 - N_VAL, 0)
    assert pool.x_val is None and pool.y_val is None
    assert split.info["n_val"] == N_VAL and split.info["n_test"] == 200 - N_VAL
    # together they are the pool (as a multiset of labelled rows) ...
    labelled = lambda x, y: torch.cat([x.reshape(len(x), -1), y[:, None].double()], 1)  # noqa: E731
    both = torch.cat([labelled(split.x_val, split.y_val), labelled(split.x_test, split.y_test)])
    assert _rows(both) == _rows(labelled(pool.x_test, pool.y_test))
    # ... and, the pool's rows being distinct, no example is in both
    assert len(set(_rows(pool.x_test))) == pool.n_test
    assert not set(_rows(split.x_val)) & set(_rows(split.x_test))
    # the split is a function of data_seed only
    again = load_run_data(cfg.replace(n_val=N_VAL, seed=7), CPU, torch.float64)
    assert torch.equal(again.x_val, split.x_val) and torch.equal(again.y_test, split.y_test)
    other = load_run_data(cfg.replace(n_val=N_VAL, data_seed=1), CPU, torch.float64)
    assert _rows(other.x_val) != _rows(split.x_val)


def test_val_metrics_at_every_point_and_test_metrics_on_the_rest():
    trainer = Trainer(make_config(TINY, n_val=N_VAL, eval_budget=0))
    result = trainer.run()
    hist = result.history
    assert hist["step"].tolist() == [int(s) for s in trainer.plan.clock]
    assert hist["val_acc"].notna().all() and hist["val_loss"].notna().all()
    assert (hist["test_n"] == 200 - N_VAL).all()
    # accuracies are counts over their sets: n_test − n_val test examples, n_val validation ones
    for col, n in (("test_acc", 200 - N_VAL), ("val_acc", N_VAL)):
        counts = hist[col].to_numpy() * n
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9, err_msg=col)
    # the last point is the whole validation set, evaluated by hand
    data = trainer.data
    loss, acc = evaluate(trainer.model, data.x_val, data.y_val, trainer.loss_fn,
                         classification=True, batch_size=256)
    assert hist["val_loss"].iloc[-1] == pytest.approx(loss, rel=1e-12)
    assert hist["val_acc"].iloc[-1] == acc
    assert (result.summary["n_test"], result.summary["n_val"]) == (200 - N_VAL, N_VAL)


def test_validation_set_counts_in_the_evaluation_plan():
    """Every point evaluates the whole validation set: without a budget that adds n_val per
    point; under one, the intermediate test subset shrinks to pay for it."""
    free = make_config(TINY, steps=500, eval_budget=0)
    base, held = (eval_plan(free, 4000, 1024, 128, n_val=n) for n in (0, 500))
    assert (base.val_n, held.val_n) == (0, 500)
    assert held.clock.tolist() == base.clock.tolist()
    assert held.eval_cost == base.eval_cost + 500 * len(held.clock)
    tight = make_config(free, eval_budget=0.35)
    base, held = (eval_plan(tight, 4000, 1024, 128, n_val=n) for n in (0, 500))
    assert held.clock.tolist() == base.clock.tolist()  # < THIN_MIN_STEPS: the clock is kept
    assert held.test_n < base.test_n < 4000
    assert held.eval_cost <= tight.eval_budget * held.train_cost


def test_ensemble_member_records_the_lone_runs_val_metrics():
    members = [dict(lam=1e-3, seed=0, steps=50), dict(lam=1e-2, lr=0.05, seed=1, steps=40)]
    cfgs = [make_config(TINY, dtype="float64", n_val=N_VAL, **m) for m in members]
    lone = [Trainer(c).run() for c in cfgs]
    ensemble = EnsembleTrainer(cfgs).run()
    for a, b in zip(lone, ensemble, strict=True):
        ha, hb = a.history.drop(columns="wall_time"), b.history.drop(columns="wall_time")
        assert list(ha.columns) == list(hb.columns)
        assert {"val_loss", "val_acc"} <= set(hb.columns)
        assert ha["step"].tolist() == hb["step"].tolist()
        for col in ("val_loss", "val_acc", "test_loss", "test_acc", "test_n"):
            np.testing.assert_allclose(hb[col].to_numpy(float), ha[col].to_numpy(float),
                                       rtol=1e-9, err_msg=col)
        assert b.summary["n_val"] == a.summary["n_val"] == N_VAL


def test_n_val_not_below_the_test_set_is_one_clear_config_error():
    with pytest.raises(ConfigError) as info:  # n_test explicit: refused by the config itself
        make_config(TINY, n_val=200)
    message = str(info.value)
    assert "\n" not in message and "n_val=200" in message and "n_test=200" in message
    cfg = make_config(TINY, n_test=None, n_val=540)  # digits' test pool: 540 examples
    with pytest.raises(ConfigError) as info:  # known once the data are loaded
        Trainer(cfg)
    message = str(info.value)
    assert "\n" not in message and "n_val=540" in message and "540 examples" in message
    with pytest.raises(ConfigError, match="n_val"):
        make_config(TINY, n_val=-1)


def test_no_validation_set_records_no_val_metrics():
    result = Trainer(make_config(TINY, n_val=0)).run()
    assert not [c for c in result.history.columns if c.startswith("val_")]
    assert "n_val" not in result.summary and result.summary["n_test"] == 200


def test_regression_records_val_loss_only():
    cfg = make_config(TINY, dataset="teacher", n_train=100, n_test=80, n_val=30, loss="mse",
                      data_options={"task": "regression"}, steps=20)
    hist = Trainer(cfg).run().history
    assert hist["val_loss"].notna().all() and "val_acc" not in hist.columns
