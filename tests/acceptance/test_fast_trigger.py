"""`flowjobs trigger` starts without typer (flowjobs.cli.main): its own reading of the command
line must match the typer command's for every form it accepts, and hand everything else over."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowjobs.cli import trigger_cmd
from flowjobs.cli.main import parse_root
from flowjobs.cli.triggering import parse_argv

ACCEPTED = [
    ["trigger", "noop"],
    ["trigger", "hello-world", "--payload", '{"a": 1}'],
    ["trigger", "hello-world", "-p", '{"a": 1}', "--json"],
    ["trigger", '--payload={"a": [1, 2]}', "hello-world"],
    [
        "trigger",
        "noop",
        "--idempotency-key",
        "k-1",
        "--idempotency-key-ttl",
        "1d",
        "--delay",
        "30s",
    ],
    ["trigger", "noop", "--priority", "7", "--queue", "emails", "--wait", "--timeout", "5s"],
    ["trigger", "noop", "--priority=3", "--priority", "4"],  # the last one counts
    ["trigger", "noop", "--payload-file", "p.json"],
    ["trigger", "billing-run", "billing_run_123"],
    ["trigger", "--json", "--", "noop"],
    ["--config", "x.toml", "trigger", "noop"],
    ["-c", "x.toml", "--log-level", "debug", "--log-format=json", "trigger", "noop"],
    ["--database", "sqlite:///x.db", "--config=x.toml", "trigger", "noop"],
    ["--log-level=warning", "trigger", "noop", "--wait"],
]

DEFERRED = [
    [],
    ["--help"],
    ["-h"],
    ["--version"],
    ["runs", "list"],
    ["trigger"],
    ["trigger", "--help"],
    ["trigger", "noop", "-h"],
    ["trigger", "a", "b", "c"],
    ["trigger", "noop", "--priority", "-1"],
    ["trigger", "noop", "--priority", "high"],
    ["trigger", "noop", "--bogus"],
    ["trigger", "noop", "-p"],
    ["trigger", "noop", "-p{}"],
    ["trigger", "noop", "--wait=yes"],
    ["--log-level", "loud", "trigger", "noop"],
    ["--log-format", "xml", "trigger", "noop"],
    ["--config"],
    ["--install-completion"],
    ["trigger", "noop", "--payload", "-1"],
]


def typer_reading(argv, monkeypatch, environ):
    """What the typer app passes to run_trigger for `argv`, with the root options' State."""
    from flowjobs.cli.app import app

    seen = {}

    def capture(state, *args):
        names = [
            "task_id",
            "object_id",
            "payload",
            "payload_file",
            "idempotency_key",
            "idempotency_key_ttl",
            "delay",
            "priority",
            "queue",
            "wait",
            "timeout",
            "as_json",
        ]
        seen["root"] = {
            "config": state.config,
            "log_level": state.log_level,
            "log_format": state.log_format,
            "database": state.database,
        }
        seen["params"] = dict(zip(names, args))
        return 0

    monkeypatch.setattr(trigger_cmd, "run_trigger", capture)
    result = CliRunner().invoke(app, argv, env=environ)
    assert result.exit_code == 0, result.output
    return seen["root"], seen["params"]


def fast_reading(argv, monkeypatch, environ):
    for name, value in environ.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    parsed = parse_root(argv)
    assert parsed is not None and parsed[1][0] == "trigger", argv
    params = parse_argv(parsed[1][1:])
    assert params is not None, argv
    defaults = {
        "object_id": None,
        "payload": None,
        "payload_file": None,
        "idempotency_key": None,
        "idempotency_key_ttl": None,
        "delay": None,
        "priority": 0,
        "queue": None,
        "wait": False,
        "timeout": None,
        "as_json": False,
    }
    return parsed[0], {**defaults, **params}


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
@pytest.mark.parametrize(
    "root_env",
    [
        {},
        {"FLOWJOBS_CONFIG": "env.toml"},
        {"FLOWJOBS_LOG_LEVEL": "warning", "FLOWJOBS_LOG_FORMAT": "json"},  # options beat them
    ],
    ids=["no variables", "FLOWJOBS_CONFIG", "FLOWJOBS_LOG_*"],
)
def test_the_fast_path_reads_a_command_line_as_typer_does(argv, root_env, monkeypatch):
    names = ("FLOWJOBS_CONFIG", "FLOWJOBS_LOG_LEVEL", "FLOWJOBS_LOG_FORMAT")
    environ = {name: root_env.get(name) for name in names}
    expected = typer_reading(argv, monkeypatch, environ)
    assert fast_reading(argv, monkeypatch, environ) == expected
    if "--payload-file" in argv:
        assert expected[1]["payload_file"] == Path("p.json")
    if root_env.get("FLOWJOBS_LOG_LEVEL") and not any(a.startswith("--log-l") for a in argv):
        assert expected[0]["log_level"] == "warning"  # read from the variable


@pytest.mark.parametrize("argv", DEFERRED, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_goes_to_the_typer_app(argv):
    parsed = parse_root(argv)
    assert (
        parsed is None
        or not parsed[1]
        or parsed[1][0] != "trigger"
        or parse_argv(parsed[1][1:]) is None
    )


def test_help_and_mistakes_still_come_from_typer(tmp_path):
    from tests.cli_helpers import cli_env, flowjobs

    env = cli_env(f"sqlite:///{tmp_path}/f.db")
    shown = flowjobs("trigger", "--help", env=env)
    assert shown.returncode == 0 and "--idempotency-key-ttl" in shown.stdout
    wrong = flowjobs("trigger", "noop", "--priority", "high", env=env)
    assert wrong.returncode == 2 and "'high' is not a valid int" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def _imported_task_modules(db_url: str, script: str) -> list[str]:
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\nfrom flowjobs.config import Settings\nfrom flowjobs.runtime import Runtime\n"
        f"rt = Runtime(Settings.model_validate({{'database': {{'url': {db_url!r}}}}}))\n{script}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flowjobs.tasks.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_triggering_a_builtin_task_imports_only_its_module(tmp_path):
    url = f"sqlite:///{tmp_path}/lazy.db"
    assert _imported_task_modules(url, "rt.trigger('noop')") == ["flowjobs.tasks.noop"]
    alert = _imported_task_modules(
        url, "rt.trigger('send-alert', {'kind': 'x', 'subject': 's', 'text': 't'})"
    )
    assert alert == ["flowjobs.tasks.send_alert"]
    # a task whose module is not named after it: every built-in module is loaded to find it
    everything = _imported_task_modules(url, "rt.trigger('stripe-charge-failed', {'inboxId': '1'})")
    assert {"flowjobs.tasks.webhook_events", "flowjobs.tasks.notifications"} <= set(everything)
    # a worker (or anything asking for the whole registry) still sees every task
    from flowjobs.tasks import BUILTIN_MODULES

    assert set(BUILTIN_MODULES) <= set(_imported_task_modules(url, "rt.registry"))
