"""``l2dynamics study KEY`` and ``l2dynamics reproduce``: thin drivers over the registry.

:func:`drive` runs one study (:func:`l2dynamics.studies.base.execute`), prints its tables and
verdicts and writes its figures, raw data and ``result.json``; the older spellings (``theory``,
``norms …``, ``tune``, ``predict``, ``analyze tstar``) call it too.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from l2dynamics.cli.app import app
from l2dynamics.cli.common import log, open_store, out, print_rows, user_errors
from l2dynamics.errors import ConfigError

_BADGE = {"holds": "[green]holds[/]", "consistent": "[yellow]consistent, too imprecise[/]",
          "does not hold": "[red]does not hold[/]", "undetermined": "[dim]undetermined[/]"}


def show(outcome: Any, written: list[Path]) -> None:
    """Print an outcome: description, tables, claims with verdicts, the files written."""
    from rich.markup import escape

    out.print(outcome.description, highlight=False, markup=False)
    for t in outcome.tables:
        print_rows(t["title"], t["columns"], t["rows"])
    for c in outcome.claims:
        ci = f" {c.ci}" if c.ci else ""
        out.print(f"  [{_BADGE[c.verdict]}] {escape(c.claim)} — {escape(c.measured)}"
                  f"{escape(ci)}", highlight=False)
    for f in outcome.figures:
        out.print(f"figure: {f.path}", highlight=False)
    if written:
        out.print("data: " + ", ".join(str(p) for p in written), highlight=False)


def drive(study: Any, params: Any, *, key: str, out_dir: Path, store: Path | None = None,
          workers: int = 1, data_dir: Path | None = None, steps_scale: float = 1.0,
          subset: int | None = None, fast: bool = True, suite: str | None = None,
          executor: str = "local", address: str | None = None) -> Any:
    """Run `study` with `params`, show the outcome and write it under `out_dir`. With
    ``executor="ray"`` its runs are Ray tasks on the cluster at `address` (studies whose
    ``distributed`` is set; the others are refused)."""
    from l2dynamics.studies.base import Context, execute, write_outcome
    from l2dynamics.studies.reproduce import check_study_executor

    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    check_study_executor(executor, address, workers, [(key, study)])
    store = store if store is not None else out_dir / "runs.sqlite"
    if store.exists():
        open_store(store)  # an unusable --store: one line, exit 2, before any run starts
    # nothing is written before the study has checked its inputs (the store and the figure
    # folders are created when the first run or figure needs them)
    ctx = Context(out_dir, store, key=key, suite=suite, workers=workers, executor=executor,
                  address=address, data_dir=data_dir, steps_scale=steps_scale, subset=subset,
                  fast=fast, log=log)
    outcome = execute(study, params, ctx)
    show(outcome, write_outcome(outcome, out_dir))
    return outcome


@app.command()
@user_errors
def study(
    key: str = typer.Argument(..., help="A study (see `l2dynamics studies`) or a suite entry."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="PARAM=VALUE (repeatable; "
                                        "values are YAML; PARAM.SUB=VALUE inside a mapping)."),
    suite: str | None = typer.Option(None, "--suite", help="Start from this suite's entry "
                                     "(mini | realdata | toy | paper | regime) instead of the "
                                     "study's defaults."),
    out_dir: Path | None = typer.Option(None, "--out", help="Figures, CSVs and result.json "
                                        "(default: out/KEY)."),
    store: Path | None = typer.Option(None, "--store", help="Run store (default: "
                                      "OUT/runs.sqlite); finished runs are reused."),
    workers: int = typer.Option(1, "-j", "--workers", help="Parallel training processes."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="MNIST/CIFAR-10 files "
                                         "(paper configs); Fashion-MNIST files if not "
                                         "installed."),
    steps_scale: float = typer.Option(1.0, "--steps-scale", help="Paper configs: scale every "
                                      "run's steps."),
    subset: int | None = typer.Option(None, "--subset", help="Paper configs: training "
                                      "examples."),
    executor: str = typer.Option("local", "--executor", help="local | ray: where the runs "
                                 "train (ray: one Ray task per run; studies regime, tstar, "
                                 "fmnist_tstar and fmnist_cnn_bn)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster to join (HOST:PORT, "
                                       "auto, ray://…); default: a Ray instance on this "
                                       "machine. Needs --executor ray."),
) -> None:
    """Run one study: print its tables and verdicts, write its figures and data."""
    from l2dynamics.studies.base import parse_sets
    from l2dynamics.studies.suite import resolve_study

    if subset is not None and subset < 1:
        raise ConfigError(f"--subset must be ≥ 1, got {subset}")
    entry_key, unit, params = resolve_study(key, suite, parse_sets(overrides))
    drive(unit, params, key=entry_key, out_dir=out_dir or Path("out") / entry_key,
          store=store, workers=workers, data_dir=data_dir, steps_scale=steps_scale,
          subset=subset, suite=suite, executor=executor, address=address)


@app.command()
@user_errors
def reproduce(
    suite: str = typer.Option("mini", help="mini (2-core CPU, Fashion-MNIST and embedded data, "
                              "< 15 min) | realdata (all of Fashion-MNIST, CPU, ~1 h) | toy "
                              "(MNIST-1D t*, digits bridge, ~8 min) | paper (GPU, many hours; "
                              "MNIST/CIFAR-10 files, and Fashion-MNIST; resumable) | regime (where "
                              "t* ∝ 1/λ holds: a map on Fashion-MNIST, CPU; resumable)."),
    out_dir: Path = typer.Option(Path("report"), "--out", help="Report folder: index.html, "
                                 "summary.json, figures/."),
    store: Path | None = typer.Option(None, help="Run store (default: OUT/runs.sqlite); "
                                      "finished runs are reused."),
    workers: int = typer.Option(2, "-j", "--workers", help="Parallel training processes."),
    only: list[str] = typer.Option([], "--only", help="Only these studies (repeatable)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="MNIST/CIFAR-10 files (paper "
                                         "suite); Fashion-MNIST files if not installed."),
    steps_scale: float = typer.Option(1.0, "--steps-scale", help="paper: scale every run's "
                                      "steps (e.g. 0.1 for a reduced run)."),
    subset: int | None = typer.Option(None, "--subset", help="paper: training examples."),
    browser_check: bool = typer.Option(False, "--browser-check", help="Open the report in "
                                       "headless Chromium and check images and console."),
    bf16: bool = typer.Option(True, "--bf16/--fp32", help="paper suite on a GPU: bf16 autocast "
                              "and channels_last (--fp32: plain float32)."),
    executor: str = typer.Option("local", "--executor", help="local | ray: where the runs "
                                 "train (ray: one Ray task per run of the studies regime, "
                                 "tstar, fmnist_tstar and fmnist_cnn_bn; the others train "
                                 "here)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster to join (HOST:PORT, "
                                       "auto, ray://…); default: a Ray instance on this "
                                       "machine. Needs --executor ray."),
) -> None:
    """Reproduce both papers: every study of a suite, its figures and verdicts, one report."""
    from l2dynamics.report.html import verdict_counts
    from l2dynamics.studies.reproduce import reproduce as run_suite

    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    if subset is not None and subset < 1:
        raise ConfigError(f"--subset must be ≥ 1, got {subset}")
    command = "l2dynamics reproduce " + shlex.join(
        [a for a in sys.argv[2:] if a] if len(sys.argv) > 1 and sys.argv[1] == "reproduce"
        else ["--suite", suite, "--out", str(out_dir)])
    summary = run_suite(suite, out_dir, store=store, workers=workers, only=only or None,
                        data_dir=data_dir, steps_scale=steps_scale, subset=subset,
                        fast=bf16, command=command.strip(), log=log, executor=executor,
                        address=address)
    for entry in summary["studies"]:
        out.print(f"[bold]{entry['key']}[/] ({entry['status']}, "
                  f"{entry['wall_seconds']:.0f} s)")
        for c in entry["claims"]:
            ci = f" {c['ci']}" if c.get("ci") else ""
            out.print(f"  [{c['verdict']}] {c['claim']} — {c['measured']}{ci}",
                      highlight=False, markup=False)
        if entry["error"]:
            out.print(f"  [red]failed:[/] {entry['error']}", highlight=False)
    counts = verdict_counts(summary)
    out.print(f"{summary['wall_seconds']:.0f} s; verdicts {counts}; report: "
              f"{out_dir / 'index.html'}", highlight=False)
    if browser_check:
        from l2dynamics.report.browser import check_report

        result = check_report(out_dir)
        out.print(f"browser: {result}", highlight=False)
