"""The theory study: helpers on constructed curves, and a small end-to-end run."""

import math

import numpy as np
import pandas as pd
import pytest

from l2dynamics.analysis import fit_power_law
from l2dynamics.studies.theory import (
    TheoryStudy,
    characteristic_times,
    network_config,
    run_theory_study,
)


def test_characteristic_times_on_a_constructed_curve():
    t = np.linspace(0.0, 10.0, 1001)
    acc = np.exp(-((t - 3.0) ** 2))  # peak at 3, drops below peak-0.01 at 3 + 0.1
    loss = (t - 2.0) ** 2 * (t - 7.0) ** 2 + 0.1 * t  # two local minima, near 2 and 7
    times = characteristic_times(pd.DataFrame({"t": t, "test_acc": acc, "test_loss": loss}),
                                 window_delta=0.01)
    assert times["t_peak"] == pytest.approx(3.0)
    assert times["t_window_end"] == pytest.approx(3.0 + math.sqrt(-math.log(0.99)), abs=0.011)
    assert times["t_loss_min"] == pytest.approx(2.0, abs=0.02)
    assert times["t_loss_min_late"] == pytest.approx(7.0, abs=0.03)


def test_power_law_fit_recovers_the_exponent():
    lams = np.logspace(-2, 1, 8)
    fit = fit_power_law(lams, 0.7 * lams**-1.0)
    assert fit["slope"] == pytest.approx(-1.0) and fit["r2"] == pytest.approx(1.0)
    assert math.isnan(fit_power_law(lams[:2], lams[:2])["slope"])


def test_network_config_converts_flow_units():
    study = TheoryStudy(n_train=64)
    cfg = network_config(study, width=32, lam=2.0, lr_flow=1e-3, steps=10)
    assert cfg.lr == pytest.approx(64e-3) and cfg.lam == pytest.approx(2.0 / 64)
    assert cfg.batch_size == 64 and cfg.parameterization == "ntk" and cfg.bias is False


@pytest.mark.slow
def test_small_study_networks_approach_the_flow_with_width():
    study = TheoryStudy(n_train=32, n_test=200, widths=(64, 2048), lams=(3.0,), horizon=1.5,
                        record_points=10, kernel_points=8,
                        theory_lams=tuple(np.logspace(-1, 1, 4).tolist()))
    result = run_theory_study(study)
    comp = result.comparisons.set_index("width")
    # The wider network follows the infinite-width flow more closely (1/√width fluctuations).
    assert comp.loc[2048, "loss_rel_err_all_rms"] < comp.loc[64, "loss_rel_err_all_rms"]
    wide = result.networks[result.networks["width"] == 2048]
    early = wide[wide["lam_t"] <= 1.0]
    np.testing.assert_allclose(early["kernel_ratio"], early["kernel_ratio_theory"], rtol=0.15)
    assert set(result.theory_times["model"]) == {"deep", "linear"}


def test_theory_only_run_with_nngp_initial_outputs():
    base = dict(n_train=32, n_test=100, widths=(), theory_lams=(0.1, 1.0, 10.0))
    zero = run_theory_study(TheoryStudy(**base))
    nngp = run_theory_study(TheoryStudy(**base, theory_init="nngp", seed=1))
    assert zero.networks.empty and zero.comparisons.empty
    z = zero.theory_curves[zero.theory_curves["model"] == "deep"]
    n = nngp.theory_curves[nngp.theory_curves["model"] == "deep"]
    # Different starting outputs change the early curve; both decay to f = 0 (loss ½‖y‖²).
    assert not np.allclose(z["test_loss"].iloc[:5], n["test_loss"].iloc[:5])
    assert z["test_loss"].iloc[-1] == pytest.approx(0.5, abs=1e-6)
    assert n["test_loss"].iloc[-1] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="theory_init"):
        run_theory_study(TheoryStudy(**base, theory_init="random"))


