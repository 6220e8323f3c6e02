"""`flowjobs doctor` as a user runs it: healthy, then each kind of trouble with its fix."""

from __future__ import annotations

import json
import os
import socket

import pytest
from aiosmtpd.controller import Controller

from tests.cli_helpers import ROOT, as_json, cli_env, flowjobs
from tests.json_stub import JsonStub


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
    assert {c["fix"] for c in checks.values()} == {None}  # nothing to fix: null, as elsewhere


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
    # one run: "it", not "them"
    assert checks["workers"].detail == (
        "1 run holds a lease that expired 3599 s ago: no worker is rescuing it"
    )
    assert "its rescuer returns it to the queue" in checks["workers"].fix


def test_the_workers_check_counts_runs_in_the_singular_and_the_plural(make_runtime, clock):
    from flowjobs.ops.doctor import run_checks

    rt = make_runtime()

    def workers() -> str:
        return next(c for c in run_checks(rt) if c.name == "workers").detail

    rt.trigger("noop")
    assert workers() == "1 run is due and no worker is alive to run it"
    rt.trigger("noop")
    assert workers() == "2 runs are due and no worker is alive to run them"
    rt.store.register_worker(
        {"id": "w1", "host": "h", "pid": 1, "version": "v", "queues": "*", "concurrency": 2},
        clock.now_ms(),
    )
    assert workers() == "1 alive, 2 runs due, no expired lease"
    rt.store.claim("w1", 1, ["*"], {}, now=clock.now_ms(), lease_ms=30_000)
    assert workers() == "1 alive, 1 run due, no expired lease"


# -- configuration: what a worker refuses, doctor fails ----------------------------------------


def user_env(**extra: str) -> dict:
    """A user's environment: no FLOWJOBS_* at all (the configuration file decides), the worktree
    importable, and Python free to write __pycache__ folders (as it is by default)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLOWJOBS_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def listing(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


REFUSED = {
    "a task module that does not exist": (
        '[tasks]\nmodules = ["nosuchmod"]\n',
        {},
        "tasks.modules: cannot import 'nosuchmod': ModuleNotFoundError: "
        "No module named 'nosuchmod'",
        "[tasks] modules",
    ),
    "a task module with a syntax error": (
        '[tasks]\nmodules = ["mytasks"]\n',
        {"mytasks.py": "def broken(:\n    pass\n"},
        "tasks.modules: cannot import 'mytasks': SyntaxError: ",
        "[tasks] modules",
    ),
    "a task module that calls sys.exit at import": (
        '[tasks]\nmodules = ["mytasks"]\n',
        {"mytasks.py": 'import sys\nsys.exit("bye")\n'},
        "tasks.modules: cannot import 'mytasks': it called sys.exit('bye') at import time (at ",
        "[tasks] modules",
    ),
    "an error in a module a task module imports": (
        '[tasks]\nmodules = ["mytasks"]\n',
        {"mytasks.py": "import helper\n", "helper.py": "x = 1\ny = undefined_name\n"},
        "tasks.modules: cannot import 'mytasks': NameError: name 'undefined_name' is not "
        "defined (at ",
        "[tasks] modules",
    ),
    "a schedule of an unknown task": (
        '[schedules.typo]\ntask = "hello-wrld"\ncron = "0 * * * *"\n',
        {},
        "schedules.typo.task: unknown task 'hello-wrld'; did you mean 'hello-world'?",
        "[schedules.typo]",
    ),
    "a schedule whose task rejects its payload": (
        '[schedules.nightly]\ntask = "noop"\ncron = "@daily"\n',
        {},
        "schedules.nightly: task 'noop' rejects the schedule payload",
        "[schedules.nightly]",
    ),
}


def test_a_wrong_cron_gets_a_fix_naming_its_section_not_its_task(tmp_path):
    (tmp_path / "flowjobs.toml").write_text(
        '[schedules.hourly]\ntask = "hello-world"\ncron = "61 * * * *"\n'
    )
    result = flowjobs("doctor", "--json", env=user_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    [check] = [c for c in json.loads(result.stdout) if c["check"] == "configuration"]
    assert check["detail"] == "schedules.hourly.cron: '61 * * * *' is not a valid cron expression"
    assert check["fix"] == "fix or remove [schedules.hourly] (see the comments in flowjobs.toml)"


@pytest.mark.parametrize("case", REFUSED, ids=str)
def test_a_configuration_the_worker_refuses_fails_with_the_workers_message(tmp_path, case):
    # It said "ok configuration valid" (exit 0) for all of these, and the worker then exited 2.
    toml, files, problem, fix = REFUSED[case]
    (tmp_path / "flowjobs.toml").write_text(toml)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = listing(tmp_path)

    result = flowjobs("doctor", "--json", env=user_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    checks = json.loads(result.stdout)
    failed = [c for c in checks if c["check"] == "configuration"]
    assert [c["status"] for c in failed] == ["fail"]
    assert failed[0]["detail"].startswith(problem) and fix in failed[0]["fix"]
    if "(at " in problem:  # the file and line where it was raised
        assert failed[0]["detail"].endswith(("mytasks.py:2)", "helper.py:2)"))
    database = next(c for c in checks if c["check"] == "database")
    assert database["status"] == "warn" and "no database yet" in database["detail"]
    assert listing(tmp_path) == before  # no database, and no __pycache__ beside mytasks.py

    text = flowjobs("doctor", env=user_env(), cwd=tmp_path)
    assert text.returncode == 1
    assert f"fail configuration {failed[0]['detail']}\n" in text.stdout
    assert f"fix: {failed[0]['fix']}\n" in text.stdout

    worker = flowjobs("run-worker", "--burst", env=user_env(), cwd=tmp_path)
    assert worker.returncode == 2
    assert f"  {failed[0]['detail']}" in worker.stderr.splitlines()  # the worker's own words


def test_schedules_are_resolved_as_tick_resolves_them_on_an_existing_database(sqlite_url, tmp_path):
    config = tmp_path / "flowjobs.toml"
    config.write_text(
        '[schedules.typo]\ntask = "hello-wrld"\ncron = "0 * * * *"\n'
        '[schedules.nightly]\ntask = "noop"\ncron = "@daily"\n'
    )
    env = cli_env(sqlite_url, FLOWJOBS_CONFIG=str(config))
    result = flowjobs("doctor", "--json", env=env)
    assert result.returncode == 1
    checks = json.loads(result.stdout)
    assert {c["check"]: c["status"] for c in checks}["database"] == "ok"
    problems = [c["detail"] for c in checks if c["check"] == "configuration"]
    assert [c["status"] for c in checks if c["check"] == "configuration"] == ["fail", "fail"]
    tick = flowjobs("tick", env=env)
    assert tick.returncode == 2
    assert tick.stderr.splitlines()[1:] == [f"  {p}" for p in problems]

    healthy = flowjobs("doctor", "--json", env=cli_env(sqlite_url))
    configuration = [c for c in as_json(healthy) if c["check"] == "configuration"]
    assert [c["status"] for c in configuration] == ["ok"]
    assert (
        configuration[0]["detail"].startswith("valid: ")
        and "schedules" in (configuration[0]["detail"])
    )


# -- Stripe: the key of the configured mode --------------------------------------------------


class KeyedStripe(JsonStub):
    """A loopback HTTP server standing in for Stripe: `GET /v1/customers` answers an empty list
    to one key and 401 to any other; `auth` is the Authorization header of every request."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(self._answer)

    @property
    def auth(self) -> list[str]:
        return [r["auth"] or "" for r in self.requests]

    def _answer(self, request):
        if request["auth"] == f"Bearer {self.key}":
            return (
                200,
                {},
                {"object": "list", "data": [], "has_more": False, "url": "/v1/customers"},
            )
        return 401, {}, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}


