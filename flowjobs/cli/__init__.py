"""typer commands: parse arguments, call one function, render, return an exit code.

No logic lives here. Data goes to stdout, diagnostics to stderr; rich tables only on a TTY.
"""

import os

# pydantic looks up plugins through package entry points at import (~20 ms); a command-line
# start-up should not pay for that. Set PYDANTIC_DISABLE_PLUGINS yourself to override.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
