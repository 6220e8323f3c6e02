"""Shared fixtures: a throwaway PostgreSQL server for the session, a fresh database per test
on each backend (SQLite file copy / PostgreSQL `CREATE DATABASE … TEMPLATE`), runtimes."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from flowjobs.config import Settings  # noqa: E402
from flowjobs.core.clock import FixedClock  # noqa: E402
from flowjobs.runtime import Runtime  # noqa: E402
from flowjobs.store.db import Database  # noqa: E402
from flowjobs.store.migrate import upgrade  # noqa: E402

TEST_TASKS = "tests.tasks_for_tests"

# The test SMTP servers' (aiosmtpd) chatter — "connection lost" from their own thread, which can
# outlive the test that captured the output it would go to ("--- Logging error ---") — is not
# what any test reads: mail is checked from what the server received.
logging.getLogger("mail.log").propagate = False
logging.getLogger("mail.log").addHandler(logging.NullHandler())
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server_url():
    """A PostgreSQL server for the whole session. Never skipped: no server, no passing run."""
    url = os.environ.get("FLOWJOBS_TEST_PG_URL")
    if url:
        yield url
        return
    from pgtmp import pg_server

    with pg_server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_server_url):
    import psycopg

    admin = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS flowjobs_template")
        # Sorted by language, as managed PostgreSQL services make databases (ICU's en-US here;
        # glibc's en_US.UTF-8 is not installed on these machines): text that compares by bytes
        # on SQLite does not here (';' sorts before ':'), and every PostgreSQL test meets that.
        conn.execute(
            "CREATE DATABASE flowjobs_template TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    template_url = pg_server_url.rsplit("/", 1)[0] + "/flowjobs_template"
    template = Database(template_url)
    upgrade(template)
    template.close()  # else its pooled connection is left to the garbage collector
    return pg_server_url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    conn = db.connect()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def new_pg_database(server_url: str, template: str | None = "flowjobs_template") -> str:
    """A new database on the test server, made from the migrated template (or empty, with
    `template=None`), named uniquely across xdist workers."""
    import psycopg

    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "flowjobs.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    return new_pg_database(request.getfixturevalue("pg_template"))


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template):
    target = tmp_path / "flowjobs.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


# The built-in billing crons are switched off in tests (as `enabled = false` in flowjobs.toml
# would): scheduler tests count their own schedules' runs, billing tests fire the crons by hand.
QUIET_BUILTIN_SCHEDULES = {"hourly-cron": {"enabled": False}, "daily-cron": {"enabled": False}}


def make_settings(url: str, base_dir: Path | None = None, **sections) -> Settings:
    """Settings for a test: PDFs and .eml files land under `base_dir` (a tmp dir), never the repo."""
    data = {
        "database": {"url": url},
        "tasks": {"modules": [TEST_TASKS]},
        "schedules": dict(QUIET_BUILTIN_SCHEDULES),
    }
    if base_dir is not None:
        data["base_dir"] = base_dir
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)


@pytest.fixture
def clock():
    return FixedClock(1_800_000_000_000)  # 2027-01-15T08:00:00Z, pinned


@pytest.fixture
def make_runtime(db_url, clock, tmp_path):
    made = []

    def factory(pinned: bool = True, **sections) -> Runtime:
        rt = Runtime(make_settings(db_url, tmp_path, **sections), clock=clock if pinned else None)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def rt(make_runtime):
    return make_runtime()


@pytest.fixture(scope="session")
def localstripe_url():
    """localstripe (a stateful fake Stripe) on a free loopback port, for the whole session."""
    from stripe_server import localstripe

    with localstripe() as url:
        yield url


TIERS = ("unit", "store", "integration", "acceptance")


def pytest_collection_modifyitems(items):
    """Mark each test with its tier (the folder under tests/), so `pytest -m unit` selects it;
    tests/acceptance/faults is also `faults`: `make test` leaves it to `make test-faults`."""
    for item in items:
        parts = item.path.relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
        if parts[:2] == ("acceptance", "faults"):
            item.add_marker(pytest.mark.faults)
