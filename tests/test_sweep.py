import json

import numpy as np
import pytest
from typer.testing import CliRunner

from l2dynamics.cli import app
from l2dynamics.errors import ConfigError
from l2dynamics.store import RunStore
from l2dynamics.sweep import Budget, load_sweep, run_sweep

BASE = {"dataset": "digits", "model": "fc", "width": 16, "steps": 40, "lr": 0.1,
        "eval_per_decade": 3, "norms_per_tensor": False}
SPEC = {"name": "t", "base": BASE, "grid": {"lam": [0.0, 1e-2], "seed": [0, 1]}}


def _stored(path):
    with RunStore(path, create=False) as st:
        return st.list_runs()


def test_expansion_order_count_and_names():
    sweep = load_sweep({"name": "g", "base": {"dataset": "digits"},
                        "grid": {"lam": [0, 1e-3, 1e-2], "seed": [0, 1]}})
    configs = sweep.configs()
    assert len(configs) == len(sweep) == 6
    assert [(c.lam, c.seed) for c in configs] == [(0, 0), (0, 1), (1e-3, 0), (1e-3, 1),
                                                  (1e-2, 0), (1e-2, 1)]
    assert configs[3].name == "g lam=0.001 seed=1"
    assert all(c.dataset == "digits" for c in configs)
    # nested sections in base are accepted
    nested = load_sweep({"base": {"optim": {"name": "adam", "lr": 0.01}}, "grid": {"lam": [0]}})
    assert nested.configs()[0].optimizer == "adam" and nested.configs()[0].lr == 0.01


def test_budget_inverse_lam():
    phys = Budget(rule="inverse_lam", k=0.5, physical=True, min_steps=20, max_steps=200)
    assert phys.steps(0.0, 0.1) == 200  # λ = 0 → max_steps
    assert phys.steps(0.1, 0.1) == 50  # 0.5 / (0.1·0.1)
    assert phys.steps(0.03, 0.1) == 167  # ceil(166.67)
    assert phys.steps(1.0, 0.1) == 20  # 5 → clipped up
    assert phys.steps(1e-3, 0.1) == 200  # 5000 → clipped down
    plain = Budget(rule="inverse_lam", k=0.5, physical=False, min_steps=20, max_steps=200)
    assert plain.steps(0.01, 0.1) == 50  # 0.5 / 0.01, lr ignored
    assert plain.steps(0.003, 0.1) == 167
    assert Budget().steps(0.1, 0.1) is None  # fixed: keep the config's steps
    sweep = load_sweep({"base": {"dataset": "digits", "lr": 0.1},
                        "grid": {"lam": [0, 0.1, 1.0]},
                        "budget": {"rule": "inverse_lam", "k": 0.5, "min_steps": 20,
                                   "max_steps": 200}})
    assert [c.steps for c in sweep.configs()] == [200, 50, 20]


