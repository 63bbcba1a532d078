"""Per-unit norm probes (``NormProbe(per_unit=True)``, config ``norm_probes_per_unit``).

A weight followed by BatchNorm is scale-invariant separately in each output unit u (the slice
w[u] along dim 0), so the stationary identity of plain SGD with coupled L2 holds unit by unit:
E‖w_u‖² = η·E‖∇L_u‖²/(λ(2 − ηλ)). The probe's window means are checked against a hand
computation, against the per-tensor probe on a one-row tensor, in a real run, and against that
identity on a BN net.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from l2dynamics import ConfigError, Trainer, make_config
from l2dynamics.probes.norms import NormProbe, angle_between

F64 = torch.float64
BN = dict(dataset="digits", model="fc", width=16, depth=2, norm="bn", dtype="float64",
          batch_size=64, norms_per_tensor=False, decay_params="weights", optimizer="sgd")
HIDDEN = ["features.1.weight", "features.4.weight"]
SUMMARY_KEYS = ("unit_norm_cv", "unit_norm_min", "unit_norm_max", "unit_angle_rms_min",
                "unit_angle_rms_max", "unit_angle_rms_cv", "unit_gbar_cv")


def _params(seed: int = 0) -> list[tuple[str, torch.nn.Parameter]]:
    """A conv-shaped, a linear-shaped and a 1-D tensor (the last gets no per-unit stats)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"conv": (5, 3, 2, 2), "fc": (4, 6), "bias": (4,)}
    return [(n, torch.nn.Parameter(torch.randn(*s, generator=gen, dtype=F64)))
            for n, s in shapes.items()]


def _drive(probes: list[NormProbe], named, steps: int, gen: torch.Generator,
           record: dict[str, list] | None = None) -> None:
    """`steps` fake updates: random data-loss gradients (None for 'fc' on step 1), random
    moves; `record` gets each step's (w before, grad, w after) per tensor."""
    for step in range(steps):
        for name, p in named:
            p.grad = (None if (name == "fc" and step == 1)
                      else torch.randn(p.shape, generator=gen, dtype=F64))
        before = {n: p.detach().clone() for n, p in named}
        grads = {n: None if p.grad is None else p.grad.clone() for n, p in named}
        for probe in probes:
            probe.before_step()
        with torch.no_grad():
            for _, p in named:
                p.mul_(0.97).add_(0.05 * torch.randn(p.shape, generator=gen, dtype=F64))
        for probe in probes:
            probe.after_step()
        if record is not None:
            for n, p in named:
                record[n].append((before[n], grads[n], p.detach().clone()))


def _cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.fmean(values)


