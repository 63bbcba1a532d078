"""benchmarks/eval_budget_estimates.py: estimate by estimate, inside the before-run's interval."""

from __future__ import annotations

import json

from benchmarks.eval_budget_estimates import compare, main


def _summary(tstar: float, acc: float, final: float) -> dict:
    cols = ["lr", "lam", "seeds", "tstar", "tstar_low", "tstar_high", "peak_acc", "peak_acc_low",
            "peak_acc_high"]
    methods = ["method", "λ", "final test acc (seed mean)", "SE of the mean", "seeds"]
    return {"suite": "mini", "studies": [
        {"key": "s", "tables": [
            {"title": "t* per λ", "columns": cols,
             "rows": [[0.1, 1e-3, 3, tstar, 900.0, 1100.0, acc, 0.84, 0.86],
                      [0.1, 0.0, 3, None, None, None, acc, 0.84, 0.86]]},
            {"title": "methods", "columns": methods,
             "rows": [["grid best", "0.001", final, 0.001, 3]]}]}]}


def test_estimates_inside_and_outside_the_before_interval(tmp_path):
    before = _summary(1000.0, 0.85, 0.85)
    same = compare(before, _summary(1050.0, 0.855, 0.852))
    assert len(same) == 4 and all(r["inside"] for r in same)  # λ = 0 has no t*: 3 + 1 method
    moved = compare(before, _summary(1500.0, 0.80, 0.80))
    assert [r["inside"] for r in moved] == [False, False, False, False]
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(_summary(1500.0, 0.85, 0.85)))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out",
                 str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["estimates"], result["inside"]) == (4, 3)
