"""Acceptance (issue 15, "the operator's day"): the CLI run as a subprocess, as a new user meets
it — finding the database, mistakes reported as mistakes, output a person can use."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from flowjobs.store.migrate import HEAD
from tests.cli_helpers import ROOT, as_json, cli_env, flowjobs


def bare_env(**extra: str) -> dict:
    """A user's environment: no FLOWJOBS_* at all, the worktree importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWJOBS_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def listing(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# -- 1. Finding the database ---------------------------------------------------------------

READ_ONLY = [
    ["runs", "list"],
    ["runs", "list", "--json"],
    ["runs", "show", "run_nope"],
    ["runs", "watch", "--once"],
    ["billing", "summary"],
    ["billing", "list", "invoices"],
    ["billing", "show", "invoice", "inv_nope"],
    ["events", "list"],
    ["events", "show", "evt_nope"],
    ["events", "deliveries"],
    ["schedules", "list"],
    ["schedules", "health"],
    ["db", "status"],
    ["db", "copy", "--to", "sqlite:///elsewhere.db"],
    ["workers"],
    # they change things that must already exist: a typo in the wrong folder makes no database
    ["runs", "cancel", "run_nope"],
    ["runs", "replay", "run_nope"],
    ["billing", "cancel", "sub_nope"],
    ["billing", "uncancel", "sub_nope"],
    ["billing", "retry", "billing_run_nope"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_read_only_commands_in_a_fresh_folder_create_nothing(tmp_path, args):
    result = flowjobs(*args, env=bare_env(), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    expected = tmp_path / "flowjobs.db"
    assert f"error: no database at {expected}" in result.stderr
    assert "no flowjobs.toml here" in result.stderr  # says why it looked there
    assert "--database" in result.stderr and "flowjobs db upgrade" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line
    assert listing(tmp_path) == []  # no database, no lock file, no folder


EXAMPLES = ROOT / "examples"
MUST_EXIST = [
    # they read, or send without recording, or make a dry run
    ["documents", "render", "invoice", "inv_x"],
    ["replay-event", str(EXAMPLES / "stripe-customer-created.json"), "--dry-run"],
    ["billing", "adjust", "sub_x", "--price", "price_x", "--dry-run"],
    ["events", "replay", "whevt_x", "--dry-run"],
    ["endpoints", "test", "org_x"],
    ["endpoints", "list", "org_x"],
    ["schedules", "backfill", "hourly-cron", "--from", "2024-01-01T00:00:00Z", "--to"]
    + ["2024-01-01T03:00:00Z", "--dry-run"],
    # they change things that must already exist
    ["billing", "adjust", "sub_x", "--price", "price_x"],
    ["events", "replay", "whevt_x"],
    ["events", "redeliver", "event_x"],
    ["endpoints", "add", "org_x", "--url", "https://example.com/hook"],
    ["endpoints", "disable", "org_x", "we_x"],
    ["endpoints", "enable", "org_x", "we_x"],
    ["endpoints", "rotate-secret", "org_x", "we_x"],
    ["trigger", "billing-run", "billing_run_x"],
    ["schedules", "disable", "hourly-cron"],  # written to a new database, it would disable nothing
    ["schedules", "enable", "hourly-cron"],
]


def test_a_database_path_in_a_missing_folder_says_to_make_the_folder_first(tmp_path):
    """`db upgrade` makes the file, not its folders: the hint "create it with `flowjobs db
    upgrade`" led to "cannot create database …: directory … does not exist"."""
    ghost = tmp_path / "data" / "flowjobs.db"
    result = flowjobs("--database", str(ghost), "db", "status", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(
        f"error: no database at {ghost} (from --database), and no folder {ghost.parent} to hold"
    )
    assert f"create the folder (mkdir -p {ghost.parent}) and then `flowjobs db upgrade`" in (
        result.stderr
    )
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "args", MUST_EXIST, ids=lambda a: " ".join(x.rpartition("/")[2] for x in a)
)
def test_commands_on_a_mistyped_database_path_create_nothing(tmp_path, args):
    ghost = tmp_path / "ghost.db"
    result = flowjobs("--database", str(ghost), *args, env=bare_env(), cwd=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: no database at {ghost} (from --database); ")
    assert "flowjobs db upgrade" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line
    assert result.stdout == ""
    assert listing(tmp_path) == []  # no ghost.db, -wal, -shm or .migrate-lock


REFUSED_FIRST = [
    # commands that would create their database, given bad input: refused before it is made
    (["schedules", "trigger", "no-such"], 3, "no schedule 'no-such'"),
    (
        ["schedules", "backfill", "no-such", "--from", "2024-01-01", "--to", "2024-01-02"],
        3,
        "no schedule 'no-such'",
    ),
    (["replay-event", "empty.json"], 2, "empty.json is empty"),
]


@pytest.mark.parametrize("args, code, message", REFUSED_FIRST, ids=lambda a: str(a))
def test_bad_input_to_a_command_that_makes_its_database_makes_none(tmp_path, args, code, message):
    (tmp_path / "empty.json").write_bytes(b"")
    ghost = tmp_path / "ghost.db"
    result = flowjobs("--database", str(ghost), *args, env=bare_env(), cwd=tmp_path)
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "looked in database" not in result.stderr  # schedules are configuration
    assert listing(tmp_path) == ["empty.json"]


@pytest.mark.parametrize("args", [["run-worker", "--burst"], ["tick"], ["run-scheduler"]])
def test_a_bad_schedule_is_refused_before_a_database_is_made(tmp_path, args):
    (tmp_path / "flowjobs.toml").write_text(
        '[schedules.typo]\ntask = "hello-wrld"\ncron = "* * * * *"\n'
    )
    result = flowjobs(*args, env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "schedules.typo.task: unknown task 'hello-wrld'" in result.stderr
    assert listing(tmp_path) == ["flowjobs.toml"]


def test_doctor_in_a_fresh_folder_says_no_database_yet_and_creates_nothing(tmp_path):
    result = flowjobs("doctor", env=bare_env(), cwd=tmp_path)
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr  # warnings only
    assert f"no database yet at {tmp_path / 'flowjobs.db'}" in result.stdout
    assert "fix: run `flowjobs db upgrade`" in result.stdout
    assert "(created with the first email)" in result.stdout
    assert listing(tmp_path) == []  # no flowjobs.db, no mail/ folder
    checks = {
        c["check"]: c for c in as_json(flowjobs("doctor", "--json", env=bare_env(), cwd=tmp_path))
    }
    assert checks["database"]["status"] == "warn" and "schema" not in checks
    assert listing(tmp_path) == []


def test_global_database_option_is_used_by_every_command(tmp_path, sqlite_template):
    shutil.copy(sqlite_template, tmp_path / "ops.db")
    (tmp_path / "other").mkdir()
    env = bare_env(FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests")
    # a relative path is taken from where the command runs; the fast trigger path knows it too
    run_id = flowjobs("--database", "ops.db", "trigger", "noop", env=env, cwd=tmp_path)
    assert run_id.returncode == 0, run_id.stderr
    run_id = run_id.stdout.strip()
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    shown = as_json(
        flowjobs(
            "--database", url, "runs", "show", run_id, "--json", env=env, cwd=tmp_path / "other"
        )
    )
    assert shown["id"] == run_id
    # it wins over FLOWJOBS_DATABASE_URL and a flowjobs.toml
    (tmp_path / "other" / "flowjobs.toml").write_text('[database]\nurl = "sqlite:///nowhere.db"\n')
    over = {**env, "FLOWJOBS_DATABASE_URL": "sqlite:////nonexistent/x.db"}
    listed = as_json(
        flowjobs("--database", url, "runs", "list", "--json", env=over, cwd=tmp_path / "other")
    )
    assert [r["id"] for r in listed] == [run_id]
    assert not (tmp_path / "other" / "nowhere.db").exists()

    bad = flowjobs("--database", "mysql://x/y", "runs", "list", env=env)
    assert bad.returncode == 2 and "--database" in bad.stderr


def test_not_found_names_the_database_it_looked_in(tmp_path, sqlite_template):
    shutil.copy(sqlite_template, tmp_path / "ops.db")
    env = bare_env()
    for args, status in (
        (["runs", "show", "run_nope"], 3),
        (["runs", "cancel", "run_nope"], 3),
        (["billing", "show", "invoice", "inv_nope"], 3),
        (["events", "show", "evt_nope"], 3),
    ):
        result = flowjobs("--database", str(tmp_path / "ops.db"), *args, env=env)
        assert result.returncode == status, result.stderr
        assert str(tmp_path / "ops.db") in result.stderr, result.stderr


def test_a_file_without_flowjobs_tables_is_not_a_database_to_read(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    result = flowjobs("--database", "empty.db", "runs", "list", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 4
    assert f"no flowjobs tables in database {tmp_path / 'empty.db'}" in result.stderr
    assert listing(tmp_path) == ["empty.db"]


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list"),
        ("db", "status"),
        ("db", "upgrade"),
        ("trigger", "noop"),
        ("run-worker", "--burst"),
    ],
)
def test_a_file_that_is_not_sqlite_is_named_as_such(tmp_path, args):
    """A wrong file (a text file, a damaged one) is one line and exit 4 for reading and writing
    commands alike, never "unexpected … report it", and is left as it was."""
    wrong = tmp_path / "passwd"
    wrong.write_text("root:x:0:0:root:/root:/bin/bash\n")
    env = bare_env(FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests")
    result = flowjobs("--database", str(wrong), *args, env=env, cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert result.stderr == (
        f"error: {wrong} is not an SQLite database, or it is damaged (DatabaseError: file is not "
        "a database): point --database, FLOWJOBS_DATABASE_URL or [database] url at flowjobs' "
        "database file\n"
    )
    assert wrong.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert listing(tmp_path) == ["passwd"]  # nothing made beside it (no migration lock file)


def test_db_status_shows_url_revision_size_and_counts(tmp_path, sqlite_template):
    shutil.copy(sqlite_template, tmp_path / "ops.db")
    env = bare_env(FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests")
    db = ["--database", str(tmp_path / "ops.db")]
    for _ in range(2):
        assert flowjobs(*db, "trigger", "noop", env=env).returncode == 0
    status = as_json(flowjobs(*db, "db", "status", "--json", env=env))
    assert status["url"] == f"sqlite:///{tmp_path / 'ops.db'}"
    assert status["revision"] == status["head"] == HEAD and status["current"] is True
    assert status["size_bytes"] > 0 and status["runs"] == {"queued": 2}
    human = flowjobs(*db, "db", "status", env=env).stdout
    assert f"revision: {HEAD}" in human and "runs:     2 (queued 2)" in human
    assert "from:     --database" in human


def test_another_applications_database_a_newer_schema_and_a_file_in_the_path_are_named_as_such(
    tmp_path, sqlite_template
):
    """`db status`, `doctor` and `runs list` told the operator to run `flowjobs db upgrade` on
    another application's database (which it then refused) and on a newer schema (which it
    cannot upgrade), and `mkdir -p` a path through a file."""
    import sqlite3

    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id TEXT)")
    env = cli_env(f"sqlite:///{other}")
    status = flowjobs("db", "status", env=env)
    assert "belongs to another application: give flowjobs a database of its own" in status.stdout
    assert "db upgrade" not in status.stdout
    listed = flowjobs("runs", "list", env=env)
    assert listed.returncode == 4 and "it belongs to another application" in listed.stderr
    assert "db upgrade" not in listed.stderr
    doctor = flowjobs("doctor", env=env)
    assert doctor.returncode == 1 and "fail database" in doctor.stdout
    with sqlite3.connect(other) as conn:  # another application's Alembic history too
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('3f2a1b9c8d7e')")
    for command in (["db", "status"], ["runs", "list"], ["db", "upgrade"]):
        said = flowjobs(*command, env=env)
        text = said.stdout + said.stderr
        assert "Alembic revision 3f2a1b9c8d7e, not one of flowjobs'" in text, text
        assert "upgrade flowjobs" not in text  # it is not a newer flowjobs's
    assert flowjobs("db", "upgrade", env=env).returncode == 2

    newer = tmp_path / "newer.db"
    shutil.copy(sqlite_template, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    shown = flowjobs("db", "status", env=cli_env(f"sqlite:///{newer}")).stdout
    assert "revision: 0099 (newer than this flowjobs: upgrade flowjobs)" in shown

    (tmp_path / "afile").write_text("")
    under = flowjobs("runs", "list", env=cli_env(f"sqlite:///{tmp_path}/afile/x.db"))
    assert under.returncode == 4 and f"{tmp_path}/afile is a file, not a folder" in under.stderr
    assert "mkdir" not in under.stderr


def test_db_status_hides_the_password_of_a_database_url():
    result = flowjobs(
        "--database", "postgres://ops:s3cret@127.0.0.1:9/flowjobs", "db", "status", env=bare_env()
    )
    assert result.returncode == 4
    assert "s3cret" not in result.stderr and "ops:***@127.0.0.1:9" in result.stderr
    # postgres:// is read as postgresql+psycopg:// (it reached the server: unreachable, exit 4)
    assert "database postgresql+psycopg://ops:***@127.0.0.1:9/flowjobs is unavailable" in (
        result.stderr
    )
    other = flowjobs("--database", "mysql://ops:s3cret@db/flowjobs", "db", "status", env=bare_env())
    assert other.returncode == 2 and "must be sqlite:///PATH, a file path, or " in other.stderr
    assert "postgresql+psycopg://user@host/db" in other.stderr
    assert "s3cret" not in other.stderr and "'mysql://ops:***@db/flowjobs'" in other.stderr


def test_db_upgrade_into_a_missing_folder_is_one_line(tmp_path):
    result = flowjobs("--database", "nope/x.db", "db", "upgrade", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 4
    assert f"directory {tmp_path / 'nope'} does not exist" in result.stderr
    assert "unexpected" not in result.stderr and listing(tmp_path) == []


def test_a_database_path_under_a_file_or_at_a_folder_says_which(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "data").mkdir()
    env = bare_env(FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests")
    for args in (("trigger", "noop"), ("db", "upgrade")):
        under_file = flowjobs("--database", "notes.txt/x.db", *args, env=env, cwd=tmp_path)
        assert under_file.returncode == 4 and under_file.stderr.count("\n") == 1
        assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in under_file.stderr
    folder = flowjobs("--database", "data", "runs", "list", env=env, cwd=tmp_path)
    assert folder.returncode == 4 and folder.stderr == (
        f"error: {tmp_path / 'data'} (from --database) is a folder, not a database file; point "
        "--database, FLOWJOBS_DATABASE_URL or [database] url at a file (such as "
        f"{tmp_path / 'data' / 'flowjobs.db'})\n"
    )
    for args in (("trigger", "noop"), ("db", "upgrade"), ("run-worker", "--burst")):
        writing = flowjobs("--database", "data", *args, env=env, cwd=tmp_path)
        assert writing.returncode == 4 and writing.stderr.count("\n") == 1, writing.stderr
        assert f"{tmp_path / 'data'} is a folder, not a database file" in writing.stderr
    for place, problem in (("data", "is a folder"), ("notes.txt/x.db", "is a file, not a folder")):
        doctor = flowjobs("--database", place, "doctor", env=env, cwd=tmp_path)
        assert doctor.returncode == 1 and "fail database      no database can be at" in (
            doctor.stdout
        )
        assert problem in doctor.stdout, doctor.stdout
    assert listing(tmp_path) == ["data", "notes.txt"] and listing(tmp_path / "data") == []


def test_writing_commands_still_create_the_database(tmp_path):
    env = bare_env()
    assert flowjobs("trigger", "hello-world", env=env, cwd=tmp_path).returncode == 0
    listed = as_json(flowjobs("runs", "list", "--json", env=env, cwd=tmp_path))
    assert [r["task"] for r in listed] == ["hello-world"]


def test_cli_env_fixture_still_reads(sqlite_url):
    assert as_json(flowjobs("runs", "list", "--json", env=cli_env(sqlite_url))) == []
    assert json.loads(flowjobs("db", "status", "--json", env=cli_env(sqlite_url)).stdout)["exists"]


# -- 2. Filters validated alike everywhere -------------------------------------------------


def walk(command, path=()):
    """(path, click command) for every leaf command of the flowjobs CLI."""
    if hasattr(command, "commands"):  # a group (typer may bundle its own click)
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))
    else:
        yield path, command


def all_commands():
    import typer.main

    from flowjobs.cli.app import app

    return list(walk(typer.main.get_command(app)))


def test_every_option_names_its_value_and_says_what_it_does():
    # `--status <str>`, `--limit <int range>` and options with no help at all: a name for the
    # value (STATUS, DURATION, N, …) and a sentence, for every option that takes one.
    for path, command in all_commands():
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option" or param.is_flag:
                continue
            assert param.metavar, (path, param.opts)
            assert param.help, (path, param.opts)


# The arguments each filtered command needs besides the filter (a command that gains a
# --status or --source must be added here: the walk below checks the list is complete).
FILTERED = {
    ("runs", "list"): [],
    ("runs", "replay"): [],
    ("billing", "list"): ["invoices"],
    ("events", "list"): [],
    ("events", "deliveries"): [],
    ("replay-event",): ["event.json"],
}


def test_every_status_and_source_filter_is_listed_here():
    found = {
        path
        for path, command in all_commands()
        if any(o in ("--status", "--source") for p in command.params for o in p.opts)
    }
    assert found == set(FILTERED)


def filter_cases() -> list[tuple[tuple[str, ...], str]]:
    """Each (command, option) pair that exists: a command's --status and/or --source."""
    return [
        (path, option)
        for path, command in all_commands()
        if path in FILTERED
        for option in ("--status", "--source")
        if any(option in p.opts for p in command.params)
    ]


@pytest.mark.parametrize(
    ("path", "option"), filter_cases(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else v
)
def test_an_unknown_filter_value_exits_2_with_the_valid_values(path, option, tmp_path):
    result = flowjobs(*path, *FILTERED[path], option, "bogus", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {option}") and "must be one of: " in result.stderr
    assert "(not 'bogus')" in result.stderr
    assert result.stderr.count("\n") == 1
    assert listing(tmp_path) == []  # checked before any database is looked for


def test_a_near_miss_gets_did_you_mean(tmp_path):
    result = flowjobs("runs", "list", "--status", "faild", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2 and "(not 'faild'; did you mean 'failed'?)" in result.stderr


@pytest.mark.parametrize(
    "args, hint",
    [
        (["runs", "list", "--status", "FAILED"], "(not 'FAILED'; did you mean 'failed'?)"),
        (["runs", "list", "--status", "Faild"], "(not 'Faild'; did you mean 'failed'?)"),
        (["events", "list", "--source", "Stripe"], "(not 'Stripe'; did you mean 'stripe'?)"),
        (["runs", "list", "--columns", "ID,task"], "(not 'ID'; did you mean 'id'?)"),
    ],
)
def test_a_value_in_another_case_is_refused_with_the_one_meant(args, hint, tmp_path):
    """Values are written lower-case, as listed; `--status FAILED` used to get no suggestion
    at all while `--status fail` got one."""
    result = flowjobs(*args, env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2 and hint in result.stderr, result.stderr
    assert listing(tmp_path) == []


def test_an_unknown_task_gets_did_you_mean_not_every_name(sqlite_url):
    env = cli_env(sqlite_url)
    for args in (["trigger", "helo-world"], ["runs", "list", "--task", "helo-world"]):
        result = flowjobs(*args, env=env)
        assert result.returncode == 2, result.stderr
        assert "unknown task 'helo-world'; did you mean 'hello-world'?" in result.stderr
        assert "send-organization" not in result.stderr  # not the whole list
    far = flowjobs("trigger", "zzzqqq", env=env)
    assert far.returncode == 2 and "tasks are registered" in far.stderr
    assert "hello-world" not in far.stderr and len(far.stderr) < 200
    assert as_json(flowjobs("runs", "list", "--json", env=env)) == []


# -- 3. One error style --------------------------------------------------------------------


def run_in_pty(*args: str, env: dict, cwd=None, columns: int = 80, timeout: float = 60):
    """Run flowjobs with stdout and stderr on a pseudo-terminal of `columns` columns, as a
    person at a terminal sees it; (exit status, everything written)."""
    import fcntl
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowjobs", *args],
        env={**env, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"},
        cwd=cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            continue
    os.close(master)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=" ".join)
def test_an_unknown_option_is_one_error_line_exit_2(path, tmp_path):
    result = flowjobs(*path, "--no-such-option", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: no such option: --no-such-option")
    assert result.stderr.endswith(f"(see `flowjobs {' '.join(path)} --help`)\n")
    assert result.stderr.count("\n") == 1
    assert result.stdout == "" and listing(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs", "show"], "error: missing argument 'run_id' (see `flowjobs runs show --help`)"),
        (
            ["runs", "list", "--limit", "0"],
            "error: invalid value for '--limit' / '-l': 0 is not in the range 1<=x<=10000",
        ),
        (["no-such-command"], "error: no such command 'no-such-command' (see `flowjobs --help`)"),
        (
            ["--log-level", "loud", "runs", "list"],
            "error: invalid value for --log-level (or FLOWJOBS_LOG_LEVEL): must be debug, info, "
            "warning or error, not 'loud' (see `flowjobs --help`)",
        ),
        (["db", "copy"], "error: missing option '--to' (see `flowjobs db copy --help`)"),
        (  # Click gives this one no context: the command is found from the command line
            ["--database", "x.db", "billing", "adjust", "sub_x", "--price"],
            "error: option '--price' requires an argument (see `flowjobs billing adjust --help`)",
        ),
        (
            ["runs", "list", "--status"],
            "error: option '--status' requires an argument (see `flowjobs runs list --help`)",
        ),
    ],
)
def test_usage_errors_are_one_line(args, message, tmp_path):
    result = flowjobs(*args, env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Usage:" not in result.stderr


def test_usage_errors_at_a_terminal_are_one_line_too_not_a_box(tmp_path):
    code, text = run_in_pty("runs", "list", "--jsn", env=bare_env(), cwd=tmp_path)
    assert code == 2
    assert text.strip() == (
        "error: no such option: --jsn (Possible options: --json, --since) (see `flowjobs runs list --help`)"
    )
    assert "╭" not in text and "Usage:" not in text


def root_options_with_values() -> list[tuple[str, str]]:
    """Every option of `flowjobs` itself that takes a value, with one such value."""
    import typer.main

    from flowjobs.cli.app import app

    values = {"--log-level": "warning", "--log-format": "json", "--database": "x.db"}
    return [
        (name, values.get(param.opts[0], "x.toml"))
        for param in typer.main.get_command(app).params
        if param.param_type_name == "option" and not param.is_flag
        for name in param.opts
    ]


@pytest.mark.parametrize("option, value", root_options_with_values())
@pytest.mark.parametrize(
    "command",
    [["runs", "list"], ["run-worker"], ["db", "status"], ["trigger", "noop"]],
    ids=" ".join,
)
def test_an_option_of_flowjobs_itself_after_the_command_says_where_it_goes(
    command, option, value, tmp_path
):
    """`runs list --database x.db` used to say "no such option: --database (Possible options:
    --task)"; an option of the root command (as the root declares them) is named as one, with
    the command line it belongs in."""
    result = flowjobs(*command, option, value, "--json", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = " ".join(["flowjobs", option, value, *command, "--json"])
    assert result.stderr == (
        f"error: {option} is an option of flowjobs itself: put it before the command ({line})\n"
    )
    assert listing(tmp_path) == []


def test_a_misplaced_option_of_flowjobs_keeps_the_rest_and_hides_a_password(tmp_path):
    url = "postgresql://ops:hunter2@db.internal/jobs"
    result = flowjobs(
        "--log-level",
        "warning",
        "runs",
        "list",
        f"--database={url}",
        "--status",
        "failed",
        env=bare_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "hunter2" not in result.stderr
    assert result.stderr == (
        "error: --database is an option of flowjobs itself: put it before the command "
        "(flowjobs --log-level warning '--database=postgresql://ops:***@db.internal/jobs' "
        "runs list --status failed)\n"
    )
    no_value = flowjobs("runs", "list", "--config", env=bare_env(), cwd=tmp_path)
    assert no_value.returncode == 2
    assert "put it before the command (flowjobs --config PATH runs list)" in no_value.stderr
    other = flowjobs("runs", "list", "--jsn", env=bare_env(), cwd=tmp_path)
    assert "no such option: --jsn (Possible options: --json, --since)" in other.stderr


def test_nothing_to_cancel_is_an_error_line(sqlite_url):
    env = cli_env(sqlite_url)
    run_id = flowjobs("trigger", "noop", env=env).stdout.strip()
    assert flowjobs("runs", "cancel", run_id, env=env).returncode == 0
    again = flowjobs("runs", "cancel", run_id, env=env)
    assert again.returncode == 1
    assert again.stderr == f"error: run {run_id} is already canceled; nothing to cancel\n"


# -- 4. `[tasks] modules` beside the configuration file ----------------------------------------


def readme_recipe() -> str:
    """The Python block of README's "Your own tasks", verbatim."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Your own tasks", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_recipe_works_as_written_from_any_folder(tmp_path):
    import sqlite3
    import subprocess
    import sys

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    recipe = readme_recipe()
    assert recipe.startswith(
        '# mytasks.py — listed in flowjobs.toml: [tasks] modules = ["mytasks"]'
    )
    (project / "mytasks.py").write_text(recipe)
    (project / "flowjobs.toml").write_text('[tasks]\nmodules = ["mytasks"]\n')
    config = str(project / "flowjobs.toml")

    def run(*args):  # -P: like the `flowjobs` console script, the working folder is not on sys.path
        return subprocess.run(
            [sys.executable, "-P", "-m", "flowjobs", "--config", config, *args],
            env=bare_env(),
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("db", "upgrade").returncode == 0
    assert "CREATE TABLE welcomes (customer_id TEXT)" in recipe
    with sqlite3.connect(project / "flowjobs.db") as conn:  # the table the recipe's comment names
        conn.execute("CREATE TABLE welcomes (customer_id TEXT)")
    tasks = run("tasks", "list", "--json")
    assert tasks.returncode == 0, tasks.stderr
    assert "send-welcome" in [t["id"] for t in json.loads(tasks.stdout)]
    typo = run("trigger", "send-welcome", "--payload", '{"customer": "cust_1"}')
    assert typo.returncode == 2 and "customer" in typo.stderr, typo.stderr
    made = run("trigger", "send-welcome", "--payload", '{"customer_id": "cust_1"}')
    assert made.returncode == 0, made.stderr
    worker = run("run-worker", "--burst")
    assert worker.returncode == 0, worker.stderr
    shown = json.loads(run("runs", "show", made.stdout.strip(), "--json").stdout)
    assert shown["status"] == "completed" and shown["result"] == {"ok": True}, shown
    assert shown["logs"][0]["message"] == "welcoming cust_1"
    runs = json.loads(run("runs", "list", "--task", "hello-world", "--json").stdout)
    assert [r["status"] for r in runs] == ["completed"]  # triggered in the task's transaction
    with sqlite3.connect(project / "flowjobs.db") as conn:
        assert conn.execute("SELECT customer_id FROM welcomes").fetchall() == [("cust_1",)]
    assert listing(elsewhere) == []
    # and from Python, as a web application triggers, started elsewhere (it failed to import
    # the configured modules unless its working folder was the configuration's)
    code = (
        "import sys; from flowjobs.config import load_settings; from flowjobs.runtime import "
        "Runtime; rt = Runtime(load_settings(sys.argv[1])); "
        "print(rt.trigger('send-welcome', {'customer_id': 'cust_2'}).id); rt.close()"
    )
    python = subprocess.run(
        [sys.executable, "-P", "-c", code, config],
        env=bare_env(),
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert python.returncode == 0 and python.stdout.startswith("run_"), python.stderr


# -- 5. Output a person can use ------------------------------------------------------------

JSON_HELP_OWNED_ELSEWHERE = {("demo", "seed")}  # flowjobs/cli/demo_cmd.py: the demo's owner


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=" ".join)
def test_every_help_has_an_example_that_parses_and_says_what_json_prints(path):
    import re
    import shlex

    import typer.main

    from flowjobs.cli.app import app

    result = flowjobs(*path, "--help", env=bare_env())
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Example: flowjobs"))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    assert start > lines.index("Options:") and not "".join(lines[end:]).strip(), result.stdout
    # ^ the help ends with it
    example = " ".join(" ".join(lines[start:end]).split()).removeprefix("Example: ")
    words = shlex.split(example.split("#", 1)[0])[1:]
    while words[0].startswith("-"):  # root options first: --database URL, --config PATH, …
        option = words.pop(0)
        if "=" not in option:
            words.pop(0)
    assert tuple(words[: len(path)]) == path, example
    root = typer.main.get_command(app)
    command, rest = root, list(words)
    while hasattr(command, "commands"):  # the example parses as this command's arguments
        command = command.commands[rest.pop(0)]
    command.make_context(path[-1], rest)
    from flowjobs.outbound.endpoints import EVENT_TYPES

    for option, value in zip(rest, rest[1:]):  # values the command checks further: valid too
        if option == "--event-type":
            assert value in EVENT_TYPES, example  # `invoice.paid` was refused when run
    if "--json" in text and path not in JSON_HELP_OWNED_ELSEWHERE:
        json_help = text.split("Options:", 1)[1].split("--json", 1)[1]
        assert json_help.lstrip().startswith("Print") and "JSON" in json_help
        listed = re.search(r"[{(][^)}]*,[^)}]*[)}]", json_help.split("-h, --help")[0])
        assert listed, json_help  # names what it prints: {key, key, …} or (key, key, …)


def test_every_group_help_ends_with_an_example_of_one_of_its_commands():
    import shlex

    import typer.main

    from flowjobs.cli.app import app

    groups = [
        name for name, c in typer.main.get_command(app).commands.items() if hasattr(c, "commands")
    ]
    assert {"runs", "billing", "schedules", "events", "db"} <= set(groups)
    for group in groups:
        lines = flowjobs(group, "--help", env=bare_env()).stdout.rstrip().splitlines()
        assert lines[-1].strip().startswith(f"Example: flowjobs {group} "), (group, lines[-3:])
        words = shlex.split(lines[-1].strip().removeprefix("Example: "))
        command = typer.main.get_command(app).commands[group]
        assert words[2] in command.commands, (group, words)  # one of its commands


def test_the_top_level_help_ends_with_an_example():
    lines = flowjobs("--help", env=bare_env()).stdout.rstrip().splitlines()
    assert lines[-1].strip() == (
        "Example: flowjobs run-worker & flowjobs trigger hello-world --wait"
    )


@pytest.fixture
def three_runs(tmp_path, sqlite_template):
    shutil.copy(sqlite_template, tmp_path / "flowjobs.db")
    env = bare_env()
    ids = [
        flowjobs("trigger", "hello-world", env=env, cwd=tmp_path).stdout.strip() for _ in range(3)
    ]
    return tmp_path, ids


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_tables_never_cut_an_id_a_task_or_a_time(columns, three_runs):
    folder, ids = three_runs
    env = bare_env()
    runs = as_json(flowjobs("runs", "list", "--json", env=env, cwd=folder))
    tasks = [t["id"] for t in as_json(flowjobs("tasks", "list", "--json", env=env, cwd=folder))]
    assert max(len(t) for t in tasks) > 60  # the longest task ids are wider than the terminal
    for args, whole in (
        (["runs", "list"], ids + ["hello-world"] + [r["created_at"] for r in runs]),
        (["runs", "watch", "--once"], ids + ["hello-world"]),
        (["tasks", "list"], tasks),
    ):
        code, text = run_in_pty(*args, env=env, cwd=folder, columns=columns)
        assert code == 0, text
        plain = strip_escapes(text)
        for value in whole:
            dropped = plain.split("not shown at this width:", 1)[-1] if "not shown" in plain else ""
            if value.endswith("Z") and "created_at" in dropped:
                continue  # the time column was dropped (and the caption says so), not cut
            assert value in plain, (args, columns, value)
        assert "…" not in plain
        assert max(len(line) for line in plain.splitlines()) <= max(
            columns, max(map(len, tasks)) + 6
        )


LONGEST_TASK = "send-organization-subscription-cancellation-scheduled-notification"  # 66


def test_watch_keeps_the_longest_task_whole_live_and_columns_and_wide_choose(three_runs):
    """`runs watch` redrawing live on a terminal of 60, 80 and 200 columns shows the longest
    task id and every run id whole; `--columns` picks the columns (a wrong name: exit 2 with the
    valid ones); `runs list --wide` shows every column, wider than the terminal."""
    import signal
    import subprocess
    import sys
    import time

    folder, ids = three_runs
    env = bare_env()
    payload = '{"subscription": {"id": "sub_x"}}'
    long_run = flowjobs(
        "trigger", LONGEST_TASK, "--payload", payload, "--delay", "1h", env=env, cwd=folder
    ).stdout.strip()
    assert long_run.startswith("run_")
    for columns in (60, 80, 200):
        import fcntl
        import pty
        import select
        import struct
        import termios

        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowjobs", "runs", "watch", "--interval", "0.2"],
            env={**env, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"},
            cwd=folder,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            close_fds=True,
        )
        os.close(follower)
        seen, deadline = b"", time.monotonic() + 30

        def drawn_twice(text: str) -> bool:  # drawn, then redrawn in place
            return text.count(LONGEST_TASK) >= 2 and text.count(long_run) >= 2

        try:
            # a read may end mid-frame (the id shown, the task not yet): wait on what is checked
            plain = ""
            while not drawn_twice(plain) and time.monotonic() < deadline:
                if select.select([leader], [], [], 0.5)[0]:
                    seen += os.read(leader, 65536)
                    # nothing cut: a value wider than the terminal goes on on the next line
                    plain = strip_escapes(seen.decode(errors="replace")).replace("\r\n", "")
            assert plain.count(LONGEST_TASK) >= 2, (columns, plain[-2000:])
            for run_id in [*ids, long_run]:
                assert run_id in plain, (columns, run_id)
            assert "…" not in plain
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
            os.close(leader)

    code, text = run_in_pty(
        "runs", "watch", "--once", "--columns", "task,id", env=env, cwd=folder, columns=200
    )
    lines = strip_escapes(text).splitlines()
    header = next(line for line in lines if "task" in line and " id " in f"{line} ")
    assert code == 0 and header.index("task") < header.index(" id ") and "status" not in header
    bad = flowjobs("runs", "list", "--columns", "id,colour", env=env, cwd=folder)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --columns must be one of: id,")
    assert "colour" in bad.stderr and bad.stderr.count("\n") == 1
    assert (
        flowjobs("runs", "watch", "--once", "--columns", "nope", env=env, cwd=folder).returncode
        == 2
    )

    code, text = run_in_pty(
        "runs", "list", "--wide", "--status", "queued", env=env, cwd=folder, columns=60
    )
    plain = strip_escapes(text)
    assert code == 0 and all(i in plain for i in ids) and "not shown" not in plain
    assert "finished_at" in plain and max(len(line) for line in plain.splitlines()) > 60
    code, narrow = run_in_pty("runs", "list", "--status", "queued", env=env, cwd=folder, columns=60)
    assert "not shown at this width" in strip_escapes(narrow)


def test_a_listing_of_failures_keeps_its_errors_before_its_times(three_runs):
    """At 80 columns `runs list` cannot show every column. A plain listing gives up the error
    first; `--status canceled` (failed, retrying, expired) gives up the times first, since
    such a listing is read for its errors."""
    folder, ids = three_runs
    env = bare_env()
    for run_id in ids:
        assert flowjobs("runs", "cancel", run_id, env=env, cwd=folder).returncode == 0

    def header_and_caption(*args):
        code, text = run_in_pty("runs", "list", *args, env=env, cwd=folder, columns=80)
        assert code == 0, text
        plain = strip_escapes(text)
        header = next(line for line in plain.splitlines() if " id " in f"{line} ")
        return header, plain.split("not shown at this width:", 1)[1]

    header, caption = header_and_caption()
    assert " error " not in f"{header} " and "error" in caption
    header, caption = header_and_caption("--status", "canceled")
    assert " error " in f"{header} " and "error" not in caption
    assert "created_at" in caption and "finished_at" in caption


def strip_escapes(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "list"],
        ["runs", "watch", "--once"],
        ["tasks", "list"],
        ["runs", "list", "--help"],
        ["runs", "list", "--bogus"],
        ["doctor"],
    ],
    ids=" ".join,
)
def test_no_color_means_no_escape_codes_at_a_terminal(args, three_runs):
    folder, _ = three_runs
    code, coloured = run_in_pty(*args, env=bare_env(), cwd=folder)
    code_nc, plain = run_in_pty(*args, env=bare_env(NO_COLOR="1"), cwd=folder)
    assert code == code_nc
    assert "\x1b" not in plain, plain
    if args[-1] in ("list", "--once", "--help"):
        assert "\x1b[" in coloured  # without NO_COLOR the same terminal gets styles


# -- 6. replay-event: one shape, and sample events -------------------------------------------

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
EXPECTED = {  # the status of a first replay into an empty database
    "stripe-payment-intent-succeeded.json": "created",
    "stripe-charge-failed.json": "created",
    "stripe-customer-created.json": "ignored",
}


def test_every_example_is_documented():
    docs = (ROOT / "docs" / "webhooks.md").read_text()
    assert {p.name for p in EXAMPLES} == set(EXPECTED)
    for path in EXAMPLES:
        assert f"examples/{path.name}" in docs


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_replays_in_one_shape(path, sqlite_url):
    env = cli_env(sqlite_url)
    first = as_json(flowjobs("replay-event", str(path), "--json", env=env))
    again = as_json(flowjobs("replay-event", str(path), "--json", env=env))
    assert list(first) == list(again)  # the same keys, in the same order, whatever happened
    assert {"event", "run", "status"} <= set(first)
    assert first["status"] == EXPECTED[path.name] and again["status"] == "duplicate"
    assert first["event"] == again["event"] and first["event"].startswith("whevt_")
    if first["status"] == "created":
        assert first["run"].startswith("run_") and again["run"] == first["run"]
    else:
        assert first["run"] is None and again["run"] is None
    forced = as_json(flowjobs("replay-event", str(path), "--force", "--json", env=env))
    assert list(forced) == list(first)
    dry = as_json(flowjobs("replay-event", str(path), "--dry-run", "--json", env=env))
    assert list(dry) == list(first) and dry["dryRun"] is True

    text = flowjobs("replay-event", str(path), env=env)
    assert text.returncode == 0
    run, status, event = text.stdout.rstrip("\n").split("\t")
    assert (run, status, event) == (first["run"] or "-", "duplicate", first["event"])
    assert "seen before" in text.stderr


def test_events_replay_prints_the_same_shape(sqlite_url):
    env = cli_env(sqlite_url)
    first = as_json(flowjobs("replay-event", str(EXAMPLES[0]), "--json", env=env))
    replayed = as_json(flowjobs("events", "replay", first["event"], "--json", env=env))
    assert list(replayed) == list(first)


# -- 7. trigger --wait -----------------------------------------------------------------------


@pytest.fixture
def wait_env(sqlite_url, tmp_path):
    env = cli_env(sqlite_url, FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests,tests.operator_tasks")
    from tests.cli_helpers import start_worker

    worker = start_worker(env=env, stderr_path=tmp_path / "worker.log")
    yield env
    worker.terminate()
    worker.wait(timeout=30)


def test_wait_prints_the_id_first_then_the_error_and_last_log_lines(wait_env):
    result = flowjobs("trigger", "test-log-then-fail", "--wait", "--timeout", "60s", env=wait_env)
    assert result.returncode == 1, result.stderr
    run_id = result.stdout.strip()
    assert run_id.startswith("run_") and result.stdout == run_id + "\n"
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: run {run_id} ended failed: ValueError: card_declined"
    assert lines[1] == "last log lines:"
    assert lines[2].endswith("[info] #1 charging card of cust_1")
    assert lines[3].endswith("[warning] #1 the card was declined")


def test_wait_json_has_status_result_and_error(wait_env):
    ok = as_json(flowjobs("trigger", "test-answer", "--wait", "--json", env=wait_env))
    assert (ok["status"], ok["result"], ok["error"]) == ("completed", {"answer": 42}, None)
    failed = flowjobs("trigger", "test-log-then-fail", "--wait", "--json", env=wait_env)
    assert failed.returncode == 1
    shown = json.loads(failed.stdout)
    assert (shown["status"], shown["result"]) == ("failed", None)
    assert shown["error"] == "ValueError: card_declined"
    # without --wait, the shape scripts know
    assert set(as_json(flowjobs("trigger", "noop", "--json", env=wait_env))) == {
        "id",
        "task",
        "status",
        "deduplicated",
    }


def test_wait_without_a_worker_says_so_after_a_few_seconds(sqlite_url):
    import time

    started = time.monotonic()
    result = flowjobs("trigger", "noop", "--wait", "--timeout", "6s", env=cli_env(sqlite_url))
    assert result.returncode == 124
    run_id = result.stdout.strip()
    assert (
        f"note: run {run_id} is still queued after 3 s; no live worker takes queue 'default'"
        in (result.stderr)
    )
    assert "start `flowjobs run-worker`" in result.stderr
    assert result.stderr.splitlines()[-1] == f"error: gave up waiting for {run_id} after 6s"
    assert time.monotonic() - started < 30
    # --json tells the run as it stands when the wait gives up: still queued, not "executing"
    result = flowjobs(
        "trigger", "noop", "--wait", "--timeout", "1s", "--json", env=cli_env(sqlite_url)
    )
    assert result.returncode == 124
    assert json.loads(result.stdout)["status"] == "queued"


def test_wait_says_again_when_the_worker_it_counted_on_goes_away(sqlite_url):
    """A worker that died without a word (killed, its machine gone) still looks alive until its
    heartbeat is LIVE_WITHIN_MS old: `--wait` first says it is busy, then, looking again, that
    no live worker is left."""
    import time

    from flowjobs.ops.workers import LIVE_WITHIN_MS
    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(sqlite_url))  # one backend: the note is the CLI's, not the store's
    beat = int(time.time() * 1000) - LIVE_WITHIN_MS + 6000  # stale 6 s from now
    worker = {"host": "gone", "pid": 1, "version": "x", "queues": "*", "concurrency": 1}
    rt.store.register_worker({"id": "gone:1:dead", **worker}, beat)
    rt.close()
    result = flowjobs("trigger", "noop", "--wait", "--timeout", "15s", env=cli_env(sqlite_url))
    assert result.returncode == 124, result.stderr
    run_id = result.stdout.strip()
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2, result.stderr
    assert notes[0] == (
        f"note: run {run_id} is still queued after 3 s; 1 live worker takes queue 'default'; "
        "yet no run is executing: it may be stopping, or gone without a word (looked at again "
        "every 10 s)"
    )
    assert re.fullmatch(
        f"note: run {run_id} is still queued after 1[34] s; no live worker takes queue "
        "'default': start `flowjobs run-worker`",
        notes[1],
    ), notes


@pytest.mark.parametrize(
    "sent, code, said",
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "interrupted by SIGTERM")],
)
def test_ctrl_c_prints_the_run_it_left_queued(sqlite_url, sent, code, said):
    """SIGTERM (`timeout`, systemd, a canceled CI job) used to end the wait silently."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "flowjobs", "trigger", "noop", "--wait"],
        env=cli_env(sqlite_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = proc.stdout.readline().strip()  # printed before the wait begins
    assert run_id.startswith("run_")
    proc.send_signal(getattr(signal, sent))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert f"{said}: run {run_id} is left queued" in err
    assert f"flowjobs runs cancel {run_id}" in err and "Traceback" not in err


def test_status_and_source_values_complete_in_the_shell():
    import typer.main

    from flowjobs.cli.app import app

    root = typer.main.get_command(app)
    for path, option, incomplete, expected in (
        (("runs", "list"), "--status", "f", ["failed"]),
        (("runs", "replay"), "--status", "c", ["completed", "canceled"]),
        (("events", "list"), "--source", "s", ["stripe", "supabase"]),
        (("events", "list"), "--status", "r", ["received", "routed", "rejected"]),
        (("events", "deliveries"), "--status", "s", ["succeeded", "skipped"]),
    ):
        command = root
        for name in path:
            command = command.commands[name]
        param = next(p for p in command.params if option in p.opts)
        ctx = command.make_context(path[-1], [], resilient_parsing=True)
        assert [c.value for c in param.shell_complete(ctx, incomplete)] == expected


def test_doctor_warns_when_runs_are_due_and_no_worker_is_alive(sqlite_url, tmp_path):
    env = cli_env(sqlite_url)
    checks = {c["check"]: c for c in as_json(flowjobs("doctor", "--json", env=env))}
    assert checks["workers"]["status"] == "ok"  # nothing due: no worker needed
    assert flowjobs("trigger", "noop", env=env).returncode == 0
    checks = {c["check"]: c for c in json.loads(flowjobs("doctor", "--json", env=env).stdout)}
    assert checks["workers"]["status"] == "warn"
    assert checks["workers"]["detail"] == "1 run is due and no worker is alive to run it"
    assert "flowjobs run-worker" in checks["workers"]["fix"]


def test_doctor_says_no_worker_is_rescuing_an_expired_lease_when_none_is_alive(sqlite_url):
    # It said "they are being rescued" whatever the workers: here a worker claimed a run and
    # died (its lease expired 10 s ago, within a rescue interval) and no worker is alive.
    import time

    from flowjobs.config import Settings
    from flowjobs.core.clock import FixedClock
    from flowjobs.runtime import Runtime

    then = int(time.time() * 1000) - 40_000
    rt = Runtime(Settings.model_validate({"database": {"url": sqlite_url}}), FixedClock(then))
    try:
        rt.trigger("noop")
        assert len(rt.store.claim("gone:1:abc", 1, ["*"], {}, then, 30_000)) == 1
    finally:
        rt.close()
    checks = {c["check"]: c for c in as_json(flowjobs("doctor", "--json", env=cli_env(sqlite_url)))}
    assert checks["workers"]["status"] == "warn"
    assert checks["workers"]["detail"] == (
        "1 run holds an expired lease (a worker died) and no worker is alive to rescue it"
    )
    assert "start `flowjobs run-worker`" in checks["workers"]["fix"]


def test_a_sqlite_url_with_options_is_one_line_and_creates_nothing(tmp_path):
    """`?mode=ro` (or any option) used to create a file named `x.db?mode=ro` and end in
    "unexpected OperationalError"; it is refused in one line, exit 2, before any file is made."""
    url = f"sqlite:///{tmp_path}/x.db?mode=ro"
    for args in (["trigger", "noop"], ["runs", "list"]):
        result = flowjobs("--database", url, *args, env=cli_env(f"sqlite:///{tmp_path}/other.db"))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: a SQLite URL takes no options"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "unexpected" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unreadable_config_is_one_line_exit_2(tmp_path):
    """A configuration that cannot be read — a folder given as the file, bytes that are not
    UTF-8 — is one `error:` block naming it, exit 2, never "unexpected …". (A file without read
    permission takes the same path, `cannot read: [Errno 13] …`; the tests run as root, for
    whom permissions do not bar reading.)"""
    folder = tmp_path / "conf.d"
    folder.mkdir()
    binary = tmp_path / "flowjobs.toml"
    binary.write_bytes(b"\xff\xfe[database]\n")
    for config, message in (
        (folder, f"--config: {folder} is a folder, not a configuration file"),
        (binary, f"{binary}: cannot read: 'utf-8' codec can't decode byte 0xff"),
    ):
        result = flowjobs("--config", str(config), "runs", "list", env=bare_env(), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: invalid ") and message in result.stderr
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    via_env = flowjobs("runs", "list", env=bare_env(FLOWJOBS_CONFIG=str(folder)), cwd=tmp_path)
    assert via_env.returncode == 2
    assert f"FLOWJOBS_CONFIG: {folder} is a folder" in via_env.stderr


def test_a_config_that_is_no_file_says_what_it_is_and_an_empty_one_is_the_defaults(tmp_path):
    """`--config /dev/null` used to say "no such file: /dev/null". What is there and not a
    regular file is named for what it is (a pipe is refused, not read: it could block, and
    every process of a worker reads the configuration); an empty file is valid TOML, so a
    configuration of defaults only."""
    pipe = tmp_path / "fifo.toml"
    os.mkfifo(pipe)
    (tmp_path / "notes.txt").write_text("")
    instead = "not a regular file; for the built-in defaults give an empty file instead"
    for config, message in (
        ("/dev/null", f"/dev/null is a character device, {instead}"),
        (str(pipe), f"{pipe} is a pipe, {instead}"),
        ("notes.txt/x.toml", "cannot read notes.txt/x.toml: notes.txt is a file, not a folder"),
        ("nope.toml", "no such file: nope.toml"),
    ):
        result = flowjobs("--config", config, "runs", "list", env=bare_env(), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"error: invalid configuration:\n  --config: {message}\n"
    via_env = flowjobs("tasks", "list", env=bare_env(FLOWJOBS_CONFIG="/dev/null"), cwd=tmp_path)
    assert via_env.returncode == 2
    assert "FLOWJOBS_CONFIG: /dev/null is a character device" in via_env.stderr
    (tmp_path / "empty.toml").write_text("")
    empty = flowjobs("--config", "empty.toml", "tasks", "list", env=bare_env(), cwd=tmp_path)
    assert empty.returncode == 0 and "hello-world" in empty.stdout, empty.stderr


def test_serve_help_mentions_the_dashboard_and_metrics():
    result = flowjobs("serve", "--help", env=bare_env())
    text = " ".join(result.stdout.split())
    assert result.returncode == 0 and "dashboard" in text and "/metrics" in text


def test_a_worker_of_no_queue_is_refused_and_a_full_output_disk_is_one_line(
    tmp_path, sqlite_template
):
    """`queues = []` started a worker that took nothing, and nothing said so; `runs list >
    /dev/full` ended in "unexpected OSError"."""
    import subprocess
    import sys

    shutil.copy(sqlite_template, tmp_path / "ops.db")
    env = cli_env(f"sqlite:///{tmp_path / 'ops.db'}", FLOWJOBS_WORKER_QUEUES="")
    refused = flowjobs("run-worker", "--burst", env=env)
    assert refused.returncode == 2
    assert "worker.queues (from FLOWJOBS_WORKER_QUEUES): names no queue" in refused.stderr
    env.pop("FLOWJOBS_WORKER_QUEUES")
    assert flowjobs("trigger", "noop", env=env).returncode == 0
    with open("/dev/full", "w") as full:
        listed = subprocess.run(
            [sys.executable, "-m", "flowjobs", "runs", "list"],
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert listed.returncode == 6
    assert listed.stderr == "error: No space left on device (writing the output)\n"


def test_a_command_that_makes_a_new_database_says_so_once(tmp_path):
    """A mistyped path (`--database app.bd`) made a new, empty database without a word, and the
    run written there was never seen by any worker."""
    env = cli_env(f"sqlite:///{tmp_path / 'app.bd'}")
    first = flowjobs("--log-format", "text", "trigger", "noop", env=env)
    assert first.returncode == 0
    assert f"created a new flowjobs database at {tmp_path / 'app.bd'}" in first.stderr
    again = flowjobs("--log-format", "text", "trigger", "noop", env=env)
    assert again.returncode == 0 and "created a new" not in again.stderr
