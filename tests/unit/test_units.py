"""Pure pieces: durations, retry delays, ids, config loading, migrations head."""

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowjobs import ids
from flowjobs.config import load_settings
from flowjobs.core.client import canonical_json
from flowjobs.core.executor import Outcome, decide
from flowjobs.core.retry import RetryPolicy
from flowjobs.durations import format_duration, parse_duration
from flowjobs.errors import ConfigError
from flowjobs.store import migrate


@pytest.mark.parametrize(
    "text, seconds", [("500ms", 0.5), ("1s", 1), ("10m", 600), ("2h", 7200), ("30d", 2592000)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", ["", "10", "1 week", "-1s", 5])
def test_bad_durations_say_how_to_write_them(bad):
    with pytest.raises(ValueError, match="500ms"):
        parse_duration(bad)


def test_a_duration_longer_than_100_years_is_refused():
    """A typo such as 99999999999999d; past it an epoch millisecond overflows SQLite's integer
    (--delay made "unexpected OverflowError")."""
    assert parse_duration("36500d") == 36500 * 86400
    with pytest.raises(ValueError, match="longer than 100 years"):
        parse_duration("99999999999999d")


def test_seed_default_retry_delays_without_jitter():
    policy = RetryPolicy(max_attempts=5, min_wait=1, max_wait=10, factor=2, randomize=False)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


@given(st.integers(min_value=1, max_value=60))
def test_randomized_delay_stays_within_bounds(attempt):
    policy = RetryPolicy()
    assert 1 <= policy.delay_after(attempt) <= 10


def test_decide_maps_outcomes_to_states():
    policy = RetryPolicy(max_attempts=2, min_wait=1, max_wait=1, randomize=False)
    assert decide(Outcome("succeeded"), 1, 2, policy, 0).status == "completed"
    retry = decide(Outcome("failed"), 1, 2, policy, 0)
    assert (retry.status, retry.attempt_outcome, retry.retry_at) == ("retrying", "failed", 1000)
    assert decide(Outcome("failed"), 2, 2, policy, 0).status == "failed"
    assert decide(Outcome("aborted"), 1, 2, policy, 0).status == "failed"
    timed = decide(Outcome("timed_out"), 1, 2, policy, 0)
    assert (timed.status, timed.attempt_outcome) == ("retrying", "timed_out")
    assert decide(Outcome("canceled"), 1, 2, policy, 0).status == "canceled"


def test_ids_have_prefix_and_21_chars():
    value = ids.new_id("run")
    assert ids.is_id(value, "run") and len(value) == 25
    assert not ids.is_id("run_short", "run")


def test_sortable_ids_sort_by_creation_time_and_stay_unique(monkeypatch):
    # Runs get sortable ids: a new run lands at the right edge of the id index.
    clock = iter([1_700_000_000.000, 1_700_000_000.001, 1_700_000_000.001, 1_800_000_000.0, 1.0])
    monkeypatch.setattr(ids.time, "time", lambda: next(clock))
    made = [ids.new_sortable_id("run") for _ in range(4)]
    assert all(ids.is_id(v, "run") and len(v) == 25 for v in made)
    assert made[0] < made[1] and made[0] < made[2] < made[3] and made[1] < made[3]
    assert made[1][:12] == made[2][:12] and made[1] != made[2]  # same ms, random tails
    # the stamp is the time in base 62, so the order holds across digit-count changes too
    assert ids.new_sortable_id("x") > "x_00000000"


def test_a_batch_of_sortable_ids_shares_the_stamp_and_draws_its_own_tails(monkeypatch):
    monkeypatch.setattr(ids.time, "time", lambda: 1_700_000_000.005)
    one = ids.new_sortable_id("run")
    batch = ids.new_sortable_ids("run", 500)
    assert len(set(batch)) == 500 and one not in batch
    assert all(ids.is_id(v, "run") and v[:12] == one[:12] for v in batch)
    assert ids.new_sortable_ids("run", 0) == []


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_canonical_json_is_json_dumps_with_sorted_keys_and_no_spaces(value):
    # payload hashes are taken of this text: it must not change from one version to the next
    assert canonical_json(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_canonical_json_refuses_nan_and_infinity(value):
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json({"a": [value]})


def test_env_overrides_file_and_lists_split(tmp_path):
    path = tmp_path / "flowjobs.toml"
    path.write_text('[database]\nurl = "sqlite:///jobs.db"\n[worker]\nconcurrency = 3\n')
    settings = load_settings(
        str(path), environ={"FLOWJOBS_WORKER_CONCURRENCY": "7", "FLOWJOBS_WORKER_QUEUES": "a, b"}
    )
    assert settings.worker.concurrency == 7 and settings.worker.queues == ["a", "b"]
    assert settings.database_url() == f"sqlite:///{tmp_path / 'jobs.db'}"  # relative to the file


def test_config_errors_name_each_field(tmp_path):
    path = tmp_path / "flowjobs.toml"
    path.write_text('[database]\nurl = "mysql://x"\n[nope]\na = 1\n')
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={"FLOWJOBS_RETRY_FACTOR": "0.5"})
    problems = "\n".join(err.value.problems)
    assert (
        "database.url:" in problems
        and "nope: unknown key" in problems
        and "retry.factor (from FLOWJOBS_RETRY_FACTOR):" in problems
    )


def test_an_unknown_key_gets_the_closest_known_key_of_its_table(tmp_path):
    path = tmp_path / "flowjobs.toml"
    path.write_text(
        "[worker]\nconcurency = 3\ncolour = 1\n[wroker]\n[webhooks.outbound]\ntimout = 1\n"
        '[schedules.nightly]\ntask = "hello-world"\ncorn = "0 2 * * *"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={})
    assert sorted(err.value.problems) == [
        "schedules.nightly.corn: unknown key; did you mean 'cron'?",
        "webhooks.outbound.timout: unknown key; did you mean 'timeout'?",
        "worker.colour: unknown key",
        "worker.concurency: unknown key; did you mean 'concurrency'?",
        "wroker: unknown key; did you mean 'worker'?",
    ]


def test_a_sections_key_at_the_top_of_the_file_names_its_section(tmp_path):
    path = tmp_path / "flowjobs.toml"
    path.write_text('url = "jobs.db"\nconcurrency = 3\n[worker]\nqueues = ["a"]\n')
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={})
    assert sorted(err.value.problems) == [
        "concurrency: unknown key; it belongs in [worker]",
        "url: unknown key; it belongs in [database]",
    ]


def test_a_variable_of_a_known_section_with_an_unknown_key_is_a_problem(tmp_path):
    """`FLOWJOBS_WORKER_CONCURENCY=3` used to be ignored without a word."""
    path = tmp_path / "flowjobs.toml"
    path.write_text("[worker]\nconcurrency = 2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(
            str(path),
            environ={
                "FLOWJOBS_WORKER_CONCURENCY": "3",
                "FLOWJOBS_MAIL_XYZZY": "1",
                "FLOWJOBS_WEBHOOKS_OUTBOUND_TIMEOUT": "3s",
                "FLOWJOBS_SCHEDULES_NIGHTLY_CRON": "0 3 * * *",
                "FLOWJOBS_WORKER_QUEUES": "a",  # a setting: read, not reported
            },
        )
    assert err.value.source == "environment"
    assert err.value.problems == [
        "mail.xyzzy (from FLOWJOBS_MAIL_XYZZY): unknown key",
        "schedules (from FLOWJOBS_SCHEDULES_NIGHTLY_CRON): [schedules.<id>] tables are not read "
        "from the environment; set them in the configuration file",
        "webhooks.outbound.timeout (from FLOWJOBS_WEBHOOKS_OUTBOUND_TIMEOUT): [webhooks.outbound] "
        "is not read from the environment; set it in the configuration file",
        "worker.concurency (from FLOWJOBS_WORKER_CONCURENCY): unknown key; did you mean "
        "FLOWJOBS_WORKER_CONCURRENCY?",
    ]
    path.write_text("[worker]\nconcurrency = 0\n")
    with pytest.raises(ConfigError) as both:
        load_settings(str(path), environ={"FLOWJOBS_WORKER_CONCURENCY": "3"})
    assert both.value.source == f"configuration ({path} and the environment)"
    assert both.value.problems[0].startswith("worker.concurrency: Input should be greater")
    assert both.value.problems[1].startswith("worker.concurency (from FLOWJOBS_WORKER_CONCURENCY)")


def test_every_flowjobs_variable_the_project_uses_is_a_setting_or_not_a_section():
    """FLOWJOBS_CONFIG, FLOWJOBS_CLOCK, FLOWJOBS_SUPERVISOR_PID, FLOWJOBS_TEST_PG_URL … are not
    settings and must never be reported as misspelt ones: every FLOWJOBS_* name written
    anywhere in the project passes, but for the misspellings tests make on purpose."""
    import re
    from pathlib import Path

    from flowjobs.config import _unknown_variables

    root = Path(__file__).resolve().parents[2]
    names = set()
    for folder in ("flowjobs", "tests", "scripts", "deploy", "docs", "examples"):
        for file in (root / folder).rglob("*"):
            if file.is_file() and file.suffix in (".py", ".md", ".toml", ".service", ".timer", ""):
                text = file.read_text(encoding="utf-8", errors="replace")
                names |= set(re.findall(r"\bFLOWJOBS_[A-Za-z0-9_]*[A-Za-z0-9]", text))
    for file in ("Makefile", "README.md", "flowjobs.toml", "pyproject.toml"):
        names |= set(re.findall(r"\bFLOWJOBS_[A-Za-z0-9_]*[A-Za-z0-9]", (root / file).read_text()))
    assert {"FLOWJOBS_CONFIG", "FLOWJOBS_CLOCK", "FLOWJOBS_SUPERVISOR_PID"} <= names
    on_purpose = {
        "FLOWJOBS_WORKER_CONCURENCY",
        "FLOWJOBS_MAIL_XYZZY",
        "FLOWJOBS_WEBHOOKS_OUTBOUND_TIMEOUT",
        "FLOWJOBS_SCHEDULES_NIGHTLY_CRON",
        # near misses the tests and the README name on purpose (session 15)
        "FLOWJOBS_STRIP_API_BASE",
        "FLOWJOBS_CONFG",
        "FLOWJOBS_CONFIG_FILE",
        "FLOWJOBS_DB_URL",
        "FLOWJOBS_LOGLEVEL",
        "FLOWJOBS_DATABASE",
        "FLOWJOBS_worker_concurrency",
        "FLOWJOBS_STRIPE",  # "FLOWJOBS_STRIPE_…" in prose: a prefix, not a variable
    }
    reported = _unknown_variables({name: "1" for name in names - on_purpose})
    assert reported == []


def test_config_errors_name_the_environment_variable_a_bad_value_came_from(tmp_path):
    path = tmp_path / "flowjobs.toml"
    path.write_text('[worker]\nconcurrency = "x"\n')
    with pytest.raises(ConfigError) as mixed:
        load_settings(str(path), environ={"FLOWJOBS_WORKER_LEASE": "zz"})
    assert mixed.value.source == f"configuration ({path} and the environment)"
    assert mixed.value.problems[0].startswith("worker.concurrency: Input should be a valid integer")
    assert mixed.value.problems[1].startswith("worker.lease (from FLOWJOBS_WORKER_LEASE): 'zz' is")

    path.write_text("[worker]\nconcurrency = 2\n")
    with pytest.raises(ConfigError) as only_env:
        load_settings(str(path), environ={"FLOWJOBS_DATABASE_URL": "mysql://db/y"})
    assert only_env.value.source == "environment"
    assert only_env.value.problems == [
        "database.url (from FLOWJOBS_DATABASE_URL): must be sqlite:///PATH (sqlite:////abs/path "
        "for an absolute one), a file path, or postgresql+psycopg://user@host/db (postgres:// is "
        "read as the latter)"
    ]
    with pytest.raises(ConfigError) as tolerance:  # Stripe's check takes whole seconds; 0 is off
        load_settings(str(path), environ={"FLOWJOBS_STRIPE_WEBHOOK_TOLERANCE": "500ms"})
    assert tolerance.value.problems == [
        "stripe.webhook_tolerance (from FLOWJOBS_STRIPE_WEBHOOK_TOLERANCE): must be between 1s "
        "and 1d (Stripe's own default is 5m)"
    ]
    with pytest.raises(ConfigError) as driver:  # it was taken, and failed later, or not at all
        load_settings(str(path), environ={"FLOWJOBS_DATABASE_URL": "postgresql+asyncpg://db/y"})
    assert driver.value.problems == [
        "database.url (from FLOWJOBS_DATABASE_URL): flowjobs talks to PostgreSQL through "
        "psycopg, not asyncpg: write postgresql+psycopg://user@host/db (or postgresql://…)"
    ]
    path.write_text('[worker]\nconcurrency = "x"\n')
    with pytest.raises(ConfigError) as only_file:
        load_settings(str(path), environ={"FLOWJOBS_WORKER_LEASE": "1s"})
    assert only_file.value.source == str(path)
    assert only_file.value.problems[0].startswith("worker.concurrency: Input should be")


def test_shipped_flowjobs_toml_is_valid_and_documents_every_key():
    from pathlib import Path

    from flowjobs.config import Settings

    text = (Path(__file__).resolve().parents[2] / "flowjobs.toml").read_text()
    load_settings(str(Path(__file__).resolve().parents[2] / "flowjobs.toml"), environ={})
    lines = text.splitlines()
    from flowjobs.config import ScheduleSettings, Section

    sections = [
        (name, f"[{name}]", field.annotation)
        for name, field in Settings.model_fields.items()
        if name not in ("base_dir", "config_file", "schedules")
    ]
    for name, header, model in list(sections):  # nested tables, e.g. [webhooks.outbound]
        nested = {
            k: f.annotation
            for k, f in model.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, Section)
        }
        if nested and len(nested) == len(model.model_fields):
            sections.remove((name, header, model))
            sections += [(f"{name}.{k}", f"[{name}.{k}]", sub) for k, sub in nested.items()]
    sections.append(("schedules", "[schedules.", ScheduleSettings))
    for section, header, model in sections:
        assert header in text, section
        for key in model.model_fields:
            index = next(
                (i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{key} =")),
                None,
            )
            assert index is not None, f"{section}.{key} missing from flowjobs.toml"
            assert lines[index - 1].startswith("#"), f"{section}.{key} has no comment above it"


def test_head_constant_matches_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.HEAD


def test_id_characters_are_uniform_and_a_forked_child_draws_its_own():
    import collections

    counts = collections.Counter("".join(ids.new_id("x")[2:] for _ in range(6000)))
    assert set(counts) == set(ids.ALPHABET)
    expected = 6000 * 21 / 62
    assert all(abs(n - expected) < expected * 0.2 for n in counts.values())
    ids.new_id("x")  # the pool now holds characters a child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ids.new_id("x").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 100).decode() != ids.new_id("x")


def test_a_policy_of_one_attempt_is_described_as_one_with_no_retry():
    from flowjobs.outbound.retry import SchedulePolicy

    assert RetryPolicy(max_attempts=1).describe() == "1 attempt, no retry"
    assert SchedulePolicy([]).describe() == "1 attempt, no retry"
    assert RetryPolicy(max_attempts=3, randomize=False).describe() == "3 attempts, 1s→10s ×2"
    assert SchedulePolicy([5, 60]).describe() == "3 attempts, schedule 5s, 60s"


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            "postgresql+psycopg://ops:s3cret@db:5432/flowjobs",
            "postgresql+psycopg://ops:***@db:5432/flowjobs",
        ),
        ("mysql://:s3cret@h/db", "mysql://:***@h/db"),  # no user name
        ("postgres://u:s3c@ret@h/db", "postgres://u:***@h/db"),  # an @ in the password
        ("postgres://u:s3c@ret:w/x%y@h:5432/db", "postgres://u:***@h:5432/db"),  # and a /
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),  # a path, not a password
        (
            "postgresql://u@h/db?sslmode=require&password=s3cret",
            "postgresql://u@h/db?sslmode=require&password=***",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////var/lib/flowjobs/flowjobs.db", "sqlite:////var/lib/flowjobs/flowjobs.db"),
        ("--database=postgres://u:s3cret@h/db runs", "--database=postgres://u:***@h/db runs"),
    ],
)
def test_redact_hides_every_form_of_a_password(url, shown):
    from flowjobs.urls import redact

    assert redact(url) == shown and "s3cret" not in redact(url) and "ret@" not in redact(url)


