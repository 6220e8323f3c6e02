"""Rendering helpers shared by the commands: JSON to stdout, tables on a TTY, errors to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from flowjobs.errors import ExitStatus


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
