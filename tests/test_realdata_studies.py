"""The real-data studies (``fmnist_tstar``, ``fmnist_tuning``, ``fmnist_cnn_bn``) and the rule
they all open with, "how much L2 matters": yes and no controls on synthetic results, and a tiny
end-to-end run of the CNN ± BN study on generated Fashion-MNIST files."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from l2dynamics.analysis.l2_effect import groups_by_lam, l2_effect_claim
from l2dynamics.studies.base import make_params
from l2dynamics.studies.registry import get_study
from l2dynamics.studies.suite import load_suite


def _seeds(mean: float, sd: float, n: int = 5, seed: int = 0) -> list[float]:
    return list(mean + sd * np.random.default_rng(seed).standard_normal(n))


# --- "L2 helps": the rule and its controls ------------------------------------------------------


def test_l2_effect_says_yes_when_a_lambda_clearly_beats_zero():
    groups = {0.0: _seeds(0.84, 0.002), 1e-3: _seeds(0.85, 0.002, seed=1),
              1e-2: _seeds(0.87, 0.002, seed=2)}
    claim = l2_effect_claim(groups)
    assert claim.verdict == "holds"
    assert "λ = 0.01" in claim.claim
    points = re.search(r"([+-][0-9.]+) \[([+-][0-9.]+), ([+-][0-9.]+)\] points", claim.measured)
    effect, low, high = (float(x) for x in points.groups())  # stated in points, with interval
    assert 2.5 < effect < 3.5 and low < effect < high
    assert "Bonferroni" in claim.measured and "n = 5" in claim.ci


def test_l2_effect_says_no_when_zero_is_best_and_undetermined_in_noise():
    worse = {0.0: _seeds(0.86, 0.002), 1e-3: _seeds(0.84, 0.002, seed=1)}
    assert l2_effect_claim(worse).verdict == "does not hold"
    # the same mean with seeds too noisy to tell: neither yes nor no
    noisy = {0.0: _seeds(0.85, 0.03), 1e-3: _seeds(0.855, 0.03, seed=1)}
    assert l2_effect_claim(noisy).verdict == "undetermined"


def test_l2_effect_without_a_zero_arm_or_seeds_is_undetermined():
    assert l2_effect_claim({1e-3: [0.8, 0.81]}).verdict == "undetermined"
    assert l2_effect_claim({0.0: [0.8, 0.81]}).verdict == "undetermined"
    assert l2_effect_claim({0.0: [0.8], 1e-3: [0.9]}).verdict == "undetermined"  # 1 seed


def test_selection_among_many_lambdas_widens_the_interval():
    zero = _seeds(0.85, 0.004)
    one = l2_effect_claim({0.0: zero, 1e-3: _seeds(0.857, 0.004, seed=1)})
    many = l2_effect_claim({0.0: zero, 1e-3: _seeds(0.857, 0.004, seed=1),
                            **{lam: _seeds(0.80, 0.004, seed=k)
                               for k, lam in enumerate((2e-3, 4e-3, 8e-3, 1.6e-2), 2)}})

    def width(claim):
        low, high = (float(x) for x in claim.ci.split("[")[-1].rstrip("]").split(","))
        return high - low
    assert width(many) > width(one)


def test_groups_by_lam_reads_a_runs_table_at_one_learning_rate():
    runs = pd.DataFrame({"lam": [0.0, 0.0, 1e-3, 1e-3], "lr": [0.1, 0.2, 0.1, 0.1],
                         "final_acc": [0.8, 0.7, 0.85, 0.86]})
    assert groups_by_lam(runs, "final_acc", lr=0.1) == {0.0: [0.8], 1e-3: [0.85, 0.86]}


# --- the studies' claims on synthetic results ---------------------------------------------------


def test_tuning_opens_with_the_l2_effect_and_judges_the_ema_rule():
    from l2dynamics.studies.study_tuning import tuning_claims

    def method(name, finals, **extra):
        return {"name": name, "finals": finals, "mean": float(np.mean(finals)), "lams": [1e-2],
                **extra}
    table = [{"lam": 0.0, "finals": _seeds(0.84, 0.002)},
             {"lam": 1e-2, "finals": _seeds(0.87, 0.002, seed=1)}]
    grid = method("grid best", table[1]["finals"], table=table)
    res = {"methods": [grid, method("EMA rule (τ = 0.25·run)", _seeds(0.80, 0.002, seed=2))],
           "predictions": [], "prediction": {"ok": False, "message": "no"}, "budget": 3000,
           "lam_ema": 0.05, "best_lam": 1e-2}
    claims = tuning_claims(res, [])
    assert claims[0].claim.startswith("(T = 3000 steps) L2 helps") and \
        claims[0].verdict == "holds"
    ema = [c for c in claims if c.claim.startswith("EMA rule")]
    assert len(ema) == 1 and ema[0].verdict == "does not hold"  # 7 points worse than the grid


def _tstar_rows(steps_of, lams=(0.0, 1e-2, 2e-2), lr=0.2, gain=0.02):
    rows = []
    for lam in lams:
        accs = _seeds(0.84 + gain * (lam > 0), 0.002, n=3, seed=int(lam * 1e4))
        for seed, acc in enumerate(accs):
            rows.append({"lam": lam, "lr": lr, "seed": seed, "steps": steps_of(lam),
                         "final_acc": acc})
    return pd.DataFrame(rows)


def test_tstar_states_the_l2_effect_only_where_budgets_are_equal():
    from l2dynamics.studies.study_tstar import TstarPart, l2_effect_claims

    equal = l2_effect_claims(TstarPart("(every λ at 8000 steps) ", _tstar_rows(lambda _: 8000)))
    assert len(equal) == 1 and equal[0].verdict == "holds"
    assert equal[0].claim.startswith("(every λ at 8000 steps) (η=0.2, 8000 steps) L2 helps")
    inverse = _tstar_rows(lambda lam: 8000 if lam == 0 else int(8 / (0.2 * lam)))
    assert l2_effect_claims(TstarPart("", inverse)) == []  # finals at unequal budgets


def _cnn_runs(iso_spread: dict[str, float]) -> pd.DataFrame:
    """Runs of the CNN study's design: on the equal-ηλ line the final accuracy moves by
    `iso_spread[norm]` per doubling of η; λ > 0 beats λ = 0 by 2 points."""
    params = make_params(get_study("fmnist_cnn_bn").Params, {})
    rows = []
    for norm in ("none", "bn"):
        for lr, lam in params.points():
            on_iso = np.isclose(lr * lam, params.lr * params.iso_lam)
            base = 0.85 + 0.02 * (lam > 0)
            if on_iso:
                base += iso_spread[norm] * np.log2(lr / params.lr)
            for seed in params.seeds:
                t = 3.0 / (lr * lam / 0.1) if lam else 1e9
                rows.append({"norm": norm, "lr": lr, "lam": lam, "seed": seed, "steps": 1000,
                             "status": "finished", "momentum": 0.9, "fits_train": True,
                             "final_acc": base + 0.001 * np.sin(7 * seed + 100 * lam),
                             "peak_acc": base, "test_noise_se": 0.003, "peak_at_end": False,
                             "tstar_onset": t, "c_onset": lam * t, "c_eta_onset": lam * t,
                             "censored_onset": lam == 0, "budget_checks_onset": 2,
                             "budget_dependent_onset": False})
    return pd.DataFrame(rows)


def test_cnn_bn_claims_follow_the_design():
    from l2dynamics.studies.study_cnn_bn import cnn_bn_claims

    params = make_params(get_study("fmnist_cnn_bn").Params, {})
    iso = [(params.lr, params.iso_lam)] + [(params.lr * f, params.iso_lam / f)
                                           for f in params.iso_factors]
    claims = cnn_bn_claims(_cnn_runs({"none": 0.03, "bn": 0.0}), params.lr, iso, "onset")
    by_start = {c.claim: c for c in claims}
    l2 = [c for c in claims if "L2 helps" in c.claim]
    assert [c.claim[:8] for c in claims[:2]] == ["(no BN) ", "(BN) (η="]  # L2 effect first
    assert all(c.verdict == "holds" for c in l2)
    iso_claims = {c.claim.split(" ")[0] + c.claim.split(" ")[1]: c.verdict
                  for c in claims if "effective learning rate" in c.claim}
    assert iso_claims == {"(noBN)": "does not hold", "(BN)λ": "holds"}
    slopes = [c for c in by_start.values() if "t* ∝ 1/λ" in c.claim]
    assert len(slopes) == 2


def test_cnn_bn_points_hold_the_line_and_the_equal_product_runs():
    params = make_params(get_study("fmnist_cnn_bn").Params, {"iso_factors": [0.5, 2.0]})
    points = params.points()
    assert points[0] == (params.lr, 0.0)
    products = {round(lr * lam, 12) for lr, lam in points if lam and lr != params.lr}
    assert products == {round(params.lr * params.iso_lam, 12)}
    assert len(points) == len(set(points)) == 1 + len(params.lams) + 2


# --- suites -------------------------------------------------------------------------------------


def test_the_mini_suite_opens_with_the_real_data_studies():
    keys = [entry.key for entry in load_suite("mini").entries]
    assert keys[:3] == ["fmnist_tstar", "fmnist_tuning", "fmnist_cnn_bn"]
    realdata = [entry.study for entry in load_suite("realdata").entries]
    assert set(realdata) == {"fmnist_tstar", "fmnist_tuning", "fmnist_cnn_bn"}


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_cnn_bn_study_runs_end_to_end_on_generated_files(tmp_path, monkeypatch):
    from tests.test_data import make_mnist
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    folder = tmp_path / "data" / "fashion_mnist"
    make_mnist(folder, n_train=200, n_test=100)
    monkeypatch.setenv("L2DYNAMICS_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "study", "fmnist_cnn_bn", "--out", str(out), "--set", "steps=6", "--set", "seeds=[0, 1]",
        "--set", "lams=[0.02]", "--set", "iso_factors=[2.0]", "--set", "base.n_train=100",
        "--set", "base.n_test=50", "--set", "base.eval_train_size=50"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    claims = [c["claim"] for c in summary["claims"]]
    assert "L2 helps" in claims[0] and "L2 helps" in claims[1]
    assert (out / "figures" / "fmnist_cnn_bn" / "cnn_bn.png").stat().st_size > 0
    runs = pd.read_csv(out / "cnn_bn_runs.csv")
    assert len(runs) == 2 * 3 * 2  # norms × (λ = 0, λ, one equal-ηλ run) × seeds


# --- the paper suite's Fashion-MNIST entries ----------------------------------------------------


def test_paper_suite_fashion_entries_need_no_data_dir_and_build_valid_configs(tmp_path):
    from l2dynamics.errors import ConfigError
    from l2dynamics.studies.base import Context
    from l2dynamics.studies.reproduce import reproduce
    from l2dynamics.studies.suite import entry_reads_user_files, paper_spec, resolve_study
    from l2dynamics.sweep import load_sweep

    suite = load_suite("paper")
    fashion = [e for e in suite.entries if e.key.startswith("fmnist_")]
    assert {e.key for e in fashion} == {"fmnist_fc_tstar", "fmnist_cnn_tstar",
                                        "fmnist_wrn_tstar", "fmnist_wrn_fig1a"}
    ctx = Context(tmp_path, tmp_path / "runs.sqlite", steps_scale=0.01, subset=100, fast=False)
    for entry in fashion:
        assert not entry_reads_user_files(entry)
        _, _, params = resolve_study(entry.key, "paper")
        configs = load_sweep(paper_spec(ctx, params.config)).configs()
        assert configs and all(c.dataset == "fashion_mnist" and c.n_train == 100
                               for c in configs)
    wrn = load_sweep(paper_spec(ctx, "wrn_fmnist_tstar")).configs()
    assert {(c.model, c.depth, c.width) for c in wrn} == {("wrn", 28, 10)}
    # MNIST and CIFAR-10 entries still need --data-dir, said before anything runs
    with pytest.raises(ConfigError, match="--data-dir"):
        reproduce("paper", tmp_path / "r", only=["tstar"], log=lambda msg: None)
    assert not (tmp_path / "r").exists()


# --- test noise at the point where the peak was measured ----------------------------------------


def test_peak_noise_uses_the_test_size_of_the_peak_point(tmp_path):
    from l2dynamics.analysis.tstar import tstar_table
    from l2dynamics.analysis.verdicts import test_noise_se
    from l2dynamics.store import RunStore

    steps = [0, 10, 100, 1000]
    acc = [0.1, 0.6, 0.9, 0.8]  # the peak is at an intermediate point
    with RunStore(tmp_path / "s.sqlite") as st:
        ids = []
        for sizes in ([2000, 2000, 2000, 10000], None):  # with test_n, and a run from before it
            cfg = {"lam": 1e-3, "lr": 0.1, "seed": 0, "steps": 1000, "n_test": 10000}
            run = st.create_run(cfg, steps_total=1000, seed=0, device="cpu")
            rows = [(s, 0.1 * s, "test_acc", a) for s, a in zip(steps, acc, strict=True)]
            rows += [(s, 0.1 * s, "train_acc", 1.0) for s in steps]
            if sizes:
                rows += [(s, 0.1 * s, "test_n", n) for s, n in zip(steps, sizes, strict=True)]
            st.add_metrics(run, rows)
            st.finish_run(run, "finished", steps_done=1000, wall_seconds=1.0,
                          summary={"n_test": 10000})
            ids.append(run)
        table = tstar_table(st, ids).set_index("run_id")
    assert table.loc[ids[0], "test_noise_se"] == pytest.approx(test_noise_se(0.9, 2000))
    assert table.loc[ids[1], "test_noise_se"] == pytest.approx(test_noise_se(0.9, 10000))


def test_the_engine_rule_knows_fashion_mnist_input_size():
    from l2dynamics.train import choose_engine

    # 2×32 on 784 inputs: 26 k parameters × batch 128 = 3.4e6 multiply-adds ≤ the CPU limit; on
    # the 3×32×32 fallback shape it would be 12.7e6, and sequential
    base = {"dataset": "fashion_mnist", "model": "fc", "width": 32, "depth": 2, "steps": 10,
            "batch_size": 128}
    assert choose_engine([{**base, "seed": 0}, {**base, "seed": 1}], "cpu") == "vectorized"
