"""typer commands: parse arguments, call one function, render, return an exit code.

No logic lives here. Data goes to stdout, diagnostics to stderr; rich tables only on a TTY.
"""
