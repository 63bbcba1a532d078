"""The equilibrium study: measured/predicted on a BN net, and its CLI."""

import pytest

from l2dynamics.studies.norms import equilibrium_check

TINY = dict(dataset="digits", n_train=None, n_test=None, width=16, dtype="float64",
            batch_size=64)


def test_sgd_follows_the_measured_statistics_prediction_on_a_bn_net():
    table = equilibrium_check({"sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 0.05}},
                              base=TINY, relax_times=10, measure_times=10, windows=20)
    assert list(table["tensor"]) == ["features.1.weight", "features.4.weight"]
    assert (table["windows"] >= 20).all()
    # the burn-in covers the arrival from ‖w_0‖ plus 10 relaxation times
    assert (table["burn_in"] >= table["arrival_steps"] + 10 * table["relaxation_steps"]).all()
    # measured on this net: 1.000 / 1.002 (norm), 1.000 / 0.997 (angle); the random-walk
    # forms 0.996 / 1.007 and 1.004 / 0.992
    assert table["norm_ratio"].between(0.99, 1.01).all()
    assert table["angle_ratio"].between(0.99, 1.01).all()
    assert (table["norm_ratio_low"] <= table["norm_ratio"]).all()
    assert (table["norm_ratio"] <= table["norm_ratio_high"]).all()
    assert (table["stationary"] == (table["drift_per_tau_pct"].abs() <= 2.0)).all()


def test_decayed_bn_gains_break_the_invariance_the_study_relies_on():
    """The negative control on a network: with λ on the BN gains too, the second layer's
    inputs shrink until BN's ε matters, ⟨w, ∇L⟩ ≠ 0, and the prediction from the measured
    statistics — exact for a scale-invariant weight — misses (measured 1.43 / 0.69)."""
    table = equilibrium_check({"sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 0.05}},
                              base={**TINY, "decay_params": "all"}, relax_times=10,
                              measure_times=10, windows=20)
    second = table.set_index("tensor").loc["features.4.weight"]
    assert abs(second["norm_ratio"] - 1) > 0.1
    assert second["norm_ratio_low"] > 1.02  # the interval excludes the tolerance


def test_cli_norms(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    runner = CliRunner()
    sets = [x for k, v in {**TINY, "lr": 0.1}.items() if v is not None
            for x in ("--set", f"{k}={v}")] + ["--set", "n_train=null", "--set", "n_test=null"]
    res = runner.invoke(app, ["norms", "equilibrium", "--cases", "sgd", *sets,
                              "--relax-times", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "equilibrium.csv").is_file() and "measured / predicted" in res.output
    for args, word in ((["--cases", "lbfgs"], "--cases"), (["--relax-times", "0"], "relax"),
                       (["kernels"], "study")):
        bad = runner.invoke(app, ["norms", *args] if args[0] == "kernels"
                            else ["norms", "equilibrium", *args])
        assert bad.exit_code == 2 and word in bad.output, bad.output


@pytest.mark.parametrize("field", ["optimizer"])
def test_case_configs_are_validated(field):
    from l2dynamics import ConfigError

    with pytest.raises(ConfigError, match=field):
        equilibrium_check({"x": {"optimizer": "lbfgs"}}, base=TINY)


def test_norm_traces_follow_the_growth_law_and_reach_equilibrium(tmp_path):
    from l2dynamics.report.figures import plot_norm_traces
    from l2dynamics.studies.norms import norm_traces

    traces = norm_traces((0.0, 0.05), base=TINY, lr=0.1, steps=1500)
    runs = {(r["lam"], r["tensor"]): r for r in traces["runs"]}
    free, decayed = runs[(0.0, "features.1.weight")], runs[(0.05, "features.1.weight")]
    # λ = 0: ‖w‖⁴ = ‖w_0‖⁴ + 2η²Σ‖ḡ‖² from the measured gradients (exact up to BN's ε)
    assert free["norm"][-1] == pytest.approx(free["pred_norm"][-1], rel=1e-3)
    assert free["norm"][-1] > free["norm"][0]  # without decay the norm only grows
    # λ > 0, long after the relaxation time 1/(4ηλ) = 50 steps, over the last 20 windows:
    # E‖w‖² against η·E‖∇L‖²/(λ(2 − ηλ)) (measured 1.685 vs 1.734) and the RMS angle
    # against arccos(1 − ηλ) (measured 0.1003 vs 0.1000)
    norm_sq = sum(x * x for x in decayed["norm"][-20:]) / 20
    pred_sq = sum(x * x for x in decayed["pred_norm"][-20:]) / 20
    assert norm_sq == pytest.approx(pred_sq, rel=0.05)
    late = decayed["angle_rms"][-20:]
    assert sum(late) / len(late) == pytest.approx(decayed["pred_angle"], rel=0.02)
    assert plot_norm_traces(traces, tmp_path / "t.png").stat().st_size > 10_000


def test_projection_study_table_and_figure(tmp_path):
    from l2dynamics.report.figures import plot_projection_study
    from l2dynamics.studies.norms import projection_vs_l2

    table = projection_vs_l2((0.0, 0.1), base=TINY, steps=60, seeds=(0, 1))
    assert len(table) == 2 * 2 * 2 and set(table["mode"]) == {"plain", "projected"}
    assert table["test_error"].between(0, 1).all() and (table["status"] == "finished").all()
    # the projected runs differ from the plain ones once λ > 0 (the norm is held)
    plain = table[(table["mode"] == "plain") & (table["lam"] == 0.1)]["test_error"].tolist()
    held = table[(table["mode"] == "projected") & (table["lam"] == 0.1)]["test_error"].tolist()
    assert plain != held
    assert plot_projection_study(table, tmp_path / "p.png").stat().st_size > 10_000
