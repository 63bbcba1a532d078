"""The typer application and its sub-groups; the commands register themselves on import."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=True,
                  help="Training dynamics with L2 regularization "
                  "(λ = the paper's: loss + λ/2‖θ‖²).")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"l2dynamics {version('l2dynamics')}")
        except PackageNotFoundError:  # a source tree that was never installed
            print("l2dynamics 0.0.0+unknown (not installed)")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Training dynamics with L2 regularization (λ = the paper's: loss + λ/2‖θ‖²)."""
runs_app = typer.Typer(no_args_is_help=True, help="Inspect and export stored runs.")
app.add_typer(runs_app, name="runs")
analyze_app = typer.Typer(no_args_is_help=True, help="Analyses of stored runs.")
app.add_typer(analyze_app, name="analyze")
