"""The HTML reproduction report: rendering, escaping, refusal of broken pages, and a real
headless-browser check (Chromium from Debian's packages through Selenium)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from l2dynamics.report.html import ReportError, render_report, verdict_counts  # noqa: E402

EVIL = '<script>alert("x")</script>'


def _png(path: Path, fmt: str = "png") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0.5])
    fig.savefig(path, dpi=40, format=fmt)
    plt.close(fig)


def _summary() -> dict:
    return {
        "suite": "mini",
        "created": "2025-01-31T12:00:00+00:00",
        "machine": "2-core CPU — test é ü",
        "wall_seconds": 754.3,
        "command": "l2dynamics reproduce --suite mini --out report",
        "versions": {"l2dynamics": "0.1.0", "torch": "2.13.0", "python": "3.11.2"},
        "studies": [
            {
                "key": "tstar",
                "title": "Peak time t* ∝ 1/λ",
                "paper": "Lewkowycz & Gur-Ari 2020",
                "description": "FC nets on MNIST-1D, 5 values of λ, 3 seeds each.",
                "status": "ok",
                "error": None,
                "wall_seconds": 120.5,
                "command": "l2dynamics reproduce --suite mini --only tstar",
                "claims": [
                    {"claim": "t* · λ is constant", "measured": "slope -0.98",
                     "verdict": "holds", "ci": "[-1.05, -0.91]"},
                    {"claim": "collapse of curves", "measured": "spread 12%",
                     "verdict": "undetermined", "ci": None},
                ],
                "figures": [
                    {"path": "figures/tstar.png", "caption": "t* against 1/λ"},
                    {"path": "figures/collapse.svg", "caption": "curves against λt"},
                ],
                "tables": [{"title": "t* per λ", "columns": ["λ", "t*", "seeds", "note"],
                            "rows": [[1e-3, 512.0, 3, "ok"], [1e-2, 51.25, 3, None]]}],
                "configs": {"model": "fc", "width": 256, "lambdas": [1e-3, 1e-2]},
            },
            {
                "key": "norm eff-lr",
                "title": "Effective learning rate under BN",
                "paper": "van Laarhoven 2017",
                "description": "A BN CNN on digits.",
                "status": "ok",
                "error": None,
                "wall_seconds": 60.0,
                "command": "l2dynamics reproduce --suite mini --only norm-eff-lr",
                "claims": [{"claim": "η_eff = η/‖w‖²", "measured": "ratio 1.01",
                            "verdict": "does not hold", "ci": "[0.97, 1.05]"}],
                "figures": [{"path": "figures/eff lr.png", "caption": "effective LR"}],
                "tables": [],
                "configs": {},
            },
        ],
    }


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    out = tmp_path / "report"
    _png(out / "figures" / "tstar.png")
    _png(out / "figures" / "collapse.svg", fmt="svg")
    _png(out / "figures" / "eff lr.png")
    return out


# ----------------------------------------------------------------------------- unit tests


def test_renders_page_and_summary(report_dir: Path):
    summary = _summary()
    index = render_report(summary, report_dir)
    assert index == report_dir / "index.html"
    page = index.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "<title>l2dynamics reproduction report — mini suite</title>" in page
    # self-contained: no scripts, no external resources
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert 'rel="stylesheet"' not in page and "@import" not in page and "url(" not in page
    # figures are embedded, so index.html alone is the report, with alt text and captions
    assert '<img src="data:image/png;base64,' in page and 'alt="t* against 1/λ">' in page
    assert 'src="data:image/svg+xml;base64,' in page and 'src="figures/' not in page
    # the opening says, per paper, what held and what did not, in sentences
    assert '<section id="summary"><h2>What this run says</h2>' in page
    assert ("<strong>Lewkowycz &amp; Gur-Ari 2020.</strong> 2 claims in 1 study: 1 hold, 0 are "
            "consistent but too imprecise to confirm, 0 do not hold, 1 could not be decided. "
            "Held: t* · λ is constant.") in page
    assert "Did not hold: η_eff = η/‖w‖² (ratio 1.01)." in page
    assert "<figcaption>curves against λt</figcaption>" in page
    # verdict table links to the study sections, with coloured badges
    assert 'href="#study-tstar"' in page and 'id="study-tstar"' in page
    assert 'href="#study-norm-eff-lr"' in page and 'id="study-norm-eff-lr"' in page
    assert '<span class="badge holds">holds</span>' in page
    assert '<span class="badge fails">does not hold</span>' in page
    assert '<span class="badge undetermined">undetermined</span>' in page
    # header, commands, configs, tables
    assert "12 min 34 s" in page  # total wall time 754.3 s
    assert "torch 2.13.0" in page
    assert "<pre><code>l2dynamics reproduce --suite mini --out report</code></pre>" in page
    assert "<pre><code>l2dynamics reproduce --suite mini --only tstar</code></pre>" in page
    assert "<details><summary>Configs</summary><pre>" in page and "&quot;width&quot;: 256" in page
    assert '<td class="num">51.25</td>' in page and "<td>—</td>" in page
    assert ("3 claims: 1 hold, 0 consistent but too imprecise to confirm, 1 do not hold, "
            "1 undetermined") in page
    # no temporary files left behind
    assert sorted(p.name for p in report_dir.iterdir()) == ["figures", "index.html",
                                                            "summary.json"]


def test_script_in_claim_is_escaped(report_dir: Path):
    summary = _summary()
    study = summary["studies"][0]
    study["claims"][0]["claim"] = EVIL
    study["claims"][0]["measured"] = "a < b & c > d"
    study["title"] = EVIL
    study["description"] = EVIL
    study["command"] = f"echo '{EVIL}'"
    study["configs"] = {"note": EVIL}
    study["figures"][0]["caption"] = 'x" onerror="alert(1)'
    study["tables"][0]["rows"][0][3] = EVIL
    summary["machine"] = EVIL
    page = render_report(summary, report_dir).read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "a &lt; b &amp; c &gt; d" in page
    assert 'onerror="alert' not in page
    assert 'alt="x&quot; onerror=&quot;alert(1)"' in page


def test_missing_figure_refused_and_nothing_written(report_dir: Path):
    summary = _summary()
    summary["studies"][0]["figures"].append({"path": "figures/nope.png", "caption": "gone"})
    summary["studies"][1]["figures"].append({"path": "figures/also-missing.svg",
                                             "caption": "gone too"})
    before = sorted(p.relative_to(report_dir) for p in report_dir.rglob("*"))
    with pytest.raises(ValueError, match="2 figure file") as info:
        render_report(summary, report_dir)
    assert "nope.png" in str(info.value) and "also-missing.svg" in str(info.value)
    assert isinstance(info.value, ReportError)
    assert sorted(p.relative_to(report_dir) for p in report_dir.rglob("*")) == before
    assert not (report_dir / "index.html").exists()
    assert not (report_dir / "summary.json").exists()


def test_previous_report_untouched_when_refused(report_dir: Path):
    render_report(_summary(), report_dir)
    old = (report_dir / "index.html").read_bytes(), (report_dir / "summary.json").read_bytes()
    bad = _summary()
    bad["studies"][0]["figures"][0]["path"] = "figures/missing.png"
    with pytest.raises(ValueError, match="missing.png"):
        render_report(bad, report_dir)
    assert ((report_dir / "index.html").read_bytes(),
            (report_dir / "summary.json").read_bytes()) == old


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.png", "figures/../../x.png",
                                  "C:\\figs\\a.png", ""])
def test_figure_paths_must_be_relative_and_inside(report_dir: Path, path: str):
    summary = _summary()
    summary["studies"][0]["figures"][0]["path"] = path
    with pytest.raises(ValueError, match="must be relative"):
        render_report(summary, report_dir)
    assert not (report_dir / "index.html").exists()


def test_bad_verdict_status_and_duplicate_key_refused(report_dir: Path):
    summary = _summary()
    summary["studies"][0]["claims"][0]["verdict"] = "maybe"
    with pytest.raises(ValueError, match="'maybe' is not one of"):
        render_report(summary, report_dir)
    summary = _summary()
    summary["studies"][1]["status"] = "crashed"
    with pytest.raises(ValueError, match="status 'crashed'"):
        render_report(summary, report_dir)
    summary = _summary()
    summary["studies"][1]["key"] = "tstar"
    with pytest.raises(ValueError, match="duplicate key"):
        render_report(summary, report_dir)
    summary = _summary()
    del summary["command"]
    with pytest.raises(ValueError, match="command"):
        render_report(summary, report_dir)
    assert not (report_dir / "index.html").exists()


def test_summary_json_round_trips(report_dir: Path):
    summary = _summary()
    original = copy.deepcopy(summary)
    render_report(summary, report_dir)
    assert summary == original  # the input is not modified
    raw = (report_dir / "summary.json").read_text(encoding="utf-8")
    assert json.loads(raw) == summary
    assert "λ" in raw  # UTF-8, not \u escapes


def test_summary_json_is_strict_json(report_dir: Path):
    summary = _summary()
    summary["studies"][0]["tables"][0]["rows"][0][1] = float("nan")
    summary["studies"][0]["configs"]["lr"] = float("inf")
    render_report(summary, report_dir)
    data = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["studies"][0]["tables"][0]["rows"][0][1] is None
    assert data["studies"][0]["configs"]["lr"] is None
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert '<td class="num">—</td>' in page and ">nan<" not in page  # no "nan" shown to users


def test_failed_study_rendered_with_error(report_dir: Path):
    summary = _summary()
    study = summary["studies"][1]
    study.update(status="failed", claims=[], figures=[], tables=[],
                 error="RuntimeError: loss is NaN at step 412 <bad>")
    summary["studies"].append({
        "key": "wide", "title": "Infinite width", "paper": "Lewkowycz & Gur-Ari 2020",
        "description": "", "status": "skipped", "error": "needs a GPU", "wall_seconds": 0.0,
        "command": "l2dynamics reproduce --only wide", "claims": [], "figures": [],
        "tables": [], "configs": {}})
    page = render_report(summary, report_dir).read_text(encoding="utf-8")
    assert '<span class="badge status-failed">failed</span>' in page
    assert "This study failed." in page
    assert "RuntimeError: loss is NaN at step 412 &lt;bad&gt;" in page
    # also flagged at the top, before the verdict table, with a link to the section
    top = page.index('id="verdicts"')
    assert page.index("1 study failed") < top
    assert page.index('href="#study-norm-eff-lr"') < top
    assert "Skipped.</strong> needs a GPU" in page
    assert "3 studies, 1 failed, 1 skipped" in page


def test_verdict_counts():
    assert verdict_counts(_summary()) == {"holds": 1, "consistent": 0, "does not hold": 1,
                                          "undetermined": 1, "total": 3}
    assert verdict_counts({"studies": []}) == {"holds": 0, "consistent": 0, "does not hold": 0,
                                               "undetermined": 0, "total": 0}


# ----------------------------------------------------------------------------- real browser


def _require_browser() -> None:
    """Skip when Chromium/selenium are missing, except in CI (CI=true), where that fails."""
    from l2dynamics.report.browser import BrowserUnavailable, find_browser

    try:
        find_browser()
    except BrowserUnavailable as exc:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set but the browser check cannot run: {exc}")
        pytest.skip(str(exc))


def test_report_in_real_browser(report_dir: Path, tmp_path: Path):
    _require_browser()
    from l2dynamics.report.browser import check_page_in_browser, serve_directory

    summary = _summary()
    summary["studies"][0]["claims"][0]["claim"] = EVIL  # escaped text must not run
    render_report(summary, report_dir)
    with serve_directory(report_dir) as base:
        result = check_page_in_browser(base + "index.html")
    assert result["title"] == "l2dynamics reproduction report — mini suite"
    assert len(result["images"]) == 3
    assert all(img["complete"] and img["naturalWidth"] > 0 for img in result["images"])
    assert result["broken_images"] == []
    assert result["broken_anchors"] == []
    assert result["console_errors"] == []
    assert result["ok"] is True

    # The same checker must catch a broken page (written by hand, not by render_report).
    broken = tmp_path / "broken"
    _png(broken / "fine.png")
    (broken / "index.html").write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        "<title>broken</title></head><body>"
        '<img src="fine.png" alt="fine"><img src="missing.png" alt="missing">'
        '<a href="#nowhere">dangling</a></body></html>', encoding="utf-8")
    with serve_directory(broken) as base:
        bad = check_page_in_browser(base + "index.html")
    assert bad["title"] == "broken"
    assert bad["broken_images"] == ["missing.png"]
    assert bad["broken_anchors"] == ["#nowhere"]
    assert any("missing.png" in e and "404" in e for e in bad["console_errors"]), bad
    assert bad["ok"] is False


def test_diverged_and_failed_runs_are_listed_distinctly(tmp_path, report_dir):
    """A real diverged run (η = 1e4) in the store appears in the report's Runs section, marked
    as diverged with its step and cause; finished runs are only counted."""
    from l2dynamics import RunStore, Trainer, make_config
    from l2dynamics.studies.reproduce import store_runs

    fast = dict(dataset="digits", n_train=200, n_test=100, model="fc", width=16, depth=1,
                batch_size=50, eval_per_decade=2, device="cpu", loss="mse")
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        bad = Trainer(make_config(fast, steps=200, lr=1e4), store=store).run()
        good = Trainer(make_config(fast, steps=20, lr=0.1), store=store).run()
    assert (bad.status, good.status) == ("diverged", "finished")
    runs = store_runs(store_path)
    assert runs["counts"] == {"diverged": 1, "finished": 1}
    (problem,) = runs["problems"]
    assert problem["status"] == "diverged" and problem["step"] == bad.diverged_step
    out = report_dir
    summary = {**_summary(), "runs": runs}
    page = render_report(summary, out).read_text()
    assert "1 diverged, 1 finished" in page
    assert page.count('<tr class="run-diverged">') == 1
    assert "non-finite" in page and f"<td>{bad.diverged_step}</td>" in page
    assert json.loads((out / "summary.json").read_text())["runs"]["counts"]["diverged"] == 1
    # no run data (e.g. a summary from an older version): no Runs section at all
    assert 'id="runs"' not in render_report(_summary(), out).read_text()


def test_plain_summary_speaks_to_choosing_lambda():
    from l2dynamics.report.plain import paper_sentences

    studies = _summary()["studies"] + [{
        "key": "fmnist_tuning", "title": "Choosing λ", "paper": "Lewkowycz & Gur-Ari 2020",
        "claims": [{"claim": "the λ selector matches the grid's best", "verdict": "holds",
                    "measured": "0.84 vs 0.84"},
                   {"claim": "AutoL2 reaches the best constant", "verdict": "does not hold",
                    "measured": "0.70 vs grid best 0.79 (9.07 points below the grid's best)"}]}]
    text = " ".join(paper_sentences("Lewkowycz & Gur-Ari 2020", studies))
    assert text.startswith("4 claims in 2 studies: 2 hold")
    assert "Did not hold: AutoL2 reaches the best constant (0.70 vs grid best 0.79)." in text
    assert ("For choosing λ: the λ selector matched the grid's best in 1 of 1; AutoL2 matched "
            "the best constant λ in 0 of 1") in text
    assert "λ = 0" not in text  # no L2-versus-λ = 0 claim here, so nothing said about it
    assert paper_sentences("van Laarhoven 2017", studies[:1]) == [
        "No claim of van Laarhoven 2017 was checked in this run."]


def test_verdicts_open_with_one_row_per_study_and_fold_the_claims(report_dir: Path):
    """The first screen is a tally per study; every claim is still on the page, once folded in
    the overview and once in its study's section."""
    import re

    page = render_report(_summary(), report_dir).read_text(encoding="utf-8")
    verdicts = page[page.index('<section id="verdicts">'):]
    verdicts = verdicts[:verdicts.index("</section>")]
    overview = verdicts[:verdicts.index("<details>")]
    rows = re.findall(r"<tr><td><a href=\"#([^\"]+)\">", overview)
    with_claims = [s for s in _summary()["studies"] if s.get("claims")]
    assert len(rows) == len(with_claims)
    first = overview[overview.index('href="#study-tstar"'):]
    first = first[:first.index("</tr>")]
    # tstar: 1 holds, 0 consistent, 0 do not hold, 1 undetermined (VERDICTS order)
    assert re.findall(r'<td class="num">([^<]*)</td>', first) == ["1", "·", "·", "1"]
    folded = verdicts[verdicts.index("<details>"):]
    assert "<summary>All " in folded and "t* · λ is constant" in folded
    # the opening sentences, the folded overview and the study's own table
    assert page.count("t* · λ is constant") == 3
