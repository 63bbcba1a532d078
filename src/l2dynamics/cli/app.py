"""The typer application and its sub-groups; the commands register themselves on import."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Training dynamics with L2 regularization "
                  "(λ = the paper's: loss + λ/2‖θ‖²).")
runs_app = typer.Typer(no_args_is_help=True, help="Inspect and export stored runs.")
app.add_typer(runs_app, name="runs")
analyze_app = typer.Typer(no_args_is_help=True, help="Analyses of stored runs.")
app.add_typer(analyze_app, name="analyze")
