"""t* tables, seed statistics, fits and verdicts on synthetic stored curves with known t*."""

import math

import numpy as np
import pytest

from l2dynamics import RunStore, make_config
from l2dynamics.analysis.tstar import (
    c_eta_of,
    tstar_claims,
    tstar_fits,
    tstar_summary,
    tstar_table,
    tstar_verdict,
)
from l2dynamics.train import eval_steps

STEPS = eval_steps(200_000, per_decade=50)


def _store_curves(store, lams, seeds, *, c=50.0, slope=-1.0, lr=0.1, underfit=()):
    """Test accuracy bumps peaking at t* = c·λ^slope (in steps), plus seed noise."""
    for lam in lams:
        for seed in seeds:
            cfg = make_config(lam=lam, lr=lr, seed=seed, steps=int(STEPS[-1])).to_dict()
            rid = store.create_run(cfg, steps_total=cfg["steps"], seed=seed, device="cpu")
            rng = np.random.default_rng(seed + int(1e6 * lam))
            center = math.log10(c * lam**slope) if lam > 0 else 6.0
            x = np.log10(np.maximum(STEPS, 1))
            acc = 0.5 + 0.3 * np.exp(-((x - center) / 0.4) ** 2) + rng.normal(0, 0.003, x.size)
            if lam == 0:
                acc = 0.5 + 0.25 * (x / x.max())
            train = np.full(x.size, 0.5 if lam in underfit else 1.0)
            rows = [(int(s), 0.1 * s, "test_acc", float(a)) for s, a in zip(STEPS, acc,
                                                                              strict=True)]
            rows += [(int(s), 0.1 * s, "train_acc", float(t)) for s, t in zip(STEPS, train,
                                                                               strict=True)]
            store.finish_run(rid, "finished", steps_done=cfg["steps"], wall_seconds=0.0,
                             final_rows=rows)


def test_known_inverse_law_is_recovered_and_judged(tmp_path):
    lams = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    with RunStore(tmp_path / "s.sqlite") as store:
        _store_curves(store, [0.0, *lams], seeds=[0, 1, 2])
        table = tstar_table(store)
    assert len(table) == 18 and table["fits_train"].all()
    fits = tstar_fits(table).iloc[0]
    # t* sits on a 50-per-decade clock (5 % steps).
    assert fits["slope"] == pytest.approx(-1.0, abs=0.1) and fits["contains_minus_one"]
    # λ = 1e-4 and 3e-4 peak at or beyond the 2e5-step budget: censored, not fitted.
    assert fits["excluded_censored"] == 6 and fits["used"] == 9
    # the peaks do not move when the runs are cut to 50 % and 75 % of their budget
    assert fits["budget_dependent"] == 0 and fits["budget_checked"] == 9
    assert fits["verdict"] == "holds" and "6 of 15 runs censored" in fits["note"]
    # c·η = λ·Φ(t*) with Φ = Σ η = 0.1·t* (no momentum): 0.1·c
    assert fits["c_eta"] == pytest.approx(5.0, rel=0.1)
    assert (fits["c_eta_interval"], fits["c_eta_n"]) == ("95 % t-interval", 9)
    summary = tstar_summary(table)
    row = summary[summary["lam"] == 1e-3].iloc[0]
    assert row["seeds"] == 3 and row["tstar_low"] <= row["tstar"] <= row["tstar_high"]
    assert row["interval"] == "95 % t-interval"
    assert row["c"] == pytest.approx(50.0, rel=0.15)
    assert row["c_eta"] == pytest.approx(5.0, rel=0.15)
    verdict = tstar_verdict(table)
    assert list(verdict.columns) == ["kind", "lr", "claim", "measured", "verdict", "ci", "note"]
    verdict = verdict.set_index("claim")
    assert verdict.loc["t* ∝ 1/λ (η=0.1)", "verdict"] == "holds"
    assert "margin [-1.25, -0.80]" in verdict.loc["t* ∝ 1/λ (η=0.1)", "ci"]
    assert "t-interval of the slope, n = 9 runs" in verdict.loc["t* ∝ 1/λ (η=0.1)", "ci"]
    assert verdict.loc["some λ > 0 beats λ = 0 (η=0.1)", "verdict"] == "holds"
    assert "Welch" in verdict.loc["some λ > 0 beats λ = 0 (η=0.1)", "ci"]
    # λ = 1e-3 and 3e-3 peak at 0.8 (± noise): flat within ±1 point
    assert verdict.loc["peak accuracy flat in small λ (η=0.1)", "verdict"] == "holds"
    claims = tstar_claims(table, "smoothed", label="(x) ")
    assert [c.verdict for c in claims] == list(verdict["verdict"])
    assert claims[0].claim == "(x) t* ∝ 1/λ (η=0.1)" and "6 of 15" in claims[0].measured


