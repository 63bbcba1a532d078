"""Command line: ``l2dynamics train | runs | sweep | analyze | theory | datasets | keys |
quickstart``.

Every user mistake prints one line (``error: …``) and exits with status 2, before anything is
written; a run stopped with Ctrl-C is checkpointed and can be resumed with ``--resume ID``.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from l2dynamics.errors import ConfigError, L2DynamicsError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Training dynamics with L2 regularization "
                  "(λ = the paper's: loss + λ/2‖θ‖²).")
runs_app = typer.Typer(no_args_is_help=True, help="Inspect and export stored runs.")
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

StoreOption = typer.Option(None, "--store", help="Run store (SQLite); default "
                           "$L2DYNAMICS_STORE or runs/l2dynamics.sqlite")


def user_errors(func: F) -> F:
    """Turn user mistakes into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except L2DynamicsError as exc:
            # plain text: a message such as "pip install l2dynamics[ray]" is not rich markup
            err.print(Text.assemble(("error:", "bold red"), " ", " ".join(str(exc).split())),
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


# --- progress -----------------------------------------------------------------------------------


class _SpeedColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} steps/s" if speed else "– steps/s", style="cyan")


class RichProgress:
    """A progress callback for :class:`l2dynamics.train.Trainer`: steps/s, ETA, last metrics."""

    def __init__(self, description: str, *, min_interval: float = 0.1):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), _SpeedColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[metrics]}"), console=err,
                                 transient=False)
        self.description = description
        self.min_interval = min_interval
        self._task: Any = None
        self._last = 0.0

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, step: int, total: int, metrics: Mapping[str, float] | None) -> None:
        if self._task is None:
            self._task = self.progress.add_task(self.description, total=total, completed=step,
                                                metrics="")
        now = time.perf_counter()
        if metrics is None and now - self._last < self.min_interval and step < total:
            return
        self._last = now
        fields = {}
        if metrics:
            shown = [f"{k}={metrics[k]:.4g}" for k in ("test_acc", "test_loss", "weight_norm")
                     if k in metrics]
            fields["metrics"] = " ".join(shown)
        self.progress.update(self._task, completed=step, **fields)


# --- train --------------------------------------------------------------------------------------


def _build_config(config: Path | None, overrides: list[str], data_dir: Path | None) -> Any:
    from l2dynamics.config import load_config_file, make_config, parse_overrides

    base = load_config_file(config) if config else {}
    extra = parse_overrides(overrides)
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    return make_config(base, extra)