def test_per_unit_window_means_match_a_hand_computation():
    named = _params()
    gen = torch.Generator().manual_seed(1)
    probe = NormProbe(named, "sgd", per_unit=True)
    plain = NormProbe(named, "sgd")
    _drive([probe, plain], named, 3, gen)  # a first window, to check the reset
    probe.window_metrics(0.1), plain.window_metrics(0.1)
    record: dict[str, list] = {n: [] for n, _ in named}
    steps = 4
    _drive([probe, plain], named, steps, gen, record)
    out, ref = probe.window_metrics(0.1), plain.window_metrics(0.1)
    # the per-tensor metrics are untouched by per_unit
    assert {k: v for k, v in out.items() if not k.startswith("unit_")} == ref
    assert plain.unit_arrays() == {} and not any(k.startswith("unit_") for k in ref)
    arrays = probe.unit_arrays()
    assert set(arrays) == {"conv", "fc"}  # ≥ 2-D tensors only
    for name in ("conv", "fc"):
        units = record[name][0][0].shape[0]
        norm_ms, grad_ms, angle_rms = [], [], []
        for u in range(units):  # a plain loop over units and steps, float64 throughout
            norm_ms.append(sum(float(b[u].norm()) ** 2 for b, _, _ in record[name]) / steps)
            grad_ms.append(sum(float(g[u].norm()) ** 2 for _, g, _ in record[name]
                               if g is not None) / steps)
            angle_rms.append(math.sqrt(sum(angle_between(b[u], a[u]) ** 2
                                           for b, _, a in record[name]) / steps))
        got = arrays[name]
        assert got["norm_ms"].dtype == np.float64 and got["norm_ms"].shape == (units,)
        np.testing.assert_allclose(got["norm_ms"], norm_ms, rtol=1e-12)
        np.testing.assert_allclose(got["grad_ms"], grad_ms, rtol=1e-12)
        np.testing.assert_allclose(got["angle_rms"], angle_rms, rtol=1e-12)
        norms = [math.sqrt(x) for x in norm_ms]
        gbar = [math.sqrt(x * y) for x, y in zip(norm_ms, grad_ms, strict=True)]
        expected = {"unit_norm_min": min(norms), "unit_norm_max": max(norms),
                    "unit_norm_cv": _cv(norms), "unit_angle_rms_min": min(angle_rms),
                    "unit_angle_rms_max": max(angle_rms), "unit_angle_rms_cv": _cv(angle_rms),
                    "unit_gbar_cv": _cv(gbar)}
        for key, value in expected.items():
            assert out[f"{key}/{name}"] == pytest.approx(value, rel=1e-12), key
    assert not any(k.endswith("/bias") and k.startswith("unit_") for k in out)
    # the arrays are copies, and an empty window neither emits nor forgets them
    arrays["fc"]["norm_ms"][:] = -1.0
    assert not any(k.startswith("unit_") for k in probe.window_metrics(0.1))
    assert (probe.unit_arrays()["fc"]["norm_ms"] > 0).all()


def test_one_row_tensor_per_unit_equals_per_tensor():
    gen = torch.Generator().manual_seed(2)
    named = [("row", torch.nn.Parameter(torch.randn(1, 7, generator=gen, dtype=F64)))]
    probe = NormProbe(named, "sgd", per_unit=True)
    _drive([probe], named, 5, gen)
    out = probe.window_metrics(0.1)
    unit = probe.unit_arrays()["row"]
    assert unit["norm_ms"][0] == pytest.approx(out["norm_ms/row"], rel=1e-12)
    assert unit["grad_ms"][0] == pytest.approx(out["grad_ms/row"], rel=1e-12)
    assert unit["angle_rms"][0] == pytest.approx(out["angle_rms/row"], rel=1e-12)
    norm = math.sqrt(out["norm_ms/row"])
    assert out["unit_norm_min/row"] == pytest.approx(norm, rel=1e-12)
    assert out["unit_norm_max/row"] == pytest.approx(norm, rel=1e-12)
    assert out["unit_angle_rms_max/row"] == pytest.approx(out["angle_rms/row"], rel=1e-12)
    assert out["unit_norm_cv/row"] == out["unit_angle_rms_cv/row"] == 0.0
    assert out["unit_gbar_cv/row"] == 0.0


def test_trainer_records_per_unit_columns():
    trainer = Trainer(make_config(BN, lr=0.1, lam=5e-3, steps=200, norm_probes=True,
                                  norm_probes_per_unit=True))
    hist = trainer.run().history
    weights = [n for n, p in trainer.named_params if p.ndim >= 2]
    assert set(HIDDEN) < set(weights)
    for name in weights:
        for key in SUMMARY_KEYS:
            col = hist[f"{key}/{name}"].dropna()
            assert len(col) >= 5 and np.isfinite(col).all(), (key, name)
        last = hist.dropna(subset=[f"unit_norm_cv/{name}"]).iloc[-1]
        norms = np.sqrt(trainer.norm_probe.unit_arrays()[name]["norm_ms"])
        assert last[f"unit_norm_cv/{name}"] == pytest.approx(norms.std() / norms.mean())
        assert last[f"unit_norm_min/{name}"] <= last[f"unit_norm_max/{name}"]
    assert not any(c.startswith("unit_norm_cv/") and c.endswith(".bias") for c in hist)
    assert "angle_rms/features.1.weight" in hist  # the per-tensor probes are still there


