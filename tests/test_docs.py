"""The docs' generated pages: study pages from a reproduce summary, measured tables from their
JSON, the report-to-docs copy, and (slow) the strict site build."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load("docs_hooks")
update_docs = _load("update_docs")


def _summary() -> dict:
    return {
        "suite": "mini", "created": "2031-01-02T03:04:05+00:00", "machine": "test box",
        "command": "l2dynamics reproduce --suite mini --out /tmp/r", "wall_seconds": 75.0,
        "versions": {"l2dynamics": "9.9"},
        "runs": {"counts": {"finished": 7, "diverged": 1},
                 "problems": [{"run": 3, "status": "diverged", "cause": "loss is nan"}]},
        "studies": [
            {"key": "alpha", "title": "Alpha law", "paper": "Someone 2020", "status": "ok",
             "command": "l2dynamics reproduce --only alpha", "description": "tiny grid",
             "claims": [
                 {"claim": "zeta scales as 1/λ", "measured": "slope -0.97 over 9 runs",
                  "verdict": "holds", "ci": "95 % CI [-1.2, -0.8]"},
                 {"claim": "the kappa norm is flat", "measured": "ratio 1.31",
                  "verdict": "does not hold", "ci": None, "margin": 0.05}],
             "figures": [{"path": "figures/alpha/present.png", "caption": "drawn here"},
                         {"path": "figures/alpha/absent.png", "caption": "never drawn"}],
             "tables": [{"title": "per λ", "columns": ["lam", "acc", "fits"],
                         "rows": [[0.001, 0.912345, True], [0.01, 0.5, False]]}],
             "configs": {"lams": [0.001, 0.01]}, "wall_seconds": 12.5},
            {"key": "beta", "title": "Beta bridge", "paper": "Other 2017", "status": "failed",
             "error": "ValueError: boom", "claims": [
                 {"claim": "omega holds with BN", "measured": "no fit (0 usable points)",
                  "verdict": "undetermined", "ci": ""}],
             "figures": [], "tables": [], "configs": {}, "wall_seconds": 1.0},
        ],
    }


def test_study_pages_show_claims_verdicts_figures_and_tables(tmp_path):
    docs = tmp_path / "docs"
    fig = docs / "studies" / "figures" / "mini" / "alpha" / "present.png"
    fig.parent.mkdir(parents=True)
    fig.write_bytes(b"png")
    (docs / "studies" / "notes").mkdir(parents=True)
    (docs / "studies" / "notes" / "alpha.md").write_text(
        "Why alpha matters.\n\n<!-- more -->\n\n## Larger runs\n\nAt the end.\n")

    pages = hooks.study_pages(_summary(), suite="mini", source="results/r.json", docs_dir=docs,
                              registry=False)
    assert set(pages) == {"studies/mini/alpha.md", "studies/mini/beta.md"}
    alpha, beta = pages["studies/mini/alpha.md"], pages["studies/mini/beta.md"]

    assert "Generated from `results/r.json`" in alpha and "do not edit" in alpha
    for text in ("zeta scales as 1/λ", "slope -0.97 over 9 runs", "95 % CI [-1.2, -0.8]",
                 "the kappa norm is flat", "ratio 1.31"):
        assert text in alpha
    # each claim's row carries its own verdict, and the extra field gets a column
    rows = [line for line in alpha.splitlines() if line.startswith("| ")]
    assert any("zeta scales" in r and "✅ holds" in r for r in rows)
    assert any("kappa norm" in r and "❌ does not hold" in r and "| 0.05 |" in r for r in rows)
    assert "1 hold, 1 do not hold." in alpha
    # a figure present under docs/ is linked relative to the page; a missing one is a note
    assert "![drawn here](../figures/mini/alpha/present.png)" in alpha
    assert "absent.png" in alpha and "Figure not in the docs yet" in alpha
    assert "](../figures/mini/alpha/absent.png)" not in alpha
    assert "| 0.001 | 0.9123 | yes |" in alpha
    # the note's intro comes before the claims, the rest after everything else
    assert alpha.index("Why alpha matters.") < alpha.index("## Claims and verdicts")
    assert alpha.index("## Configuration") < alpha.index("## Larger runs")

    assert "❔ undetermined" in beta and "omega holds with BN" in beta
    assert "ValueError: boom" in beta


def test_suite_overview_counts_verdicts_and_links_every_study():
    text = hooks.render_suite_overview(_summary(), suite="mini", source="results/r.json")
    assert "1 hold, 1 do not hold, 1 undetermined" in text
    assert "[Alpha law](mini/alpha.md)" in text and "[Beta bridge](mini/beta.md)" in text
    assert "1 min 15 s" in text and "7 finished, 1 diverged" in text
    assert "loss is nan" in text


def test_nav_lists_one_page_per_study():
    nav = hooks.studies_nav({"mini": ("r.json", _summary())})
    assert nav[0] == {"Overview": "studies/index.md"}
    assert nav[1] == {"Mini suite": [{"Alpha law": "studies/mini/alpha.md"},
                                     {"Beta bridge": "studies/mini/beta.md"}]}
    assert nav[2] == {"Paper suite": [{"Overview": "studies/paper.md"}]}


def test_markers_render_the_json_they_quote(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    data = json.loads((ROOT / "benchmarks/results/overhead.json").read_text())
    data.update(ratio_full=1.2345, ratio_full_paired_median=1.0101, goal_ratio=1.1)
    (results / "overhead.json").write_text(json.dumps(data))
    page = hooks.expand_markers("# B\n\n<!-- gen:overhead -->\n", tmp_path, where="b.md")
    assert "<!--" not in page
    assert "Generated from `benchmarks/results/overhead.json`" in page
    assert "| 1.234 | 1.01 |" in page.replace("1.2345", "1.234")
    assert "minimum not within, paired median within" in page

    with pytest.raises(KeyError, match="unknown generated block 'nonsense'"):
        hooks.expand_markers("<!-- gen:nonsense -->", tmp_path, where="c.md")
    # a missing result becomes a visible warning block (and a logged warning: strict fails)
    assert "Result missing" in hooks.expand_markers("<!-- gen:kernels -->", tmp_path, where="d")
    # the start-up page tolerates its absent JSON
    assert "Not measured yet" in hooks.expand_markers("<!-- gen:startup -->", tmp_path)


def test_startup_table_puts_before_and_after_side_by_side():
    def record(torch_s: float, pkg_s: float) -> dict:
        return {"repeats": 5, "command": "python benchmarks/startup.py",
                "results": {"import torch": {"median_s": torch_s, "min_s": torch_s,
                                             "ratio_to_import_torch": 1.0},
                            "import l2dynamics": {"median_s": pkg_s, "min_s": pkg_s,
                                                  "ratio_to_import_torch": pkg_s / torch_s}}}
    text = hooks.render_startup({"commands": {"import torch": "python -c 'import torch'"},
                                 "labels": {"before": record(2.0, 4.0),
                                            "after": record(2.0, 0.5)}}, "r/startup.json")
    row = next(line for line in text.splitlines() if line.startswith("| `import l2dynamics`"))
    assert row == "| `import l2dynamics` | 4 s (4 s) | 2 | 0.5 s (0.5 s) | 0.25 | **0.125** |"
    assert "Generated from `r/startup.json`" in text


def test_update_docs_copies_the_summary_and_figures(tmp_path):
    root, report = tmp_path / "repo", tmp_path / "report"
    summary = _summary()
    (report / "figures" / "alpha").mkdir(parents=True)
    (report / "figures" / "alpha" / "present.png").write_bytes(b"new")
    (report / "summary.json").write_text(json.dumps(summary))
    old = {"suite": "mini", "cold_wall_seconds": 99,
           "studies": [{"key": "gamma", "title": "kept", "claims": []}]}
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "benchmarks" / "results" / "reproduce_mini.json").write_text(json.dumps(old))
    stale = root / "docs" / "studies" / "figures" / "mini" / "alpha" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")

    done = update_docs.update(report, root=root)
    written = json.loads((root / "benchmarks/results/reproduce_mini.json").read_text())
    assert [s["key"] for s in written["studies"]] == ["alpha", "beta", "gamma"]
    assert written["kept_from_previous"] == ["gamma"] and "cold_wall_seconds" not in written
    assert (stale.parent / "present.png").read_bytes() == b"new" and not stale.exists()
    assert any("missing in the report: figures/alpha/absent.png" in line for line in done)

    update_docs.update(report, root=root, replace=True)
    written = json.loads((root / "benchmarks/results/reproduce_mini.json").read_text())
    assert [s["key"] for s in written["studies"]] == ["alpha", "beta"]


def _has_mkdocs() -> bool:
    return all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings"))


@pytest.mark.slow
@pytest.mark.skipif(not _has_mkdocs(), reason="mkdocs, mkdocs-material or mkdocstrings missing")
def test_site_builds_strictly(tmp_path):
    # no -q: it silences the warnings that --strict counts, and the build would pass anyway
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (tmp_path / "site" / "studies" / "index.html").read_text()
    assert "Generated from" in page and "do not edit" in page
    assert (tmp_path / "site" / "reference" / "l2" / "index.html").is_file()


def test_cold_times_are_taken_only_from_a_run_with_the_same_verdicts():
    new = _summary()
    cold = {**json.loads(json.dumps(new)), "wall_seconds": 300.0, "command": "cold"}
    times = update_docs.cold_times(new, cold)
    assert times["cold_wall_seconds"] == 300.0 and set(times["cold_study_seconds"]) == \
        {s["key"] for s in new["studies"]}
    cold["studies"][0]["claims"][0]["verdict"] = "undetermined"
    with pytest.raises(SystemExit, match="same verdicts"):
        update_docs.cold_times(new, cold)
