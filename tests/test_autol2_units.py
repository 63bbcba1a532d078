"""AutoL2 presets against a transcription of google/autol2's loop on its own loss (issue 19).

The released code trains on CE/10 + λ_c·Σθ² at learning rate η_c, measures the bare loss and
accuracy every 10 steps on the upcoming batch before its update, and divides λ_c by 10 when
either the loss made no new minimum or the accuracy no new maximum in the last two measurements
(against the best of the earlier ones), once 0.1/λ_c steps have passed since the last decay.
``_released_loop`` writes that loop in the code's own units, independently of
:class:`~l2dynamics.l2.AutoL2`; the preset ``"released-code"`` must reproduce it in ours
(λ = 20·λ_c, η = η_c/10): the same decays at the same steps and the same parameters.
"""

from __future__ import annotations

import pytest
import torch

from l2dynamics import ConfigError
from l2dynamics.config import make_config
from l2dynamics.config.autol2 import autol2_preset
from l2dynamics.l2 import AutoL2

F64 = torch.float64
STEPS, EVERY = 400, 10


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(STEPS + 1, 32, 20, generator=gen, dtype=F64)
    w = torch.randn(20, 3, generator=gen, dtype=F64)
    y = (x @ w + 0.5 * torch.randn(STEPS + 1, 32, 3, generator=gen, dtype=F64)).argmax(-1)
    return x, y


def _model(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 3)).to(F64)


def _measure(model, x, y) -> tuple[float, float]:
    with torch.no_grad():
        out = model(x)
        return (float(torch.nn.functional.cross_entropy(out, y)),
                float((out.argmax(1) == y).double().mean()))


def _released_loop(lr_code: float, lam_code: float):
    """google/autol2's loop, in its units: loss CE/10 + λ_c·Σθ², refractory 0.1/λ_c steps."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr_code)
    losses, accs, best_loss, best_acc, last, decays, n = [], [], None, None, 0, [], 0
    for step in range(STEPS):
        if step % EVERY == 0:
            loss, acc = _measure(model, x[step], y[step])
            loss /= 10.0  # the code's bare loss is its CE/10
            n += 1
            losses, accs = [*losses[-1:], loss], [*accs[-1:], acc]
            stalled = n > 2 and ((best_loss <= losses[-1] and best_loss <= losses[-2])
                                 or (best_acc >= accs[-1] and best_acc >= accs[-2]))
            if step > last + 0.1 / lam_code and stalled:
                lam_code /= 10.0
                last = step
                decays.append(step)
            elif n >= 2:
                best_loss = losses[-2] if best_loss is None else min(best_loss, losses[-2])
                best_acc = accs[-2] if best_acc is None else max(best_acc, accs[-2])
        opt.zero_grad()
        penalty = sum((p * p).sum() for p in model.parameters())
        (torch.nn.functional.cross_entropy(model(x[step]), y[step]) / 10.0
         + lam_code * penalty).backward()
        opt.step()
    return decays, lam_code, [p.detach().clone() for p in model.parameters()]


def _our_loop(preset: str, lr: float):
    """The same data and model in our units: loss CE, coupled λ by the optimizer."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = AutoL2.from_preset(preset, opt, lr=lr)
    for step in range(STEPS):
        if step % EVERY == 0:
            schedule.step(*_measure(model, x[step], y[step]), step)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[step]), y[step]).backward()
        opt.step()
    return ([e["step"] for e in schedule.events], schedule.lam,
            [p.detach().clone() for p in model.parameters()])


