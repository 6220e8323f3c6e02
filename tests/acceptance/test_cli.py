"""Acceptance: the `flowjobs` command run as a subprocess, as a user runs it."""

import json
import sqlite3

import pytest

from flowjobs.store.migrate import HEAD
from tests.cli_helpers import as_json, cli_env, flowjobs


@pytest.fixture
def env(sqlite_url):
    return cli_env(sqlite_url)


def test_trigger_burst_worker_then_show(env):
    created = as_json(
        flowjobs("trigger", "hello-world", "--payload", '{"name": "Ada"}', "--json", env=env)
    )
    assert set(created) == {"id", "task", "status", "deduplicated"}
    assert created["status"] == "queued" and created["deduplicated"] is False
    worker = flowjobs("run-worker", "--burst", env=env)
    assert worker.returncode == 0, worker.stderr
    shown = as_json(flowjobs("runs", "show", created["id"], "--json", env=env))
    assert shown["status"] == "completed"
    assert shown["payload"] == {"name": "Ada"} and shown["result"] == {"name": "Ada"}
    assert [a["outcome"] for a in shown["attempts"]] == ["succeeded"]
    assert shown["logs"][0]["message"] == f"hello from run {created['id']}"
    human = flowjobs("runs", "show", created["id"], env=env)
    assert "completed" in human.stdout and "attempt 1: succeeded" in human.stdout


def test_trigger_prints_plain_run_id_and_dedups_by_key(env):
    first = flowjobs("trigger", "noop", "--idempotency-key", "k1", env=env)
    assert first.returncode == 0 and first.stdout.strip().startswith("run_")
    again = as_json(flowjobs("trigger", "noop", "--idempotency-key", "k1", "--json", env=env))
    assert again["id"] == first.stdout.strip() and again["deduplicated"] is True


