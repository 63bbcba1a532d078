"""Command line: ``l2dynamics train | runs | sweep | study | studies | reproduce | analyze |
theory | norms | tune | predict | choose | datasets | keys | quickstart``.

Every user mistake prints one line (``error: …``) and exits with status 2, before anything is
written; a run stopped with Ctrl-C is checkpointed and can be resumed with ``--resume ID``.
Studies run through :mod:`l2dynamics.cli.study` (one driver over the registry); ``--help``,
``keys`` and ``datasets`` import no torch.
"""

from __future__ import annotations

import importlib
import sys

from l2dynamics.cli.app import app
from l2dynamics.cli.common import RichProgress, err

# the command modules register their commands on import, in this order (the order of --help)
for _module in ("runs", "study", "aliases", "choose", "info"):
    importlib.import_module(f"l2dynamics.cli.{_module}")

__all__ = ["RichProgress", "app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
