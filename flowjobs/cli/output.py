"""Rendering helpers shared by the commands: JSON to stdout, tables on a TTY, errors to stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from flowjobs.errors import ExitStatus

if TYPE_CHECKING:
    import typer
    from rich.progress import Progress


def parse_option(value, parse, option: str):
    """`parse(value)`, or None when the option was not given; a ValueError becomes a BadInput
    naming the option (exit 2)."""
    from flowjobs.errors import BadInput

    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise BadInput(f"{option}: {exc}") from None


def is_tty() -> bool:
    return sys.stdout.isatty()


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=None if not is_tty() else 2, default=str) + "\n")


def error(message: str, status: ExitStatus = ExitStatus.BAD_INPUT) -> typer.Exit:
    """Print `error: message` on stderr; return the Exit to raise."""
    import typer

    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(int(status))


def note(message: str) -> None:
    sys.stderr.write(message + "\n")


def no_color() -> bool:
    """NO_COLOR (https://no-color.org) set to anything: no escape codes at all."""
    import os

    return bool(os.environ.get("NO_COLOR"))


def console(stderr: bool = False, **options):
    """A rich Console for stdout (or stderr); with NO_COLOR it writes no escape codes at all
    (rich alone drops colours but keeps bold and the like)."""
    from rich.console import Console

    if no_color():
        options.setdefault("color_system", None)
    return Console(stderr=stderr, **options)


# Values a person copies or reads whole: never cut at any width (a column of them is dropped,
# or the rows are printed one field a line, before one is cut).
def whole(column: str) -> bool:
    name = column.lower()
    return name in (
        "id",
        "task",
        "run",
        "event",
        "endpoint",
        "schedule",
        "key",
        "scheduled_for",
        "started",
        "created",
        "finished",
    ) or name.endswith(("_at", "_id", "_date", "_end", "timestamp", "_slot"))


def _cell(value) -> str:
    return "" if value is None else str(value)


def fitted_table(
    columns: list[str],
    rows: list[list[Any]],
    width: int,
    title: str | None = None,
    style=None,
    fold: bool = False,
    hint: str = "a wider terminal, or --json",
    keep_longest: tuple[str, ...] = (),
):
    """A rich renderable of `rows` in `width` columns that cuts no id, task or time: columns
    holding them do not wrap; when they do not all fit, the rightmost columns are dropped
    (id, task and status stay; a caption says what was left out); when even those do not
    fit, each row is printed as `column: value` lines. `style(column, value)`: a rich style.
    `fold`: a value wider than the terminal is folded onto the next line rather than left for
    the terminal to wrap (for a live view, which crops what it draws to the width). `hint`:
    where the caption sends the reader for the columns left out (options the command has).
    `keep_longest`: columns dropped only when every other droppable one is gone (a listing of
    failed runs keeps its errors before its times)."""
    from rich.text import Text

    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def text(i: int, value: str):
        return Text(value, style=(style(columns[i], value) if style else None) or "")

    keep = _fit(columns, widths, width, keep_longest)
    if keep is None:
        return _records(columns, cells, title, text, fold)
    return _table(columns, cells, widths, keep, title, text, hint)


def _fit(
    columns: list[str], widths: list[int], width: int, keep_longest: tuple[str, ...] = ()
) -> list[int] | None:
    """The indexes of the columns a table of `width` can show whole, or None if not even the
    first column, id, task and status fit."""

    def least(i: int) -> int:  # the narrowest a column can be
        return widths[i] if whole(columns[i]) else min(widths[i], max(len(columns[i]), 8))

    def need(keep: list[int]) -> int:
        return sum(least(i) for i in keep) + 3 * len(keep) + 1  # padding and borders

    pinned = {0} | {i for i, c in enumerate(columns) if c.lower() in ("id", "task", "status")}
    keep = list(range(len(columns)))
    while need(keep) > width and any(i not in pinned for i in keep):
        # the rightmost column goes first, one that may wrap before an id or a time
        droppable = [i for i in keep if i not in pinned]
        droppable = [i for i in droppable if columns[i] not in keep_longest] or droppable
        wraps = [i for i in droppable if not whole(columns[i])]
        keep.remove(max(wraps or droppable))
    return keep if need(keep) <= width else None


def _table(columns, cells, widths, keep, title, text, hint):
    from rich.table import Table

    dropped = [columns[i] for i in range(len(columns)) if i not in keep]
    caption = f"not shown at this width: {', '.join(dropped)} ({hint})" if dropped else None
    t = Table(title=title, caption=caption)
    for i in keep:
        if whole(columns[i]):
            t.add_column(columns[i], no_wrap=True, min_width=widths[i])
        else:
            t.add_column(columns[i], overflow="fold")
    for r in cells:
        t.add_row(*[text(i, r[i]) for i in keep])
    return t


def _records(columns, cells, title, text, fold: bool = False):
    """Each row as `column: value` lines; an id wider than the terminal is left whole (the
    terminal wraps it, or with `fold` it goes on on the next line; nothing is cut)."""
    from rich.console import Group
    from rich.text import Text

    lines = [Text(title, style="bold")] if title else []
    for r in cells:
        for i, c in enumerate(columns):
            if r[i]:
                keep = whole(c) and not fold
                line = Text(no_wrap=keep, overflow="ignore" if keep else "fold")
                line.append(f"{c}: ", style="bold")
                lines.append(line.append_text(text(i, r[i])))
        lines.append(Text(""))
    return Group(*lines)


def listing(data: list[dict], as_json: bool, columns: dict[str, str]) -> None:
    """Rows as a JSON array (every field) or as a table of `columns` (header -> field)."""
    if as_json:
        emit_json(data)
        return
    table(list(columns), [[row.get(field) for field in columns.values()] for row in data])


def table(
    columns: list[str],
    rows: list[list[Any]],
    title: str | None = None,
    wide: bool = False,
    hint: str = "a wider terminal, or --json",
    keep_longest: tuple[str, ...] = (),
) -> None:
    """A rich table on a terminal, fitted to its width without cutting an id, a task name or a
    time (`wide`: every column at its full width, lines as long as they take); tab-separated
    lines (with a header) otherwise."""
    if is_tty():
        out = console()
        width = out.width
        if wide:
            cells = [[_cell(v) for v in r] for r in rows]
            need = sum(max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns))
            width = max(width, need + 3 * len(columns) + 1)
            out = console(width=width)
        table = fitted_table(columns, rows, width, title, hint=hint, keep_longest=keep_longest)
        out.print(table, crop=False)
        return
    sys.stdout.write("\t".join(columns) + "\n")
    for r in rows:
        sys.stdout.write("\t".join(_tsv(_cell(v)) for v in r) + "\n")


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _tsv(text: str) -> str:
    r"""A value as one tab-separated field: a backslash, tab, newline or carriage return in it
    is written `\\`, `\t`, `\n`, `\r` (as PostgreSQL's COPY text format does), so that every
    row stays one line."""
    return text.translate(_TSV_ESCAPES)


class progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise.

    with output.progress(total, "replaying") as advance:
        advance(1)
    """

    def __init__(self, total: int, description: str):
        self.total, self.description = total, description
        self._bar: Progress | None = None

    def __enter__(self):
        if not sys.stderr.isatty() or self.total <= 1 or no_color():
            return lambda n=1: None  # a bar redraws with escape codes: none under NO_COLOR
        from rich.progress import Progress

        bar = self._bar = Progress(console=console(stderr=True), transient=True)
        bar.__enter__()
        job = bar.add_task(self.description, total=self.total)
        return lambda n=1: bar.advance(job, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
