"""`make demo` as a new user runs it: `scripts/demo.sh` end to end (its own database, its own
local Stripe test server, the worker, a plan change, one-time purchases), then the commands its
closing hints print. Run from a copy of the scripts, so the checkout's `demo/` is untouched."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT, wait_until

pytestmark = pytest.mark.slow


def test_the_demo_runs_end_to_end_and_its_hints_work(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("demo.sh", "localstripe_server.py"):
        shutil.copy(ROOT / "scripts" / name, scripts / name)
    flowjobs = str(Path(sys.executable).parent / "flowjobs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWJOBS_")}
    # its own session: should the demo hang, the whole group (localstripe, a worker) is killed
    demo = subprocess.Popen(
        ["bash", str(scripts / "demo.sh"), flowjobs],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = demo.communicate(timeout=300)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate()
    assert demo.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "error:" not in err, err

    assert "upgraded from empty to" in out and "12 customers" in out
    # the renewals on the declining card failed and wait for their retry; the rest were charged
    assert "subscriptions: active 9, past_due 3" in out
    assert "payments: failed 3, succeeded 16" in out and "invoices: open 3, paid 16" in out
    assert re.search(
        r"now on Team; billing runs: succeeded, adjustment succeeded; payments: "
        r"\$12\.00 succeeded, \$\d[\d,]*\.\d\d succeeded",
        out,
    ), out
    # the purchases' events came in through `events fetch` (no webhook endpoint in the demo)
    assert re.search(r"evt_\w+\tpayment_intent\.succeeded\tpi_\w+\tcreated\trun_\w+", out), out
    purchases = re.findall(r"— purchase paid, invoice \S+ paid, \$[\d,.]+ succeeded", out)
    receipts = [Path(p) for p in re.findall(r"receipt: (\S+\.pdf)", out)]
    assert len(purchases) == len(receipts) == 3, out
    assert all(p.read_bytes().startswith(b"%PDF") for p in receipts)
    assert len(list((tmp_path / "demo" / "mail").glob("*.eml"))) > 0

    # the local Stripe server the demo started is stopped with it
    # (killed by the demo's exit trap, not waited for: it may take a moment to let go)
    port = int((tmp_path / "demo" / "localstripe.out").read_text().split(":")[-1])
    wait_until(lambda: refused(port), message=f"localstripe on port {port} to stop")
    # and its configuration names that server, not the real Stripe, for any worker started later
    config = (tmp_path / "demo" / "flowjobs.toml").read_text()
    assert f'api_base = "http://127.0.0.1:{port}"' in config, config
    # ... on purpose, and the file and the demo's last words say so: the next command that calls
    # Stripe with it fails naming that address (it used to be told nothing of it)
    assert "stopped when the demo ended" in config and "api.stripe.com" in config, config
    assert (
        f"Stripe: the demo's local test server at http://127.0.0.1:{port} stops with the demo"
        in out
    ), out
    fetch = subprocess.run(
        [flowjobs, "events", "fetch", "--since", "1h"],
        cwd=tmp_path,
        env={**env, "FLOWJOBS_CONFIG": "demo/flowjobs.toml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fetch.returncode == 1, fetch.stderr
    assert f"error: cannot reach Stripe at http://127.0.0.1:{port}" in fetch.stderr, fetch.stderr

    # its closing hints, as printed, read the demo's database
    hints = [
        line.split("FLOWJOBS_CONFIG=demo/flowjobs.toml ", 1)[1].split()
        for line in out.splitlines()
        if line.startswith("  FLOWJOBS_CONFIG=demo/flowjobs.toml ")
    ]
    assert len(hints) == 3, out
    for command in hints:
        shown = subprocess.run(
            command,
            cwd=tmp_path,
            env={**env, "FLOWJOBS_CONFIG": "demo/flowjobs.toml"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0 and command[-1] in shown.stdout, (command, shown.stderr)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False