def test_trigger_wait_exit_codes(env):
    ok = flowjobs("trigger", "hello-world", "--wait", "--timeout", "20s", env=env, timeout=60)
    # nobody runs a worker here: the wait times out
    assert ok.returncode == 124, ok.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["trigger", "no-such-task"], "unknown task 'no-such-task'"),
        (["trigger", "hello-world", "--payload", "{not json"], "payload is not valid JSON"),
        (["trigger", "hello-world", "--payload", "[1, 2]"], "must be a JSON object"),
        (["trigger", "hello-world", "--payload", "null"], "must be a JSON object, got null"),
        (["trigger", "noop", "--payload", '{"unexpected": 1}'], "invalid payload for 'noop'"),
        (["trigger", "test-sleep", "--payload", '{"seconds": "soon"}'], "seconds"),
        (["trigger", "test-sleep", "-p", '{"seconds": Infinity}'], "Infinity is not a JSON number"),
        (["trigger", "test-sleep", "-p", '{"seconds": NaN}'], "NaN is not a JSON number"),
        (["trigger", "test-sleep", "-p", '{"seconds": 1e400}'], "too large for a JSON number"),
        (["trigger", "noop", "--delay", "tomorrow"], "--delay"),
        (
            [
                "trigger",
                "attempt-transition-billing-periods",
                "-p",
                '{"lastTimestamp": "2027-02-01T00:00:00Z", "currentTimestamp": "2027-01-01T00:00:00Z"}',
            ],
            "lastTimestamp must not be after currentTimestamp",
        ),
        (["trigger", "noop", "--payload-file", "/nonexistent.json"], "cannot read"),
        (["trigger", "noop", "--idempotency-key", "k" * 501], "501 characters long"),
        (["trigger", "noop", "--priority", "99999999999"], "priority 99999999999 is out of range"),
        (["trigger", "noop", "--payload-file", "BAD_UTF8"], "is not UTF-8 text (byte 6"),
        (["trigger", "noop", "--payload-file", "DEEP"], "payload is nested too deeply"),
        # Python's reader keeps the last of a duplicated key, silently: refused, the key named
        (["trigger", "hello-world", "-p", '{"name": "Ada", "name": "Bo"}'], 'key "name" twice'),
        (["trigger", "hello-world", "--payload-file", "DUP"], 'payload has the key "b" twice'),
    ],
)
def test_bad_trigger_input_exits_2_and_writes_nothing(env, args, message, tmp_path):
    files = {
        "BAD_UTF8": b'{"x":"\xff"}',
        "DEEP": b"[" * 100_000 + b"]" * 100_000,
        "DUP": b'{"name": "Ada", "a": {"b": 1, "b": 2}}',
    }
    for i, arg in enumerate(args):
        if arg in files:
            (tmp_path / arg).write_bytes(files[arg])
            args = [*args[:i], str(tmp_path / arg), *args[i + 1 :]]
    result = flowjobs(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert as_json(flowjobs("runs", "list", "--json", env=env)) == []


def test_bad_trigger_input_makes_no_database(tmp_path):
    # An unknown task, a payload that does not validate, a key too long: each was refused only
    # after the database file (and its lock file) had been made at the configured path; a TTL
    # without a key was ignored without a word.
    env = cli_env(f"sqlite:///{tmp_path / 'ghost.db'}")
    for args, message in (
        (["trigger", "no-such-task"], "unknown task 'no-such-task'"),
        (["trigger", "noop", "--idempotency-key-ttl", "1d"], "--idempotency-key-ttl needs"),
        (["trigger", "noop", "--payload", '{"unexpected": 1}'], "invalid payload for 'noop'"),
        (["trigger", "noop", "--idempotency-key", "k" * 501], "501 characters long"),
    ):
        result = flowjobs(*args, env=env)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_idempotency_conflict_exits_2_naming_the_run(env):
    first = flowjobs(
        "trigger", "hello-world", "--payload", '{"a": 1}', "--idempotency-key", "k", env=env
    )
    clash = flowjobs(
        "trigger", "hello-world", "--payload", '{"a": 2}', "--idempotency-key", "k", env=env
    )
    assert clash.returncode == 2
    assert first.stdout.strip() in clash.stderr


def test_unknown_run_exits_3(env):
    for args in (
        ["runs", "show", "run_nope"],
        ["runs", "cancel", "run_nope"],
        ["runs", "replay", "run_nope"],
    ):
        result = flowjobs(*args, env=env)
        assert result.returncode == 3, args
        assert "no run 'run_nope'" in result.stderr


def test_bad_config_lists_every_problem_and_exits_2(tmp_path, env):
    (tmp_path / "flowjobs.toml").write_text(
        '[worker]\nconcurrency = "many"\nlease = "forever"\ncolour = "blue"\n[retry]\nmax_attempts = 0\n'
    )
    result = flowjobs("trigger", "noop", env=env, cwd=tmp_path)
    assert result.returncode == 2
    for problem in (
        "worker.concurrency:",
        "worker.lease:",
        "worker.colour: unknown key",
        "retry.max_attempts:",
    ):
        assert problem in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "broken.toml").write_text("[worker\n")
    assert (
        flowjobs("--config", str(tmp_path / "broken.toml"), "tasks", "list", env=env).returncode
        == 2
    )
    missing = flowjobs("--config", "nope.toml", "tasks", "list", env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_misspelt_key_in_the_file_or_a_variable_gets_the_one_meant(tmp_path, env):
    (tmp_path / "flowjobs.toml").write_text("[worker]\nconcurency = 3\n")
    in_file = flowjobs("tasks", "list", env=env, cwd=tmp_path)
    assert in_file.returncode == 2
    assert in_file.stderr == (
        "error: invalid flowjobs.toml:\n"
        "  worker.concurency: unknown key; did you mean 'concurrency'?\n"
    )
    not_settings = {  # variables flowjobs and its tests read that are not [section] keys
        "FLOWJOBS_PYZ_CACHE": str(tmp_path / "cache"),
        "FLOWJOBS_TEST_PG_URL": "postgresql+psycopg://nobody@nowhere/db",
        "FLOWJOBS_STORM_SEED": "7",
    }
    fine = flowjobs("tasks", "list", env={**env, **not_settings})
    assert fine.returncode == 0 and fine.stderr == "", fine.stderr
    # a misspelt key or section; near misses of the variables that choose the file, the
    # database and the logs; a section named without a key; a variable in lower case: each
    # would have been ignored, silently
    for variable, problem in (
        (
            "FLOWJOBS_WORKER_CONCURENCY",
            "worker.concurency (from FLOWJOBS_WORKER_CONCURENCY): unknown key; "
            "did you mean FLOWJOBS_WORKER_CONCURRENCY?",
        ),
        (
            "FLOWJOBS_STRIP_API_BASE",
            "strip.api_base (from FLOWJOBS_STRIP_API_BASE): unknown section; "
            "did you mean FLOWJOBS_STRIPE_API_BASE?",
        ),
        (
            "FLOWJOBS_CONFG",
            "FLOWJOBS_CONFG: not a flowjobs variable; did you mean FLOWJOBS_CONFIG?",
        ),
        (
            "FLOWJOBS_DB_URL",
            "FLOWJOBS_DB_URL: not a flowjobs variable; did you mean FLOWJOBS_DATABASE_URL?",
        ),
        (
            "FLOWJOBS_LOGLEVEL",
            "FLOWJOBS_LOGLEVEL: not a flowjobs variable; did you mean FLOWJOBS_LOG_LEVEL?",
        ),
        (
            "FLOWJOBS_DATABASE",
            "FLOWJOBS_DATABASE: names the [database] section, not one of its keys; did you mean FLOWJOBS_DATABASE_URL?",
        ),
        (
            "FLOWJOBS_worker_concurrency",
            "worker.concurrency (from FLOWJOBS_worker_concurrency): variables are read in upper case only: FLOWJOBS_WORKER_CONCURRENCY",
        ),
    ):
        missed = flowjobs("tasks", "list", env={**env, **not_settings, variable: "x"})
        assert missed.returncode == 2
        assert missed.stderr == f"error: invalid environment:\n  {problem}\n", missed.stderr


def test_runs_list_filters_and_json_fields(env):
    a = flowjobs("trigger", "noop", env=env).stdout.strip()
    b = flowjobs("trigger", "hello-world", env=env).stdout.strip()
    rows = as_json(flowjobs("runs", "list", "--json", env=env))
    assert [r["id"] for r in rows] == [b, a]  # newest first
    assert {
        "id",
        "task",
        "status",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    } <= set(rows[0])
    only = as_json(flowjobs("runs", "list", "--task", "noop", "--json", env=env))
    assert [r["id"] for r in only] == [a]
    assert flowjobs("runs", "list", "--status", "bogus", env=env).returncode == 2
    plain = flowjobs("runs", "list", env=env).stdout.splitlines()
    assert plain[0].split("\t")[:3] == ["id", "task", "status"] and len(plain) == 3
    # a list cut at --limit says so (it stopped at 50 without a word); one that fits does not
    cut = flowjobs("runs", "list", "--limit", "1", env=env)
    assert (
        len(cut.stdout.splitlines()) == 2 and "showing the newest 1 run; more match" in cut.stderr
    )
    assert "more match" not in flowjobs("runs", "list", "--limit", "2", env=env).stderr


def test_piped_runs_list_is_one_line_per_run_with_the_whole_error(env, sqlite_url):
    """Piped, `runs list` is tab-separated lines: an error's newlines, tabs and backslashes are
    escaped (as PostgreSQL's COPY text format does) and the error is not cut."""

    run_id = flowjobs("trigger", "noop", env=env).stdout.strip()
    error = "ValueError: the card\tfailed\n  at C:\\billing\r\n" + "x" * 100
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE flowjobs_runs SET status = 'failed', error = ? WHERE id = ?", (error, run_id)
        )
    lines = flowjobs("runs", "list", "--columns", "id,error", env=env).stdout.split("\n")
    assert lines == [
        "id\terror",
        f"{run_id}\tValueError: the card\\tfailed\\n  at C:\\\\billing\\r\\n{'x' * 100}",
        "",
    ]