@app.command()
@user_errors
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML/JSON config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="key=value (repeatable)."),
    store: Path | None = StoreOption,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="MNIST/CIFAR-10 files."),
    resume: int | None = typer.Option(None, "--resume", help="Resume stored run ID."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the run's figure (PNG/SVG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train one run into the store."""
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
        cfg = _build_config(config, overrides, data_dir)
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
    _print_result(result, st.path)
    if plot is not None:
        plot_runs({f"run {result.run_id}": result.history}, plot,
                  title=f"run {result.run_id}: {label}")
        out.print(f"figure: {plot}")
    if result.status == "interrupted":
        out.print(f"interrupted at step {result.steps_done}; resume with "
                  f"[bold]l2dynamics train --resume {result.run_id} --store {st.path}[/]")
        raise typer.Exit(130)


def _print_result(result: Any, store_path: Path) -> None:
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


# --- runs ---------------------------------------------------------------------------------------


@runs_app.command("list")
@user_errors
def runs_list(store: Path | None = StoreOption,
              status: str | None = typer.Option(None, help="Only runs with this status.")) -> None:
    """One line per run."""
    from l2dynamics.store import STATUSES, RunStore

    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {status!r} is not allowed; use one of {', '.join(STATUSES)}")
    with RunStore(store, create=False) as st:
        records = st.list_runs(status=status)
    table = Table(title=f"{len(records)} runs", title_justify="left")
    for column in ("id", "name", "status", "dataset", "model", "opt", "lam", "lr", "steps",
                   "best acc", "@step", "final acc"):
        left = column in ("name", "status")
        table.add_column(column, justify="left" if left else "right", overflow="fold",
                         no_wrap=column == "status", min_width=11 if column == "status" else None)
    for rec in records:
        cfg, summ = rec["config"], rec["summary"] or {}
        state = "stale" if rec["stale"] else rec["status"]
        table.add_row(str(rec["id"]), rec["name"] or "", state, cfg["dataset"], cfg["model"],
                      cfg["optimizer"], f"{cfg['lam']:g}", f"{cfg['lr']:g}",
                      f"{rec['steps_done']}/{rec['steps_total']}",
                      _fmt(summ.get("best_test_acc")), str(summ.get("best_step", "")),
                      _fmt(summ.get("final_test_acc")))
    out.print(table)


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


# --- datasets and keys --------------------------------------------------------------------------


@app.command()
@user_errors
def datasets(data_dir: Path | None = typer.Option(None, "--data-dir",
                                                  help="Where MNIST/CIFAR-10 files live.")) -> None:
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
    """Every config key with its default and meaning."""
    from l2dynamics.config import Config

    comments = _field_comments(Config)
    table = Table(title_justify="left")
    for column in ("key", "default", "meaning"):
        table.add_column(column)
    for key, value in Config().to_dict().items():
        table.add_row(key, json.dumps(value), comments.get(key, ""))
    out.print(table)


def _field_comments(cls: type) -> dict[str, str]:
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    return comments


# --- quickstart (the main job until the mini reproduction lands) --------------------------------


@app.command()
@user_errors
def quickstart(
    out_dir: Path = typer.Option(Path("out/quickstart"), "--out", help="Figure and store."),
    steps: int = typer.Option(20000, help="Updates per run."),
    lams: str = typer.Option("0,1e-4,1e-3,1e-2", help="Comma-separated λ values."),
) -> None:
    """Train an MLP on MNIST-1D at several λ and plot test accuracy vs step and vs λ·η·step."""
    from l2dynamics.config import make_config
    from l2dynamics.report import plot_runs
    from l2dynamics.store import RunStore
    from l2dynamics.train import Trainer

    lam_values = _number_list(lams, "--lams", minimum=0.0)
    base = dict(dataset="mnist1d", n_train=4000, n_test=4000, model="fc", width=256, depth=2,
                optimizer="sgd", lr=0.1, batch_size=128, steps=steps, eval_per_decade=12)
    configs = [make_config(base, lam=lam, name=f"quickstart λ={lam:g}") for lam in lam_values]
    histories = {}
    with RunStore(out_dir / "runs.sqlite") as st:
        for cfg in configs:
            trainer = Trainer(cfg)
            trainer.store = st
            with RichProgress(cfg.name) as bar:
                trainer.progress = bar
                result = trainer.run()
            _print_result(result, st.path)
            histories[f"λ={cfg.lam:g}"] = result.history
    figure = plot_runs(histories, out_dir / "quickstart.png",
                       title="MLP on MNIST-1D, SGD η=0.1: test accuracy for several λ")
    out.print(f"figure: {figure}")


def _number_list(text: str, option: str, *, minimum: float = 0.0, integer: bool = False,
                 positive: bool = False) -> list:
    """Parse "a,b,c" into numbers, refusing NaN/inf, values below `minimum` and empties."""
    import math

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    for v in values:
        if not math.isfinite(v) or v < minimum or (positive and v <= 0):
            bound = "> 0" if positive else f">= {minimum:g}"
            raise ConfigError(f"{option} values must be finite and {bound}, got {v:g}")
        if integer and not v.is_integer():
            raise ConfigError(f"{option} values must be integers, got {v:g}")
    return [int(v) for v in values] if integer else values


# --- theory -------------------------------------------------------------------------------------


@app.command()
@user_errors
def theory(
    out_dir: Path = typer.Option(Path("out/theory"), "--out", help="Figures, tables, JSON."),
    widths: str = typer.Option("256,1024,2048", help="Network widths to train."),
    lams: str = typer.Option("0.3,1,3", help="λ of the trained networks (flow units)."),
    n_train: int = typer.Option(128, help="Training points (full batch)."),
    n_test: int = typer.Option(1000, help="Test points."),
    depth: int = typer.Option(2, help="Hidden layers (k = depth + 1)."),
    horizon: float = typer.Option(3.0, help="Train networks until λ·t = horizon."),
    theory_init: str = typer.Option("zero", help="Theory curves start at zero or an NNGP "
                                    "sample: zero | nngp."),
    label_scale: float = typer.Option(1.0, help="Theory curves fit label_scale·one-hot."),
    lr_fraction: float = typer.Option(0.5, help="GD step in flow time, as a fraction of "
                                      "1/θ_max (smaller = closer to gradient flow, slower)."),
    window_delta: float = typer.Option(0.01, help="High-accuracy window: accuracy ≥ peak − "
                                       "window_delta."),
    seeds: str = typer.Option("0", help="Network init seeds (times get CIs over them)."),
    record_points: int = typer.Option(40, help="Log-spaced network snapshots per run."),
    hessian_points: int = typer.Option(6, help="Snapshots with Hessian eigenvalues (0: none)."),
    no_networks: bool = typer.Option(False, "--no-networks", help="Theory only (seconds)."),
    quick: bool = typer.Option(False, help="Small and fast (for a smoke test)."),
) -> None:
    """Infinite-width theory vs wide networks: kernel decay, t* ∝ 1/λ, linear contrast."""
    import numpy as np

    from l2dynamics.report.theory import (
        plot_characteristic_times,
        plot_hessian,
        plot_network_times,
        plot_networks,
        plot_theory_curves,
    )
    from l2dynamics.studies.theory import TheoryStudy, run_theory_study

    study = TheoryStudy(
        n_train=n_train, n_test=n_test, depth=depth, horizon=horizon,
        theory_init=theory_init, label_scale=label_scale, lr_fraction=lr_fraction,
        window_delta=window_delta,
        widths=tuple(_number_list(widths, "--widths", minimum=1, integer=True)),
        lams=tuple(_number_list(lams, "--lams", positive=True)),
        seeds=tuple(_number_list(seeds, "--seeds", minimum=0, integer=True)),
        record_points=record_points, hessian_points=hessian_points)
    if record_points < 3:
        raise ConfigError(f"--record-points must be ≥ 3, got {record_points}")
    if hessian_points < 0:
        raise ConfigError(f"--hessian-points must be ≥ 0, got {hessian_points}")
    if no_networks:
        study.widths = ()
    if quick:
        study.widths, study.n_train, study.n_test = (64, 512), 48, 300
        study.lams = (3.0,) if len(study.seeds) == 1 else (1.0, 3.0, 10.0)
        study.horizon, study.record_points, study.kernel_points = 2.0, 12, 12
        study.theory_lams = tuple(np.logspace(-1, 1, 5).tolist())
    result = run_theory_study(study, progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [plot_theory_curves(result, out_dir / "theory_curves.png"),
               plot_characteristic_times(result, out_dir / "characteristic_times.png")]
    if not result.networks.empty:
        figures += [plot_networks(result, out_dir / "networks.png"),
                    plot_network_times(result, out_dir / "network_times.png")]
        if not result.hessian.empty:
            figures.append(plot_hessian(result, out_dir / "hessian.png"))
            result.hessian.to_csv(out_dir / "hessian.csv", index=False)
        for name in ("network_times", "network_time_summary", "network_time_fits",
                     "time_verdict"):
            getattr(result, name).to_csv(out_dir / f"{name}.csv", index=False)
    result.theory_times.to_csv(out_dir / "theory_times.csv", index=False)
    result.fits.to_csv(out_dir / "fits.csv", index=False)
    result.comparisons.to_csv(out_dir / "comparisons.csv", index=False)
    result.networks.to_csv(out_dir / "networks.csv", index=False)
    (out_dir / "summary.json").write_text(json.dumps(result.summary, indent=1, default=float))
    _print_frame("power laws t ∝ λ^p of the theory's characteristic times", result.fits)
    contrast = result.theory_times.pivot(index="lam", columns="model",
                                         values=["peak_acc", "final_acc"]).reset_index()
    contrast.columns = ["λ", "peak acc deep", "peak acc linear", "final acc deep",
                        "final acc linear"]
    _print_frame(f"deep (k={result.study.k}) vs linear (k=1) flow, final = λt "
                 f"{result.study.theory_horizon:g}", contrast)
    if result.networks.empty:
        out.print("figures: " + ", ".join(str(f) for f in figures))
        return
    shown = result.comparisons[["width", "lam", "seed", "loss_rel_err_lazy_max",
                                "loss_rel_err_all_rms", "t_star_net", "t_star_flow",
                                "peak_acc_net", "peak_acc_flow", "lazy_until_lam_t"]]
    shown.columns = ["width", "λ", "seed", "loss err (lazy, max)", "loss err (rms)", "t* net",
                     "t* flow", "peak acc net", "peak acc flow", "lazy until λt"]
    _print_frame("finite networks vs the infinite-width flow (flow units)", shown)
    summary = result.network_time_summary
    if len(result.study.seeds) > 1 and not summary.empty:
        table = summary[summary["source"] == "network"].copy()
        table["t (95 % CI)"] = [f"{m:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(m) else "—"
                                for m, lo, hi in zip(table["mean"], table["low"], table["high"],
                                                     strict=True)]
        _print_frame("network times over seeds (flow units; seen = inside the horizon)",
                     table[["width", "lam", "time", "seen", "seeds", "t (95 % CI)", "lam_t"]])
    if not result.time_verdict.empty:
        _print_frame("which times scale as 1/λ (networks vs the flow from their own outputs)",
                     result.time_verdict)
    if not result.hessian.empty:
        last = result.hessian.sort_values("t").groupby(["width", "lam"]).tail(
            result.study.hessian_k)
        table = last.groupby(["width", "lam"]).agg(
            lam_t=("lam_t", "max"), smallest_over_lam=("bottom_over_lam", "min"),
            median_bottom_over_lam=("bottom_over_lam", "median")).reset_index()
        _print_frame("smallest Hessian eigenvalues / λ at the end of training", table)
    out.print("figures: " + ", ".join(str(f) for f in figures))


def _open_store(store: Path | None) -> None:
    """Open (creating if absent) the run store once, so a path that is a folder or not a
    SQLite file is refused up front (StoreError) rather than after the work has begun."""
    from l2dynamics.store import RunStore

    with RunStore(store):
        pass


def _print_frame(title: str, frame: Any) -> None:
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    out.print(table)


# --- sweep --------------------------------------------------------------------------------------


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
    _open_store(store)  # an unusable --store: one line before the progress bar, exit 2
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=err, transient=False)
    with progress:
        task = progress.add_task(f"sweep {plan.name}", total=len(configs))
        result = run_sweep(plan, store, workers=workers, configs=configs, executor=executor,
                           address=address, cpus_per_run=cpus_per_run, engine=engine,
                           progress=lambda done, total: progress.update(task, completed=done))
    for message in result.errors:
        err.print(f"[red]failed:[/] {message}", highlight=False, soft_wrap=True)
    from l2dynamics.store import default_store_path

    where = store if store is not None else default_store_path()
    out.print(f"sweep {plan.name}: {result.summary()}  [dim]({where})[/]", highlight=False)


# --- analysis -----------------------------------------------------------------------------------

analyze_app = typer.Typer(no_args_is_help=True, help="Analyses of stored runs.")
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("tstar")
@user_errors
def analyze_tstar(
    store: Path | None = StoreOption,
    ids: list[int] = typer.Option([], "--id", help="Only these run IDs (repeatable)."),
    estimator: str = typer.Option("smoothed", help="raw | smoothed | onset"),
    train_threshold: float = typer.Option(0.99, help="Under-fitting guard on train accuracy."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write CSV tables and a figure."),
) -> None:
    """t* and c = λ·t* per run, seed CIs, the slope of log t* vs log λ, and a verdict."""
    from l2dynamics.analysis import ESTIMATORS
    from l2dynamics.analysis.tstar import (
        seed_curves,
        tstar_fits,
        tstar_summary,
        tstar_table,
        tstar_verdict,
    )
    from l2dynamics.store import RunStore

    if estimator not in ESTIMATORS:
        raise ConfigError(f"--estimator {estimator!r} is not allowed; use {', '.join(ESTIMATORS)}")
    if not 0 < train_threshold <= 1:
        raise ConfigError(f"--train-threshold must be in (0, 1], got {train_threshold:g}")
    with RunStore(store, create=False) as st:
        table = tstar_table(st, ids or None, train_threshold=train_threshold)
        curves = seed_curves(st, table) if out_dir is not None and not table.empty else None
    if table.empty:
        raise ConfigError("no finished classification runs with test accuracy in the store")
    summary = tstar_summary(table, estimator=estimator)
    fits = tstar_fits(table, estimator=estimator)
    verdict = tstar_verdict(table, estimator=estimator)
    _print_frame("verdict", verdict)
    _print_frame("log t* vs log λ per learning rate", fits[["lr", "runs", "used",
                 "excluded_underfit", "excluded_censored", "slope", "ci_low", "ci_high", "r2",
                 "verdict", "c_eta", "c_eta_low", "c_eta_high"]])
    _print_frame("per (η, λ), over seeds", summary[["lr", "lam", "seeds", "tstar", "tstar_low",
                 "tstar_high", "c", "peak_acc", "peak_acc_low", "peak_acc_high",
                 "test_noise_se", "all_fit_train", "any_peak_at_end"]])
    if out_dir is not None:
        from l2dynamics.report.figures import plot_collapse, plot_tstar

        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in (("runs", table), ("summary", summary), ("fits", fits),
                            ("verdict", verdict), ("curves", curves)):
            frame.to_csv(out_dir / f"tstar_{name}.csv", index=False)
        figures = [plot_tstar(table, summary, fits, out_dir / "tstar.png", estimator=estimator),
                   plot_collapse(curves, out_dir / "collapse.png")]
        out.print("figures: " + ", ".join(str(f) for f in figures))


@app.command()
@user_errors
def predict(
    config: Path | None = typer.Argument(None, help="Run config (YAML/JSON) of the full run."),
    budget: int = typer.Option(..., "--budget", help="Steps of the full run, T."),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE overrides."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where dataset files live."),
    seeds: str = typer.Option("0,1,2", help="Probe seeds."),
    lam_ref: float | None = typer.Option(None, "--lam-ref", help="Probe λ (default: the λ "
                                         "whose probe is 1/20 of the budget)."),
    probe_k: float = typer.Option(4.0, "--probe-k", help="Probe length in λ·η·steps."),
    estimator: str = typer.Option("onset", help="t* estimator: onset | smoothed | raw."),
    early_stop: bool = typer.Option(True, "--early-stop/--no-early-stop",
                                    help="End a probe early once it has settled below the "
                                    "training accuracy it must reach."),
    max_probe_steps: int | None = typer.Option(None, "--max-probe-steps",
                                               help="Longest step-down probe per seed "
                                               "(default: the budget)."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write a figure and JSON here."),
) -> None:
    """Predict the best λ for a T-step run from short probe runs at a large λ."""
    from l2dynamics.studies.predict import ema_timescale_lambda, predict_lambda

    cfg = _build_config(config, overrides, data_dir)
    pred = predict_lambda(cfg, budget, lam_ref=lam_ref, probe_k=probe_k, estimator=estimator,
                          early_stop=early_stop, max_probe_steps=max_probe_steps,
                          seeds=_number_list(seeds, "--seeds", minimum=0, integer=True),
                          progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    for a in pred.attempts:
        ts = ", ".join(f"{t:.0f}" for t in a.tstars)
        ran = "/".join(str(n) for n in a.steps_done)
        out.print(f"probe λ={a.lam:.3g}: {len(a.tstars)} × {a.steps} steps (ran {ran}); t* = "
                  f"{ts}; fits "
                  f"train: {sum(a.fits_train)}/{len(a.fits_train)}; censored: "
                  f"{sum(a.censored)}", highlight=False)
    cost = f"probe compute {pred.probe_steps} steps = {pred.compute_fraction:.2f} of one run"
    if pred.ok:
        out.print(f"λ_pred = {pred.lam:.3g}  [{pred.lam_low:.3g}, {pred.lam_high:.3g}] for "
                  f"T = {budget} (c·η = λ_ref·η·t* = {pred.c_eta:.3g}, t*_ref = "
                  f"{pred.tstar_ref:.0f} steps at λ_ref = {pred.lam_ref:.3g}); {cost}",
                  highlight=False)
    else:
        err.print(Text(f"no prediction: {pred.message}; {cost}"), soft_wrap=True)
    out.print(f"for comparison, the zero-cost EMA-timescale rule (τ = T/4) gives λ = "
              f"{ema_timescale_lambda(cfg, budget):.3g}", highlight=False)
    if out_dir is not None:
        from dataclasses import asdict

        from l2dynamics.report.figures import plot_prediction

        out_dir.mkdir(parents=True, exist_ok=True)
        summary = asdict(pred)
        for a in summary["attempts"]:
            a.pop("histories")
        (out_dir / "prediction.json").write_text(json.dumps(summary, indent=1, default=float))
        out.print(f"figure: {plot_prediction(pred, out_dir / 'prediction.png')}")
    if not pred.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def tune(
    config: Path | None = typer.Argument(None, help="Run config (YAML/JSON) of the full run."),
    budget: int = typer.Option(..., "--budget", help="Steps of every full run, T."),
    grid: str = typer.Option("1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1",
                             help="λ grid (λ = 0 is added)."),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE overrides."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where dataset files live."),
    seeds: str = typer.Option("0,1,2", help="Seeds of every method."),
    store: Path = typer.Option(Path("runs/tune.sqlite"), help="Run store (resumable)."),
    workers: int = typer.Option(1, "-j", "--workers", help="Parallel training processes."),
    optuna: bool = typer.Option(True, "--optuna/--no-optuna", help="Also run Optuna TPE."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write a figure and JSON here."),
) -> None:
    """Compare ways of choosing λ for a T-step budget on one config: grid search, the
    one-short-run prediction, Optuna, the EMA-timescale rule and AutoL2 variants."""
    from l2dynamics.studies.tuning import TuningTask, format_result, run_tuning_task

    cfg = _build_config(config, overrides, data_dir)
    if budget < 1:
        raise ConfigError(f"--budget must be ≥ 1 step, got {budget}")
    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    lams = _number_list(grid, "--grid", minimum=0.0)
    if not [x for x in lams if x > 0]:
        raise ConfigError("--grid must hold at least one λ > 0")
    if optuna:
        try:
            import optuna as _  # noqa: F401
        except ImportError:
            raise ConfigError("--optuna needs the optuna package (pip install optuna), or "
                              "pass --no-optuna") from None
    base = {k: v for k, v in cfg.to_dict().items() if k not in ("lam", "seed", "steps")}
    task = TuningTask(config.stem if config else "config", base, budget,
                      grid=[x for x in lams if x > 0],
                      seeds=_number_list(seeds, "--seeds", minimum=0, integer=True))
    _open_store(store)  # an unusable --store: one line, exit 2, before any run starts
    res = run_tuning_task(task, store, workers=workers, use_optuna=optuna,
                          cache_dir=store.parent / "tuning_cache",
                          log=lambda msg: err.print(f"[dim]{msg}[/]"))
    out.print(format_result(res), highlight=False)
    if out_dir is not None:
        from l2dynamics.report.figures import plot_tuning

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "tuning.json").write_text(json.dumps(res, indent=1, default=float))
        out.print(f"figure: {plot_tuning(res, out_dir / 'tuning.png')}")


@app.command()
@user_errors
def norms(
    study: str = typer.Argument("equilibrium",
                                help="Which study: equilibrium | traces | projection."),
    cases: str = typer.Option("sgd,sgdm,adam_l2,adamw", help="Optimizer cases to run."),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE overrides of the BN net."),
    relax_times: float = typer.Option(10.0, "--relax-times",
                                      help="Relaxation times before measuring."),
    seed: int = typer.Option(0, help="Seed of every run."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write the table (CSV) here."),
    optimizers: str = typer.Option("adam,sgd", "--optimizers",
                                   help="grid: which optimizers' η×λ grids (adam, sgd)."),
    steps: int | None = typer.Option(None, help="grid/bridge: steps per run (default: the "
                                                "study's own)."),
    seeds: str = typer.Option("", help="grid/bridge: seeds, comma-separated (default: the "
                                       "study's own)."),
    store: Path = typer.Option(Path("runs/norms.sqlite"),
                               help="grid/bridge: run store (finished runs are reused)."),
    workers: int = typer.Option(1, "-j", "--workers", help="grid/bridge: parallel processes."),
    lrs: str = typer.Option("", "--lrs", help="grid: η values (default: the optimizer's own)."),
    lams: str = typer.Option("", "--lams", help="grid/bridge: λ values (default: the study's "
                                                "own)."),
) -> None:
    """Normalization studies (van Laarhoven 2017). `equilibrium`: measured/predicted weight
    norm and RMS angular update of every scale-invariant tensor of a BN network, per optimizer,
    after --relax-times relaxation times. `traces`: ‖w‖, effective LR and angular update
    against step for λ ∈ {0, 1e-3, 5e-3, 2e-2} (SGD) with the predictions (needs --out).
    `projection`: final test error against λ, plain L2 vs the ‖w‖ = const update (Adam).
    `grid`: the η×λ grid per optimizer — test error heat map, the effective-LR collapse and
    the fitted exponents (needs --out). `bridge`: t* and peak accuracy of a CNN without and
    with BN under one λ grid (needs --out)."""
    from l2dynamics.config import parse_overrides
    from l2dynamics.studies.norms import CASES, equilibrium_check, norm_traces, projection_vs_l2

    studies = ("equilibrium", "traces", "projection", "grid", "bridge")
    if study not in studies:
        raise ConfigError(f"study {study!r} is not available; use: {', '.join(studies)}")
    if study in ("grid", "bridge"):
        if out_dir is None:
            raise ConfigError(f"norms {study} writes figures: give --out DIR")
        if workers < 1:
            raise ConfigError(f"--workers must be ≥ 1, got {workers}")
        if steps is not None and steps < 1:
            raise ConfigError(f"--steps must be ≥ 1, got {steps}")
        kw: dict = {"store": store, "workers": workers, "base": parse_overrides(overrides),
                    "progress": lambda msg: err.print(f"[dim]{msg}[/]")}
        if steps is not None:
            kw["steps"] = steps
        if seeds.strip():
            kw["seeds"] = tuple(_number_list(seeds, "--seeds", minimum=0, integer=True))
        grid = {k: tuple(_number_list(v, f"--{k}", positive=True)) for k, v in
                (("lrs", lrs), ("lams", lams)) if v.strip()}
        if study == "bridge" and "lrs" in grid:
            raise ConfigError("--lrs applies to the grid study only (set lr with --set)")
        store.parent.mkdir(parents=True, exist_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        if study == "grid":
            _norms_grid(optimizers, out_dir, kw, grid)
        else:
            _norms_bridge(out_dir, {**kw, **({"lams": grid["lams"]} if "lams" in grid else {})})
        return
    if study == "projection":
        table = projection_vs_l2(base=parse_overrides(overrides),
                                 progress=lambda msg: err.print(f"[dim]{msg}[/]"))
        summary = (table.groupby(["mode", "lam"])["test_error"].agg(["mean", "std", "count"])
                   .reset_index())
        _print_frame("final test error by λ (seed mean)", summary)
        if out_dir is not None:
            from l2dynamics.report.figures import plot_projection_study

            out_dir.mkdir(parents=True, exist_ok=True)
            table.to_csv(out_dir / "projection.csv", index=False)
            out.print(f"figure: {plot_projection_study(table, out_dir / 'projection.png')}")
        return
    if study == "traces":
        if out_dir is None:
            raise ConfigError("norms traces writes a figure: give --out DIR")
        from l2dynamics.report.figures import plot_norm_traces

        traces = norm_traces(base=parse_overrides(overrides), seed=seed,
                             progress=lambda msg: err.print(f"[dim]{msg}[/]"))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "traces.json").write_text(json.dumps(traces))
        names = sorted({r["tensor"] for r in traces["runs"]})
        for name in names:
            path = plot_norm_traces(traces, out_dir / f"traces_{name.replace('.', '_')}.png",
                                    tensor=name)
            out.print(f"figure: {path}")
        return
    names = [c.strip() for c in cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown or not names:
        raise ConfigError(f"--cases {unknown or cases!r}: use some of {', '.join(CASES)}")
    if not (math.isfinite(relax_times) and relax_times > 0):
        raise ConfigError(f"--relax-times must be a finite number > 0, got {relax_times!r}")
    table = equilibrium_check({c: CASES[c] for c in names}, base=parse_overrides(overrides),
                              relax_times=relax_times, seed=seed,
                              progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    _print_frame("measured / predicted at equilibrium", table[[
        "case", "tensor", "steps", "relaxation_steps", "norm", "pred_norm", "norm_ratio",
        "angle_rms", "pred_angle", "angle_ratio"]])
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_dir / "equilibrium.csv", index=False)
        out.print(f"table: {out_dir / 'equilibrium.csv'}")


def _norms_grid(optimizers: str, out_dir: Path, kw: dict, grid: dict) -> None:
    from l2dynamics.report.figures import plot_eta_lam_grid
    from l2dynamics.studies.norms import GRIDS, collapse_summary, eta_lam_grid

    names = [o.strip() for o in optimizers.split(",") if o.strip()]
    if not names or any(o not in GRIDS for o in names):
        raise ConfigError(f"--optimizers {optimizers!r}: use some of {', '.join(GRIDS)}")
    summaries = {}
    for opt in names:
        values = {**GRIDS[opt], **grid}
        table = eta_lam_grid(opt, values["lrs"], values["lams"],
                             **{"steps": values["steps"], **kw,
                                "base": {**values["base"], **kw["base"]}})
        summary = collapse_summary(table)
        summaries[opt] = summary
        table.to_csv(out_dir / f"grid_{opt}.csv", index=False)
        for key, what in (("fit", "effective LR"),
                          ("fit_gbar_normalized", "effective LR × ‖ḡ‖^a")):
            fit = summary.get(key)
            if fit:
                line = (f"{opt}: {what} ∝ η^{fit['p']:.3f} [{fit['ci_p'][0]:.3f}, "
                        f"{fit['ci_p'][1]:.3f}] · λ^{fit['q']:.3f} [{fit['ci_q'][0]:.3f}, "
                        f"{fit['ci_q'][1]:.3f}] over {fit['n']} relaxed runs (predicted "
                        f"p = {summary['predicted_p']:.3f}, q = {summary['predicted_q']:.3f})")
                if "supports" in fit:
                    line += f"; supports {fit['supports']}"
            else:
                line = f"{opt}: no {what} fit ({summary.get(key + '_error')})"
            out.print(line, highlight=False)
        r2 = summary["collapse_r2"]
        out.print(f"  test error explained (R², quadratic in log x): combination "
                  f"{r2['predicted_combination']:.2f}, measured effective LR "
                  f"{r2['measured_eff_lr']:.2f}, η alone {r2['lr_alone']:.2f}, λ alone "
                  f"{r2['lam_alone']:.2f}", highlight=False)
        out.print(f"figure: {plot_eta_lam_grid(table, summary, out_dir / f'grid_{opt}.png')}")
    (out_dir / "grid.json").write_text(json.dumps(summaries, indent=1, default=float))


def _norms_bridge(out_dir: Path, kw: dict) -> None:
    from l2dynamics.report.figures import plot_bn_bridge
    from l2dynamics.studies.norms import bn_bridge

    result = bn_bridge(**kw)
    for norm, res in result["norms"].items():
        fit = res["fit"]
        slope = (f"slope {fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}] "
                 f"over {int(fit['used'])} runs" if fit and fit.get("used") else "no fit")
        out.print(f"norm={norm}: log t* vs log λ {slope} → {res['verdict']}; peak accuracy "
                  f"range over λ {res['peak_acc_range']:.4f}", highlight=False)
    (out_dir / "bridge.json").write_text(json.dumps(result, default=float))
    out.print(f"figure: {plot_bn_bridge(result, out_dir / 'bridge.png')}")


@app.command()
@user_errors
def reproduce(
    suite: str = typer.Option("mini", help="mini (2-core CPU, embedded data, ~15 min) | paper "
                              "(MNIST/CIFAR-10 files, GPU, many hours; resumable)."),
    out_dir: Path = typer.Option(Path("report"), "--out", help="Report folder: index.html, "
                                 "summary.json, figures/."),
    store: Path | None = typer.Option(None, help="Run store (default: OUT/runs.sqlite); "
                                      "finished runs are reused."),
    workers: int = typer.Option(2, "-j", "--workers", help="Parallel training processes."),
    only: list[str] = typer.Option([], "--only", help="Only these studies (repeatable)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="paper: MNIST/CIFAR files."),
    steps_scale: float = typer.Option(1.0, "--steps-scale", help="paper: scale every run's "
                                      "steps (e.g. 0.1 for a reduced run)."),
    subset: int | None = typer.Option(None, "--subset", help="paper: training examples."),
    browser_check: bool = typer.Option(False, "--browser-check", help="Open the report in "
                                       "headless Chromium and check images and console."),
    bf16: bool = typer.Option(True, "--bf16/--fp32", help="paper suite on a GPU: bf16 autocast "
                              "and channels_last (--fp32: plain float32)."),
) -> None:
    """Reproduce both papers: every study, its figures and verdicts, one HTML report."""
    import shlex

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
                        fast=bf16, command=command.strip(),
                        log=lambda msg: err.print(f"[dim]{msg}[/]"))
    for study in summary["studies"]:
        out.print(f"[bold]{study['key']}[/] ({study['status']}, "
                  f"{study['wall_seconds']:.0f} s)")
        for c in study["claims"]:
            ci = f" {c['ci']}" if c.get("ci") else ""
            out.print(f"  [{c['verdict']}] {c['claim']} — {c['measured']}{ci}",
                      highlight=False, markup=False)
        if study["error"]:
            out.print(f"  [red]failed:[/] {study['error']}", highlight=False)
    counts = verdict_counts(summary)
    out.print(f"{summary['wall_seconds']:.0f} s; verdicts {counts}; report: "
              f"{out_dir / 'index.html'}", highlight=False)
    if browser_check:
        from l2dynamics.report.browser import check_report

        result = check_report(out_dir)
        out.print(f"browser: {result}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
