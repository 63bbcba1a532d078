"""The older spellings of the studies — ``theory``, ``norms …``, ``analyze tstar``, ``tune``,
``predict`` — and ``quickstart``. Each maps its options onto a study's parameters and calls
:func:`l2dynamics.cli.study.drive`, so they run exactly the code of ``l2dynamics study KEY``
and of the suites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from l2dynamics.cli.app import analyze_app, app
from l2dynamics.cli.common import (
    StoreOption,
    build_config,
    number_list,
    out,
    print_rows,
    user_errors,
)
from l2dynamics.cli.study import drive, show
from l2dynamics.errors import ConfigError


def _params(key: str, values: dict[str, Any]) -> tuple[Any, Any]:
    from l2dynamics.studies.base import make_params
    from l2dynamics.studies.registry import get_study

    unit = get_study(key)
    return unit, make_params(unit.Params, values)


def _need_a_run(command: str, config: Path | None, overrides: list[str]) -> None:
    """Refuse to stand in the built-in defaults for the user's run without a word."""
    if config is None and not overrides:
        raise ConfigError(f"{command} needs the run it is for: a CONFIG file (e.g. "
                          "configs/example.yaml) or --set KEY=VALUE overrides (the rest are "
                          "the defaults of `l2dynamics keys`)")


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
    """Infinite-width theory vs wide networks (the study `theory`).

    Kernel decay, t* ∝ 1/λ and the linear contrast; prints the tables and verdicts, writes the
    figures under OUT/figures/theory/ and the data as CSV."""
    values: dict[str, Any] = dict(
        n_train=n_train, n_test=n_test, depth=depth, horizon=horizon, theory_init=theory_init,
        label_scale=label_scale, lr_fraction=lr_fraction, window_delta=window_delta,
        widths=tuple(number_list(widths, "--widths", minimum=1, integer=True)),
        lams=tuple(number_list(lams, "--lams", positive=True)),
        seeds=tuple(number_list(seeds, "--seeds", minimum=0, integer=True)),
        record_points=record_points, hessian_points=hessian_points)
    if no_networks:
        values["widths"] = ()
    if quick:
        values.update(widths=(64, 512), n_train=48, n_test=300, horizon=2.0, record_points=12,
                      kernel_points=12, lams=(3.0,) if len(values["seeds"]) == 1
                      else (1.0, 3.0, 10.0),
                      theory_lams=(0.1, 0.31622776601683794, 1.0, 3.1622776601683795, 10.0))
    unit, params = _params("theory", values)
    drive(unit, params, key="theory", out_dir=out_dir)


NORM_STUDIES = ("equilibrium", "traces", "projection", "grid", "bridge")