def test_cancel_and_replay(env):
    run_id = flowjobs("trigger", "noop", "--delay", "1h", env=env).stdout.strip()
    canceled = flowjobs("runs", "cancel", run_id, env=env)
    assert canceled.returncode == 0 and "canceled" in canceled.stdout
    assert flowjobs("runs", "cancel", run_id, env=env).returncode == 1  # already canceled
    replay = as_json(flowjobs("runs", "replay", run_id, "--json", env=env))
    assert replay["replay_of"] == run_id and replay["id"] != run_id
    shown = as_json(flowjobs("runs", "show", replay["id"], "--json", env=env))
    assert shown["replay_of"] == run_id and shown["status"] == "queued"

    # a run that has not ended: a replay would run its task twice; refused unless --force
    refused = flowjobs("runs", "replay", replay["id"], env=env)
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert refused.stderr.startswith(f"error: run {replay['id']} is queued, not ended: ")
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert flowjobs("runs", "replay", "--status", "queued", env=env).returncode == 2
    assert len(as_json(flowjobs("runs", "list", "--json", env=env))) == 2  # nothing made
    forced = as_json(flowjobs("runs", "replay", replay["id"], "--force", "--json", env=env))
    assert forced["replay_of"] == replay["id"]


def test_cancel_of_a_run_whose_worker_is_gone_ends_it_at_once(env, sqlite_url):
    """A run left `executing` by a worker killed or stopped past its shutdown timeout: "its
    worker stops it at the next heartbeat" never came, and `db copy` stayed refused."""
    import time

    from flowjobs.store.db import Database
    from flowjobs.store.jobs import JobStore

    gone, alive = (flowjobs("trigger", "noop", env=env).stdout.strip() for _ in range(2))
    store = JobStore(Database(sqlite_url))
    now = int(time.time() * 1000)
    store.claim("w-gone", 1, ["*"], {}, now, 0)  # its lease ends as it is taken
    store.claim("w-alive", 1, ["*"], {}, now, 3_600_000)
    store.db.close()
    canceled = flowjobs("runs", "cancel", gone, env=env)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.startswith(f"canceled {gone}: it was executing on a worker whose lease")
    shown = as_json(flowjobs("runs", "show", gone, "--json", env=env))
    assert shown["status"] == "canceled" and shown["lease_expires_at"] is None
    assert [a["outcome"] for a in shown["attempts"]] == ["crashed"]
    requested = flowjobs("runs", "cancel", alive, env=env)
    assert (
        "which tells the task to stop (ctx.canceled); should worker w-alive be gone, the run "
        in (requested.stdout)
    )
    assert "ends when its lease runs out (" in requested.stdout
    assert as_json(flowjobs("runs", "show", alive, "--json", env=env))["status"] == "executing"


