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