def test_a_different_law_is_rejected_and_underfitting_is_excluded(tmp_path):
    lams = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    with RunStore(tmp_path / "s.sqlite") as store:
        _store_curves(store, lams, seeds=[0, 1], c=2.0, slope=-1.5, underfit=(3e-2,))
        table = tstar_table(store)
    fits = tstar_fits(table).iloc[0]
    # λ = 3e-2 never fits its training data; λ = 1e-4 and 3e-4 peak beyond the budget.
    assert fits["excluded_underfit"] == 2 and fits["excluded_censored"] == 4
    assert fits["used"] == 6
    assert fits["slope"] == pytest.approx(-1.5, abs=0.08) and not fits["contains_minus_one"]
    assert fits["verdict"] == "does not hold"
    verdict = tstar_verdict(table).set_index("claim")
    assert verdict.loc["t* ∝ 1/λ (η=0.1)", "verdict"] == "does not hold"
    assert "2 of 12 runs (λ > 0) never reached" in verdict.loc["t* ∝ 1/λ (η=0.1)", "note"]


def test_plateau_curves_are_censored_as_peaks_but_not_as_onsets(tmp_path):
    """A curve that rises to a plateau and stays there (cross-entropy with L2 converging to
    its regularized minimum) has no peak to speak of, but a well-defined plateau onset."""
    x = np.log10(np.maximum(STEPS, 1))
    rng = np.random.default_rng(0)
    with RunStore(tmp_path / "s.sqlite") as store:
        for lam, center in ((1e-3, 3.0), (1e-2, 2.0)):
            cfg = make_config(lam=lam, lr=0.1, steps=int(STEPS[-1])).to_dict()
            rid = store.create_run(cfg, steps_total=cfg["steps"], seed=0, device="cpu")
            acc = 0.5 + 0.3 / (1 + np.exp(-(x - center) / 0.1)) + rng.normal(0, 0.002, x.size)
            rows = [(int(s), 0.1 * s, "test_acc", float(a)) for s, a in zip(STEPS, acc,
                                                                              strict=True)]
            rows += [(int(s), 0.1 * s, "train_acc", 1.0) for s in STEPS]
            store.finish_run(rid, "finished", steps_done=cfg["steps"], wall_seconds=0.0,
                             final_rows=rows)
        table = tstar_table(store).set_index("lam")
    assert table["censored_smoothed"].all() and table["peak_at_end"].all()
    assert not table["censored_onset"].any()
    # onset: the logistic is within δ = 0.005 of its top 0.8 at x = center + 0.1·ln(59) ≈ +0.41
    for lam, center in ((1e-3, 3.0), (1e-2, 2.0)):
        assert math.log10(table.loc[lam, "tstar_onset"]) == pytest.approx(center + 0.41,
                                                                           abs=0.12)


@pytest.mark.parametrize("low, high, verdict", [(-1.2, -0.8, "holds"), (-0.3, 0.2, "flat"),
                                                 (-1.5, 0.3, "undetermined"),
                                                 (-2.0, -1.6, "other"), (0.2, 0.5, "other")])
def test_slope_verdict(low, high, verdict):
    from l2dynamics.analysis.fits import slope_verdict

    assert slope_verdict({"slope": (low + high) / 2, "ci_low": low, "ci_high": high}) == verdict
    assert slope_verdict({"slope": math.nan, "ci_low": math.nan,
                          "ci_high": math.nan}) == "undetermined"


def test_c_eta_is_lambda_times_phi():
    """c·η = λ·Φ(t*): Φ = physical time / (1 − μ) for SGD, physical time for Adam/AdamW."""
    assert c_eta_of(1e-3, 400.0) == pytest.approx(0.4)
    assert c_eta_of(1e-3, 400.0, 0.9, "sgd") == pytest.approx(4.0)
    assert c_eta_of(1e-3, 400.0, 0.0, "adamw") == pytest.approx(0.4)
    np.testing.assert_allclose(c_eta_of(np.array([1e-3, 1e-3]), np.array([400.0, 400.0]),
                                        np.array([0.9, 0.0]), np.array(["sgd", "adam"])),
                               [4.0, 0.4])