def test_per_unit_needs_norm_probes():
    with pytest.raises(ConfigError, match="norm_probes_per_unit.*norm_probes=true"):
        make_config(norm_probes_per_unit=True)
    with pytest.raises(ConfigError, match="norm_probes_per_unit"):
        make_config(norm_probes=True, norm_probes_per_unit="maybe")
    assert make_config(norm_probes="yes", norm_probes_per_unit="true").norm_probes_per_unit
    assert make_config().norm_probes_per_unit is False


def test_each_bn_unit_reaches_its_own_sgd_equilibrium():
    """Plain SGD, coupled L2, a BN net with ε → 0 (1e-30: each row exactly scale-invariant, as
    in test_scale_invariance). Per unit, w' = (1 − ηλ)w − η∇L with ⟨w, ∇L⟩ = 0, so over a window
    of N updates from w_s to w_e, exactly (up to rounding):

        mean‖w‖² = η·mean‖∇L‖²/(λ(2 − ηλ)) + (‖w_s‖² − ‖w_e‖²)/(N·ηλ(2 − ηλ)).

    Past relaxation the last term is the only gap to the equilibrium prediction; it is the
    fluctuation of a unit's ‖w_u‖² (few weights, so larger than a tensor's) over N·ηλ(2 − ηλ)
    ≈ 40 relaxation units. Measured over seeds 0–3: |ratio − 1| ≤ 0.014 (seed 0), ≤ 0.040
    (all), so we allow 0.06. The RMS angle is a per-unit reading of arccos(1 − ηλ) (what is
    exact is the ‖w‖²-weighted mean of tan²θ); measured within 0.024 over seeds 0–3, allowed
    0.04. With BN's default ε = 1e-5 the smallest units of the second layer (‖w_u‖ ≈ 0.1)
    miss the identity by ~3%: ε is not negligible against their pre-activation variance."""
    lr, lam, start, steps = 0.1, 0.1, 1000, 3000
    snapshot: dict[str, torch.Tensor] = {}

    class Snapshot:
        def on_step_end(self, trainer, step, loss):
            if step == start:
                snapshot.update({n: _unit_sq(p) for n, p in trainer.named_params})

    trainer = Trainer(make_config(BN, lr=lr, lam=lam, steps=steps, norm_probes=True,
                                  norm_probes_per_unit=True, eval_per_decade=1),
                      callbacks=[Snapshot()])
    assert list(trainer.clock[-2:]) == [start, steps]  # the last window is updates 1000…2999
    for module in trainer.model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eps = 1e-30
    assert trainer.run().status == "finished"
    units, params = trainer.norm_probe.unit_arrays(), dict(trainer.named_params)
    n, k = steps - start, lr * lam * (2 - lr * lam)
    for name in HIDDEN:
        norm_ms, grad_ms = units[name]["norm_ms"], units[name]["grad_ms"]
        pred = lr * grad_ms / (lam * (2 - lr * lam))
        boundary = (snapshot[name] - _unit_sq(params[name])).numpy() / (n * k)
        np.testing.assert_allclose(norm_ms, pred + boundary, rtol=1e-9)
        ratio = norm_ms / pred
        assert np.abs(ratio - 1).max() < 0.06, (name, ratio)
        # the units really differ: one tensor-wide value would miss most of them by far more
        assert norm_ms.max() / norm_ms.min() > 2
        angle = units[name]["angle_rms"] / math.acos(1 - lr * lam)
        assert np.abs(angle - 1).max() < 0.04, (name, angle)


def _unit_sq(p: torch.Tensor) -> torch.Tensor:
    """‖w_u‖² per unit (slice along dim 0), float64."""
    w = p.detach().double()
    return w.reshape(w.shape[0], -1).square().sum(1)
