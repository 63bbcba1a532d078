"""The regime map's per-cell rules on synthetic t* tables where the answer is known: a cell
with t* = c/(ηλ) must say "holds", a cell with t* independent of λ "does not hold", a cell
whose t* moves with the budget cannot hold, and the boundary is stated as measured."""

import math

import numpy as np
import pandas as pd
import pytest

from l2dynamics.analysis.regime import (
    boundary_sentence,
    cell_summary,
    map_verdict,
    regime_boundary,
)

LAMS = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
FIXED = 3000


def _table(tstar, *, lrs=(1.0, 0.5), seeds=(0, 1, 2), inverse_factor=1.0, censored=False,
           fits=True, gain=0.05, seed=0) -> pd.DataFrame:
    """Runs of both arms: `tstar(lam, lr)` steps, ±5 % seed noise; final accuracy 0.80 at
    λ = 0 and 0.80 + `gain` at the best λ."""
    rng = np.random.default_rng(seed)
    rows = []
    for lr in lrs:
        for lam in (0.0, *LAMS):
            for s in seeds:
                for arm, steps in (("fixed", FIXED), ("inverse", 7 if lam else None)):
                    if steps is None or (arm == "inverse" and lr != lrs[0]):
                        continue
                    t = (tstar(lam, lr) * (inverse_factor if arm == "inverse" else 1.0)
                         * rng.uniform(0.95, 1.05)) if lam > 0 else math.nan
                    final = 0.80 + (gain if lam == 4e-3 else 0.0) + rng.normal(0, 0.002)
                    rows.append({"lam": lam, "lr": lr, "seed": s,
                                 "steps": FIXED if arm == "fixed" else 10 + int(1 / lam),
                                 "fits_train": fits, "censored_smoothed": censored,
                                 "tstar_smoothed": t, "c_eta_smoothed": lam * lr * t,
                                 "final_acc": final})
    return pd.DataFrame(rows)


def test_a_cell_with_tstar_proportional_to_one_over_eta_lambda_holds():
    cell = cell_summary(_table(lambda lam, lr: 0.9 / (lr * lam)), fixed_steps=FIXED, lr=1.0,
                        second_lr=0.5)
    assert cell["shape"] == "peak" and cell["fit_share"] == 1.0
    assert cell["slope_verdict"] == "holds" and cell["verdict"] == "holds"
    assert cell["slope"] == pytest.approx(-1.0, abs=0.05) and cell["slope_runs"] == 15
    assert cell["budget_ok"] is True and cell["budget_ratio"] == pytest.approx(1.0, abs=0.05)
    assert cell["c_eta"] == pytest.approx(0.9, rel=0.05)
    assert cell["c_eta_verdict"] == "holds" and cell["c_eta_ratio"] == pytest.approx(1, abs=0.05)
    assert cell["gain_verdict"] == "holds" and cell["gain"] == pytest.approx(0.05, abs=0.01)


def test_a_cell_with_tstar_independent_of_lambda_does_not_hold():
    cell = cell_summary(_table(lambda lam, lr: 300.0, gain=0.0), fixed_steps=FIXED, lr=1.0,
                        second_lr=0.5)
    assert cell["slope_verdict"] == "does not hold" and cell["verdict"] == "does not hold"
    assert cell["slope"] == pytest.approx(0.0, abs=0.05)
    assert cell["c_eta_verdict"] == "does not hold"  # c·η = λη·300 doubles with η
    assert cell["gain_verdict"] != "holds"


def test_a_cell_whose_tstar_moves_with_the_budget_cannot_hold():
    cell = cell_summary(_table(lambda lam, lr: 0.9 / (lr * lam), inverse_factor=2.0),
                        fixed_steps=FIXED, lr=1.0)
    assert cell["slope_verdict"] == "holds" and cell["budget_ok"] is False
    assert cell["verdict"] == "undetermined"
    assert cell["c_eta_verdict"] == "undetermined"  # no second η given


def test_a_plateau_cell_has_no_slope_and_fitting_is_measured_not_filtered():
    cell = cell_summary(_table(lambda lam, lr: 0.9 / (lr * lam), censored=True, fits=False),
                        fixed_steps=FIXED, lr=1.0, second_lr=0.5)
    assert cell["shape"] == "plateau" and cell["peak_share"] == 0.0
    assert cell["fit_share"] == 0.0 and cell["slope_runs"] == 0
    assert cell["verdict"] == "undetermined" and math.isnan(cell["slope"])
    fitting = cell_summary(_table(lambda lam, lr: 0.9 / (lr * lam), fits=False),
                           fixed_steps=FIXED, lr=1.0)
    assert fitting["fit_share"] == 0.0 and fitting["verdict"] == "holds"  # not a filter