def test_replay_by_status_replays_each_failure_once(env, sqlite_url):
    """`runs replay --status failed` skips runs replayed before, so running it twice makes no
    second copies; a failed replay is a failed run of its own, replayed in its turn. --task
    alone is refused (it would replay every run of the task, completed ones too); --dry-run
    replays nothing; --limit says when more match; --include-replayed replays again."""
    ids = [flowjobs("trigger", "noop", env=env).stdout.strip() for _ in range(3)]

    def fail(*run_ids):
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
            conn.executemany(
                "UPDATE flowjobs_runs SET status = 'failed' WHERE id = ?", [(i,) for i in run_ids]
            )

    def count():
        return len(as_json(flowjobs("runs", "list", "--json", env=env)))

    fail(*ids)
    alone = flowjobs("runs", "replay", "--task", "noop", env=env)
    assert alone.returncode == 2 and "--task narrows --status" in alone.stderr
    dry = flowjobs("runs", "replay", "--status", "failed", "--dry-run", env=env)
    assert dry.returncode == 0 and sorted(dry.stdout.split()) == sorted(ids)
    assert "would replay 3 runs" in dry.stderr and count() == 3

    first = as_json(flowjobs("runs", "replay", "--status", "failed", "--json", env=env))
    assert sorted(r["replay_of"] for r in first) == sorted(ids) and count() == 6
    again = flowjobs("runs", "replay", "--status", "failed", env=env)
    assert again.returncode == 0 and again.stdout == "" and count() == 6
    assert "replayed 0 runs" in again.stderr and "skipped 3 already replayed" in again.stderr
    shown = as_json(flowjobs("runs", "show", ids[0], "--json", env=env))
    assert shown["replays"] == [r["id"] for r in first if r["replay_of"] == ids[0]]
    replay = as_json(flowjobs("runs", "show", shown["replays"][0], "--json", env=env))
    assert replay["idempotency_key"] == f"replay-of:{ids[0]}"  # two at once make one run

    fail(first[0]["id"], first[1]["id"])  # two replays failed too: the tips of their chains
    limited = flowjobs("runs", "replay", "--status", "failed", "--limit", "1", env=env)
    assert len(limited.stdout.split()) == 1 and "more runs match than --limit 1" in limited.stderr
    rest = as_json(flowjobs("runs", "replay", "--status", "failed", "--json", env=env))
    assert [r["replay_of"] for r in rest] in ([first[0]["id"]], [first[1]["id"]]) and count() == 8
    everything = as_json(
        flowjobs("runs", "replay", "--status", "failed", "--include-replayed", "--json", env=env)
    )
    assert len(everything) == 5 and count() == 13  # the 3 originals and 2 failed replays


