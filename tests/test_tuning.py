"""The λ-tuning comparison: every method runs through the store, and the accounting is right."""

import json
import math

import numpy as np
import pytest

from l2dynamics.studies.tuning import TuningTask, run_tuning_task, steps_to_reach

TASK = TuningTask("tiny", {"dataset": "digits", "n_train": 300, "model": "fc", "width": 16,
                           "lr": 0.1, "batch_size": 32, "norms_per_tensor": False},
                  budget=150, grid=(0.01, 0.1), seeds=(0, 1), evals=5)


def test_curve_shift_finds_a_known_shift():
    from l2dynamics.studies.tuning import curve_shift_rms

    lams = [1e-4 * 2 ** k for k in range(10)]
    ref = [{"lam": lam, "mean": math.log(lam)} for lam in lams]
    case = [{"lam": lam, "mean": math.log(lam / 2)} for lam in lams]  # the same curve at 2×λ
    rms = curve_shift_rms(ref, case, 1e-4, 4e-3)
    assert min(rms, key=rms.get) == 2.0 and rms[2.0] == pytest.approx(0.0, abs=1e-12)
    assert rms[1.0] == pytest.approx(math.log(2))


def test_steps_to_reach():
    steps, acc = np.array([0, 10, 20, 40]), np.array([0.1, 0.5, 0.7, 0.6])
    assert steps_to_reach(steps, acc, 0.5) == 10
    assert steps_to_reach(steps, acc, 0.65) == 20
    assert math.isnan(steps_to_reach(steps, acc, 0.8))


@pytest.mark.slow
def test_every_method_runs_and_is_accounted(tmp_path):
    pytest.importorskip("optuna")
    from l2dynamics.report.figures import plot_tuning

    variants = {"autol2 paper": {}, "autol2 floor": {"floor": True}}
    predictors = {"prediction λ_pred": {}, "prediction (k=2)": {"probe_k": 2.0}}
    res = run_tuning_task(TASK, tmp_path / "t.sqlite", workers=1, autol2_variants=variants,
                          predictors=predictors, cache_dir=tmp_path / "cache",
                          log=lambda m: None)
    methods = {m["name"].split(" (")[0]: m for m in res["methods"]}
    assert set(res["predictions"]) == set(predictors)
    probe = res["predictions"]["prediction (k=2)"]["attempt_table"][0]
    assert probe["steps"] == max(10, math.ceil(2.0 / (0.1 * probe["lam"])))
    grid = methods["grid best"]
    table = grid["table"]
    assert [row["lam"] for row in table] == [0.0, 0.01, 0.1]
    assert grid["mean"] == max(row["mean"] for row in table) == res["target"]
    assert grid["select_steps"] == 3 * 150 * 2
    pred = res["prediction"]
    if pred["ok"]:
        p = methods["prediction λ_pred"]
        assert p["lams"] == [pred["lam"]] * 2 and p["select_steps"] == pred["probe_steps"]
        # the floor holds: no run's final λ is below λ_pred (the runs start at 0.1 > λ_pred)
        assert all(x >= pred["lam"] * (1 - 1e-9) for x in methods["autol2 floor"]["lams"])
    opt = next(m for m in res["methods"] if m["name"].startswith("Optuna"))
    n = max(1, round((pred["probe_steps"] + 150) / 150))
    assert opt["n_trials"] == n and all(len(t) == n for t in opt["trial_lams"])
    assert all(0.01 <= lam <= 0.1 for t in opt["trial_lams"] for lam in t)
    ema = next(m for m in res["methods"] if m["name"].startswith("EMA"))
    assert ema["lams"][0] == pytest.approx(1 / (0.25 * 0.1 * 150))
    auto = methods["autol2 paper"]
    assert len(auto["steps_to_target"]) == 2 and len(auto["curves"]) == 2
    assert all(lam <= 0.1 for lam in auto["lams"])
    # a second call re-uses every stored run and the cached prediction: same numbers
    again = run_tuning_task(TASK, tmp_path / "t.sqlite", workers=1, autol2_variants=variants,
                            predictors=predictors, cache_dir=tmp_path / "cache",
                            log=lambda m: None)
    assert [m["finals"] for m in again["methods"]] == [m["finals"] for m in res["methods"]]
    assert plot_tuning(res, tmp_path / "tiny.png").stat().st_size > 10_000

    from l2dynamics.studies.tuning import run_phi_experiment

    phi = run_phi_experiment(TASK, {"c_eta": 3.0}, tmp_path / "t.sqlite", workers=1,
                             reference_best=res["best_lam"], log=lambda m: None)
    momentum, cosine = phi["cases"]
    # Φ: same λ for μ = 0.9 at η/10 (equal η/(1 − μ)); twice it under cosine (half of Φ);
    # the released code's c/(η·T) with the run's base η: ×10 and ×1
    assert momentum["shift_phi"] == pytest.approx(1.0)
    assert momentum["shift_naive"] == pytest.approx(10.0)
    assert cosine["shift_phi"] == pytest.approx(2.0, rel=0.01)
    assert cosine["shift_naive"] == pytest.approx(1.0)
    assert momentum["phi"]["lam"] == pytest.approx(3.0 / (0.1 * 150))
    assert [row["lam"] for row in momentum["grid"]] == [*TASK.lams, 0.2, 0.4]
    if momentum["best_lam"] > 0 and res["best_lam"] > 0:
        assert momentum["measured_shift"] == pytest.approx(momentum["best_lam"]
                                                           / res["best_lam"])
    else:  # a best λ of 0 has no ratio
        assert math.isnan(momentum["measured_shift"])


def test_digits_as_images():
    from l2dynamics import load_dataset, make_config
    from l2dynamics.train import Trainer

    flat = load_dataset("digits", seed=0)
    image = load_dataset("digits", seed=0, image=True)
    assert image.input_shape == (1, 8, 8) and flat.input_shape == (64,)
    assert np.array_equal(image.x_train.reshape(len(image.x_train), -1).numpy(),
                          flat.x_train.numpy())
    cfg = make_config(dataset="digits", data_options={"image": True}, model="cnn", width=4,
                      depth=2, steps=3, norms_per_tensor=False)
    assert Trainer(cfg).run().status == "finished"


def test_cli_tune(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    sets = [x for k, v in TASK.base.items() for x in ("--set", f"{k}={v}")]
    runner = CliRunner()
    res = runner.invoke(app, ["tune", "--budget", "150", *sets, "--grid", "0.01,0.1",
                              "--seeds", "0,1", "--no-optuna", "--store",
                              str(tmp_path / "t.sqlite"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "grid best" in res.output and "EMA rule" in res.output and "Optuna" not in res.output
    assert "the λ selector matches the grid's best" in res.output
    saved = json.loads((tmp_path / "out" / "tuning.json").read_text())
    saved = saved.get("tuning", saved)
    assert saved["selection_metric"] == "val_acc"  # tune holds out a validation split itself
    assert any(m["name"] == "selector (choose_lambda)" for m in saved["methods"])
    assert (tmp_path / "out" / "figures" / "tuning" / "tuning.png").is_file()
    assert (tmp_path / "out" / "tuning.json").is_file()
    for args, word in ((["--grid", "0"], "--grid"), (["--grid", "x"], "--grid"),
                       (["--budget", "0"], "budget"), (["-j", "0"], "workers")):
        bad = runner.invoke(app, ["tune", "--budget", "150", *sets, "--no-optuna", "--store",
                                  str(tmp_path / "bad.sqlite"), *args])
        assert bad.exit_code == 2 and word in bad.output, bad.output
        assert not (tmp_path / "bad.sqlite").exists()
