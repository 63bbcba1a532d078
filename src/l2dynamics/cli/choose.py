"""``l2dynamics choose CONFIG --budget T``: the λ for a T-step run of CONFIG, by
:func:`l2dynamics.studies.choose.choose_lambda` (the prediction where its premise holds, a
plateau-aware search where it does not)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from l2dynamics.cli.app import app
from l2dynamics.cli.common import build_config, log, out, print_rows, user_errors


@app.command()
@user_errors
def choose(
    config: Path = typer.Argument(..., help="Run config (YAML/JSON) of the full run."),
    budget: int = typer.Option(..., "--budget", help="Steps of the full run, T."),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE overrides."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where dataset files live."),
    store: Path = typer.Option(Path("runs/choose.sqlite"), "--store",
                               help="Run store (a repeated call reads its runs back)."),
    workers: int = typer.Option(1, "-j", "--workers", help="Parallel training processes."),
    train_threshold: float = typer.Option(0.99, "--train-threshold",
                                          help="Training accuracy a probe must reach by its t* "
                                          "for the t* law's premise."),
    out_dir: Path | None = typer.Option(None, "--out", help="Also write choice.json here."),
) -> None:
    """Choose λ for a T-step run: check the t* law's premise on short probes, then predict λ
    from them where it holds or search (stopping runs at their L2 plateau) where it does not.

    Selects on a validation split (the config's n_val; half the test pool if it has none);
    prints λ with its interval, the accuracy expected at T, whether λ matters here, and the
    compute spent (optimizer steps, in full runs, and wall seconds)."""
    from l2dynamics.studies.choose import choose_lambda

    cfg = build_config(config, overrides, data_dir)
    store.parent.mkdir(parents=True, exist_ok=True)
    choice = choose_lambda(cfg, budget, store=store, workers=workers,
                           train_threshold=train_threshold, log=log)
    rows = [[c.role, f"{c.lam:.3g}", c.steps, f"{c.acc:.4f}", "yes" if c.fits else "no",
             f"{c.tstar:.0f}", f"{c.c:.3g}"] for c in choice.candidates]
    print_rows("runs", ["role", "λ", "steps", "val acc", "fits by t*", "t*", "c = λ·Φ(t*)"],
               rows)
    out.print(f"premise: {escape(choice.premise.reason)}", highlight=False)
    out.print(f"[bold]λ = {choice.lam:.3g}[/] [{choice.lam_low:.3g}, {choice.lam_high:.3g}] "
              f"by {choice.route}", highlight=False)
    out.print(escape(choice.message), highlight=False)
    out.print(f"compute: {choice.compute_steps} steps = {choice.compute_runs:.2f} runs of "
              f"{budget} steps, {choice.wall_seconds:.0f} s", highlight=False)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "choice.json"
        path.write_text(json.dumps(choice.to_dict(), indent=1, default=str))
        out.print(f"wrote {path}", highlight=False)