def stripe_check(env: dict) -> dict:
    result = flowjobs("doctor", "--json", env=env)
    assert "Traceback" not in result.stderr
    return next(c for c in json.loads(result.stdout) if c["check"] == "stripe")


def test_live_mode_checks_the_live_key_and_names_it(sqlite_url):
    # With mode = "live" doctor asked Stripe with the test key and said ok.
    with KeyedStripe("sk_live_doc") as stripe:
        env = cli_env(
            sqlite_url,
            FLOWJOBS_STRIPE_MODE="live",
            FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_doc",
            FLOWJOBS_STRIPE_LIVE_API_KEY="sk_live_doc",
            FLOWJOBS_STRIPE_API_BASE=stripe.url,
        )
        live = stripe_check(env)
        assert stripe.auth == ["Bearer sk_live_doc"]
        assert live["status"] == "ok" and "live-mode key (live_api_key)" in live["detail"]

        stripe.requests.clear()
        refused = stripe_check({**env, "FLOWJOBS_STRIPE_LIVE_API_KEY": "sk_live_revoked"})
        assert stripe.auth == ["Bearer sk_live_revoked"]
        assert refused["status"] == "fail" and "live_api_key" in refused["fix"]
        assert "test_api_key" not in refused["fix"]

        stripe.requests.clear()
        test = stripe_check({**env, "FLOWJOBS_STRIPE_MODE": "test"})  # the test key, refused
        assert stripe.auth == ["Bearer sk_test_doc"]
        assert test["status"] == "fail" and "test_api_key" in test["fix"]


def test_live_mode_without_a_live_key_warns_naming_the_live_setting(sqlite_url, localstripe_url):
    # Only a test key, which localstripe accepts: doctor said ok, and billing in live mode
    # had no key to charge with.
    env = cli_env(
        sqlite_url,
        FLOWJOBS_STRIPE_MODE="live",
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_doc",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
    )
    for without in (env, {k: v for k, v in env.items() if k != "FLOWJOBS_STRIPE_TEST_API_KEY"}):
        check = stripe_check(without)
        assert check["status"] == "warn"
        assert check["detail"] == (
            'no live-mode API key ([stripe] mode = "live"): billing runs cannot charge'
        )
        assert check["fix"] == "set [stripe] live_api_key (or FLOWJOBS_STRIPE_LIVE_API_KEY)"
    test_mode = stripe_check({**env, "FLOWJOBS_STRIPE_MODE": "test"})
    assert test_mode["status"] == "ok"  # the same configuration in test mode is healthy
