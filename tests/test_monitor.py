"""Monitor in a plain PyTorch loop: what it records is what the definitions say, it finds the
scale-invariant layers, it approaches 1 in equilibrium, and it logs to TensorBoard, CSV and a
logger."""

import csv
import math

import pytest
import torch
from torch import nn

from l2dynamics import Monitor
from l2dynamics.errors import ConfigError


def _bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, 4))


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(64, 16, generator=g)
    return x, (x[:, :4].sum(1) > 0).long() + 2 * (x[:, 4:8].sum(1) > 0).long()


def _train(model, opt, mon, steps, loss_fn=nn.functional.cross_entropy):
    for t in range(steps):
        x, y = _batch(t)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        mon.step()


def test_records_follow_their_definitions_under_sgd_with_momentum(tmp_path):
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    mon = Monitor(model, opt, every=5, csv=tmp_path / "m.csv", example=_batch(999),
                  loss_fn=nn.functional.cross_entropy)
    w = model[0].weight
    before = None
    for t in range(10):
        x, y = _batch(t)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if t == 9:
            before = w.detach().clone().double()
        opt.step()
        mon.step()
    hist = mon.history
    assert list(hist["step"].unique()) == [5, 10] and set(hist["tensor"]) == {"0.weight",
                                                                              "3.weight"}
    row = hist[(hist["step"] == 10) & (hist["tensor"] == "0.weight")].iloc[0]
    now = w.detach().double()
    assert row["norm"] == pytest.approx(float(now.norm()), rel=1e-12)
    assert row["eff_lr"] == pytest.approx(0.1 / ((1 - 0.9) * float(now.norm()) ** 2))
    cos = float((before * now).sum() / (before.norm() * now.norm()))
    assert row["angle"] == pytest.approx(math.acos(min(1.0, cos)), rel=1e-4, abs=1e-7)
    # the layer before BatchNorm is scale-invariant, the readout is not
    assert row["scale_invariant"] == 1.0 and math.isfinite(row["eq_ratio"])
    last = hist[(hist["step"] == 10) & (hist["tensor"] == "3.weight")].iloc[0]
    assert last["scale_invariant"] == 0.0 and math.isnan(last["eq_ratio"])
    with (tmp_path / "m.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and float(rows[2]["norm"]) == pytest.approx(row["norm"])


@pytest.mark.parametrize("opt_class", [torch.optim.Adam, torch.optim.AdamW])
def test_effective_lr_of_adam_is_eta_over_norm(opt_class):
    model = _bn_net()
    opt = opt_class(model.parameters(), lr=1e-3, weight_decay=1e-2)
    mon = Monitor(model, opt, every=3, scale_invariant=["0.weight"])
    _train(model, opt, mon, 6)
    row = mon.history.iloc[-2]
    assert row["tensor"] == "0.weight"
    assert row["eff_lr"] == pytest.approx(1e-3 / row["norm"])
    assert row["scale_invariant"] == 1.0 and math.isfinite(row["eq_ratio"])


def test_eq_ratio_approaches_one_at_the_sgd_equilibrium():
    """A scale-invariant layer under SGD + weight decay relaxes in ~1/(2ηλ) = 250 steps; after
    many relaxation times ‖w‖ sits at the closed form ‖w*‖⁴ = ηG/(λ(2 − ηλ))."""
    model = _bn_net(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-2)
    mon = Monitor(model, opt, every=20, scale_invariant=["0.weight"])
    _train(model, opt, mon, 3000)
    late = mon.history.query("tensor == '0.weight' and step > 2000")["eq_ratio"]
    assert late.mean() == pytest.approx(1.0, abs=0.1), late.describe()


def test_tensorboard_and_logger_receive_the_same_tags(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Logger:
        def __init__(self):
            self.calls = []

        def log_metrics(self, metrics, step):
            self.calls.append((step, metrics))

    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    logger = Logger()
    mon = Monitor(model, opt, every=4, log_dir=tmp_path / "tb", logger=logger,
                  scale_invariant=["0.weight"])
    _train(model, opt, mon, 8)
    mon.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"norm/0.weight", "eff_lr/0.weight", "angle/0.weight", "eq_ratio/0.weight"} <= tags
    assert [s.step for s in events.Scalars("norm/0.weight")] == [4, 8]
    assert [step for step, _ in logger.calls] == [4, 8]
    assert set(logger.calls[-1][1]) == tags  # NaN values (eq_ratio of the readout) left out


def test_bad_arguments_say_what_to_do():
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="every"):
        Monitor(model, opt, every=0)
    with pytest.raises(ConfigError, match="'weights', 'all'"):
        Monitor(model, opt, params="bogus")
    with pytest.raises(ConfigError, match="the model has"):
        Monitor(model, opt, params=["nope"])
    with pytest.raises(ConfigError, match="does not train"):
        Monitor(model, torch.optim.SGD(model[3].parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="SGD, Adam and AdamW"):
        Monitor(model, torch.optim.RMSprop(model.parameters()))
    with pytest.raises(ConfigError, match="loss_fn"):
        Monitor(model, opt, example=_batch(0))


def test_lightning_callback_logs_through_the_trainer_logger(tmp_path):
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    from l2dynamics.integrations.lightning import MonitorCallback

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _bn_net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=1e-3)

    xs, ys = zip(*[_batch(t) for t in range(12)], strict=True)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.cat(xs),
                                                                      torch.cat(ys)),
                                       batch_size=64)
    callback = MonitorCallback(every=4)
    trainer = lightning.Trainer(max_epochs=1, logger=CSVLogger(tmp_path), callbacks=[callback],
                                enable_progress_bar=False, enable_model_summary=False,
                                enable_checkpointing=False)
    trainer.fit(Module(), train_dataloaders=data)
    hist = callback.monitor.history
    assert list(hist["step"].unique()) == [4, 8, 12]
    text = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "norm/net.0.weight" in text and "eff_lr/net.3.weight" in text


