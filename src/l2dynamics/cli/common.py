"""What every command shares: the consoles, one-line user errors, the progress bar, tables."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer
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


def log(msg: str) -> None:
    """Progress messages of long work, dimmed, on stderr (markup-safe: a "[task]" prefix is
    printed as written)."""
    err.print(Text(msg, style="dim"), highlight=False)


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


def build_config(config: Path | None, overrides: list[str], data_dir: Path | None) -> Any:
    """A validated run config from a file, ``--set`` overrides and ``--data-dir``."""
    from l2dynamics.config import load_config_file, make_config, parse_overrides

    base = load_config_file(config) if config else {}
    extra = parse_overrides(overrides)
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    return make_config(base, extra)


def number_list(text: str, option: str, *, minimum: float = 0.0, integer: bool = False,
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


def open_store(store: Path | None) -> None:
    """Open (creating if absent) the run store once, so a path that is a folder or not a
    SQLite file is refused up front (StoreError) rather than after the work has begun."""
    from l2dynamics.store import RunStore

    with RunStore(store):
        pass


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _longest_word(cell: str) -> int:
    plain = Text.from_markup(cell).plain
    return max((len(word) for word in plain.split()), default=0)


def print_rows(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table where every column fits at its longest word; otherwise one block per row (the
    first cell as its heading, then "column  value" lines), so nothing wraps letter by letter
    in a narrow terminal."""
    cells = [[_cell(v) for v in row] for row in rows]
    words = [max([_longest_word(str(c))] + [_longest_word(r[i]) for r in cells])
             for i, c in enumerate(columns)]
    if sum(words) + 3 * len(columns) + 1 > out.width and len(columns) > 2:
        _print_blocks(title, [str(c) for c in columns], cells)
        return
    widths = [max([len(str(c))] + [len(Text.from_markup(r[i]).plain) for r in cells])
              for i, c in enumerate(columns)]
    while sum(widths) + 3 * len(columns) + 1 > out.width:  # narrow the widest column that can
        widest = max((i for i in range(len(widths)) if widths[i] > words[i]),
                     key=lambda i: widths[i] - words[i], default=None)
        if widest is None:
            break
        widths[widest] -= 1
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):  # the first column names the row: never wrapped
        table.add_column(str(column), overflow="fold", no_wrap=i == 0, width=widths[i])
    for row in cells:
        table.add_row(*row)
    out.print(table)


def _print_blocks(title: str, columns: list[str], cells: list[list[str]]) -> None:
    from rich.padding import Padding

    if title:
        out.print(Text(title, style="italic"))
    label_width = max(len(c) for c in columns[1:])
    for row in cells:
        out.print(Text.from_markup(f"[bold]{row[0]}[/]"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True, min_width=label_width)
        grid.add_column(overflow="fold")
        for column, value in zip(columns[1:], row[1:], strict=True):
            if value:
                grid.add_row(column, value)
        out.print(Padding(grid, (0, 0, 0, 2)))


def print_frame(title: str, frame: Any) -> None:
    print_rows(title, [str(c) for c in frame.columns],
               [list(row) for row in frame.itertuples(index=False)])