def test_c_eta_comes_from_the_stored_physical_time_and_momentum(tmp_path):
    """A step schedule (η halves at step 1000) and momentum 0.9: c·η is λ·Σ η/(1 − μ), not
    λ·lr·t* (which would be 2 × (1 − μ)·… off)."""
    x = np.log10(np.maximum(STEPS, 1))
    phys = np.where(STEPS <= 1000, 0.1 * STEPS, 100.0 + 0.05 * (STEPS - 1000))
    acc = 0.5 + 0.3 * np.exp(-((x - 4.0) / 0.4) ** 2)  # peak at step 1e4
    with RunStore(tmp_path / "s.sqlite") as store:
        cfg = make_config(lam=1e-3, lr=0.1, momentum=0.9, steps=int(STEPS[-1])).to_dict()
        rid = store.create_run(cfg, steps_total=cfg["steps"], seed=0, device="cpu")
        rows = [(int(s), float(p), "test_acc", float(a))
                for s, p, a in zip(STEPS, phys, acc, strict=True)]
        rows += [(int(s), float(p), "train_acc", 1.0) for s, p in zip(STEPS, phys, strict=True)]
        store.finish_run(rid, "finished", steps_done=cfg["steps"], wall_seconds=0.0,
                         final_rows=rows)
        row = tstar_table(store).iloc[0]
    t = row["tstar_smoothed"]
    assert t == pytest.approx(1e4, rel=0.05)
    assert row["c_eta_smoothed"] == pytest.approx(1e-3 * (100 + 0.05 * (t - 1000)) / 0.1)
    assert row["c_smoothed"] == pytest.approx(1e-3 * t)


def test_fit_note_says_why_there_is_no_slope(tmp_path):
    """Plateau curves: every run is censored for 'smoothed' (no peak), none for 'onset'."""
    x = np.log10(np.maximum(STEPS, 1))
    with RunStore(tmp_path / "s.sqlite") as store:
        for lam in (1e-3, 3e-3, 1e-2):
            cfg = make_config(lam=lam, lr=0.1, steps=int(STEPS[-1])).to_dict()
            rid = store.create_run(cfg, steps_total=cfg["steps"], seed=0, device="cpu")
            center = math.log10(5.0 / lam)
            acc = 0.5 + 0.3 / (1 + np.exp(-(x - center) / 0.1))
            rows = [(int(s), 0.1 * s, "test_acc", float(a)) for s, a in zip(STEPS, acc,
                                                                              strict=True)]
            rows += [(int(s), 0.1 * s, "train_acc", 1.0) for s in STEPS]
            store.finish_run(rid, "finished", steps_done=cfg["steps"], wall_seconds=0.0,
                             final_rows=rows)
        table = tstar_table(store)
    fit = tstar_fits(table).iloc[0]
    assert math.isnan(fit["slope"]) and fit["verdict"] == "undetermined"
    assert "3 of 3 runs censored for 'smoothed'" in fit["note"]
    assert "'onset' has 3 usable runs" in fit["note"] and "no fit: 0 usable runs" in fit["note"]
    onset = tstar_fits(table, estimator="onset").iloc[0]
    assert onset["used"] == 3 and onset["slope"] == pytest.approx(-1.0, abs=0.1)


def test_empty_store_gives_empty_table(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        assert tstar_table(store).empty


def test_analyze_tstar_cli(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        _store_curves(store, [0.0, 1e-3, 3e-3, 1e-2], seeds=[0, 1])
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", "tstar", "--store", str(path), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    figures = tmp_path / "out" / "figures" / "tstar"
    assert "verdict" in result.output and (figures / "tstar.png").stat().st_size > 10_000
    assert (figures / "collapse.png").stat().st_size > 10_000
    assert "[holds] t* ∝ 1/λ" in result.output or "t* ∝ 1/λ" in result.output
    assert (tmp_path / "out" / "tstar_fits.csv").exists()
    bad = runner.invoke(app, ["analyze", "tstar", "--store", str(path), "--estimator", "mean"])
    assert bad.exit_code == 2 and "--estimator" in bad.output
    missing = runner.invoke(app, ["analyze", "tstar", "--store", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2


def test_test_set_noise_comes_from_the_stored_test_size(tmp_path):
    from l2dynamics import train

    with RunStore(tmp_path / "s.sqlite") as store:
        res = train(dataset="digits", n_test=200, width=16, steps=30, lam=1e-3,
                    eval_per_decade=5, norms_per_tensor=False, store=store)
        _store_curves(store, [1e-3], seeds=[0])  # no size recorded anywhere
        table = tstar_table(store).set_index("run_id")
    assert res.summary["n_test"] == 200 and res.summary["n_train"] > 0
    p = table.loc[res.run_id, "peak_acc"]
    assert table.loc[res.run_id, "test_noise_se"] == pytest.approx(math.sqrt(p * (1 - p) / 200))
    assert table["test_noise_se"].isna().sum() == 1
    assert "test_noise_se" in tstar_summary(table.reset_index()).columns
