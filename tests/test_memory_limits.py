"""Resource limits: the big allocations are estimated first and refused with a clear error (the
estimate, the limit and the knob to turn) instead of an out-of-memory crash.

The limit is monkeypatched low (or set with $L2DYNAMICS_MEMORY_LIMIT) so that ordinary small
problems are refused; and huge problems are refused against the real limit in milliseconds, which
shows the check runs before the allocation (allocating would crash or take minutes).
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from l2dynamics import resources as memory
from l2dynamics.cli import app
from l2dynamics.config import make_config
from l2dynamics.errors import ConfigError, ResourceError
from l2dynamics.models import build_model
from l2dynamics.probes import empirical_ntk, fc_empirical_ntk
from l2dynamics.resources import (
    MEMORY_ENV,
    activation_counts,
    available_memory,
    check_memory,
    eval_points,
    format_bytes,
    kernel_memory,
    parse_bytes,
)
from l2dynamics.store import RunStore
from l2dynamics.studies.theory import TheoryStudy, run_theory_study
from l2dynamics.theory import fc_kernels
from l2dynamics.train import EnsembleTrainer, Trainer
from l2dynamics.train.footprint import run_memory

TINY = dict(dataset="digits", n_train=100, n_test=50, width=16, depth=2, steps=5)


@pytest.fixture(autouse=True)
def _no_env_limit(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)


@pytest.fixture
def low_limit(monkeypatch):
    """Pretend only 64 KiB of memory is available, on every device."""
    monkeypatch.setattr(memory, "available_memory",
                        lambda device=None: (64 * 1024, "test limit"))


def _assert_clear(err: ResourceError, *knob: str) -> None:
    msg = str(err)
    assert "\n" not in msg and re.search(r"needs ≈ [\d.]+ [KMGT]?i?B", msg), msg
    assert "64.0 KiB is available (test limit)" in msg or "is available (" in msg, msg
    assert MEMORY_ENV in msg
    for k in knob:
        assert k in msg, msg


# --- the limit --------------------------------------------------------------------------------


def test_available_memory_is_measured_or_set(monkeypatch):
    free, source = available_memory()
    assert free is not None and 0 < free < 2**50 and source
    monkeypatch.setenv(MEMORY_ENV, "8G")
    assert available_memory() == (8 * 2**30, f"${MEMORY_ENV}")
    monkeypatch.setenv(MEMORY_ENV, "off")
    assert available_memory()[0] is None
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match=f"{MEMORY_ENV}='lots' is not a size"):
        available_memory()


def test_host_fallbacks_and_cgroup_cap(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psutil", None)  # "not installed": /proc/meminfo or sysconf
    free, source = memory._host_available()
    assert free and free > 0 and ("MemAvailable" in source or "sysconf" in source)
    monkeypatch.setattr(memory, "_cgroup_available", lambda: 12345)
    assert available_memory() == (12345, "memory left under the cgroup limit")


def test_cuda_limit_is_the_device_free_memory():
    free, source = available_memory("cuda")
    if torch.cuda.is_available():
        assert free == torch.cuda.mem_get_info()[0] and "cuda" in source
    else:
        assert free is None


@pytest.mark.parametrize("text, expected", [("1000", 1000), ("1K", 1024), ("1.5M", 3 * 2**19),
                                            ("2GiB", 2 * 2**30), ("3 t", 3 * 2**40),
                                            ("off", None)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_format_bytes():
    assert [format_bytes(b) for b in (512, 1536, 3 * 2**30)] == ["512 B", "1.5 KiB", "3.0 GiB"]


def test_check_memory_names_estimate_limit_and_knob(low_limit):
    check_memory(1000, what="a small thing")  # fits: silent
    with pytest.raises(ResourceError) as info:
        check_memory(kernel_memory(1000, 1000, matrices=2), what="computing the kernels")
    _assert_clear(info.value, "computing the kernels needs ≈ 15.3 MiB",
                  "fewer points (now 1000 × 1000)")


# --- the estimates ----------------------------------------------------------------------------


def test_run_estimate_counts_the_real_parameters_and_scales_with_members():
    cfg = make_config(TINY, optimizer="adam")
    trainer = Trainer(cfg)
    params = sum(p.numel() for p in trainer.model.parameters())
    one, host = run_memory(cfg, trainer.data)
    copies = 3 + 2  # θ, ∇θ, one temporary; Adam's two moments
    assert one.parts["parameters and optimizer state"] == params * 4 * copies
    assert one.parts["activations"] > 0 and host.parts["metric history"] > 0
    eight, host8 = run_memory(cfg, trainer.data, members=8)
    assert eight.parts["parameters and optimizer state"] == 8 * params * 4 * copies
    assert eight.parts["activations"] == 8 * one.parts["activations"]
    assert host8.total == 8 * host.total
    f64, _ = run_memory(cfg.replace(dtype="float64"), trainer.data)
    assert f64.parts["parameters and optimizer state"] == 2 * one.parts[
        "parameters and optimizer state"]


def test_activation_counts_of_an_fc_net():
    model = build_model("fc", input_shape=(64,), num_outputs=10, width=32, depth=2)
    total, largest = activation_counts(model, (64,))
    assert total >= 32 + 32 + 10 and largest >= 32


def test_eval_points_bounds_the_clock():
    from l2dynamics.train import eval_steps

    for steps, per_decade, every in ((1, 10, 0), (1000, 10, 0), (10**5, 40, 0), (5000, 10, 7)):
        assert eval_points(steps, per_decade, every) >= len(eval_steps(steps, per_decade, every))


# --- refusals, before anything is allocated ---------------------------------------------------


def test_trainer_refused_under_a_low_limit_and_stores_nothing(low_limit, tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        with pytest.raises(ResourceError) as info:
            Trainer(make_config(TINY), store=store)
        assert store.list_runs() == []
    _assert_clear(info.value, "this run needs")


def test_ensemble_refused_under_a_low_limit(low_limit):
    cfgs = [make_config(TINY, lam=lam) for lam in (0.0, 1e-3, 1e-2)]
    with pytest.raises(ResourceError) as info:
        EnsembleTrainer(cfgs)
    _assert_clear(info.value, "an ensemble of 3 runs needs", "fewer members per ensemble (now 3")


def test_kernels_refused_under_a_low_limit(low_limit):
    x = torch.randn(200, 8)
    with pytest.raises(ResourceError) as info:
        fc_kernels(x, depth=2)
    _assert_clear(info.value, "fc_kernels", "2 kernel matrices of 200 × 200", "fewer points")
    model = build_model("fc", input_shape=(8,), num_outputs=3, width=64, depth=2,
                        parameterization="ntk")
    for call in (lambda: fc_empirical_ntk(model, x), lambda: empirical_ntk(model, x),
                 lambda: empirical_ntk(model, x, generic=True)):
        with pytest.raises(ResourceError) as info:
            call()
        _assert_clear(info.value, "empirical NTK", "fewer inputs (now 200 × 200)")
    with pytest.raises(ResourceError, match="or full=False"):
        empirical_ntk(model, x[:20], full=True)


def test_theory_study_refused_before_any_data(low_limit):
    start = time.perf_counter()
    with pytest.raises(ResourceError) as info:
        run_theory_study(TheoryStudy(n_train=128, n_test=1000, widths=()))
    _assert_clear(info.value, "theory study's kernels", "--n-train, --n-test")
    assert time.perf_counter() - start < 1.0


def test_small_problems_pass_under_the_real_limit():
    Trainer(make_config(TINY)).run()
    fc_kernels(np.random.default_rng(0).normal(size=(30, 4)), depth=1)


def test_huge_problems_refused_in_milliseconds_against_the_real_limit():
    """Allocating these would kill the process; the estimate says no first."""
    cases = [
        (lambda: Trainer(make_config(TINY, width=10**6, depth=10)), "a smaller width or depth"),
        (lambda: Trainer(make_config(TINY, batch_size=10**9, width=2**26, depth=1, n_train=None,
                                     eval_batch_size=10**9)), "a smaller batch_size"),
        (lambda: fc_kernels(torch.zeros(3_000_000, 2), depth=1), "fewer points"),
        (lambda: run_theory_study(TheoryStudy(n_train=10**6, widths=())), "--n-train"),
    ]
    for call, fragment in cases:
        start = time.perf_counter()
        with pytest.raises(ResourceError, match=re.escape(fragment)):
            call()
        assert time.perf_counter() - start < 5.0


def test_cli_refusal_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MEMORY_ENV, "64K")
    store = tmp_path / "runs.sqlite"
    result = CliRunner().invoke(app, ["train", "-q", "--store", str(store), "--set",
                                      "dataset=digits", "--set", "width=16", "--set", "steps=5"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "this run needs ≈" in lines[0] and f"64.0 KiB is available (${MEMORY_ENV})" in lines[0]
    assert not store.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setenv(MEMORY_ENV, "off")  # the override: the same run now trains
    result = CliRunner().invoke(app, ["train", "-q", "--store", str(store), "--set",
                                      "dataset=digits", "--set", "width=16", "--set", "steps=5"])
    assert result.exit_code == 0 and "finished" in result.output, result.output


def test_cli_sweep_refused_up_front_when_a_run_cannot_fit(tmp_path, monkeypatch):
    """One run of the grid is far too large: the sweep exits 2 naming it, before the store
    exists, instead of recording failed runs."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "grid.yaml"
    spec.write_text("name: g\nbase: {dataset: digits, n_train: 100, n_test: 50, steps: 5}\n"
                    "grid: {width: [16, 200000], depth: [3]}\n")
    store = tmp_path / "runs.sqlite"
    monkeypatch.setenv(MEMORY_ENV, "2G")
    result = CliRunner().invoke(app, ["sweep", str(spec), "--store", str(store)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "sweep run g" in lines[0] and "needs ≈" in lines[0] and "width" in lines[0]
    assert not store.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]
    spec.write_text(spec.read_text().replace("200000", "32"))  # both fit: the sweep runs
    result = CliRunner().invoke(app, ["sweep", str(spec), "--store", str(store)])
    assert result.exit_code == 0 and "2 finished" in result.output, result.output
