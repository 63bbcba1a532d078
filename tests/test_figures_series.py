"""Figures contain the series their captions name (the mini report once showed an "AutoL2 vs
the best constant λ" panel with no AutoL2 curve, because the suite named it differently)."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from l2dynamics.report import figures  # noqa: E402


def _result(names: list[str]) -> dict:
    curve = {"steps": [0, 10, 100, 1000], "acc": [0.1, 0.5, 0.8, 0.85]}
    table = [{"lam": lam, "mean": 0.8, "se": 0.01, "finals": [0.8, 0.8]}
             for lam in (0.0, 1e-3, 1e-2)]
    methods = [{"name": "grid best", "lams": [1e-3, 1e-3], "finals": [0.8, 0.8], "mean": 0.8,
                "table": table},
               {"name": "selector (choose_lambda)", "lams": [1e-3, 2e-3],
                "finals": [0.81, 0.79], "mean": 0.8}]
    methods += [{"name": name, "lams": [1e-4, 1e-4], "finals": [0.8, 0.8], "mean": 0.8,
                 "curves": [curve, curve], "steps_to_target": [100.0, 100.0]}
                for name in names]
    return {"task": "t", "budget": 1000, "lam0_final": 0.78, "methods": methods,
            "const_curves": [curve, curve], "best_lam": 1e-3, "target": 0.8}


@pytest.mark.parametrize("names", [["AutoL2 (paper rule)"],
                                   ["autol2 paper (refractory in steps)", "AutoL2 transfer"]])
def test_tuning_figure_draws_every_autol2_variant_and_the_selector(tmp_path, monkeypatch, names):
    seen = {}

    def capture(fig, path, dpi=120):
        seen["fig"] = fig
        return path

    monkeypatch.setattr(figures, "save_figure", capture)
    figures.plot_tuning(_result(names), tmp_path / "t.png")
    left, right = seen["fig"].axes[:2]
    curves = [line.get_label() for line in right.get_lines()]
    assert all(name in curves for name in names), curves
    points = [c.get_label() for c in left.collections]
    assert any(label.startswith("selector (choose_lambda)") for label in points), points


def test_network_times_labels_an_empty_panel_and_fits_the_page(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from l2dynamics.report import theory

    rows = [{"width": 64, "source": "network", "time": t, "lam": lam, "mean": 10 / lam,
             "low": 9 / lam, "high": 11 / lam} for t in ("t_peak", "t_min", "t_lazy_end", "t_w")
            for lam in (0.1, 1.0)]
    rows += [{"width": 64, "source": "network", "time": "t_never", "lam": 0.1, "mean": np.nan,
              "low": np.nan, "high": np.nan}]
    labels = {t: f"time {t}" for t in ("t_peak", "t_min", "t_lazy_end", "t_w", "t_never")}
    result = SimpleNamespace(time_labels=labels, network_time_summary=pd.DataFrame(rows))
    seen = {}
    monkeypatch.setattr(theory, "save_figure", lambda fig, path, dpi=120: seen.setdefault(
        "fig", fig) and path)
    theory.plot_network_times(result, tmp_path / "n.png")
    fig = seen["fig"]
    assert fig.get_size_inches()[0] <= 13  # three panels a row at most
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert len(panels) == 5
    empty = [t.get_text() for t in panels["time t_never"].texts]
    assert empty and empty[0].startswith("no data")
    assert panels["time t_peak"].get_lines()  # the others hold their series
