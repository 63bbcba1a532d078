"""Commands that describe, and import no torch: ``datasets``, ``keys``, ``studies``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from l2dynamics.cli.app import app
from l2dynamics.cli.common import out, print_rows, user_errors


@app.command()
@user_errors
def datasets(data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Where MNIST/CIFAR-10/Fashion-MNIST files live.")) -> None:
    """What data is available, and where the file-based datasets are expected."""
    from l2dynamics.data import available_datasets, resolve_data_dir

    table = Table(title_justify="left")
    for column in ("name", "kind", "available", "description", "where / expected files"):
        table.add_column(column, overflow="fold")
    for info in available_datasets(data_dir):
        where = ""
        if info.kind == "files":
            folder = info.location or resolve_data_dir(data_dir) / info.name
            where = f"{folder}: {', '.join(info.files)}"
        table.add_row(info.name, info.kind, "yes" if info.available else "[red]no[/]",
                      info.description, where)
    out.print(table)


@app.command()
def keys() -> None:
    """Every config key: its type, default, allowed values, unit and meaning."""
    from l2dynamics.config import describe_keys

    rows = [[r["key"], r["type"], json.dumps(r["default"], ensure_ascii=False, default=str),
             r["allowed"], r["unit"], r["help"]] for r in describe_keys()]
    print_rows("", ["key", "type", "default", "allowed", "unit", "meaning"], rows)


@app.command()
@user_errors
def studies(key: str | None = typer.Argument(None, help="A study: list its parameters.")
            ) -> None:
    """The registered studies and the suites that run them; with KEY, its parameters."""
    from l2dynamics.studies.base import describe_params
    from l2dynamics.studies.registry import STUDIES, get_study
    from l2dynamics.studies.suite import SUITES, load_suite

    if key is not None:
        study = get_study(key)
        out.print(f"[bold]{study.key}[/]: {study.title} ({study.paper})", highlight=False)
        rows = [[r["key"], r["type"], json.dumps(r["default"], ensure_ascii=False, default=str),
                 r["allowed"], r["unit"], r["help"]] for r in describe_params(study.Params)]
        print_rows("parameters (set with --set KEY=VALUE; KEY.SUB=VALUE inside a mapping)",
                   ["parameter", "type", "default", "allowed", "unit", "meaning"], rows)
        return
    in_suites: dict[str, list[str]] = {k: [] for k in STUDIES}
    for name in SUITES:
        for entry in load_suite(name).entries:
            in_suites[entry.study].append(f"{name}:{entry.key}")
    rows = []
    for k in STUDIES:
        study = get_study(k)
        rows.append([k, study.title, study.paper, ", ".join(in_suites[k]) or "—"])
    print_rows("studies (run one with: l2dynamics study KEY [--suite SUITE] [--set k=v])",
               ["key", "title", "paper", "suite entries"], rows)