@pytest.mark.parametrize("spec, field", [
    ({"grid": {"lam": [0]}, "extra": 1}, "extra"),
    ({"grid": {"lam": []}}, "grid.lam"),
    ({"grid": {"lam": 0.1}}, "grid.lam"),
    ({"grid": {}}, "grid"),
    ({"base": {}}, "grid"),
    ({"grid": {"lamda": [0]}}, "grid.lamda"),
    ({"base": {"lam": 0}, "grid": {"lam": [0]}}, "conflicts with base.lam"),
    ({"base": {"lamda": 0}, "grid": {"lam": [0]}}, "lamda"),
    ({"grid": {"lam": [-1]}}, "lam"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "sqrt"}}, "budget.rule"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "inverse_lam", "k": 0}}, "budget.k"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "inverse_lam", "k": -1}}, "budget.k"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "inverse_lam", "min_steps": 0}},
     "budget.min_steps"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "inverse_lam", "min_steps": 300,
                                       "max_steps": 200}}, "budget.min_steps"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "inverse_lam", "kk": 1}}, "budget.kk"),
    ({"grid": {"lam": [0]}, "budget": {"rule": "inverse_lam", "physical": "yes"}},
     "budget.physical"),
    ({"grid": {"lam": [0], "steps": [10]}, "budget": {"rule": "inverse_lam"}}, "grid.steps"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as info:
        load_sweep(spec)
    assert "\n" not in str(info.value)


def test_sweep_runs_skips_and_completes_partial(tmp_path):
    store = tmp_path / "s.sqlite"
    sweep = load_sweep(SPEC)
    configs = sweep.configs()
    # a partial sweep (as if it crashed after two runs)
    first = run_sweep(sweep, store, configs=configs[:2])
    assert (first.finished, first.skipped) == (2, 0)
    calls = []
    rest = run_sweep(sweep, store, progress=lambda done, total: calls.append((done, total)))
    assert (rest.total, rest.skipped, rest.finished, rest.failed) == (4, 2, 2, 0)
    assert calls[-1] == (4, 4)
    records = _stored(store)
    assert len(records) == 4 and all(r["status"] == "finished" for r in records)
    assert sorted(r["name"] for r in records) == sorted(c.name for c in configs)
    again = run_sweep(sweep, store)
    assert (again.skipped, again.finished, again.run_ids) == (4, 0, [])
    assert len(_stored(store)) == 4
    # an identical config that ended in any other status does not count as done
    cfg = configs[0].replace(seed=7)
    with RunStore(store) as st:
        rid = st.create_run(cfg.to_dict(), steps_total=cfg.steps, seed=7, device="cpu")
        st.finish_run(rid, "failed", steps_done=0, wall_seconds=0.0)
    redo = run_sweep(sweep, store, configs=[cfg])
    assert redo.finished == 1 and redo.skipped == 0


def test_diverging_run_is_recorded_and_sweep_continues(tmp_path):
    store = tmp_path / "d.sqlite"
    base = {k: v for k, v in BASE.items() if k != "lr"}
    spec = {"name": "div", "base": {**base, "loss": "mse", "lam": 0.0},
            "grid": {"lr": [1e4, 0.1]}}
    result = run_sweep(spec, store)
    assert (result.diverged, result.finished, result.failed) == (1, 1, 0)
    by_lr = {r["config"]["lr"]: r["status"] for r in _stored(store)}
    assert by_lr == {1e4: "diverged", 0.1: "finished"}
    assert run_sweep(spec, store).skipped == 2  # diverged runs are done, not retried


def test_failing_run_counts_as_failed_and_sweep_continues(tmp_path, monkeypatch):
    from l2dynamics.train.loop import Trainer

    real = Trainer.run

    def flaky(self):
        if self.cfg.seed == 0:
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(Trainer, "run", flaky)
    store = tmp_path / "f.sqlite"
    result = run_sweep({"base": BASE, "grid": {"seed": [0, 1]}}, store,
                       engine="sequential")
    assert (result.failed, result.finished) == (1, 1)
    assert "boom" in result.errors[0]


def test_workers_match_sequential(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    seq = run_sweep(SPEC, a, workers=1)
    par = run_sweep(SPEC, b, workers=2)
    assert seq.finished == par.finished == 4

    def metrics(path):
        return {json.dumps(r["config"], sort_keys=True): r["summary"]["best_test_acc"]
                for r in _stored(path)}

    assert metrics(a) == metrics(b)


def test_cli_sweep(tmp_path):
    import yaml

    runner = CliRunner()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "grid": {"lam": [0.0, 1e-2]}}))
    store = tmp_path / "c.sqlite"
    res = runner.invoke(app, ["sweep", str(spec), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "2 finished" in res.output and "0 skipped" in res.output
    res = runner.invoke(app, ["sweep", str(spec), "--store", str(store)])
    assert res.exit_code == 0 and "2 skipped" in res.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": BASE, "grid": {"lam": []}}))
    fresh = tmp_path / "none.sqlite"
    res = runner.invoke(app, ["sweep", str(bad), "--store", str(fresh)])
    assert res.exit_code == 2
    assert "grid.lam" in res.output and len(res.output.strip().splitlines()) == 1
    assert not fresh.exists()
    res = runner.invoke(app, ["sweep", str(tmp_path / "missing.yaml"), "--store", str(fresh)])
    assert res.exit_code == 2 and not fresh.exists()


def test_cli_sweep_data_dir_reaches_every_run(tmp_path):
    import yaml
    from tests.test_data import make_mnist

    make_mnist(tmp_path / "mnist")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "m", "base": {**BASE, "dataset": "mnist",
                                                          "steps": 5},
                                    "grid": {"lam": [0.0, 1e-2]}}))
    store = tmp_path / "m.sqlite"
    runner = CliRunner()
    missing = runner.invoke(app, ["sweep", str(spec), "--store", str(store), "--data-dir",
                                  str(tmp_path / "nowhere")])
    # the sweep's up-front check loads each dataset once: missing files refuse the whole sweep
    # (one line, exit 2) before the store exists, instead of failing run by run
    assert missing.exit_code == 2 and "nowhere" in missing.output, missing.output
    assert not store.exists()
    res = runner.invoke(app, ["sweep", str(spec), "--store", str(store), "--data-dir",
                              str(tmp_path / "mnist")])
    assert res.exit_code == 0 and "2 finished" in res.output, res.output
    runs = _stored(store)
    assert {r["config"]["data_dir"] for r in runs if r["status"] == "finished"} == {
        str(tmp_path / "mnist")}


