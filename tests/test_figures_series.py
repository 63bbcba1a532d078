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


def _two_panels(path, *, note: bool) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    left.plot([0, 1], [0, 1], label="AutoL2 (paper rule)")
    left.legend()
    right.set_title("t_never")
    if note:
        right.text(0.5, 0.5, "no data: no run reached it")
    figures.save_figure(fig, path)


def test_a_saved_figure_says_what_it_draws_and_what_it_lacks(tmp_path):
    from l2dynamics.report.inventory import inventory_problems, read_inventory

    _two_panels(tmp_path / "f.png", note=False)
    inventory = read_inventory(tmp_path / "f.png")
    assert inventory["panels"][0]["labels"] == ["AutoL2 (paper rule)"]
    assert inventory_problems(inventory, ["autol2"]) == [
        "“t_never” draws nothing and does not say why"]
    assert inventory_problems(inventory, ["selector"])[0] == (
        "the caption names “selector”, but no series of that name is drawn")
    _two_panels(tmp_path / "g.png", note=True)
    assert inventory_problems(read_inventory(tmp_path / "g.png"), ["AutoL2"]) == []


@pytest.mark.parametrize(("series", "flagged"), [(["AutoL2"], False), (["selector"], True)])
def test_report_flags_a_figure_that_lacks_a_series_its_caption_names(tmp_path, series,
                                                                    flagged):
    from l2dynamics.report.html import render_report

    _two_panels(tmp_path / "figures" / "f.png", note=True)
    summary = {"suite": "mini", "created": "2026-12-05", "machine": "test", "wall_seconds": 1.0,
               "command": "l2dynamics reproduce", "versions": {}, "studies": [
        {"key": "tuning", "title": "Tuning", "paper": "Lewkowycz & Gur-Ari 2020",
         "status": "ok", "claims": [], "tables": [],
         "figures": [{"path": "figures/f.png", "caption": "AutoL2 and the selector",
                      "series": series}]}]}
    page = render_report(summary, tmp_path).read_text(encoding="utf-8")
    assert ("do not show what their captions name" in page) == flagged
    assert ("no series of that name is drawn" in page) == flagged


def test_a_narrow_log_axis_gets_plain_labels_that_do_not_overlap(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from l2dynamics.report.ticks import readable_log_ticks

    fig, (narrow, wide) = plt.subplots(1, 2)
    narrow.plot([4e-3, 4.5e-2], [1, 2])
    narrow.set_xscale("log")
    wide.plot([1e-5, 1e1], [1, 2])
    wide.set_xscale("log")
    default_wide = wide.xaxis.get_major_formatter()
    readable_log_ticks(fig)
    fig.canvas.draw()
    labels = [t.get_text() for t in narrow.get_xticklabels()
              if 4e-3 <= t.get_position()[0] <= 4.5e-2]
    assert labels == ["0.005", "0.01", "0.02"]
    assert isinstance(narrow.xaxis.get_minor_formatter(), NullFormatter)
    assert wide.xaxis.get_major_formatter() is default_wide  # six decades: left as it was
    plt.close(fig)
