"""The billing commands as a user runs them: trigger billing-run, billing show/summary, demo seed."""

from __future__ import annotations

import pytest

from tests.cli_helpers import as_json, cli_env, flowjobs


@pytest.fixture
def env(sqlite_url, localstripe_url):
    return cli_env(sqlite_url, FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_cli", FLOWJOBS_STRIPE_API_BASE=localstripe_url)


def test_seed_trigger_a_billing_run_and_show_what_it_did(env):
    seeded = as_json(flowjobs("demo", "seed", "--customers", "2", "--declining", "0", "--json", env=env))
    assert seeded["customers"] == 2 and len(seeded["billingRuns"]) == 2
    run_id = seeded["billingRuns"][0]

    triggered = as_json(flowjobs("trigger", "billing-run", run_id, "--json", env=env))
    assert (triggered["task"], triggered["status"]) == ("attempt-billing-run", "queued")
    repeated = as_json(flowjobs("trigger", "billing-run", run_id, "--json", env=env))
    assert repeated["id"] == triggered["id"] and repeated["deduplicated"]  # key attempt-billing-run:<id>
    worker = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert worker.returncode == 0, worker.stderr
    shown = as_json(flowjobs("billing", "show", "billing-run", run_id, "--json", env=env))
    assert shown["billingRun"]["status"] == "succeeded"
    assert [p["status"] for p in shown["payments"]] == ["succeeded"]
    again = flowjobs("trigger", "billing-run", run_id, env=env)
    assert again.returncode == 2 and "is succeeded; only scheduled billing runs are executed" in again.stderr

    sub = as_json(flowjobs("billing", "show", "subscription", seeded["subscriptions"][0], "--json", env=env))
    assert sub["subscription"]["status"] == "active" and len(sub["invoices"]) == 1
    invoice = as_json(flowjobs("billing", "show", "invoice", sub["invoices"][0]["id"], "--json", env=env))
    assert invoice["invoice"]["status"] == "paid" and len(invoice["lineItems"]) == 1
    summary = as_json(flowjobs("billing", "summary", "--json", env=env))
    assert summary["billingRuns"] == {"succeeded": 1, "scheduled": 1}
    text = flowjobs("billing", "summary", env=env).stdout
    assert "charged: 1 billing runs succeeded" in text and "collected: $" in text


@pytest.mark.parametrize("args, code, message", [
    (["trigger", "billing-run", "billing_run_nope"], 3, "no billing run 'billing_run_nope'"),
    (["trigger", "billing-run"], 2, "needs the id"),
    (["trigger", "hello-world", "surplus"], 2, "task payloads go in --payload"),
    (["billing", "show", "subscription", "sub_nope"], 3, "no subscription 'sub_nope'"),
    (["billing", "show", "customer", "x"], 2, "unknown kind 'customer'"),
    (["demo", "seed", "--customers", "2", "--declining", "3"], 2, "--declining cannot be more"),
])
def test_billing_commands_refuse_bad_input_clearly(env, args, code, message):
    result = flowjobs(*args, env=env)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_demo_seed_without_a_stripe_key_says_which_setting_is_missing(sqlite_url):
    result = flowjobs("demo", "seed", env=cli_env(sqlite_url))
    assert result.returncode == 2
    assert "stripe.test_api_key: not set" in result.stderr and "Traceback" not in result.stderr


def test_demo_seed_with_stripe_unreachable_writes_nothing(sqlite_url):
    import sqlite3

    env = cli_env(sqlite_url, FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_cli",
                  FLOWJOBS_STRIPE_API_BASE="http://127.0.0.1:9", FLOWJOBS_STRIPE_MAX_RETRIES="0")
    result = flowjobs("demo", "seed", "--customers", "3", env=env)
    assert result.returncode == 1
    assert "cannot reach Stripe at http://127.0.0.1:9 after 1 tries" in result.stderr
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (0,)