def test_the_boundary_is_stated_as_measured():
    cells = pd.DataFrame({"params_per_example": [0.5, 2.0, 8.0, 32.0, 64.0],
                          "verdict": ["does not hold", "undetermined", "holds", "holds",
                                      "consistent"]})
    b = regime_boundary(cells)
    assert b["separates"] and b["lowest_holding"] == 8.0 and b["highest_failing"] == 0.5
    assert boundary_sentence(b) == (
        "t* ∝ 1/λ held in the 2 cells with at least 8 parameters per training example and in "
        "none of the 1 cells with at most 0.5; 1 cells are consistent with it but too "
        "imprecise to confirm it; 1 cells could not be decided.")
    mixed = regime_boundary(cells.assign(verdict=["holds", "does not hold", "holds",
                                                  "does not hold", "holds"]))
    assert not mixed["separates"] and "does not separate them" in boundary_sentence(mixed)
    assert map_verdict(b) == "holds" and map_verdict(mixed) == "holds"
    hedged = regime_boundary(cells.assign(verdict=["does not hold", "undetermined",
                                                   "consistent", "does not hold",
                                                   "does not hold"]))
    assert map_verdict(hedged) == "consistent"  # a cell consistent with it: not ruled out
    assert map_verdict(regime_boundary(cells.assign(verdict="undetermined"))) == "undetermined"
    none = regime_boundary(cells.assign(verdict="does not hold"))
    assert map_verdict(none) == "does not hold"
    assert boundary_sentence(none).startswith("t* ∝ 1/λ held in no cell (5 cells")


def test_regime_study_runs_end_to_end_and_records_a_map(tmp_path, monkeypatch):
    import json

    from tests.test_data import make_mnist
    from typer.testing import CliRunner

    from l2dynamics.cli import app
    from l2dynamics.report.inventory import inventory_problems, read_inventory

    make_mnist(tmp_path / "data" / "fashion_mnist", n_train=200, n_test=100)
    monkeypatch.setenv("L2DYNAMICS_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "study", "regime", "--out", str(out), "--set", "n_trains=[64]", "--set", "widths=[8]",
        "--set", "losses=[mse]", "--set", "lams=[0.1, 0.2, 0.4]", "--set", "fixed_steps=40",
        "--set", "seeds=[0, 1]", "--set", "base.n_test=50", "--set", "base.eval_train_size=32",
        "--set", "cnn_n_trains=[64]", "--set", "cnn_widths=[4]", "--set", "cnn_norms=[bn]",
        "--set", "cnn_lr=0.5", "--set", "cnn_second_lr=0.25", "--set", "cnn_fixed_steps=20",
        "--set", "cnn_base.n_test=50", "--set", "cnn_base.eval_train_size=32"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    claims = [c["claim"] for c in summary["claims"]]
    assert claims[0].startswith("(FC, n_train 64, width 8, mse;") and claims[0].endswith(
        "t* ∝ 1/λ")
    assert claims[1].startswith("(CNN + BN, n_train 64, width 4, ce;")
    assert claims[-1] == "the map: t* ∝ 1/λ holds in at least one cell"
    runs = pd.read_csv(out / "regime_runs.csv")
    fc, cnn = runs[runs["network"] == "fc"], runs[runs["network"] == "cnn+bn"]
    # seeds × (two η × (λ = 0 + 3 λ) + the inverse arm's two runs not already in the fixed arm)
    assert len(fc) == 2 * (2 * 4 + 2) and len(cnn) == len(fc)
    inverse = fc[fc["steps"] != 40]
    # steps = 4/(ηλ): 40 at λ = 0.1 (the fixed arm's run, not repeated), 20 and 10
    assert sorted(inverse["steps"].unique()) == [10, 20]
    # the CNN's λ: the FC's × (1·40)/(0.5·20) = ×4, so that λ·η·T of the fixed arm is the same
    assert sorted(cnn.loc[cnn["lam"] > 0, "lam"].unique()) == pytest.approx([0.4, 0.8, 1.6])
    assert sorted(cnn.loc[cnn["steps"] != 20, "steps"].unique()) == [5, 10]
    figure = summary["figures"][0]
    assert inventory_problems(read_inventory(figure["path"]), figure["series"]) == []
    cells = pd.read_csv(out / "regime_cells.csv")
    by_lam = json.loads(cells["hessian_by_lam"][0])  # λ_min(∇²L_λ)/λ per λ, first seed
    assert sorted(by_lam) == ["0.1", "0.2", "0.4"] and all(math.isfinite(v)
                                                            for v in by_lam.values())
    assert cells["hessian_min"][0] == pytest.approx(min(by_lam.values()))
    assert len(cells) == 2 and cells["params_per_example"][0] == pytest.approx(
        (784 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10) / 64)
    assert cells["network"].tolist() == ["fc", "cnn+bn"]
    assert math.isnan(cells["hessian_min"][1])  # FC cells only


def test_the_selector_cites_the_recorded_map(tmp_path):
    import json

    from l2dynamics.config import make_config
    from l2dynamics.studies.study_regime import regime_note

    rule = {"measured_on": "Fashion-MNIST, FC NTK", "network": "an FC network",
            "boundary": {"holds": 2, "does_not_hold": 1, "other": 0, "lowest_holding": 8.0,
                         "highest_failing": 0.5, "separates": True},
            "sentence": "t* ∝ 1/λ held in the 2 cells with at least 8 parameters per training "
                        "example and in none of the 1 cells with at most 0.5."}
    path = tmp_path / "map.json"
    path.write_text(json.dumps(rule))
    small = make_config(dataset="digits", model="fc", width=4, depth=1, n_train=1000)
    big = make_config(dataset="digits", model="fc", width=256, depth=2, n_train=100)
    assert "at or below the largest value where it failed" in regime_note(small, path=path)
    note = regime_note(big, path=path)
    assert "at or above the smallest value where the law held" in note
    assert note.startswith(f"{(64 * 256 + 256 + 256 * 256 + 256 + 2570) / 100:.3g} parameters")
    assert "no regime map is recorded" in regime_note(big, path=tmp_path / "none.json")
