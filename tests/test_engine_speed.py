"""benchmarks/engine_speed.py in its --quick form: it runs, its engine and bare loops train the
same run, and the docs render what it writes."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import docs_hooks as hooks  # noqa: E402

from l2dynamics import Trainer, make_config  # noqa: E402


def _bench():
    spec = importlib.util.spec_from_file_location("engine_speed",
                                                  ROOT / "benchmarks" / "engine_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bare_loop_and_engine_train_the_same_run():
    """What is timed is the same work: the bare loop (torch SGD, weight_decay=λ, the same
    batches) and Trainer's loop end at the same parameters, up to float32 rounding."""
    bench = _bench()
    cfg = make_config(bench.QUICK_BASE, model="cnn", width=4, depth=2, norm="none",
                      batch_size=32, dtype="float64")
    trainer = Trainer(cfg)
    bare = bench.BareLoop(trainer)
    bench.engine_block(trainer)(40)  # more than one epoch of 1000 / 32 batches
    bare.run(40)
    for (name, p), q in zip(trainer.model.named_parameters(), bare.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=name)


def test_quick_benchmark_writes_ratios_with_intervals(tmp_path):
    out = tmp_path / "results" / "engine_speed.json"
    _bench().main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert {f["family"] for f in data["families"]} == {"fc", "cnn"}
    for family in data["families"]:
        for r in [family["engine_vs_bare"], *family["options"].values()]:
            low, high = r["ci"]
            assert low <= r["ratio"] <= high and r["ratio"] > 0 and math.isfinite(r["ratio"])
            assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"] and r["pairs"] >= 2
    cnn = next(f for f in data["families"] if f["family"] == "cnn")
    assert cnn["channels_last"] and "channels_last" in cnn["options"]
    before, after = data["evaluation"]["before"], data["evaluation"]["after"]
    assert after["planned_compute_fraction"] <= min(before["planned_compute_fraction"], 0.15)
    assert after["eval_batch"] == 256 and before["eval_batch"] == 2048
    # the docs render the file as written
    (tmp_path / "benchmarks").mkdir(exist_ok=True)
    target = tmp_path / "benchmarks" / "results"
    target.mkdir(exist_ok=True)
    (target / "engine_speed.json").write_text(out.read_text())
    page = hooks.expand_markers("<!-- gen:engine_speed -->\n\n<!-- gen:eval_cost -->",
                                tmp_path, where="b.md")
    assert "Generated from `benchmarks/results/engine_speed.json`" in page
    assert "<!--" not in page and "| cnn |" in page and "| before |" in page


@pytest.mark.skipif(not (ROOT / "benchmarks/results/engine_speed.json").is_file(),
                    reason="no measured result")
def test_measured_result_is_the_full_benchmark():
    data = json.loads((ROOT / "benchmarks/results/engine_speed.json").read_text())
    assert {f["family"] for f in data["families"]} == {"fc", "cnn", "cnn_bn", "wrn"}
    assert data["dataset"] == "fashion_mnist" and data["evaluation"]["steps"] == 2000
    assert data["evaluation"]["before"]["full_n"] == 10_000