def test_released_code_preset_reproduces_the_released_loop():
    lr_code = 0.2
    decays_c, lam_c, params_c = _released_loop(lr_code, 0.1)
    decays, lam, params = _our_loop("released-code", lr_code / 10)
    assert len(decays_c) >= 2  # the comparison exercises the refractory rule
    assert decays == decays_c
    assert lam == pytest.approx(20 * lam_c)
    for a, b in zip(params, params_c, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # the control: the old default (λ₀ = 0.1 and 0.1/λ steps in our units, 20× away) does not
    decays_d, _, params_d = _our_loop("default", lr_code / 10)
    assert decays_d != decays_c
    assert max(float((a - b).abs().max()) for a, b in zip(params_d, params_c, strict=True)) > 1e-3


def test_transfer_preset_equals_the_released_code_at_its_learning_rate():
    # η = 0.02 is the released η_c = 0.2 in our units
    decays_r, lam_r, params_r = _our_loop("released-code", 0.02)
    decays_t, lam_t, params_t = _our_loop("transfer", 0.02)
    assert decays_t == decays_r and lam_t == pytest.approx(lam_r)
    for a, b in zip(params_t, params_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_transfer_preset_keeps_the_shrink_and_the_relaxation_time_across_learning_rates():
    for lr in (0.005, 0.02, 0.1):
        c = autol2_preset("transfer", lr)
        assert lr * c["lam0"] == pytest.approx(0.04)  # the per-step shrink η·λ₀
        schedule = AutoL2.from_preset("transfer", torch.optim.SGD([torch.zeros(1)], lr=lr),
                                      lr=lr)
        # the refractory period in relaxation times 1/(η·λ): 0.04 of them, whatever η is
        assert schedule.refractory_steps() * lr * schedule.lam == pytest.approx(0.04)
    # the released-code preset keeps λ, so its per-step shrink moves with η
    assert autol2_preset("released-code", 0.1)["lam0"] == autol2_preset(
        "released-code", 0.01)["lam0"] == 2.0


def test_transfer_preset_counts_momentum_in_the_shrink_and_the_relaxation_time():
    """With heavy-ball μ the per-step shrink is η·λ/(1 − μ) once momentum has built up: the
    transfer preset at (η, μ) equals the preset at η/(1 − μ) without momentum."""
    for lr, mu in ((0.02, 0.9), (0.1, 0.5)):
        c = autol2_preset("transfer", lr, mu)
        assert lr * c["lam0"] / (1 - mu) == pytest.approx(0.04)
        assert c["lam0"] == pytest.approx(autol2_preset("transfer", lr / (1 - mu))["lam0"])
        schedule = AutoL2.from_preset("transfer", torch.optim.SGD([torch.zeros(1)], lr=lr,
                                                                  momentum=mu), lr=lr, momentum=mu)
        assert schedule.refractory_steps() * lr / (1 - mu) * schedule.lam == pytest.approx(0.04)
    # the released code's constants are λ and steps: momentum does not enter
    assert autol2_preset("released-code", 0.02, 0.9) == autol2_preset("released-code", 0.02)
    with pytest.raises(ConfigError, match="momentum"):
        autol2_preset("transfer", 0.1, 1.0)
    # the config rule asks for the λ₀ at the effective η
    with pytest.raises(ConfigError, match="set lam=0.2 "):
        make_config(lam_schedule="autol2", autol2_preset="transfer", lam=2.0, lr=0.02,
                    momentum=0.9)


def test_presets_refuse_bad_names_and_clashing_constants():
    opt = torch.optim.SGD([torch.zeros(1)], lr=0.1)
    with pytest.raises(ConfigError, match="released-code"):
        AutoL2.from_preset("google", opt, lr=0.1)
    with pytest.raises(ConfigError, match="lam0"):
        AutoL2.from_preset("transfer", opt, lr=0.1, lam0=1.0)
    with pytest.raises(ConfigError, match="lr"):
        autol2_preset("transfer", 0.0)


def test_config_preset_runs_and_says_which_lam_it_needs():
    from l2dynamics import Trainer, make_config

    cfg = make_config(dataset="digits", steps=200, lr=0.02, lam_schedule="autol2",
                      autol2_preset="released-code", lam=2.0, norms_per_tensor=False)
    result = Trainer(cfg).run()
    assert result.status == "finished" and result.summary["lam_decays"]
    assert result.summary["lam_decays"][0]["lam_before"] == 2.0
    with pytest.raises(ConfigError, match="set lam=0.4"):
        make_config(lam_schedule="autol2", autol2_preset="transfer", lam=0.1, lr=0.1)
    with pytest.raises(ConfigError, match="autol2_refractory"):
        make_config(lam_schedule="autol2", autol2_preset="released-code", lam=2.0,
                    autol2_refractory=0.5)
    with pytest.raises(ConfigError, match="lam_schedule=autol2"):
        make_config(autol2_preset="released-code", lam=2.0)


def test_tuning_benchmark_starts_each_preset_at_its_own_lam0():
    from l2dynamics.config.autol2 import autol2_preset
    from l2dynamics.studies.tuning import AUTOL2_VARIANTS, TuningTask

    task = TuningTask("t", {"dataset": "digits", "lr": 0.1}, budget=100, grid=(1e-3,))
    presets = {v["autol2_preset"] for v in AUTOL2_VARIANTS.values() if "autol2_preset" in v}
    assert presets == {"released-code", "transfer"}
    for preset in presets:
        lam0 = autol2_preset(preset, 0.1)["lam0"]
        cfg = task.config(lam0, 0, lam_schedule="autol2", autol2_preset=preset)
        assert cfg.lam == lam0 and cfg.autol2_preset == preset
    assert autol2_preset("transfer", 0.1)["lam0"] == pytest.approx(0.4)
