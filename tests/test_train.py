"""The training loop: clock, reproducibility, λ changes, divergence, checkpoints and resume."""

import numpy as np
import pandas as pd
import pytest
import torch

from l2dynamics import RunStore, Trainer, eval_steps, load_runs, load_series, make_config, train

FAST = dict(dataset="digits", n_train=300, n_test=200, width=32, depth=2, batch_size=32,
            lr=0.1, eval_per_decade=5)


def test_clock_is_log_spaced_and_holds_ends():
    steps = eval_steps(10_000, per_decade=10)
    assert steps[0] == 0 and steps[-1] == 10_000 and np.all(np.diff(steps) > 0)
    assert len(steps) <= 10 * 4 + 3
    ratios = steps[20:] / steps[19:-1]
    assert np.allclose(ratios, 10 ** 0.1, rtol=0.05)
    tail = eval_steps(1000, per_decade=2, every=250)
    assert {250, 500, 750, 1000} <= set(tail.tolist())


def test_history_has_time_and_probes():
    result = train(FAST, steps=100, lam=1e-3)  # short: the whole clock, under any budget
    hist = result.history
    assert result.status == "finished" and hist["step"].tolist() == eval_steps(100, 5).tolist()
    assert (hist["test_n"] == 200).all()
    np.testing.assert_allclose(hist["phys_time"], 0.1 * hist["step"])
    np.testing.assert_allclose(hist["lam_time"], 0.1 * 1e-3 * hist["step"])
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "weight_norm", "lam",
            "lr"} <= set(hist.columns)
    per_tensor = hist[[c for c in hist.columns if c.startswith("norm/")]].to_numpy()
    np.testing.assert_allclose(np.sqrt((per_tensor**2).sum(1)), hist["weight_norm"], rtol=1e-9)
    assert result.summary["best_test_acc"] == pytest.approx(hist["test_acc"].max())


def test_same_seed_same_numbers_and_other_seed_differs():
    a = train(FAST, steps=60, seed=3).history.drop(columns="wall_time")
    b = train(FAST, steps=60, seed=3).history.drop(columns="wall_time")
    c = train(FAST, steps=60, seed=4).history.drop(columns="wall_time")
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["train_loss"], c["train_loss"])


class _SetLam:
    def __init__(self, at, value):
        self.at, self.value = at, value

    def on_step_end(self, trainer, step, loss):
        if step == self.at:
            trainer.penalty.lam = self.value


def test_lambda_can_change_during_training():
    result = train(FAST, steps=100, lam=1e-2, callbacks=[_SetLam(50, 1e-3)])
    hist = result.history.set_index("step")
    assert hist.loc[40, "lam"] == 1e-2 and hist.loc[63, "lam"] == 1e-3
    assert hist.loc[100, "lam_time"] == pytest.approx(0.1 * (50 * 1e-2 + 50 * 1e-3))


def test_divergence_is_detected_with_its_step(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        result = Trainer(make_config(FAST, steps=400, lr=1e4, loss="mse"), store=store).run()
        record = store.get_run(result.run_id)
    assert result.status == "diverged" and record["status"] == "diverged"
    assert 0 <= result.diverged_step < 400 and record["diverged_step"] == result.diverged_step
    assert result.steps_done <= result.diverged_step + 33


class _StopAt:
    def __init__(self, at, crash=False):
        self.at, self.crash = at, crash

    def on_step_end(self, trainer, step, loss):
        if step == self.at:
            if self.crash:
                raise RuntimeError("simulated crash")
            trainer.request_stop()


def _metrics(frame):
    return frame.drop(columns=[c for c in ("wall_time", "run_id") if c in frame.columns])


@pytest.mark.parametrize("crash", [False, True])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, crash):
    cfg = make_config(FAST, steps=240, lam=1e-3, momentum=0.9, checkpoint_every=50)
    reference = train(cfg).history
    with RunStore(tmp_path / "s.sqlite") as store:
        first = Trainer(cfg, store=store, callbacks=[_StopAt(130, crash)])
        if crash:
            with pytest.raises(RuntimeError):
                first.run()
            assert store.get_run(first.run_id)["status"] == "failed"
        else:
            assert first.run().status == "interrupted"
        resumed = Trainer.resume(store, first.run_id)
        assert resumed.step == (100 if crash else 130)
        result = resumed.run()
        assert result.status == "finished"
        stored = load_series(store, run_ids=[first.run_id])
    pd.testing.assert_frame_equal(_metrics(stored), _metrics(reference), check_dtype=False)
    pd.testing.assert_frame_equal(_metrics(result.history), _metrics(reference))


def test_store_records_config_decay_and_versions(tmp_path):
    path = tmp_path / "s.sqlite"
    result = train(FAST, steps=20, lam=1e-3, decay_params="weights", store=str(path))
    runs = load_runs(path)
    assert runs.loc[0, "status"] == "finished" and runs.loc[0, "lam"] == 1e-3
    with RunStore(path) as store:
        record = store.get_run(result.run_id)
    assert record["decay"]["rule"] == "weights" and record["decay"]["not_decayed"]
    assert record["versions"]["torch"] == torch.__version__
    assert record["summary"]["best_test_acc"] == pytest.approx(result.summary["best_test_acc"])
    long = load_series(path, wide=False)
    assert set(long.columns) == {"run_id", "name", "step", "phys_time", "value"}


def test_full_batch_when_batch_covers_the_data():
    trainer = Trainer(make_config(FAST, steps=2, batch_size=10_000))
    xb, _ = trainer.batch(0)
    assert trainer.full_batch and xb.shape[0] == 300


def test_batches_cover_each_epoch_once():
    trainer = Trainer(make_config(FAST, steps=2, batch_size=50))
    seen = torch.cat([trainer.batch(s)[1] for s in range(trainer.steps_per_epoch)])
    assert seen.shape[0] == 300
    assert torch.equal(torch.sort(seen).values, torch.sort(trainer.data.y_train).values)


def test_lr_schedules_and_physical_time():
    from l2dynamics.train import lr_factor

    step_cfg = make_config(FAST, steps=100, lr_schedule="step", lr_milestones=[0.3, 0.6],
                           lr_gamma=0.1)
    assert [lr_factor(s, step_cfg) for s in (0, 29, 30, 59, 60, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = make_config(FAST, steps=110, lr_schedule="cosine", warmup_steps=10)
    assert [lr_factor(s, cos) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, cos) == pytest.approx(1.0) and lr_factor(60, cos) == pytest.approx(0.5)
    result = train(step_cfg)
    hist = result.history.set_index("step")
    expected = 0.1 * sum(lr_factor(s, step_cfg) for s in range(100))
    assert hist.loc[100, "phys_time"] == pytest.approx(expected)
    assert hist.loc[63, "lr"] == pytest.approx(0.1 * 0.01)


def test_mse_is_half_squared_error_to_one_hot():
    from l2dynamics.losses import make_loss

    loss = make_loss("mse", "classification", 3)
    out = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = torch.tensor([0, 2])
    # second row: (0-0)² + (2-0)² + (0-1)² = 5 → ½·(0 + 5)/2
    assert loss(out, y).item() == pytest.approx(1.25)
