"""Start and stop scripts/localstripe_server.py from Python (tests, bench)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

SERVER = Path(__file__).with_name("localstripe_server.py")


@contextmanager
def localstripe(timeout: float = 30.0):
    """Yields the base URL of a fresh localstripe on 127.0.0.1; stops it afterwards."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # blocks until the server announces itself (or dies)
        if not line.startswith("listening on "):
            raise RuntimeError(f"localstripe did not start: {line}{proc.stderr.read()}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
