"""`flowjobs doctor` as a user runs it: healthy, then each kind of trouble with its fix."""

from __future__ import annotations

import json
import socket

from aiosmtpd.controller import Controller

from tests.cli_helpers import as_json, cli_env, flowjobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def test_a_healthy_installation_passes_every_check(sqlite_url, localstripe_url):
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        env = cli_env(
            sqlite_url,
            FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_doc",
            FLOWJOBS_STRIPE_API_BASE=localstripe_url,
            FLOWJOBS_MAIL_TRANSPORT="smtp",
            FLOWJOBS_MAIL_HOST="127.0.0.1",
            FLOWJOBS_MAIL_PORT=str(smtp.port),
        )
        result = flowjobs("doctor", "--json", env=env)
    finally:
        smtp.stop()
    checks = {c["check"]: c for c in as_json(result)}
    assert result.returncode == 0
    assert {name: c["status"] for name, c in checks.items()} == {
        "configuration": "ok",
        "database": "ok",
        "schema": "ok",
        "clock": "ok",
        "workers": "ok",
        "stripe": "ok",
        "mail": "ok",
    }


def test_trouble_is_reported_with_a_fix(sqlite_url, tmp_path):
    env = cli_env(
        sqlite_url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_doc",
        FLOWJOBS_STRIPE_API_BASE="http://127.0.0.1:9",
        FLOWJOBS_MAIL_TRANSPORT="smtp",
        FLOWJOBS_MAIL_HOST="127.0.0.1",
        FLOWJOBS_MAIL_PORT=str(free_port()),
    )
    result = flowjobs("doctor", env=env)
    assert result.returncode == 1
    assert (
        "fail stripe" in result.stdout.replace("  ", " ")
        and "fix: check [stripe] api_base" in result.stdout
    )
    assert "fix: check [mail] host/port" in result.stdout

    down = cli_env(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nope")
    result = flowjobs("doctor", "--json", env=down)
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert checks["database"]["status"] == "fail" and "is running" in checks["database"]["fix"]
    assert "schema" not in checks  # nothing to ask a database that is not there

    bad = flowjobs("doctor", env={**env, "FLOWJOBS_WORKER_CONCURRENCY": "zero"})
    assert bad.returncode == 1 and "fail configuration" in bad.stdout.replace("  ", " ")
    assert "worker.concurrency" in bad.stdout and "Traceback" not in bad.stderr


def test_stale_leases_without_a_worker_fail_the_workers_check(make_runtime, clock):
    rt = make_runtime()
    rt.trigger("noop")
    from flowjobs.ops.doctor import run_checks

    assert (
        len(rt.store.claim("w-dead", 1, ["*"], {}, now=clock.now_ms(), lease_ms=1000)) == 1
    )  # then it "died"

    clock.advance(3600)
    checks = {c.name: c for c in run_checks(rt)}
    assert (
        checks["workers"].status == "fail"
        and "start `flowjobs run-worker`" in checks["workers"].fix
    )