def test_store_sink_makes_the_loop_a_run_the_cli_reads(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from l2dynamics.cli import app
    from l2dynamics.store import RunStore

    store = tmp_path / "mon.sqlite"
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    with Monitor(model, opt, every=4, store=store, run_name="my loop",
                 config={"dataset": "toy", "steps": 12}) as mon:
        _train(model, opt, mon, 12)
    with RunStore(store, create=False) as st:
        (rec,) = st.list_runs()
        series = st.series([rec["id"]])
    assert rec["status"] == "finished" and rec["steps_done"] == 12 and rec["name"] == "my loop"
    assert rec["config"]["lam"] == 5e-4 and rec["config"]["optimizer"] == "sgd"
    assert rec["config"]["dataset"] == "toy" and rec["steps_total"] == 12
    norms = series[series["name"] == "norm/0.weight"].sort_values("step")
    assert norms["step"].tolist() == [4, 8, 12]
    assert norms["phys_time"].tolist() == pytest.approx([0.4, 0.8, 1.2])  # Σ η
    expected = mon.history[mon.history["tensor"] == "0.weight"]["norm"].tolist()
    assert norms["value"].tolist() == pytest.approx(expected)
    runner = CliRunner()
    listing = runner.invoke(app, ["runs", "list", "--store", str(store)])
    assert listing.exit_code == 0 and "my loop" in listing.output, listing.output
    out_csv = tmp_path / "series.csv"
    exported = runner.invoke(app, ["runs", "export", str(out_csv), "--series", "--store",
                                     str(store)])
    assert exported.exit_code == 0, exported.output
    assert pd.read_csv(out_csv)["eff_lr/0.weight"].notna().all()


@pytest.mark.parametrize(("raised", "status"), [(KeyboardInterrupt, "interrupted"),
                                                (RuntimeError, "failed")])
def test_store_run_that_stops_says_how(tmp_path, raised, status):
    from l2dynamics.store import RunStore

    model = _bn_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(raised), Monitor(model, opt, every=2, store=tmp_path / "s.sqlite") as mon:
        _train(model, opt, mon, 5)
        raise raised("stopped by the test")
    with RunStore(tmp_path / "s.sqlite", create=False) as st:
        (rec,) = st.list_runs()
    assert rec["status"] == status and rec["steps_done"] == 5
    assert (rec["error"] is not None) == (status == "failed")