def test_a_database_url_may_be_a_file_path_as_database_takes_one(tmp_path):
    """`[database] url = "data/jobs.db"` was refused while `--database data/jobs.db` was taken:
    a path alone is an SQLite file, relative to the configuration file's folder like
    `sqlite:///data/jobs.db`."""
    path = tmp_path / "flowjobs.toml"
    path.write_text('[database]\nurl = "data/jobs.db"\n')
    settings = load_settings(str(path), environ={})
    assert settings.database_url() == f"sqlite:///{tmp_path / 'data' / 'jobs.db'}"
    absolute = load_settings(str(path), environ={"FLOWJOBS_DATABASE_URL": "/srv/f.db"})
    assert absolute.database_url() == "sqlite:////srv/f.db"


def test_an_sqlite_library_older_than_3_35_is_refused_in_one_line():
    """Python uses the system's SQLite: 3.34 on RHEL 9 and Debian 11 has no RETURNING, and a
    claim would fail there with a syntax error. Refused before any statement, naming both
    versions and the ways out (exit 4, a database error)."""
    from flowjobs.errors import DatabaseError, ExitStatus
    from flowjobs.store.db import check_sqlite_version

    check_sqlite_version((3, 35, 0))
    check_sqlite_version((3, 46, 1))
    with pytest.raises(DatabaseError) as refused:
        check_sqlite_version((3, 34, 1))
    assert str(refused.value).startswith("this Python uses SQLite 3.34.1; flowjobs needs 3.35.0")
    assert "\n" not in str(refused.value) and "PostgreSQL" in str(refused.value)
    assert refused.value.exit_status == ExitStatus.DATABASE


