"""`l2dynamics reproduce`: the suite driver, its report, and one real study end to end."""

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from l2dynamics.analysis.verdicts import VERDICTS, Claim
from l2dynamics.config.constraints import Int
from l2dynamics.errors import ConfigError
from l2dynamics.studies import registry
from l2dynamics.studies import reproduce as rep
from l2dynamics.studies import suite as suite_mod
from l2dynamics.studies.base import LG, VL, Figure, Study, param


@dataclass
class ToyResult:
    description: str
    design: dict = field(default_factory=dict)
    path: Path | None = None


@dataclass
class ToyParams:
    x: int = param(1, Int(ge=0), "a number")


class ToyStudy(Study):
    key, title, paper, Params = "toy", "Toy", LG, ToyParams

    def run(self, params, ctx):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        path = ctx.figure("toy.png")
        fig.savefig(path)
        plt.close(fig)
        return ToyResult("a toy study", {"x": params.x}, path)

    def claims(self, result):
        return [Claim("x holds", "x = 1", "holds", "[0.9, 1.1]")]

    def figures(self, result, ctx):
        return [Figure(result.path, "a line")]


class BrokenStudy(ToyStudy):
    key, title, paper = "broken", "Broken", VL

    def run(self, params, ctx):
        raise RuntimeError("this study broke")


@pytest.fixture
def toy_studies(monkeypatch):
    """A registry and a mini suite of two toy studies, one of which fails."""
    monkeypatch.setitem(registry.STUDIES, "toy", ToyStudy)
    monkeypatch.setitem(registry.STUDIES, "broken", BrokenStudy)
    real = suite_mod.load_suite

    def load(name):
        if name != "mini":
            return real(name)
        return suite_mod.Suite("mini", "toys", [suite_mod.Entry("toy", "toy"),
                                                suite_mod.Entry("broken", "broken")],
                               changelog=[{"date": "2026-01-01", "study": "toy",
                                           "change": "x 0 → 1", "why": "a test"}])
    monkeypatch.setattr(rep, "load_suite", load)
    monkeypatch.setattr(suite_mod, "load_suite", load)


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
    assert "x 0 → 1" in page  # the suite's changelog is on the page
    toy = by_key["toy"]
    assert toy["design_history"] == [{"date": "2026-01-01", "study": "toy", "change": "x 0 → 1",
                                      "why": "a test"}] and by_key["broken"]["design_history"] == []
    assert "studies/suites/mini.yaml, entry &#x27;toy&#x27;" in page
    assert page.count("No change made after looking at results is recorded") == 1  # broken's
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


def test_the_mini_and_toy_suites_run_every_mini_study_once():
    keys = suite_mod.load_suite("mini").keys() + suite_mod.load_suite("toy").keys()
    assert len(keys) == len(set(keys))
    assert {"fmnist_tstar", "fmnist_tuning", "fmnist_cnn_bn", "tstar", "theory", "tuning",
            "norm_equilibrium", "norm_traces", "norm_grid", "norm_projection",
            "norm_bridge", "norm_equilibrium_full"} == set(keys)


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
    assert study["claims"] and all(c["verdict"] in VERDICTS for c in study["claims"])
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


def test_a_registered_study_appears_in_the_cli_without_further_code(tmp_path, toy_studies):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    result = CliRunner().invoke(app, ["study", "toy", "--set", "x=2", "--out",
                                      str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "x holds" in result.output and "holds" in result.output
    record = json.loads((tmp_path / "t" / "result.json").read_text())
    assert record["design"] == {"x": 2} and record["claims"][0]["verdict"] == "holds"
    assert (tmp_path / "t" / "figures" / "toy" / "toy.png").is_file()
    listed = CliRunner().invoke(app, ["studies"])
    assert "toy" in listed.output and "mini:toy" in listed.output
    bad = CliRunner().invoke(app, ["study", "toy", "--set", "x=-1", "--out",
                                   str(tmp_path / "u")])
    assert bad.exit_code == 2 and "x must be >= 0" in bad.output
