"""`flowjobs replay-event` and `flowjobs events …` as a user runs them."""

from __future__ import annotations

import json

import pytest

from flowjobs.billing import setup
from flowjobs.runtime import Runtime
from tests.cli_helpers import as_json, cli_env, flowjobs
from tests.conftest import make_settings


@pytest.fixture
def org_env(sqlite_url, tmp_path):
    rt = Runtime(make_settings(sqlite_url))
    with rt.billing.unit() as s:
        org_id = setup.organization(s, "Acme").id
    rt.close()
    payload = {
        "type": "UPDATE",
        "table": "organizations",
        "schema": "public",
        "record": {"id": org_id, "payouts_enabled": True},
        "old_record": {"id": org_id, "payouts_enabled": False},
    }
    path = tmp_path / "org-updated.json"
    path.write_text(json.dumps(payload))
    return cli_env(sqlite_url), path, org_id


def test_replay_a_file_then_inspect_export_and_replay_it_from_the_inbox(org_env, tmp_path):
    env, path, org_id = org_env
    dry = flowjobs("replay-event", str(path), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run — nothing was stored" in dry.stdout
    assert "insert flowjobs_runs" in dry.stdout and "insert webhook_events" in dry.stdout
    assert "note: replaying unverified" in dry.stderr
    assert (
        as_json(flowjobs("events", "list", "--json", env=env)) == []
    )  # the dry run stored nothing

    first = flowjobs("replay-event", str(path), env=env)
    assert first.returncode == 0 and first.stdout.strip().startswith("run_")
    run_id, created, _ = first.stdout.strip().split("\t")  # RUN, STATUS, EVENT
    assert created == "created"
    again = flowjobs("replay-event", str(path), env=env).stdout.strip().split("\t")
    assert again[:2] == [run_id, "duplicate"]
    listed = as_json(flowjobs("events", "list", "--source", "supabase", "--json", env=env))
    assert [(e["type"], e["status"], e["runId"]) for e in listed] == [
        ("organizations:UPDATE", "routed", run_id)
    ]
    inbox_id = listed[0]["id"]
    shown = as_json(flowjobs("events", "show", inbox_id, "--json", env=env))
    assert {key: shown[key] for key in listed[0]} == listed[0]  # the same names and times
    assert (
        json.loads(shown["body"])["record"]["id"] == org_id and shown["signature"] == "unverified"
    )

    exported = tmp_path / "export.json"
    assert flowjobs("events", "export", inbox_id, "-o", str(exported), env=env).returncode == 0
    assert flowjobs("replay-event", str(exported), env=env).stdout.split("\t")[:2] == [
        run_id,
        "duplicate",
    ]
    data = json.loads(exported.read_text())
    assert data["format"] == "flowjobs-inbox-event/2" and "bodyBase64" in data
    older = tmp_path / "export-1.json"  # as flowjobs wrote it before /2: still read
    data["format"], data["body_base64"] = "flowjobs-inbox-event/1", data.pop("bodyBase64")
    older.write_text(json.dumps(data))
    assert flowjobs("replay-event", str(older), env=env).stdout.split("\t")[:2] == [
        run_id,
        "duplicate",
    ]
    replayed = as_json(flowjobs("events", "replay", inbox_id, "--json", env=env))
    assert replayed["runId"] != run_id and not replayed["duplicate"]
    assert (
        as_json(flowjobs("runs", "show", replayed["runId"], "--json", env=env))["replay_of"]
        == run_id
    )

    worker = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert worker.returncode == 0, worker.stderr
    notices = as_json(
        flowjobs(
            "runs",
            "list",
            "--task",
            "send-organization-payouts-enabled-notification",
            "--json",
            env=env,
        )
    )
    assert len(notices) == 1  # the replayed run found the notification already triggered (same key)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["events", "show", "whevt_nope"], 3, "no inbox event 'whevt_nope'"),
        (["events", "replay", "whevt_nope"], 3, "no inbox event"),
        (["events", "export", "whevt_nope"], 3, "no inbox event"),
        (["events", "list", "--limit", "0"], 2, "--limit"),
    ],
)
def test_events_commands_refuse_bad_input(sqlite_url, args, code, message):
    result = flowjobs(*args, env=cli_env(sqlite_url))
    assert (
        result.returncode == code and message in result.stderr and "Traceback" not in result.stderr
    )


def test_a_stripe_event_replayed_without_an_api_key_says_the_workers_will_need_one(
    sqlite_url, tmp_path
):
    """The event is stored and its run created either way (a worker elsewhere may have the
    key); without a key for the event's mode here, a note says what a worker started with this
    configuration would meet."""
    from tests.cli_helpers import ROOT

    example = str(ROOT / "examples" / "stripe-charge-failed.json")
    bare = cli_env(sqlite_url)
    first = flowjobs("replay-event", example, env=bare)
    assert first.returncode == 0 and first.stdout.split("\t")[1] == "created", first.stderr
    assert "note: no Stripe test-mode API key in this configuration ([stripe] test_api_key or " in (
        first.stderr
    )
    keyed = cli_env(sqlite_url, FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs")
    again = flowjobs("replay-event", example, "--force", env=keyed)
    assert again.returncode == 0 and again.stdout.split("\t")[1] == "created", again.stderr
    assert "API key" not in again.stderr
    [stored, *_] = as_json(flowjobs("events", "list", "--json", env=bare))
    from_inbox = flowjobs("events", "replay", stored["id"], env=bare)
    assert from_inbox.returncode == 0, from_inbox.stderr
    assert "note: no Stripe test-mode API key in this configuration" in from_inbox.stderr


def test_a_dry_run_needs_no_stripe_key_where_the_real_run_needs_none(sqlite_url):
    """`replay-event --dry-run` and `events replay ID --dry-run` of a charge.failed event with
    no Stripe key configured: exit 0 like the real runs, the event's and its run's rows shown,
    and the handler (which would call Stripe) said not to have run."""
    from tests.cli_helpers import ROOT

    example = str(ROOT / "examples" / "stripe-charge-failed.json")
    env = cli_env(sqlite_url)  # no FLOWJOBS_STRIPE_*; flowjobs.toml sets no key
    not_run = (
        "handler stripe-charge-failed not run: it calls Stripe, and this configuration has no "
        "Stripe test-mode API key ([stripe] test_api_key or FLOWJOBS_STRIPE_TEST_API_KEY)"
    )
    dry = flowjobs("replay-event", example, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run — nothing was stored" in dry.stdout and not_run in dry.stdout
    assert "insert webhook_events" in dry.stdout and "insert flowjobs_runs" in dry.stdout
    shown = as_json(flowjobs("replay-event", example, "--dry-run", "--json", env=env))
    assert shown["dryRun"] and shown["status"] == "created" and shown["result"] is None
    assert shown["handlerNotRun"].startswith("it calls Stripe")
    assert as_json(flowjobs("events", "list", "--json", env=env)) == []  # stored nothing

    real = flowjobs("replay-event", example, env=env)
    assert real.returncode == 0 and real.stdout.split("\t")[1] == "created", real.stderr
    [stored] = as_json(flowjobs("events", "list", "--json", env=env))
    again = flowjobs("events", "replay", stored["id"], "--dry-run", env=env)
    assert again.returncode == 0, again.stderr
    assert not_run in again.stdout and "insert flowjobs_runs" in again.stdout
    again_json = as_json(flowjobs("events", "replay", stored["id"], "--dry-run", "--json", env=env))
    assert again_json["handlerNotRun"].startswith("it calls Stripe")
    assert len(as_json(flowjobs("events", "list", "--json", env=env))) == 1
