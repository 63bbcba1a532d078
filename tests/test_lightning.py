"""AutoL2 as a Lightning callback, run by a real Lightning Trainer."""

import pytest
import torch

lightning = pytest.importorskip("lightning")

from l2dynamics.integrations.lightning import AutoL2Callback  # noqa: E402
from l2dynamics.l2.schedule import AutoL2  # noqa: E402


class Classifier(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                       shuffle=False)


def _trainer(tmp_path, callback, steps):
    return lightning.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path,
                             callbacks=[callback])


class RecordingCallback(AutoL2Callback):
    """Keeps every measurement AutoL2 was given, to replay through a bare AutoL2."""

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self.seen, step = [], self.schedule.step

        def recording_step(loss, acc, global_step):
            self.seen.append((loss, acc, global_step))
            return step(loss, acc, global_step)

        self.schedule.step = recording_step


def test_real_lightning_trainer_decays_lambda_like_the_scheduler(tmp_path):
    torch.manual_seed(0)
    module = Classifier()
    callback = RecordingCallback(lam0=0.1, every=2, refractory=0.1)
    _trainer(tmp_path, callback, 60).fit(module, _loader())
    schedule = callback.schedule
    assert schedule.measurements == 30  # steps 0, 2, …, 58: once every 2 optimizer steps
    assert callback.events, "a 3-class toy at λ=0.1 stalls within 60 steps"
    assert schedule.get_last_lambda() < 0.1
    # the optimizer's coupled weight_decay is what AutoL2 says, and what it was trained with
    assert module.optimizers().optimizer.param_groups[0]["weight_decay"] == pytest.approx(
        schedule.get_last_lambda())
    assert [s for _, _, s in callback.seen] == list(range(0, 60, 2))
    # the bare loss it measured is the data loss (no L2 term): at most ln 3 early on
    assert callback.seen[0][0] < 1.5
    # replaying the measurements through a bare AutoL2 gives the same decays
    bare = AutoL2(torch.optim.SGD(Classifier().parameters(), lr=0.1), lam0=0.1,
                  refractory=0.1)
    for loss, acc, step in callback.seen:
        bare.step(loss, acc, step)
    assert bare.events == callback.events


def test_callback_state_is_restored_before_training(tmp_path):
    first = AutoL2Callback(lam0=0.1, every=2)
    _trainer(tmp_path, first, 40).fit(Classifier(), _loader())
    saved = first.state_dict()
    second = AutoL2Callback(lam0=0.1, every=2)
    second.load_state_dict(saved)
    module = Classifier()
    _trainer(tmp_path, second, 2).fit(module, _loader())
    assert second.schedule.measurements == saved["schedule"]["measurements"] + 1
    assert second.events[: len(first.events)] == first.events
    assert isinstance(second.schedule, AutoL2)


def test_bad_every_is_refused():
    with pytest.raises(ValueError, match="every"):
        AutoL2Callback(every=0)
