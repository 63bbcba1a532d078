"""Command line: ``l2dynamics train | runs | sweep | study | studies | reproduce | analyze |
theory | norms | tune | predict | choose | datasets | keys | quickstart``.

Every user mistake prints one line (``error: …``) and exits with status 2, before anything is
written; a run stopped with Ctrl-C is checkpointed and can be resumed with ``--resume ID``.
Studies run through :mod:`l2dynamics.cli.study` (one driver over the registry); ``--help``,
``keys`` and ``datasets`` import no torch.
"""

from __future__ import annotations

import importlib
import inspect
import sys

import typer

from l2dynamics.cli.app import app
from l2dynamics.cli.common import RichProgress, err

# the command modules register their commands on import, in this order (the order of --help)
for _module in ("runs", "study", "aliases", "choose", "info"):
    importlib.import_module(f"l2dynamics.cli.{_module}")


def reflow(doc: str | None) -> str | None:
    """A docstring's paragraphs as single lines, so that ``--help`` wraps them to the
    terminal instead of keeping the source's line breaks; paragraphs that hold a list or an
    indented block keep theirs."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        if any(line.lstrip().startswith(("- ", "* ", "$ ")) or line.startswith("  ")
               for line in lines):
            out.append(paragraph)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _reflow_commands(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.callback is not None:
            command.callback.__doc__ = reflow(command.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_commands(group.typer_instance)


_reflow_commands(app)

__all__ = ["RichProgress", "app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
