"""Studies 2 and 4 of the normalization issue: the η×λ grid with its effective-LR collapse, and
the CNN ± BN bridge to t* ∝ 1/λ."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from l2dynamics.errors import ConfigError
from l2dynamics.studies.norm_grids import (
    DISPUTED_ADAM_Q,
    EFFECTIVE_LR_EXPONENTS,
    SMALL_ANGLE,
    collapse_summary,
    eta_lam_grid,
)
from l2dynamics.studies.norms import bn_bridge

SMALL = {"n_train": 400, "n_test": 400, "width": 32, "betas": (0.9, 0.99)}


def _synthetic(p: float, q: float, noise: float, seed: int = 0) -> pd.DataFrame:
    """A relaxed Adam grid whose effective LR follows η^p λ^q with log-normal noise and whose
    test error is a function of that effective LR alone (a perfect collapse)."""
    rng = np.random.default_rng(seed)
    rows = []
    for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2):
        for lam in (1e-4, 1e-3, 1e-2, 1e-1):
            eff = lr ** p * lam ** q * math.exp(noise * rng.standard_normal())
            rows.append({"optimizer": "adam", "lr": lr, "lam": lam, "seed": 0,
                         "status": "finished", "eff_lr": eff, "relaxed": True,
                         "test_error": 0.2 + 0.05 * (math.log(eff) + 5.0) ** 2})
    return pd.DataFrame(rows)


def test_collapse_summary_recovers_our_exponent():
    """The 95 % CIs cover the true exponents in about 95 % of noisy grids (not in every one)."""
    fits = [collapse_summary(_synthetic(2 / 3, 1 / 3, noise=0.05, seed=s))["fit"]
            for s in range(40)]
    covered = np.mean([f["p_holds"] and f["q_holds"] for f in fits])
    assert covered >= 0.8, covered
    assert np.mean([f["supports"] == "(η²λ)^1/3" for f in fits]) >= 0.85
    assert abs(np.mean([f["q"] for f in fits]) - 1 / 3) < 0.005
    summary = collapse_summary(_synthetic(2 / 3, 1 / 3, noise=0.05))
    r2 = summary["collapse_r2"]
    assert r2["predicted_combination"] > 0.95 > max(r2["lr_alone"], r2["lam_alone"])


def test_collapse_summary_recognizes_the_disputed_form():
    fits = [collapse_summary(_synthetic(2 / 3, DISPUTED_ADAM_Q, noise=0.05, seed=s))["fit"]
            for s in range(20)]
    assert np.mean([f["supports"] == "(η²/λ)^1/3" for f in fits]) >= 0.85
    assert not any(f["q_holds"] for f in fits)


def test_collapse_summary_leaves_out_cells_outside_the_small_angle_regime():
    table = _synthetic(2 / 3, 1 / 3, noise=0.02)
    table["in_fit"] = True
    # large-angle cells that follow a different law must not move the fit
    wild = table.index[table["lr"] == 1e-2]
    table.loc[wild, "eff_lr"] *= table.loc[wild, "lam"] ** -1.0
    table.loc[wild, "in_fit"] = False
    summary = collapse_summary(table)
    assert summary["in_fit"] == len(table) - len(wild)
    assert summary["outside_small_angle"] == len(wild)
    fit = summary["fit"]
    assert abs(fit["p"] - 2 / 3) < 0.02 and abs(fit["q"] - 1 / 3) < 0.02
    table["in_fit"] = True
    assert abs(collapse_summary(table)["fit"]["q"] - 1 / 3) > 0.1


def test_collapse_summary_with_the_measured_update_power():
    """Where ũ falls with η (BN units stop receiving gradient), η/‖w‖·g^⅓ follows η^(2/3 + 1/3)
    and the fit with (g·ũ)^⅓ recovers the law."""
    table = _synthetic(2 / 3, 1 / 3, noise=0.01)
    table["in_fit"] = True
    table["normalizer"] = 1.0
    table["u_tilde"] = 1e-4 / table["lr"]
    table["eff_lr"] = table["eff_lr"] * table["u_tilde"] ** (-1 / 3)
    summary = collapse_summary(table)
    assert summary["fit_gbar_normalized"]["p"] == pytest.approx(1.0, abs=0.02)
    assert summary["fit_measured"]["p"] == pytest.approx(2 / 3, abs=0.02)
    assert summary["fit_measured"]["q"] == pytest.approx(1 / 3, abs=0.02)


def test_collapse_summary_without_relaxed_runs_says_why():
    table = _synthetic(2 / 3, 1 / 3, noise=0.05).assign(relaxed=False)
    summary = collapse_summary(table)
    assert summary["fit"] is None and "at least 3" in summary["fit_error"]


def test_adam_grid_effective_lr_grows_with_lambda(tmp_path):
    """On the BN net, Adam + L2's late effective LR rises with λ at fixed η (λ shrinks ‖w‖, and
    η/‖w‖ grows) — the sign that separates (η²λ)^⅓ from the disputed (η²/λ)^⅓ — and a second
    call trains nothing (the store holds every run)."""
    store = tmp_path / "grid.sqlite"
    table = eta_lam_grid("adam", (3e-3,), (1e-3, 1e-2, 1e-1), store=store, base=SMALL,
                         steps=600)
    assert list(table["lam"]) == [1e-3, 1e-2, 1e-1]
    assert (table["status"] == "finished").all()
    eff = table["eff_lr"].to_numpy()
    assert np.all(np.diff(eff) > 0), eff
    assert np.all(np.diff(table["norm"].to_numpy()) < 0)
    # the predicted relaxation time falls with λ; the flag follows steps ≥ 10τ
    assert table["relaxation_steps"].is_monotonic_decreasing
    assert (table["relaxed"] == (10 * table["relaxation_steps"] <= 600)).all()
    # each cell logs what places it; κ ≥ 1 by Jensen for a w²-weighted mean of 1/√v̂
    for column in ("kappa", "u_tilde", "cross_share", "dead_fraction", "angle_rms", "l2_ratio",
                   "gbar_elem"):
        assert table[column].notna().all(), column
    assert (table["kappa"] > 1.0).all() and (table["dead_fraction"].between(0, 1)).all()
    assert (table["normalizer"] == table["gbar_elem"]).all()
    assert (table["small_angle"] == (table["angle_rms"] <= SMALL_ANGLE)).all()
    assert (table["in_fit"] == (table["relaxed"] & table["small_angle"])).all()
    logs = []
    again = eta_lam_grid("adam", (3e-3,), (1e-3, 1e-2, 1e-1), store=store, base=SMALL,
                         steps=600, progress=logs.append)
    assert any("3 from the store" in line for line in logs), logs
    pd.testing.assert_series_equal(again["eff_lr"], table["eff_lr"])


def test_grid_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="optimizer"):
        eta_lam_grid("rmsprop", (1e-3,), (1e-3,), store=tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match="finite and > 0"):
        eta_lam_grid("sgd", (0.1,), (0.0,), store=tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match="no scale-invariant"):
        eta_lam_grid("sgd", (0.1,), (1e-3,), store=tmp_path / "s.sqlite",
                     base={**SMALL, "norm": "none"}, steps=10)
    assert not (tmp_path / "s.sqlite").exists()
    assert set(EFFECTIVE_LR_EXPONENTS) == {"sgd", "adam"}


def test_bridge_runs_both_networks_under_one_grid(tmp_path):
    res = bn_bridge((1e-2, 4e-2), store=tmp_path / "b.sqlite", steps=300, seeds=(0,),
                    base={"n_train": 200, "width": 8})
    assert set(res["norms"]) == {"none", "bn"}
    for norm in ("none", "bn"):
        part = res["norms"][norm]
        assert sorted(part["summary"]["lam"]) == [1e-2, 4e-2]
        assert part["verdict"] in ("holds", "flat", "undetermined", "other")
        assert len(part["curves"]) == 2
        assert 0 <= part["peak_acc_range"] <= 1
    json.dumps(res, default=float)  # the CLI writes it


def test_cli_grid_and_bridge(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "norms", "grid", "--optimizers", "sgd", "--lrs", "0.1,0.3", "--lams", "1e-2,3e-2",
        "--steps", "300", "--store", str(tmp_path / "n.sqlite"), "--out", str(out),
        "--set", "n_train=300", "--set", "width=16"])
    assert result.exit_code == 0, result.output
    assert (out / "figures" / "norm_grid" / "sgd.png").stat().st_size > 0
    summary = json.loads((out / "grid.json").read_text())["sgd"]
    assert summary["runs"] == 4
    assert "effective LR" in result.output or "no exponent fit" in result.output
    bad = runner.invoke(app, ["norms", "grid", "--optimizers", "sgdx", "--out", str(out)])
    assert bad.exit_code == 2 and "--optimizers" in bad.output
    bad = runner.invoke(app, ["norms", "bridge", "--out", str(out), "--lrs", "0.1"])
    assert bad.exit_code == 2 and "--lrs" in bad.output


@pytest.mark.parametrize("name", ["convnet4_cifar10_adam_grid", "convnet4_cifar10_adam_projection"])
def test_paper_convnet4_configs_load_and_their_conv_weights_are_scale_invariant(name):
    """The GPU configs parse into valid runs, and the model they name has exactly its three
    conv weights scale-invariant (on CIFAR-shaped inputs), so `decay_params: weights` decays
    both invariant tensors and the readout, as the study intends."""
    import torch

    from l2dynamics.models import build_model
    from l2dynamics.probes.scale import detect_scale_invariant
    from l2dynamics.studies.suite import read_paper_config
    from l2dynamics.sweep import load_sweep

    configs = load_sweep(read_paper_config(name)).configs()
    assert configs and all(c.model == "convnet4" and c.optimizer == "adam" for c in configs)
    torch.manual_seed(0)
    model = build_model("convnet4", input_shape=(3, 32, 32), num_outputs=10, width=4)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    report = detect_scale_invariant(model, torch.nn.functional.cross_entropy, x, y,
                                    per_unit=False)
    weights = [n for n in report.invariant_names if dict(model.named_parameters())[n].ndim >= 2]
    assert len(weights) == 3 and "readout.weight" not in weights