def _networks_with_known_times(lams=(0.1, 0.3, 1.0, 3.0), seeds=(0, 1, 2)):
    """Network curves whose accuracy peaks at t = 2/λ (± seed jitter) and whose test loss is
    minimal at t = 0.5 whatever λ; the flow's accuracy peaks at t = 1 whatever λ."""
    rows, comps = [], []
    for lam in lams:
        for seed in seeds:
            jitter = 1 + 0.03 * (seed - 1)
            t = np.geomspace(1e-3, 20.0 / lam, 400)
            x = np.log(t)
            rows.append(pd.DataFrame({
                "width": 512, "lam": lam, "seed": seed, "t": t, "lam_t": lam * t,
                "net_test_acc": 0.5 + 0.3 * np.exp(-((x - np.log(2 * jitter / lam)) ** 2)),
                "flow_test_acc": 0.5 + 0.3 * np.exp(-((x - np.log(jitter)) ** 2)),
                "net_test_loss": 1 + (x - np.log(0.5 * jitter)) ** 2,
                "flow_test_loss": 1 + (x - np.log(0.5)) ** 2}))
            comps.append({"width": 512, "lam": lam, "seed": seed,
                          "lazy_until_lam_t": 1.5 * jitter})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(comps)


def test_network_times_over_seeds_fits_and_verdict():
    from l2dynamics.studies.theory import (
        network_time_fits,
        network_time_summary,
        network_times,
        time_verdict,
    )

    networks, comparisons = _networks_with_known_times()
    times = network_times(networks, comparisons, TheoryStudy(window_delta=0.05))
    assert len(times) == 4 * 3 * 2 and set(times["source"]) == {"network", "flow"}
    net = times[times["source"] == "network"]
    np.testing.assert_allclose(net["t_peak"] * net["lam"], 2 * (1 + 0.03 * (net["seed"] - 1)),
                               rtol=0.03)
    np.testing.assert_allclose(net["t_lazy_end"] * net["lam"],
                               1.5 * (1 + 0.03 * (net["seed"] - 1)))
    assert times.loc[times["source"] == "flow", "t_lazy_end"].isna().all()
    summary = network_time_summary(times)
    row = summary[(summary["source"] == "network") & (summary["time"] == "t_peak")
                  & (summary["lam"] == 1.0)].iloc[0]
    assert row["seen"] == 3 and row["low"] < row["mean"] < row["high"]
    assert row["mean"] == pytest.approx(2.0, rel=0.03)
    fits = network_time_fits(times).set_index(["source", "time"])
    assert fits.loc[("network", "t_peak"), "slope"] == pytest.approx(-1.0, abs=0.03)
    assert fits.loc[("network", "t_peak"), "verdict"] == "holds"
    assert fits.loc[("flow", "t_peak"), "verdict"] == "flat"
    assert fits.loc[("network", "t_loss_min"), "verdict"] == "flat"
    assert fits.loc[("network", "t_lazy_end"), "verdict"] == "holds"
    verdict = time_verdict(network_time_fits(times)).set_index("time")
    assert "∝ 1/λ" in verdict.loc["accuracy peak", "network"]
    assert "independent of λ" in verdict.loc["accuracy peak", "flow"]
    assert verdict.loc["departure from the lazy regime", "flow"] == "—"


def test_times_beyond_the_horizon_are_censored():
    from l2dynamics.studies.theory import network_times

    networks, comparisons = _networks_with_known_times(lams=(1.0,), seeds=(0,))
    networks = networks[networks["t"] <= 1.0]  # the network peaks at t = 2: not seen
    comparisons["lazy_until_lam_t"] = np.nan  # never left the lazy regime
    times = network_times(networks, comparisons, TheoryStudy()).set_index("source")
    assert times.loc["network", "censored_t_peak"]
    assert times.loc["network", "censored_t_lazy_end"]
    assert not times.loc["network", "censored_t_loss_min"]
