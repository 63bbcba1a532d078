"""AutoL2 as a Lightning callback, run by a real Lightning Trainer."""

import pytest
import torch

lightning = pytest.importorskip("lightning")

from autol2_reference import released_rule  # noqa: E402
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


def _trainer(tmp_path, callback, steps, *, accumulate=1, extra=()):
    return lightning.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path,
                             accumulate_grad_batches=accumulate, callbacks=[callback, *extra])


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
    # replaying the measurements through the released rule (not AutoL2) gives the same λ
    replay = released_rule(callback.seen, lam0=0.1)
    assert replay[-1] == pytest.approx(schedule.get_last_lambda(), rel=1e-12)
    assert sum(b < a for a, b in zip([0.1, *replay], replay, strict=False)) == len(
        callback.events)


class Witness(lightning.Callback):
    """Independent of AutoL2Callback: the weights at the first micro-batch of every optimizer
    step, and the weight_decay each optimizer step really uses (read just before it)."""

    def __init__(self):
        self.weights, self.used = {}, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step
        if step not in self.weights:
            self.weights[step] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.used.append((trainer.global_step, optimizer.param_groups[0]["weight_decay"]))


def test_gradient_accumulation_measures_once_per_optimizer_step(tmp_path):
    """accumulate_grad_batches=4: one measurement per optimizer step (every 2nd), the mean of
    the bare loss and accuracy over the step's 4 micro-batches at the step's weights, and the
    weight_decay of every update is what the released rule says after the measurements so far."""
    k, every, steps, batch = 4, 2, 40, 32
    torch.manual_seed(0)
    module = Classifier()
    callback = RecordingCallback(lam0=0.1, every=every, refractory=0.1)
    witness = Witness()
    loader = _loader()
    _trainer(tmp_path, callback, steps, accumulate=k, extra=[witness]).fit(module, loader)
    assert [s for _, _, s in callback.seen] == list(range(0, steps, every))
    assert callback.schedule.measurements == steps // every == 20
    assert callback.events, "a 3-class toy at λ=0.1 stalls within 40 steps"
    # each measurement, recomputed from the witnessed weights and the step's micro-batches
    batches = list(loader)
    probe = Classifier()
    for loss, acc, step in callback.seen:
        probe.load_state_dict(witness.weights[step])
        micro = [batches[(k * step + j) % len(batches)] for j in range(k)]
        with torch.no_grad():
            x, y = torch.cat([b[0] for b in micro]), torch.cat([b[1] for b in micro])
            out = probe(x)
        assert len(x) == k * batch
        assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-5)
        assert acc == pytest.approx(float((out.argmax(-1) == y).double().mean()), abs=1e-12)
    # the λ each update used: the rule's λ after the last measurement at or before its step
    replay = dict(zip([s for _, _, s in callback.seen], released_rule(callback.seen, 0.1),
                      strict=True))
    assert [s for s, _ in witness.used] == list(range(steps))
    for step, used in witness.used:
        assert used == pytest.approx(replay[step - step % every], rel=1e-12), step


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