def _series_by_config(path):
    """Stored metric series keyed by canonical config, wall-clock metrics left out."""
    from l2dynamics.sweep import canonical

    with RunStore(path, create=False) as st:
        runs = st.list_runs()
        series = st.series([r["id"] for r in runs])
    out = {}
    for rec in runs:
        mine = series[(series["run_id"] == rec["id"]) & (series["name"] != "wall_time")]
        out[canonical(rec["config"])] = (rec["status"], mine.sort_values(["name", "step"])[
            ["name", "step", "value"]].reset_index(drop=True))
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_vectorized_engine_stores_what_the_sequential_one_does(tmp_path, workers):
    """A λ × η × seed grid with a 1/λ budget (members of different lengths): one ensemble
    per architecture, every member its own stored run, the same numbers (float64)."""
    spec = {"name": "e", "base": {**BASE, "dtype": "float64", "width": 24},
            "grid": {"lam": [1e-3, 1e-2], "lr": [0.05, 0.1], "seed": [0, 1]},
            "budget": {"rule": "inverse_lam", "k": 0.2, "min_steps": 10, "max_steps": 60}}
    spec["base"].pop("steps")
    spec["base"].pop("lr")
    seq, vec = tmp_path / "seq.sqlite", tmp_path / "vec.sqlite"
    assert run_sweep(spec, seq, engine="sequential").finished == 8
    from l2dynamics.sweep import engine_units

    assert [len(u) for u in engine_units(load_sweep(spec).configs(), "vectorized")] == [8]
    res = run_sweep(spec, vec, engine="vectorized", workers=workers)
    assert res.finished == 8 and res.failed == 0
    a, b = _series_by_config(seq), _series_by_config(vec)
    assert a.keys() == b.keys()
    for key, (status, frame) in a.items():
        assert b[key][0] == status
        assert frame[["name", "step"]].equals(b[key][1][["name", "step"]])
        np.testing.assert_allclose(b[key][1]["value"], frame["value"], rtol=1e-9, atol=1e-12)
    # re-running skips all of it, whatever the engine
    assert run_sweep(spec, vec, engine="vectorized").skipped == 8


def test_engine_choice_and_refusals(tmp_path):
    from l2dynamics.sweep import engine_units

    configs = load_sweep({"base": {**BASE, "width": 16},
                          "grid": {"lam": [0, 1e-3, 1e-2], "depth": [1, 2]}}).configs()
    # two architectures (depth) → two ensembles of 3; chunks of at most max_ensemble
    assert [len(u) for u in engine_units(configs, "vectorized")] == [3, 3]
    assert [len(u) for u in engine_units(configs, "vectorized", 2)] == [2, 1, 2, 1]
    assert [len(u) for u in engine_units(configs, "sequential")] == [1] * 6
    # auto: tiny fc models on CPU are where the ensemble measured faster
    assert [len(u) for u in engine_units(configs, "auto")] == [3, 3]
    bn = load_sweep({"base": {**BASE, "norm": "bn"}, "grid": {"lam": [0, 1e-3]}})
    assert [len(u) for u in engine_units(bn.configs(), "auto")] == [1, 1]
    with pytest.raises(ConfigError, match="cannot train as one ensemble"):
        run_sweep(bn, tmp_path / "x.sqlite", engine="vectorized")
    assert not (tmp_path / "x.sqlite").exists()
    with pytest.raises(ConfigError, match="engine"):
        run_sweep(bn, tmp_path / "x.sqlite", engine="fast")
    runner = CliRunner()
    path = tmp_path / "bn.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"base": {**BASE, "norm": "bn"}, "grid": {"lam": [0, 1]}}))
    res = runner.invoke(app, ["sweep", str(path), "--store", str(tmp_path / "y.sqlite"),
                              "--engine", "vectorized"])
    assert res.exit_code == 2 and "running_mean" in res.output
    assert len(res.output.strip().splitlines()) == 1
