"""The CLI: the happy path end to end, and one-line refusals with exit status 2."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from l2dynamics.cli import app

runner = CliRunner()
TRAIN = ["train", "-q", "--set", "dataset=digits", "--set", "width=32", "--set", "steps=40",
         "--set", "n_train=200", "--set", "n_test=100"]


def test_train_list_show_export(tmp_path):
    store = tmp_path / "runs.sqlite"
    fig = tmp_path / "run.png"
    result = runner.invoke(app, [*TRAIN, "--set", "lam=1e-3", "--store", str(store),
                                 "--plot", str(fig)])
    assert result.exit_code == 0, result.output
    assert "run 1: finished" in result.output and fig.stat().st_size > 10_000
    listing = runner.invoke(app, ["runs", "list", "--store", str(store)])
    assert listing.exit_code == 0 and "finished" in listing.output
    shown = runner.invoke(app, ["runs", "show", "1", "--store", str(store)])
    assert shown.exit_code == 0 and "lam: 0.001" in shown.output and "decayed" in shown.output
    for suffix in ("csv", "json", "parquet"):
        target = tmp_path / f"runs.{suffix}"
        assert runner.invoke(app, ["runs", "export", str(target), "--store", str(store)]
                             ).exit_code == 0
    frame = pd.read_csv(tmp_path / "runs.csv")
    assert frame.loc[0, "lam"] == 1e-3 and frame.loc[0, "status"] == "finished"
    assert json.loads((tmp_path / "runs.json").read_text())[0]["id"] == 1
    series = tmp_path / "series.parquet"
    assert runner.invoke(app, ["runs", "export", str(series), "--series", "--store", str(store)]
                         ).exit_code == 0
    assert "test_acc" in pd.read_parquet(series).columns


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: digits, n_train: 200}\nmodel: {name: fc, width: 16}\n"
                   "steps: 30\nlam: 1e-2\n")
    store = tmp_path / "runs.sqlite"
    result = runner.invoke(app, ["train", "-q", "-c", str(cfg), "--set", "lam=0", "--store",
                                 str(store)])
    assert result.exit_code == 0, result.output
    from l2dynamics import load_runs

    assert load_runs(store).loc[0, "lam"] == 0.0


@pytest.mark.parametrize("args, fragment", [
    (["--set", "lam=-1"], "lam must be >= 0"),
    (["--set", "lam=nan"], "lam must be a finite number"),
    (["--set", "lr=0"], "lr must be > 0"),
    (["--set", "steps=-3"], "steps must be >= 1"),
    (["--set", "dataset=imagenet"], "dataset='imagenet' is not allowed"),
    (["--set", "model=gpt"], "model='gpt' is not allowed"),
    (["--set", "optimizer=lion"], "optimizer='lion' is not allowed"),
    (["--set", "lamb=0.1"], "unknown config key 'lamb'"),
    (["--set", "novalue"], "must look like key=value"),
    (["--set", "dataset=mnist", "--data-dir", "{tmp}"], "mnist"),
    (["--set", "dataset=cifar10", "--data-dir", "{tmp}"], "cifar10"),
    (["-c", "{tmp}/missing.yaml"], "config file not found"),
])
def test_user_mistakes_exit_2_with_one_line_and_write_nothing(tmp_path, args, fragment):
    store = tmp_path / "runs.sqlite"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["train", "-q", *args, "--store", str(store)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
    assert "Traceback" not in result.output
    assert not store.exists()


def test_runs_on_missing_store_exit_2(tmp_path):
    result = runner.invoke(app, ["runs", "list", "--store", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2 and "no run store" in result.output


def test_datasets_and_keys_list_what_exists(tmp_path):
    result = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    for name in ("digits", "mnist1d", "teacher", "mnist", "cifar10"):
        assert name in result.output
    keys = runner.invoke(app, ["keys"])
    assert keys.exit_code == 0 and "decoupled_wd" in keys.output and "lam" in keys.output


def test_resume_from_cli(tmp_path):
    store = tmp_path / "runs.sqlite"
    result = runner.invoke(app, ["train", "--resume", "1", "--store", str(store)])
    assert result.exit_code == 2 and "no run store" in result.output


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    """A real SIGINT to the CLI: exit 130, run 'interrupted' with a checkpoint, then resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from l2dynamics import RunStore

    store = tmp_path / "runs.sqlite"
    cmd = [sys.executable, "-m", "l2dynamics.cli", "train", "-q", "--store", str(store),
           "--set", "dataset=digits", "--set", "width=32", "--set", "steps=400000",
           "--set", "eval_every=2000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if store.exists():
            with RunStore(store) as st:
                runs = st.list_runs()
                if runs and runs[0]["steps_done"] >= 2000:
                    break
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "resume with" in output
    with RunStore(store) as st:
        record = st.get_run(1)
        assert record["status"] == "interrupted" and os.path.isfile(record["checkpoint_path"])
        stopped_at = record["steps_done"]
    assert 2000 <= stopped_at < 400000
    # Finish quickly: resume, then stop again right away is not needed; check resume starts
    # at the checkpoint step by resuming through the API with a stop request after one step.
    from l2dynamics import Trainer

    with RunStore(store) as st:
        trainer = Trainer.resume(st, 1)
        assert trainer.step == stopped_at


@pytest.mark.slow
def test_theory_quick_writes_figures_and_tables(tmp_path):
    result = runner.invoke(app, ["theory", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("theory_curves.png", "characteristic_times.png", "networks.png", "hessian.png"):
        assert (tmp_path / "figures" / "theory" / name).stat().st_size > 10_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["comparisons"] and summary["fits"]
    assert "deep (k=3) vs linear" in result.output


def test_theory_refuses_bad_options(tmp_path):
    for args, fragment in ((["--widths", "0"], "--widths"), (["--lams", "-1"], "--lams"),
                           (["--theory-init", "random"], "theory_init")):
        result = runner.invoke(app, ["theory", *args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and fragment in result.output, result.output
        assert not (tmp_path / "x").exists()


def test_version_module_entry_and_markup_safe_log():
    import subprocess
    import sys

    from typer.testing import CliRunner

    from l2dynamics.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("l2dynamics ")
    out = subprocess.run([sys.executable, "-m", "l2dynamics", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("l2dynamics "), out.stderr
    from l2dynamics.cli.common import err, log

    with err.capture() as captured:
        log("[fmnist_fc] grid: 9 λ")
    assert "[fmnist_fc] grid" in captured.get()


def test_runs_list_reads_at_80_columns(tmp_path):
    from typer.testing import CliRunner

    from l2dynamics.cli import app

    store = tmp_path / "s.sqlite"
    runner = CliRunner()
    for lam in ("0", "0.00937500001"):
        res = runner.invoke(app, ["train", "--set", "dataset=digits", "--set", "steps=20",
                                  "--set", f"lam={lam}", "--set", "norms_per_tensor=false",
                                  "--store", str(store)])
        assert res.exit_code == 0, res.output
    listing = runner.invoke(app, ["runs", "list", "--store", str(store)], env={"COLUMNS": "80"})
    lines = listing.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "dataset digits" in lines[0]  # equal in every row: said once, in the title
    body = [line for line in lines if "finished" in line]
    assert len(body) == 2 and "0.00938" in body[1]  # one line per run, λ rounded


def test_help_paragraphs_wrap_to_the_terminal():
    from typer.testing import CliRunner

    from l2dynamics.cli import app, reflow

    assert reflow("One line\nof text.\n\n- a list\n- kept") == ("One line of text.\n\n"
                                                                "- a list\n- kept")
    wide = CliRunner().invoke(app, ["choose", "--help"], env={"COLUMNS": "160"})
    # the second paragraph of the docstring is one wrapped paragraph at 160 columns
    lines = [line.strip() for line in wide.output.splitlines()]
    assert any(line.startswith("Selects on a validation split") and "prints λ" in line
               for line in lines), wide.output


def test_train_print_config_shows_every_key_and_trains_nothing(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from l2dynamics.cli import app
    from l2dynamics.config import CONFIG_KEYS, make_config

    res = CliRunner().invoke(app, ["train", "--set", "dataset=digits", "--set", "lam=1e-3",
                                   "--print-config", "--store", str(tmp_path / "s.sqlite")])
    assert res.exit_code == 0, res.output
    shown = yaml.safe_load(res.output)
    assert set(shown) == set(CONFIG_KEYS) and shown["lam"] == 1e-3
    assert make_config(shown) == make_config(dataset="digits", lam=1e-3)  # it round-trips
    assert not (tmp_path / "s.sqlite").exists()


def test_runs_list_help_names_every_status():
    from typer.testing import CliRunner

    from l2dynamics.cli import app
    from l2dynamics.store import STATUSES

    text = CliRunner().invoke(app, ["runs", "list", "--help"], env={"COLUMNS": "200"}).output
    assert all(status in text for status in STATUSES), text


def _choice_lists() -> dict[tuple[str, str], list[str]]:
    """Every "a | b | c" list in an option's help text, by (command path, parameter); for the
    reproduce suite help, the word before each "(" of its alternatives."""
    import re

    import typer

    from l2dynamics.cli import app

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    found = {}
    for path, cmd in walk(typer.main.get_command(app), []):
        for param in cmd.params:
            text = getattr(param, "help", None) or ""
            pattern = r"[\w+-]+(?:\s+\|\s+[\w+-]+)+"
            match = re.search(pattern, text) or re.search(pattern, re.sub(r"\([^)]*\)", "", text))
            if match:
                found[(path, param.name)] = [w.strip() for w in match.group().split("|")]
    return found


def test_every_choice_list_in_help_is_complete():
    from l2dynamics.analysis import ESTIMATORS
    from l2dynamics.cli.aliases import NORM_STUDIES
    from l2dynamics.cli.runs import EXPORT_FORMATS
    from l2dynamics.store import STATUSES
    from l2dynamics.studies.norm_grids import GRIDS
    from l2dynamics.studies.norms import CASES
    from l2dynamics.studies.suite import SUITES
    from l2dynamics.studies.theory import TheoryStudy
    from l2dynamics.studies.tuning_search import PRUNERS
    from l2dynamics.sweep import ENGINES, EXECUTORS

    theory_init = TheoryStudy.__dataclass_fields__["theory_init"].metadata
    expected = {
        ("sweep", "executor"): EXECUTORS, ("study", "executor"): EXECUTORS,
        ("reproduce", "executor"): EXECUTORS, ("sweep", "engine"): ENGINES,
        ("study", "suite"): SUITES, ("reproduce", "suite"): SUITES,
        ("theory", "theory_init"): theory_init["constraint"].options,
        ("norms", "which"): NORM_STUDIES, ("norms", "cases"): tuple(CASES),
        ("norms", "optimizers"): tuple(GRIDS),
        ("predict", "estimator"): ESTIMATORS, ("analyze tstar", "estimator"): ESTIMATORS,
        ("tune", "pruners"): ("none", *PRUNERS, "+".join(PRUNERS)),
        ("runs list", "status"): STATUSES, ("runs export", "fmt"): EXPORT_FORMATS,
    }
    found = _choice_lists()
    assert set(found) == set(expected), set(found) ^ set(expected)  # a new list: add it here
    for where, choices in found.items():
        assert sorted(choices) == sorted(expected[where]), where


def test_keys_and_studies_read_at_80_columns():
    from typer.testing import CliRunner

    from l2dynamics.cli import app
    from l2dynamics.config import CONFIG_KEYS

    runner = CliRunner()
    for command in ("keys", "studies"):
        text = runner.invoke(app, [command], env={"COLUMNS": "80"}).output
        lines = text.splitlines()
        assert all(len(line) <= 80 for line in lines), command
        # no word is broken across lines (an 80-column table used to break these letter-wise)
        words = ([*CONFIG_KEYS, "fashion_mnist", "$L2DYNAMICS_DATA"] if command == "keys"
                 else ["mini:norm_equilibrium,", "paper:convnet4_projection"])
        assert all(word in text for word in words), command
