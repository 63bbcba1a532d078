"""The GPU path's speed options (``autocast``, ``channels_last``, ``compile``) checked on the CPU.

Each option must train the same model on the same batches: channels_last changes only the memory
layout (results agree to float32 rounding), bf16 autocast lowers the forward's arithmetic (results
agree to bf16 rounding, parameters and L2 stay float32), compile changes only how the forward runs.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from l2dynamics import Trainer, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.train import vectorizable

CNN = dict(dataset="digits", data_options={"image": True}, n_train=256, n_test=200,
           model="cnn", width=8, depth=2, norm="bn", optimizer="sgd", lr=0.05, momentum=0.9,
           lam=5e-4, batch_size=32, steps=60, device="cpu", eval_per_decade=2,
           norms_per_tensor=False)


def train_cnn(**overrides):
    trainer = Trainer(make_config(CNN, **overrides))
    result = trainer.run()
    return trainer, result


def flat_params(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])


def test_channels_last_changes_layout_not_results():
    base, base_result = train_cnn()
    nhwc, nhwc_result = train_cnn(channels_last=True)
    convs = [p for p in nhwc.model.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert nhwc.batch(0)[0].is_contiguous(memory_format=torch.channels_last)
    a, b = flat_params(base), flat_params(nhwc)
    assert torch.linalg.norm(a - b) / torch.linalg.norm(a) < 1e-4
    assert nhwc_result.status == base_result.status == "finished"


def test_bf16_autocast_trains_close_to_float32_with_float32_state():
    base, base_result = train_cnn()
    bf16, bf16_result = train_cnn(autocast="bf16")
    assert bf16_result.status == "finished"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in bf16.model.parameters())
    with bf16.forward.autocast():
        out = bf16.forward(bf16.batch(0)[0])
    assert out.dtype == torch.bfloat16  # the forward really ran in bf16
    a, b = flat_params(base), flat_params(bf16)
    rel = float(torch.linalg.norm(a - b) / torch.linalg.norm(a))
    assert 0 < rel < 0.05, rel  # different arithmetic, same training
    assert abs(bf16_result.summary["final_train_loss"]
               - base_result.summary["final_train_loss"]) < 0.1


def test_speed_options_are_validated_and_keep_runs_apart():
    with pytest.raises(ConfigError, match="autocast='fp8' is not allowed"):
        make_config(CNN, autocast="fp8")
    with pytest.raises(ConfigError, match="autocast='bf16' needs dtype='float32'"):
        make_config(CNN, autocast="bf16", dtype="float64")
    with pytest.raises(ConfigError, match="compile='fast' is not allowed"):
        make_config(CNN, compile="fast")
    with pytest.raises(ConfigError, match="channels_last"):
        make_config(CNN, channels_last="yes please")
    plain, fast = make_config(CNN), make_config(CNN, autocast="bf16", channels_last=True)
    assert plain.to_dict() != fast.to_dict()  # a bf16 run is stored as a different run


def test_ensemble_engine_leaves_speed_options_to_the_sequential_engine():
    fc = dict(dataset="digits", model="fc", width=16, depth=1, steps=5, device="cpu")
    assert vectorizable([make_config(fc, lam=lam) for lam in (0.0, 1e-3)]) is None
    reason = vectorizable([make_config(fc, lam=lam, autocast="bf16") for lam in (0.0, 1e-3)])
    assert reason is not None and "sequential" in reason


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile's CPU backend needs a C compiler")
def test_compiled_forward_matches_eager():
    fc = dict(dataset="digits", model="fc", width=32, depth=2, optimizer="sgd", lr=0.1, lam=1e-3,
              batch_size=64, steps=40, device="cpu", eval_per_decade=2, norms_per_tensor=False)
    eager = Trainer(make_config(fc))
    eager_result = eager.run()
    compiled = Trainer(make_config(fc, compile="default"))
    compiled_result = compiled.run()
    assert compiled.forward.compiled is not None
    a, b = flat_params(eager), flat_params(compiled)
    assert torch.linalg.norm(a - b) / torch.linalg.norm(a) < 1e-4
    assert compiled_result.status == eager_result.status == "finished"