def test_a_worker_on_a_queue_no_task_uses_says_so(env):
    """`--queue webhook` (for `webhooks`) would take nothing: said once at start, not refused
    (a run triggered with --queue may be on any queue)."""
    typo = flowjobs("run-worker", "--queue", "webhook", "--burst", "--no-scheduler", env=env)
    assert typo.returncode == 0, typo.stderr
    assert "no registered task uses queue 'webhook' (their queues: " in typo.stderr
    assert "webhooks" in typo.stderr.split("their queues: ")[1]
    many = flowjobs("run-worker", "-P", "2", "-q", "webhook", "--burst", "--no-scheduler", env=env)
    assert many.returncode == 0 and many.stderr.count("no registered task uses") == 1  # not 2
    right = flowjobs(
        "run-worker", "-q", "webhooks", "-q", "*", "--burst", "--no-scheduler", env=env
    )
    assert right.returncode == 0 and "no registered task uses" not in right.stderr


def test_runs_list_since_a_duration_or_a_time(env, sqlite_url, tmp_path):
    from flowjobs.core.clock import FixedClock, parse_iso
    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings

    start = parse_iso("2026-11-30T10:00:00Z")
    clock = FixedClock(start)
    rt = Runtime(make_settings(sqlite_url, tmp_path), clock=clock)
    old = rt.trigger("noop").id
    clock.advance(3 * 3600)
    new = rt.trigger("noop").id
    rt.close()
    now = {**env, "FLOWJOBS_CLOCK": "2026-11-30T13:30:00Z x0 @0"}  # time stands at 13:30

    def listed(*args):
        result = flowjobs("runs", "list", "--json", *args, env=now)
        assert result.returncode == 0, result.stderr
        return [r["id"] for r in json.loads(result.stdout)]

    assert listed() == [new, old]
    assert listed("--since", "1h") == [new]  # created at 13:00
    assert listed("--since", "4h") == [new, old]
    assert listed("--since", "2026-11-30T12:00:00Z") == [new]
    bad = flowjobs("runs", "list", "--since", "yesterday", env=now)
    assert bad.returncode == 2 and "--since: 'yesterday' is neither a duration" in bad.stderr
    far = flowjobs("runs", "list", "--since", "9999999999999999d", env=now)
    assert far.returncode == 2 and "is longer than 100 years" in far.stderr
    delay = flowjobs("trigger", "noop", "--delay", "99999999999999d", env=now)
    assert delay.returncode == 2 and "is longer than 100 years" in delay.stderr