def test_dates_on_documents_and_emails_are_english_whatever_the_locale(monkeypatch):
    """`%B` follows LC_TIME: an application embedding flowjobs that calls
    `setlocale(LC_ALL, "")` would get its own month names on invoices. Here `time.strftime`,
    which `%B` goes through, is made to answer as a German locale would."""
    import time
    from datetime import UTC, datetime

    from flowjobs.documents.document import day

    real = time.strftime
    german = {"%B": "März"}
    monkeypatch.setattr(time, "strftime", lambda f, *a: german.get(f) or real(f, *a))
    moment = datetime(2027, 3, 5, 10, tzinfo=UTC)
    assert day(moment) == "March 5, 2027"


def test_a_value_that_abbreviates_exactly_one_choice_is_named_as_the_one_meant():
    """`billing show sub ID` got no hint (difflib finds 'sub' too far from 'subscription');
    an abbreviation of exactly one choice is offered, an ambiguous one is not."""
    from flowjobs.cli.filters import one_of
    from flowjobs.errors import BadInput

    kinds = ("subscription", "invoice", "billing-run", "purchase")
    with pytest.raises(BadInput, match=r"\(not 'sub'; did you mean 'subscription'\?\)$"):
        one_of("sub", kinds, "kind")
    with pytest.raises(BadInput, match=r"\(not 'c'\)$"):
        one_of("c", ("completed", "canceled"), "--status")


