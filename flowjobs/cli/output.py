"""Rendering helpers shared by the commands: JSON to stdout, tables on a TTY, errors to stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from flowjobs.errors import ExitStatus

if TYPE_CHECKING:
    import typer


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


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A rich table on a terminal; tab-separated lines (with a header) otherwise."""
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*["" if v is None else str(v) for v in r])
        Console().print(t)
        return
    sys.stdout.write("\t".join(columns) + "\n")
    for r in rows:
        sys.stdout.write("\t".join("" if v is None else str(v) for v in r) + "\n")


class progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise.

    with output.progress(total, "replaying") as advance:
        advance(1)
    """

    def __init__(self, total: int, description: str):
        self.total, self.description, self._bar = total, description, None

    def __enter__(self):
        if not sys.stderr.isatty() or self.total <= 1:
            return lambda n=1: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        job = self._bar.add_task(self.description, total=self.total)
        return lambda n=1: self._bar.advance(job, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