def test_tasks_list_json(env):
    tasks = {t["id"]: t for t in as_json(flowjobs("tasks", "list", "--json", env=env))}
    assert {"hello-world", "noop", "test-limited"} <= set(tasks)
    assert tasks["noop"]["retry"]["max_attempts"] == 2 and tasks["noop"]["retry"]["min_wait"] == 1.0
    assert (
        tasks["test-limited"]["queue"] == "limited"
        and tasks["test-limited"]["concurrency_limit"] == 2
    )
    assert tasks["test-sleep"]["timeout"] == "300ms"


def test_tasks_list_says_one_attempt_not_1_attempts(env):
    """A task with one attempt is "1 attempt, no retry" (it used to read "1 attempts, 1s→10s
    ×2": waits that never apply); two or more keep their waits."""
    rows = {
        line.split("\t")[0]: line.split("\t")
        for line in flowjobs("tasks", "list", env=env).stdout.splitlines()
    }
    assert rows["test-exit"][3] == "1 attempt, no retry"  # RetryPolicy(max_attempts=1)
    assert rows["noop"][3] == "2 attempts, 1s→10s ×2, randomized"
    only_once = flowjobs("tasks", "list", env={**env, "FLOWJOBS_RETRY_MAX_ATTEMPTS": "1"})
    assert "1 attempts" not in only_once.stdout
    assert only_once.stdout.count("1 attempt, no retry") > 10


def test_db_upgrade_and_status_on_a_new_file(tmp_path):
    env = cli_env(f"sqlite:///{tmp_path}/new.db")
    first = flowjobs("db", "upgrade", env=env)
    assert first.returncode == 0 and f"upgraded from empty to {HEAD}" in first.stdout
    assert f"already at revision {HEAD}" in flowjobs("db", "upgrade", env=env).stdout
    assert f"revision: {HEAD}" in flowjobs("db", "status", env=env).stdout


def test_help_and_version(env):
    assert "run-worker" in flowjobs("--help", env=env).stdout
    assert flowjobs("--version", env=env).stdout.startswith("flowjobs ")
    assert flowjobs("bogus-command", env=env).returncode == 2


def test_unreachable_database_exits_4(tmp_path):
    env = cli_env(f"sqlite:///{tmp_path}/missing-dir/x.db")
    result = flowjobs("trigger", "noop", env=env)
    assert result.returncode == 4 and "does not exist" in result.stderr


def test_postgres_short_urls_are_accepted_as_postgresql(tmp_path):
    from flowjobs.config import Settings

    url = Settings.model_validate(
        {"database": {"url": "postgres://app:secret@db.internal/billing"}}
    ).database.url
    assert url == "postgresql+psycopg://app:secret@db.internal/billing"


def test_serve_on_a_taken_port_or_a_bad_host_is_exit_2_in_one_line(sqlite_url):
    import socket

    env = cli_env(sqlite_url, FLOWJOBS_DASHBOARD_PASSWORD="pw")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = flowjobs("serve", "--port", str(port), env=env)
    assert busy.returncode == 2 and busy.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use by another program: choose another with --port "
        "(0 picks a free one)\n"
    )
    for host in ("no.such.host.invalid", "10.254.254.254"):
        bad = flowjobs("serve", "--host", host, "--port", "0", env=env)
        assert (
            bad.returncode == 2 and bad.stderr.count("\n") == 1 and "check --host" in bad.stderr
        ), bad.stderr
    # a host that does not resolve is named as such, even where the missing dashboard password
    # would also have refused it
    typo = flowjobs(
        "serve", "--host", "no.such.host.invalid", "--port", "0", env=cli_env(sqlite_url)
    )
    assert typo.returncode == 2 and typo.stderr == (
        "error: cannot listen on no.such.host.invalid:0: no such address (check --host)\n"
    ), typo.stderr


