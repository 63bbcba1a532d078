"""The ‖w‖ = const update and the per-tensor norm probes in the engine."""

import math

import pytest
import torch

from l2dynamics import ConfigError, Trainer, make_config
from l2dynamics.l2.projection import NormProjection, unit_norms
from l2dynamics.probes.norms import angle_between

BN = dict(dataset="digits", model="fc", width=16, depth=2, norm="bn", dtype="float64",
          batch_size=64, lr=0.1, norms_per_tensor=False, eval_per_decade=5)
HIDDEN = ["features.1.weight", "features.4.weight"]


def test_projection_holds_every_unit_at_its_initial_norm():
    trainer = Trainer(make_config(BN, lam=0.05, steps=50, project_norm="init",
                                  project_params=HIDDEN))
    start = {n: unit_norms(p).clone() for n, p in trainer.named_params if n in HIDDEN}
    trainer.run()
    for name, param in trainer.named_params:
        if name in HIDDEN:
            assert torch.allclose(unit_norms(param), start[name], rtol=1e-12)
    assert trainer.projection.names == HIDDEN
    unit = Trainer(make_config(BN, steps=3, project_norm="unit", project_params=HIDDEN))
    unit.run()
    for name, param in unit.named_params:
        if name in HIDDEN:
            assert torch.allclose(unit_norms(param), torch.ones(16, dtype=torch.float64))


def test_with_projection_lambda_only_rescales_the_step():
    """SGD + L2 + projection moves w to proj((1 − ηλ)w − ηg) = proj(w − η/(1 − ηλ)·g): the
    same direction as λ = 0 with learning rate η/(1 − ηλ) (one step from one state)."""
    lam, lr = 0.3, 0.1
    a = Trainer(make_config(BN, lam=lam, lr=lr, steps=1, project_norm="init",
                            project_params=HIDDEN, decay_params=HIDDEN))
    b = Trainer(make_config(BN, lam=0.0, lr=lr / (1 - lr * lam), steps=1, project_norm="init",
                            project_params=HIDDEN, decay_params=HIDDEN))
    a.run(), b.run()
    pa, pb = dict(a.named_params), dict(b.named_params)
    for name in HIDDEN:
        assert torch.allclose(pa[name], pb[name], rtol=0, atol=1e-12)
    plain = Trainer(make_config(BN, lam=0.0, lr=lr, steps=1, project_norm="init",
                                project_params=HIDDEN))
    plain.run()
    assert not torch.allclose(dict(plain.named_params)[HIDDEN[0]], pa[HIDDEN[0]], atol=1e-9)


def test_norm_probes_measure_orthogonality_effective_lr_and_angles():
    trainer = Trainer(make_config(BN, lam=0.01, steps=40, norm_probes=True))
    hist = trainer.run().history
    for name in HIDDEN:
        # weights followed by BN: the data-loss gradient is orthogonal to them, up to BN's
        # ε = 1e-5, which breaks the invariance by ~ε/var(pre-activation) (measured ≤ 5.3e-6)
        assert hist[f"cos_wg/{name}"].dropna().max() < 1e-4
        assert (hist[f"unit_gradnorm/{name}"].dropna() > 0).all()
    assert hist["cos_wg/readout.weight"].dropna().max() > 1e-3  # not scale-invariant
    last = hist.dropna(subset=[f"eff_lr/{HIDDEN[0]}"]).iloc[-1]
    w = dict(trainer.named_params)[HIDDEN[0]].detach().double()
    assert last[f"eff_lr/{HIDDEN[0]}"] == pytest.approx(0.1 / float(w.norm()) ** 2, rel=1e-9)
    rms, mean = last[f"angle_rms/{HIDDEN[0]}"], last[f"angle_mean/{HIDDEN[0]}"]
    assert 0 < mean <= rms < 1
    assert last[f"grad_ms/{HIDDEN[0]}"] > 0 and last[f"norm_ms/{HIDDEN[0]}"] > 0


def test_window_sums_obey_the_exact_norm_recursion():
    """Over a window of K plain-SGD updates of a scale-invariant w,
    ‖w_K‖² − ‖w_0‖² = K·(η²·grad_ms − (2ηλ − η²λ²)·norm_ms), from the probe's own window
    means (float64; BN's ε = 1e-5 leaves ⟨∇L, w⟩ ≈ 1e-6 relative)."""
    from l2dynamics.probes.norms import NormProbe

    lam, lr, steps = 0.05, 0.1, 60
    trainer = Trainer(make_config(BN, lam=lam, lr=lr, steps=steps))
    named = [(n, p) for n, p in trainer.named_params if n == HIDDEN[1]]
    w = named[0][1]
    probe = NormProbe(named, "sgd")
    start = float(w.detach().double().norm()) ** 2
    for step in range(steps):
        xb, yb = trainer.batch(step)
        trainer.optimizer.zero_grad()
        trainer.loss_fn(trainer.model(xb), yb).backward()
        probe.before_step()
        with torch.no_grad():
            w.add_(-lr * (w.grad + lam * w))  # this tensor only: our coupled L2
        probe.after_step()
    end = float(w.detach().double().norm()) ** 2
    m = probe.window_metrics(lr)
    predicted = steps * (lr ** 2 * m[f"grad_ms/{HIDDEN[1]}"]
                         - (2 * lr * lam - (lr * lam) ** 2) * m[f"norm_ms/{HIDDEN[1]}"])
    assert end - start == pytest.approx(predicted, rel=1e-4)
    assert abs(end - start) > 1e-3  # the norm did move


def test_angle_is_accurate_for_tiny_rotations():
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    for theta in (1e-9, 1e-5, 0.3, 3.0):
        b = torch.tensor([math.cos(theta), math.sin(theta), 0.0], dtype=torch.float64) * 7
        assert angle_between(a, b) == pytest.approx(theta, rel=1e-9)


def test_projection_state_round_trip_and_bad_inputs():
    w = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    proj = NormProjection([("w", w)], "init")
    with torch.no_grad():
        w.mul_(3.0)
    other = NormProjection([("w", w)], "init")
    other.load_state_dict(proj.state_dict())
    other.apply()
    assert torch.allclose(unit_norms(w), proj.targets[0])
    with pytest.raises(ConfigError, match="project_norm"):
        NormProjection([("w", w)], "sphere")
    with pytest.raises(ConfigError, match="dimensions"):
        NormProjection([("b", torch.nn.Parameter(torch.ones(3)))], "init")
    for key, value in (("project_norm", "sphere"), ("project_params", []),
                       ("project_params", 3), ("norm_probes", "maybe")):
        with pytest.raises(ConfigError, match=key):
            make_config(BN, **{key: value})
    with pytest.raises(ConfigError, match="project_params"):
        Trainer(make_config(BN, project_norm="init", project_params=["nothing.*"]))


def test_vectorized_engine_refuses_projection_and_probes():
    from l2dynamics.train import vectorizable

    plain = {**BN, "norm": "none"}
    for key, value in (("project_norm", "init"), ("norm_probes", True)):
        cfgs = [make_config(plain, seed=s, **{key: value}) for s in (0, 1)]
        assert "project_norm" in vectorizable(cfgs)


def test_auto_projects_exactly_the_detected_scale_invariant_weights():
    trainer = Trainer(make_config(BN, steps=5, project_norm="init"))
    assert trainer.projection.names == HIDDEN  # not the readout, not the 1-D BN parameters
    assert trainer.run().status == "finished"
    with pytest.raises(ConfigError, match="scale-invariant"):
        Trainer(make_config(BN, norm="none", project_norm="init"))