@app.command()
@user_errors
def norms(
    which: str = typer.Argument("equilibrium", metavar="STUDY",
                                help="Which study: equilibrium | traces | projection | grid | "
                                "bridge."),
    cases: str = typer.Option("sgd,sgdm,adam_l2,adamw", help="equilibrium: optimizer cases, "
                             "comma-separated, from sgd | sgdm | adam_l2 | adamw."),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE overrides of the network."),
    relax_times: float = typer.Option(10.0, "--relax-times",
                                      help="Relaxation times before measuring."),
    seed: int = typer.Option(0, help="Seed of every run."),
    out_dir: Path = typer.Option(Path("out/norms"), "--out", help="Figures and tables."),
    optimizers: str = typer.Option("adam,sgd", "--optimizers",
                                   help="grid: which optimizers' η×λ grids, comma-separated, "
                                   "from adam | sgd."),
    steps: int | None = typer.Option(None, help="traces/projection/grid/bridge: steps per run "
                                     "(default: the library's own)."),
    seeds: str = typer.Option("", help="projection/grid/bridge: seeds, comma-separated."),
    store: Path = typer.Option(Path("runs/norms.sqlite"),
                               help="Run store (finished runs are reused)."),
    workers: int = typer.Option(1, "-j", "--workers", help="Parallel processes."),
    lrs: str = typer.Option("", "--lrs", help="grid: η values (default: the optimizer's own)."),
    lams: str = typer.Option("", "--lams", help="traces/projection/grid/bridge: λ values."),
) -> None:
    """Normalization studies (van Laarhoven 2017): the studies norm_<STUDY>.

    `equilibrium`: measured/predicted weight norm and RMS angular update of every
    scale-invariant tensor of a BN network, per optimizer, after --relax-times relaxation
    times. `traces`: ‖w‖, effective LR and angular update against step for several λ (SGD)
    with the predictions. `projection`: final test error against λ, plain L2 vs the
    ‖w‖ = const update (Adam). `grid`: the η×λ grid per optimizer — test error heat map, the
    effective-LR collapse and the fitted exponents. `bridge`: t* and peak accuracy of a CNN
    without and with BN under one λ grid."""
    from l2dynamics.config import parse_overrides
    from l2dynamics.studies import norms as lib

    if which not in NORM_STUDIES:
        raise ConfigError(f"study {which!r} is not available; use: {', '.join(NORM_STUDIES)}")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps must be ≥ 1, got {steps}")
    base = parse_overrides(overrides)
    lam_values = tuple(number_list(lams, "--lams", minimum=0.0)) if lams.strip() else None
    seed_values = (tuple(number_list(seeds, "--seeds", minimum=0, integer=True))
                   if seeds.strip() else None)
    if which == "equilibrium":
        names = [c.strip() for c in cases.split(",") if c.strip()]
        unknown = [c for c in names if c not in lib.CASES]
        if unknown or not names:
            raise ConfigError(f"--cases {unknown or cases!r}: use some of "
                              f"{', '.join(lib.CASES)}")
        values = dict(cases={c: lib.CASES[c] for c in names}, base=base,
                      relax_times=relax_times, measure_times=5.0, windows=50, seed=seed,
                      description="BN MLP on MNIST-1D, L2 on the weights only; each case "
                      f"runs {relax_times:g} relaxation times, then is measured over 5 more")
    elif which == "traces":
        values = dict(lams=lam_values or (0.0, 1e-3, 5e-3, 2e-2), base=base,
                      steps=steps or 6000, seed=seed, all_tensors=True,
                      description="SGD η = 0.1 on the BN MLP")
    elif which == "projection":
        values = dict(lams=lam_values or (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), base=base,
                      steps=steps or 3000, seeds=seed_values or (0, 1),
                      description="Adam η = 1e-3 on the BN MLP, plain L2 vs ‖w‖ = const")
    elif which == "grid":
        values = _grid_values(optimizers, lrs, lam_values, steps, base, seed_values)
    else:
        if lrs.strip():
            raise ConfigError("--lrs applies to the grid study only (set lr with --set)")
        values = dict(lams=lam_values or (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2), steps=steps or 4000,
                      seeds=seed_values or (0, 1), base=base,
                      description="digits, 2-layer CNN without and with BN, SGD η = 0.1")
    unit, params = _params(f"norm_{which}", values)
    drive(unit, params, key=f"norm_{which}", out_dir=out_dir, store=store, workers=workers)


def _grid_values(optimizers: str, lrs: str, lams: tuple | None, steps: int | None,
                 base: dict[str, Any], seeds: tuple | None) -> dict[str, Any]:
    from l2dynamics.studies.norm_grids import GRIDS

    names = [o.strip() for o in optimizers.split(",") if o.strip()]
    if not names or any(o not in GRIDS for o in names):
        raise ConfigError(f"--optimizers {optimizers!r}: use some of {', '.join(GRIDS)}")
    lr_values = tuple(number_list(lrs, "--lrs", positive=True)) if lrs.strip() else None
    if lams is not None and any(x <= 0 for x in lams):
        raise ConfigError("--lams values must be finite and > 0 for the grid")
    grids = {o: {"lrs": list(lr_values or GRIDS[o]["lrs"]),
                 "lams": list(lams or GRIDS[o]["lams"]), "steps": steps or GRIDS[o]["steps"]}
             for o in names}
    return dict(grids=grids, base=base, seeds=seeds or (0,),
                description="BN MLP on MNIST-1D, (η, λ) grids of " + ", ".join(names))