def test_runs_show_indents_the_later_lines_of_an_error_under_its_first(sqlite_url, tmp_path):
    """A task's error of several lines: each later line stays under its field, not at column 0
    where it would read as a field of its own."""
    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(sqlite_url, tmp_path))
    run = rt.trigger("noop")
    [claimed] = rt.store.claim("w", 1, ["*"], {}, rt.clock.now_ms(), 30_000)
    error = "ValueError: kaboom: line1\nline2"
    assert rt.store.finish(
        claimed,
        status="failed",
        outcome="failed",
        worker="w",
        now=rt.clock.now_ms(),
        started_at=rt.clock.now_ms(),
        error=error,
    )
    rt.close()
    lines = flowjobs("runs", "show", run.id, env=cli_env(sqlite_url)).stdout.splitlines()
    at = lines.index("  error: ValueError: kaboom: line1")
    assert lines[at + 1] == "    line2"
    attempt = next(i for i, line in enumerate(lines) if line.startswith("attempt 1: failed"))
    assert (
        lines[attempt].endswith(": ValueError: kaboom: line1") and lines[attempt + 1] == "  line2"
    )


def test_a_burst_that_leaves_a_delayed_run_behind_says_when_it_is_due(env):
    delayed = as_json(flowjobs("trigger", "noop", "--delay", "1h", "--json", env=env))
    shown = as_json(flowjobs("runs", "show", delayed["id"], "--json", env=env))
    burst = flowjobs("--log-format", "text", "run-worker", "--burst", env=env)
    assert burst.returncode == 0, burst.stderr
    assert (
        f"a run still waits (retrying or delayed), due at {shown['run_at']}: a burst from "
        "then on takes it" in burst.stderr
    ), burst.stderr
    emptied = flowjobs("--log-format", "text", "run-worker", "--burst", env=env)
    assert "still waits" in emptied.stderr  # still there: nothing was due
    flowjobs("runs", "cancel", delayed["id"], env=env)
    nothing = flowjobs("--log-format", "text", "run-worker", "--burst", env=env)
    assert nothing.returncode == 0 and "still waits" not in nothing.stderr, nothing.stderr
    # a run due in a queue the burst does not take: it said "a burst from then on takes it",
    # naming a time already past
    flowjobs("trigger", "noop", env=env)
    other = flowjobs("--log-format", "text", "run-worker", "--burst", "--queue", "mail", env=env)
    assert "in a queue this worker does not take (it takes mail)" in other.stderr, other.stderr
    assert "still waits" not in other.stderr


@pytest.mark.parametrize(
    "args",
    [("trigger", "noop"), ("runs", "list", "--json"), ("tasks", "list"), ("billing", "summary")],
    ids=" ".join,
)
def test_a_reader_that_stops_reading_ends_the_command_quietly_with_exit_0(sqlite_url, args):
    """`flowjobs … | head -1`, `| grep -q`: the reader closed the pipe before the command wrote.
    The command did its work (the run is triggered); it leaves without a word and with exit 0,
    as a pipeline under `set -o pipefail` needs (typer said exit 1; the fast path a bug) —
    with stdout buffered, as it is for a pipe, and unbuffered (PYTHONUNBUFFERED)."""
    import subprocess
    import sys

    env = {k: v for k, v in cli_env(sqlite_url).items() if k != "PYTHONUNBUFFERED"}
    for unbuffered in ({}, {"PYTHONUNBUFFERED": "1"}):
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowjobs", *args],
            env={**env, **unbuffered},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.close()  # no reader left: the command's first write meets EPIPE
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err.decode()) == (0, ""), unbuffered
    if args[0] == "trigger":
        listed = flowjobs("runs", "list", "--json", env=env)
        assert [r["task"] for r in json.loads(listed.stdout)] == ["noop", "noop"]
