"""`l2dynamics reproduce`: the suite driver, its report, and one real study end to end."""

import json
import os
import shutil

import matplotlib.pyplot as plt
import pytest

from l2dynamics.errors import ConfigError
from l2dynamics.studies import reproduce as rep


def _ok_study(ctx):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = ctx.figure("toy", "toy.png")
    fig.savefig(path)
    plt.close(fig)
    return rep.StudyOutput("a toy study", [rep.Claim("x holds", "x = 1", "holds", "[0.9, 1.1]")],
                           [(path, "a line")], [], {"x": 1})


def _failing_study(ctx):
    raise RuntimeError("this study broke")


@pytest.fixture
def toy_studies(monkeypatch):
    studies = [rep.Study("toy", "Toy", rep.LG, ("mini",), _ok_study),
               rep.Study("broken", "Broken", rep.VL, ("mini",), _failing_study)]
    monkeypatch.setattr(rep, "STUDIES", studies)
    return studies


def test_driver_writes_the_report_and_survives_a_failing_study(tmp_path, toy_studies):
    summary = rep.reproduce("mini", tmp_path / "r", log=lambda msg: None)
    by_key = {s["key"]: s for s in summary["studies"]}
    assert by_key["toy"]["status"] == "ok" and by_key["toy"]["figures"][0]["path"] == \
        "figures/toy/toy.png"
    assert by_key["broken"]["status"] == "failed"
    assert "this study broke" in by_key["broken"]["error"]
    assert by_key["toy"]["command"].endswith("--only toy")
    page = (tmp_path / "r" / "index.html").read_text()
    assert "x holds" in page and "this study broke" in page
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["suite"] == "mini"


def test_driver_refuses_bad_arguments(tmp_path, toy_studies):
    with pytest.raises(ConfigError, match="suite"):
        rep.reproduce("huge", tmp_path / "a")
    with pytest.raises(ConfigError, match="unknown studies"):
        rep.reproduce("mini", tmp_path / "b", only=["nope"])
    with pytest.raises(ConfigError, match="data-dir"):
        rep.reproduce("paper", tmp_path / "c")
    with pytest.raises(ConfigError, match="steps_scale"):
        rep.reproduce("mini", tmp_path / "d", steps_scale=float("nan"))
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_every_mini_study_is_registered_once():
    keys = [s.key for s in rep.STUDIES if "mini" in s.suites]
    assert len(keys) == len(set(keys))
    assert {"tstar", "theory", "tuning", "norm_equilibrium", "norm_traces", "norm_grid",
            "norm_projection", "norm_bridge"} <= set(keys)


def test_cli_reproduce_only_one_study(tmp_path, toy_studies):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    result = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path / "r"), "--only",
                                      "toy"])
    assert result.exit_code == 0, result.output
    assert "[holds] x holds" in result.output
    bad = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path / "s"), "-j", "0"])
    assert bad.exit_code == 2 and "--workers" in bad.output


@pytest.mark.slow
def test_real_theory_study_renders_and_loads_in_a_browser(tmp_path):
    """The real (mini) theory study end to end: verdicts, figures, and — where Chromium is
    installed (always in CI) — the page in a headless browser with every image found."""
    summary = rep.reproduce("mini", tmp_path / "r", only=["theory"], log=lambda msg: None)
    study = summary["studies"][0]
    assert study["status"] == "ok", study["error"]
    assert study["claims"] and all(c["verdict"] in ("holds", "does not hold", "undetermined")
                                   for c in study["claims"])
    assert len(study["figures"]) >= 2
    have_browser = shutil.which("chromium") and shutil.which("chromedriver")
    if not have_browser:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromium-driver for the report's browser check")
        pytest.skip("no chromium here")
    from l2dynamics.report.browser import check_report

    result = check_report(tmp_path / "r")
    assert result["ok"], result
    assert not result["broken_images"] and not result["console_errors"]
    assert len(result["images"]) == len(study["figures"])