@analyze_app.command("tstar")
@user_errors
def analyze_tstar(
    store: Path | None = StoreOption,
    ids: list[int] = typer.Option([], "--id", help="Only these run IDs (repeatable)."),
    estimator: str = typer.Option("smoothed", help="raw | smoothed | onset"),
    train_threshold: float = typer.Option(0.99, help="Under-fitting guard on train accuracy."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write CSV tables and figures."),
) -> None:
    """The t* study's analysis of runs already in a store.

    t* and c = λ·t* per run, seed CIs, the slope of log t* vs log λ, and the verdicts."""
    from l2dynamics.analysis import ESTIMATORS
    from l2dynamics.studies.base import Context, Outcome, write_outcome
    from l2dynamics.studies.study_tstar import TstarStudy, analyze_store

    if estimator not in ESTIMATORS:
        raise ConfigError(f"--estimator {estimator!r} is not allowed; use {', '.join(ESTIMATORS)}")
    if not 0 < train_threshold <= 1:
        raise ConfigError(f"--train-threshold must be in (0, 1], got {train_threshold:g}")
    result = analyze_store(store, ids or None, estimator=estimator,
                           train_threshold=train_threshold, curves=out_dir is not None)
    unit = TstarStudy()
    figures = []
    if out_dir is not None:
        figures = unit.figures(result, Context(out_dir, Path(store or "."), key="tstar"))
    outcome = Outcome("tstar", result.description, unit.claims(result), figures,
                      unit.tables(result), unit.data(result), result.design, 0.0)
    verdict = outcome.data["tstar_verdict"]
    print_rows("verdict", list(verdict.columns), verdict.values.tolist())
    show(outcome, write_outcome(outcome, out_dir) if out_dir is not None else [])


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
    out_dir: Path = typer.Option(Path("out/predict"), "--out", help="Figure, tables, JSON."),
) -> None:
    """Predict the best λ for a T-step run from short probes (the study `predict`).

    The probes run at a large λ; exit status 1 when no prediction could be made."""
    _need_a_run("predict", config, overrides)
    cfg = build_config(config, overrides, data_dir)
    unit, params = _params("predict", dict(
        base=cfg.to_dict(), budget=budget, lam_ref=lam_ref, probe_k=probe_k,
        estimator=estimator, early_stop=early_stop, max_probe_steps=max_probe_steps,
        seeds=tuple(number_list(seeds, "--seeds", minimum=0, integer=True))))
    outcome = drive(unit, params, key="predict", out_dir=out_dir, store=out_dir / "runs.sqlite")
    if not outcome.data["prediction"]["ok"]:
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
    optuna: bool = typer.Option(True, "--optuna/--no-optuna", help="Also run Optuna TPE "
                                "(without a pruner, at the prediction's cost)."),
    selector: bool = typer.Option(True, "--selector/--no-selector",
                                  help="Also run the λ selector (l2dynamics choose) per seed."),
    pruners: str = typer.Option("median+hyperband", "--pruners",
                                help="With the selector: Optuna TPE with these pruners at its "
                                "compute: none | median | hyperband | median+hyperband."),
    out_dir: Path = typer.Option(Path("out/tune"), "--out", help="Figure, tables, JSON."),
) -> None:
    """Compare ways of choosing λ for a T-step budget (the study `tuning`).

    Grid search, the λ selector, the one-short-run prediction, Optuna (plain, and with median
    and Hyperband pruners at the selector's compute), the EMA-timescale rule and AutoL2
    variants, on one config. λ is selected on a validation split (the config's n_val; half the
    test pool when it has none) and reported by test accuracy."""
    from l2dynamics.studies.choose import with_validation
    from l2dynamics.studies.tuning import AUTOL2_VARIANTS

    _need_a_run("tune", config, overrides)
    cfg = with_validation(build_config(config, overrides, data_dir))
    lams = number_list(grid, "--grid", minimum=0.0)
    if not [x for x in lams if x > 0]:
        raise ConfigError("--grid must hold at least one λ > 0")
    base = {k: v for k, v in cfg.to_dict().items() if k not in ("lam", "seed", "steps")}
    unit, params = _params("tuning", dict(
        base=base, budget=budget, grid=tuple(x for x in lams if x > 0),
        seeds=tuple(number_list(seeds, "--seeds", minimum=0, integer=True)), evals=30,
        optuna=optuna, selector=selector, pruners=pruners if optuna else "none",
        autol2_variants=AUTOL2_VARIANTS,
        name=config.stem if config else "config",
        description=f"{cfg.model} on {cfg.dataset}, {cfg.optimizer} η = {cfg.lr:g}, "
                    f"T = {budget}"))
    drive(unit, params, key="tuning", out_dir=out_dir, store=store, workers=workers)


@app.command()
@user_errors
def quickstart(
    out_dir: Path = typer.Option(Path("out/quickstart"), "--out", help="Figure and store."),
    steps: int = typer.Option(20000, help="Updates per run."),
    lams: str = typer.Option("0,1e-4,1e-3,1e-2", help="Comma-separated λ values."),
) -> None:
    """Train an MLP on MNIST-1D at several λ and plot test accuracy vs step and vs λ·η·step."""
    from l2dynamics.cli.common import RichProgress
    from l2dynamics.cli.runs import print_result
    from l2dynamics.config import make_config
    from l2dynamics.report import plot_runs
    from l2dynamics.store import RunStore
    from l2dynamics.train import Trainer

    lam_values = number_list(lams, "--lams", minimum=0.0)
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
            print_result(result, st.path)
            histories[f"λ={cfg.lam:g}"] = result.history
    figure = plot_runs(histories, out_dir / "quickstart.png",
                       title="MLP on MNIST-1D, SGD η=0.1: test accuracy for several λ")
    out.print(f"figure: {figure}")
