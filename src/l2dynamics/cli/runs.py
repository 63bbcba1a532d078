"""Commands that train and inspect runs: ``train``, ``runs list|show|export``, ``sweep``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from l2dynamics.cli.app import app, runs_app
from l2dynamics.cli.common import (
    RichProgress,
    StoreOption,
    build_config,
    err,
    open_store,
    out,
    user_errors,
)
from l2dynamics.errors import ConfigError


@app.command()
@user_errors
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML/JSON config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="key=value (repeatable)."),
    store: Path | None = StoreOption,
    data_dir: Path | None = typer.Option(None, "--data-dir",
                                         help="MNIST/CIFAR-10/Fashion-MNIST files."),
    resume: int | None = typer.Option(None, "--resume", help="Resume stored run ID."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the run's figure (PNG/SVG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    print_config: bool = typer.Option(False, "--print-config",
                                      help="Print the full config the run would use (YAML: "
                                      "every key, defaults filled in) and exit."),
) -> None:
    """Train one run into the store."""
    if print_config:
        import yaml

        cfg = build_config(config, overrides, data_dir)
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), end="")
        return
    from l2dynamics.report import plot_runs
    from l2dynamics.store import RunStore
    from l2dynamics.train import Trainer

    if resume is not None:
        if config or overrides:
            raise ConfigError("--resume takes the stored config; do not pass --config/--set")
        st = RunStore(store, create=False)
        trainer = Trainer.resume(st, resume)
        label = f"resume run {resume}"
    else:
        cfg = build_config(config, overrides, data_dir)
        trainer = Trainer(cfg)  # validates and loads everything before the store is touched
        st = RunStore(store)
        trainer.store = st
        label = cfg.name or f"{cfg.model}/{cfg.dataset} λ={cfg.lam:g} η={cfg.lr:g}"
    with st:
        if quiet:
            result = trainer.run()
        else:
            with RichProgress(label) as bar:
                trainer.progress = bar
                result = trainer.run()
    print_result(result, st.path)
    if plot is not None:
        plot_runs({f"run {result.run_id}": result.history}, plot,
                  title=f"run {result.run_id}: {label}")
        out.print(f"figure: {plot}")
    if result.status == "interrupted":
        out.print(f"interrupted at step {result.steps_done}; resume with "
                  f"[bold]l2dynamics train --resume {result.run_id} --store {st.path}[/]")
        raise typer.Exit(130)


def print_result(result: Any, store_path: Path) -> None:
    s = result.summary
    parts = [f"run {result.run_id}: {result.status} at step {result.steps_done}"]
    if result.diverged_step is not None:
        parts.append(f"(diverged at step {result.diverged_step}: {result.diverged_cause})")
    if s.get("best_test_acc") is not None:
        parts.append(f"best test acc {s['best_test_acc']:.4f} at step {s['best_step']}, "
                     f"final {s['final_test_acc']:.4f}")
    elif s.get("best_test_loss") is not None:
        parts.append(f"best test loss {s['best_test_loss']:.4g} at step {s['best_step']}")
    if s.get("steps_per_second"):
        parts.append(f"{s['steps_per_second']:.0f} steps/s")
    if "lam_decays" in s:
        steps = ", ".join(f"{e['step']} (→{e['lam_after']:g})" for e in s["lam_decays"])
        parts.append(f"AutoL2 decays at step {steps or 'none'}")
    out.print("; ".join(parts) + f"  [dim]({store_path})[/]", highlight=False)


@runs_app.command("list")
@user_errors
def runs_list(store: Path | None = StoreOption,
              status: str | None = typer.Option(None, help="Only runs with this status: "
                                                 "running | finished | diverged | interrupted "
                                                 "| failed.")
              ) -> None:
    """One line per run."""
    from l2dynamics.store import STATUSES, RunStore

    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {status!r} is not allowed; use one of {', '.join(STATUSES)}")
    with RunStore(store, create=False) as st:
        records = st.list_runs(status=status)
    rows = []
    for rec in records:
        cfg, summ = rec["config"], rec["summary"] or {}
        rows.append({"id": str(rec["id"]), "name": rec["name"] or "",
                     "status": "stale" if rec["stale"] else rec["status"],
                     "dataset": cfg["dataset"], "model": cfg["model"], "opt": cfg["optimizer"],
                     "lam": f"{cfg['lam']:.3g}", "lr": f"{cfg['lr']:.3g}",
                     "steps": f"{rec['steps_done']}/{rec['steps_total']}",
                     "best acc": _fmt(summ.get("best_test_acc")),
                     "@step": str(summ.get("best_step", "")),
                     "final acc": _fmt(summ.get("final_test_acc"))})
    out.print(runs_table(rows, f"{len(records)} runs"))


def runs_table(rows: list[dict[str, str]], title: str) -> Table:
    """A table that stays readable at 80 columns: columns empty in every row are dropped,
    columns equal in every row go to the title, cells are never wrapped letter by letter."""
    from rich import box

    columns = list(rows[0]) if rows else ["id"]
    shared = [c for c in ("dataset", "model", "opt", "lr")
              if len(rows) > 1 and len({r[c] for r in rows}) == 1]
    if shared:
        title += " — " + ", ".join(f"{c} {rows[0][c]}" for c in shared)
    keep = [c for c in columns if c not in shared and any(r[c] for r in rows)]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in keep:  # every column keeps its width but the name, which gives way
        width = max(len(column), *(len(r[column]) for r in rows)) if rows else len(column)
        table.add_column(column, justify="left" if column in ("name", "status") else "right",
                         no_wrap=True, overflow="ellipsis",
                         min_width=None if column == "name" else width)
    for r in rows:
        table.add_row(*[r[c] for c in keep])
    return table


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}"


@runs_app.command("show")
@user_errors
def runs_show(run_id: int = typer.Argument(..., help="Run ID."),
              store: Path | None = StoreOption) -> None:
    """Config, decay rule, summary and provenance of one run."""
    from l2dynamics.store import RunStore

    with RunStore(store, create=False) as st:
        rec = st.get_run(run_id)
    decay = rec["decay"] or {}
    shown = {
        "id": rec["id"], "name": rec["name"], "status": "stale" if rec["stale"] else rec["status"],
        "steps": f"{rec['steps_done']}/{rec['steps_total']}",
        "diverged_step": rec["diverged_step"], "diverged_cause": rec["diverged_cause"],
        "wall_seconds": rec["wall_seconds"], "device": rec["device"],
        "checkpoint": rec["checkpoint_path"], "error": rec["error"],
        "summary": rec["summary"], "config": rec["config"],
        "decay": {"rule": decay.get("rule"), "decayed": decay.get("decayed"),
                  "not_decayed": decay.get("not_decayed")},
        "versions": rec["versions"],
    }
    out.print(yaml.safe_dump({k: v for k, v in shown.items() if v is not None},
                             sort_keys=False, allow_unicode=True), highlight=False)


EXPORT_FORMATS = ("csv", "json", "parquet")


@runs_app.command("export")
@user_errors
def runs_export(
    path: Path = typer.Argument(..., help="Output file."),
    store: Path | None = StoreOption,
    fmt: str | None = typer.Option(None, "--format", "-f", help="csv | json | parquet "
                                   "(default: from the file suffix)"),
    series: bool = typer.Option(False, "--series", help="Export metric series, not runs."),
    ids: list[int] = typer.Option([], "--id", help="Only these run IDs (repeatable)."),
) -> None:
    """Export the runs table (or the metric series) to CSV, JSON or Parquet."""
    from l2dynamics.store import RunStore, load_runs, load_series

    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r} is not allowed; use {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("parquet export needs pyarrow (pip install pyarrow)") from None
    with RunStore(store, create=False) as st:
        frame = load_series(st, run_ids=ids or None) if series else load_runs(st, ids=ids or None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "json":
        frame.to_json(path, orient="records", indent=1)
    else:
        frame.to_parquet(path, index=False)
    out.print(f"wrote {len(frame)} rows to {path}")


@app.command()
@user_errors
def sweep(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML/JSON): name, base, grid, budget."),
    store: Path | None = StoreOption,
    workers: int | None = typer.Option(
        None, "--workers", "-j", help="Runs at once. local: worker processes (default 1); "
        "ray: cap on tasks in flight (default: as many as the cluster fits)."),
    executor: str = typer.Option("local", "--executor", help="local | ray (Ray tasks; the "
                                 "results come back here and are written to --store)."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to join (HOST:PORT, auto, ray://…); default: "
        "start a Ray instance on this machine. Needs --executor ray."),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="Ray CPUs (and torch "
                                       "threads) per run. Needs --executor ray."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where mnist/cifar10 "
                                         "files live (sets data_dir in every config)."),
    engine: str = typer.Option("auto", "--engine", help="auto | sequential | vectorized: "
                               "train configs that differ only in λ, η, seed, steps as one "
                               "vmapped ensemble (auto: where measured faster)."),
) -> None:
    """Run a grid of configs into the store; runs already finished there are skipped."""
    from l2dynamics.sweep import (
        ENGINES,
        EXECUTORS,
        check_executor,
        check_sweep_memory,
        engine_units,
        load_sweep,
        run_sweep,
    )

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r} is not allowed; use {' or '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    if executor == "local" and (address is not None or cpus_per_run != 1):
        flag = "--address" if address is not None else "--cpus-per-run"
        raise ConfigError(f"{flag} needs --executor ray")
    if executor == "ray" and not cpus_per_run > 0:
        raise ConfigError(f"--cpus-per-run must be > 0, got {cpus_per_run:g}")
    check_executor(executor, workers=workers, cpus_per_run=cpus_per_run, address=address)
    plan = load_sweep(spec)
    if data_dir is not None:
        plan.base["data_dir"] = str(data_dir)
    configs = plan.configs()  # validated and expanded before the store is opened
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r} is not allowed; use {', '.join(ENGINES)}")
    if engine == "vectorized" and executor == "local":
        engine_units(configs, engine)  # a group that cannot be vectorized: one line, exit 2
    if executor == "local":  # Ray workers may run elsewhere, with other memory
        check_sweep_memory(configs)  # a run that cannot fit: one line, exit 2, nothing written
    open_store(store)  # an unusable --store: one line before the progress bar, exit 2
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=err, transient=False)
    from l2dynamics.studies.runs import StoreProgress

    with progress:
        task = progress.add_task(f"sweep {plan.name}: runs", total=len(configs))
        steps = progress.add_task("optimizer steps (read from the store)",
                                  total=sum(c.steps for c in configs))
        with StoreProgress(configs, store, None, every_seconds=2.0,
                           on_steps=lambda done, _: progress.update(steps, completed=done)):
            result = run_sweep(plan, store, workers=workers, configs=configs,
                               executor=executor, address=address, cpus_per_run=cpus_per_run,
                               engine=engine,
                               progress=lambda done, total: progress.update(task,
                                                                            completed=done))
    for message in result.errors:
        err.print(f"[red]failed:[/] {message}", highlight=False, soft_wrap=True)
    from l2dynamics.store import default_store_path

    where = store if store is not None else default_store_path()
    out.print(f"sweep {plan.name}: {result.summary()}  [dim]({where})[/]", highlight=False)
