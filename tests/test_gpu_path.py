"""The GPU path on a real CUDA device: data resident on the GPU, bf16 autocast, channels_last,
torch.compile with CUDA graphs, and an update loop that never waits for the host.

Skipped where no CUDA device exists (CI has none); run on a lent GPU with
``python -m pytest tests/test_gpu_path.py``. The CPU-side checks of the same options are in
``tests/test_speed_options.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from l2dynamics import Trainer, make_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CNN = dict(dataset="digits", data_options={"image": True}, n_train=512, n_test=300,
           model="cnn", width=16, depth=2, norm="bn", optimizer="sgd", lr=0.05, momentum=0.9,
           lam=5e-4, batch_size=64, steps=80, device="cuda", eval_per_decade=2,
           norms_per_tensor=False)


def params(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in trainer.model.parameters()])


def test_data_model_and_batches_live_on_the_gpu():
    trainer = Trainer(make_config(CNN))
    assert trainer.data.x_train.is_cuda and trainer.data.y_train.is_cuda
    assert trainer.data.x_test.is_cuda
    assert all(p.is_cuda for p in trainer.model.parameters())
    xb, yb = trainer.batch(3)
    assert xb.is_cuda and yb.is_cuda


def test_gpu_run_matches_the_cpu_run(monkeypatch):
    """Same run on both devices, float32 throughout (TF32 off: by default cuDNN convolutions
    round their inputs to TF32, which alone moved the parameters by 0.7 % over 80 updates)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    gpu = Trainer(make_config(CNN, steps=20))
    gpu.run()
    cpu = Trainer(make_config(CNN, device="cpu", steps=20))
    cpu.run()
    a, b = params(cpu), params(gpu)
    assert float(torch.linalg.norm(a - b) / torch.linalg.norm(a)) < 1e-4


@pytest.mark.parametrize("compile_mode", ["none", "default", "reduce-overhead"])
def test_bf16_channels_last_compile_train_like_float32(compile_mode):
    base = Trainer(make_config(CNN))
    base_result = base.run()
    fast = Trainer(make_config(CNN, autocast="bf16", channels_last=True, compile=compile_mode))
    fast_result = fast.run()
    assert fast_result.status == base_result.status == "finished"
    assert all(p.dtype == torch.float32 for p in fast.model.parameters())
    a, b = params(base), params(fast)
    rel = float(torch.linalg.norm(a - b) / torch.linalg.norm(a))
    assert rel < 0.05, rel
    assert abs(fast_result.summary["final_train_loss"]
               - base_result.summary["final_train_loss"]) < 0.1


@pytest.mark.parametrize("options", [{}, {"autocast": "bf16", "channels_last": True}])
def test_updates_never_synchronize_with_the_host(options):
    """Between evaluations the loop only queues GPU work: CUDA's sync debug mode flags any
    update-path operation that makes the host wait (``.item()``, ``nonzero``, D2H copies)."""
    trainer = Trainer(make_config(CNN, **options))
    trainer.batch(0)  # the epoch-0 permutation: one host-to-device copy per epoch, not per step
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for step in range(5):
                trainer._update(step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "called a synchronizing" in str(w.message)]
    assert not syncs, syncs