@pytest.mark.parametrize("spec", ["flat:abc", "flat:", "flat:-5", "flat:150", "flat:nan", "mymod"])
def test_a_tax_calculator_that_cannot_work_is_refused_when_the_config_loads(tmp_path, spec):
    """ "flat:abc" was accepted, then failed every merchant-of-record billing run."""
    path = tmp_path / "flowjobs.toml"
    path.write_text("")
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={"FLOWJOBS_BILLING_TAX_CALCULATOR": spec})
    assert "billing.tax_calculator (from FLOWJOBS_BILLING_TAX_CALCULATOR):" in "\n".join(
        err.value.problems
    )
    for good in ("", "flat:20", "flat:7.5", "mymod:Calculator"):
        assert load_settings(str(path), environ={"FLOWJOBS_BILLING_TAX_CALCULATOR": good})


@pytest.mark.parametrize(
    "section, problem",
    [
        ('interval = "10m"\ngrace = "1m"', "scheduler: grace (60s) must be at least twice"),
        ('interval = "10m"', "scheduler: grace (60s) must be at least twice"),  # the default
        ('interval = "0s"', "scheduler.interval: must be at least 10ms"),
    ],
)
def test_a_scheduler_interval_that_would_miss_skip_slots_is_refused(tmp_path, section, problem):
    """Ticks come every `interval` from the worker's start: with interval 10m and grace 1m a
    `skip` schedule was never ticked within its grace, and never fired."""
    path = tmp_path / "flowjobs.toml"
    path.write_text(f"[scheduler]\n{section}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
    path.write_text('[scheduler]\ninterval = "30s"\ngrace = "1m"\n')
    assert load_settings(str(path), environ={}).scheduler.grace == 60


@pytest.mark.parametrize(
    "text, problem",
    [
        ('[retention]\ninterval = "0s"', "retention.interval: must be at least 10ms"),
        ('[alerts]\ninterval = "0s"', "alerts.interval: must be at least 10ms"),
        ('[worker]\npoll_interval = "0s"', "worker.poll_interval: must be at least 10ms"),
        ('[worker]\nrescue_interval = "5ms"', "worker.rescue_interval: must be at least 10ms"),
        (
            '[retry]\nmin_wait = "10s"\nmax_wait = "1s"',
            "retry: min_wait (10s) must not be more than max_wait (1s)",
        ),
    ],
)
def test_intervals_that_never_pause_and_a_backwards_retry_wait_are_refused(tmp_path, text, problem):
    """A retention or alerts interval of "0s" hung the worker before it started (the duty,
    due every 0 seconds, never let go: 100 % of a core, a SIGTERM unheard); a poll or rescue
    interval of "0s" spun; min_wait above max_wait failed every trigger with "unexpected
    ValueError". Each is one configuration error, exit 2, as the scheduler's interval was."""
    path = tmp_path / "flowjobs.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={})
    assert problem in err.value.problems, err.value.problems


def test_a_task_with_a_concurrency_limit_and_no_queue_gets_a_queue_of_its_own():
    """The limit is per queue: a limited task on `default` held every other task there to it."""
    from flowjobs.core.registry import Registry, task

    reg = Registry()
    task("alone", concurrency_limit=1, into=reg)(lambda payload, ctx: None)
    task("plain", into=reg)(lambda payload, ctx: None)
    task("shared", queue="mail", concurrency_limit=3, into=reg)(lambda payload, ctx: None)
    assert [(t.id, t.queue) for t in reg.all()] == [
        ("alone", "alone"),
        ("plain", "default"),
        ("shared", "mail"),
    ]
    assert reg.queue_limits() == {"alone": 1, "mail": 3}


def test_webhook_handlers_ride_out_a_stripe_outage_of_an_hour():
    """A handler that cannot reach Stripe was tried twice, a second apart, and the checkout
    paid meanwhile was lost until someone replayed it."""
    from flowjobs.tasks.webhook_events import HANDLER_RETRY, TASKS

    assert TASKS and all(t.retry is HANDLER_RETRY for t in TASKS)
    plain = RetryPolicy(**{**HANDLER_RETRY.__dict__, "randomize": False})
    waits = [plain.delay_after(n) for n in range(1, plain.max_attempts)]
    assert waits[0] <= 10 and sum(waits) >= 3600
