"""Fault: the hourly transition fan-out of one slot ends without success (its run canceled, or
the fan-out run it triggered canceled), and then the next slot fires — real `flowjobs`
processes (tick, runs cancel, run-worker --burst, schedules health) on SQLite and PostgreSQL,
with billing against localstripe.

The subscription whose period ended in the lost hour must be rolled over by the next slot,
whose window reaches back over the lost one; `schedules health` names the lost window until
then. Before the fix the next slot's window was its own hour only, and the subscription was
never rolled over nor billed."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingPeriod
from flowjobs.core.clock import iso
from tests.acceptance.faults import invariants
from tests.billing_helpers import drain, seed, stripe_sections, utc
from tests.cli_helpers import cli_env, flowjobs


def at(env: dict, moment: str) -> dict:
    """The environment of a process whose clock reads `moment` now (and runs on from there)."""
    return {**env, "FLOWJOBS_CLOCK": f"{moment} x1 @{time.time():.3f}"}


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def periods(rt, subscription_id):
    with rt.billing.unit() as s:
        return [
            (p.start_date, p.end_date, p.status)
            for p in s.exec(
                select(BillingPeriod)
                .where(BillingPeriod.subscription_id == subscription_id)
                .order_by(BillingPeriod.start_date)
            )
        ]


def runs(rt, task):
    return rt.store.list_runs(task=task, limit=100)


def health(env):
    result = flowjobs("schedules", "health", "--json", env=env)
    return result.returncode, {h["id"]: h for h in json.loads(result.stdout)}


@pytest.mark.parametrize("fault", ["slot run canceled", "fan-out run canceled"])
def test_the_next_slot_rolls_over_what_ended_in_a_lost_hour(
    make_runtime, clock, localstripe_url, db_url, fault
):
    clock.set(int(utc(2027, 1, 15, 9, 20).timestamp() * 1000))
    rt = make_runtime(**stripe_sections(localstripe_url))
    lost = seed(
        rt, start=utc(2026, 12, 15, 9, 30)
    )  # its period ends at 09:30: in the 09:00-10:00 window
    own = seed(rt, start=utc(2026, 12, 15, 10, 30))  # ends at 10:30: in the next slot's own window
    rt.trigger(
        "attempt-billing-runs", {"timestamp": iso(clock.now_ms())}
    )  # their first periods are paid
    drain(rt)
    assert [periods(rt, x.subscription_id)[0][2] for x in (lost, own)] == ["active", "active"]
    env = cli_env(
        db_url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
        FLOWJOBS_STRIPE_MAX_RETRIES="0",
    )

    ok(flowjobs("tick", env=at(env, "2027-01-15T09:20:00Z")))  # first sight: starts after 09:00
    ticked = ok(flowjobs("tick", env=at(env, "2027-01-15T10:00:05Z"))).stdout.splitlines()
    [slot_run] = [
        line.split("\t")[2]
        for line in ticked
        if line.startswith("hourly-cron\t2027-01-15T10:00:00")
    ]
    if fault == "slot run canceled":
        ok(flowjobs("runs", "cancel", slot_run, env=at(env, "2027-01-15T10:00:10Z")))
    else:  # the slot run completes; the transition fan-out it triggered is canceled before it runs
        ok(
            flowjobs(
                "run-worker", "--burst", "--max-jobs", "1", env=at(env, "2027-01-15T10:00:10Z")
            )
        )
        [fan_out] = runs(rt, "attempt-transition-billing-periods")
        assert fan_out["parent_id"] == slot_run and fan_out["status"] == "queued"
        ok(flowjobs("runs", "cancel", fan_out["id"], env=at(env, "2027-01-15T10:00:20Z")))
        ok(flowjobs("run-worker", "--burst", env=at(env, "2027-01-15T10:00:30Z")))
    assert len(periods(rt, lost.subscription_id)) == 1  # the lost hour rolled nothing over

    code, report = health(at(env, "2027-01-15T10:30:00Z"))
    assert code == 0  # lost, but the next slot covers it
    assert report["hourly-cron"]["status"] == "recovering" and report["hourly-cron"]["failed"] == [
        "2027-01-15T10:00:00.000Z"
    ]
    assert [(g["from"], g["to"], g["covered_by"]) for g in report["hourly-cron"]["lost"]] == [
        ("2027-01-15T09:00:00.000Z", "2027-01-15T10:00:00.000Z", "2027-01-15T11:00:00.000Z")
    ]
    text = flowjobs("schedules", "health", env=at(env, "2027-01-15T10:30:00Z")).stderr
    assert "hourly-cron: window 2027-01-15T09:00:00.000Z -> 2027-01-15T10:00:00.000Z lost" in text

    ok(
        flowjobs("run-worker", "--burst", env=at(env, "2027-01-15T11:00:05Z"))
    )  # ticks the 11:00 slot, drains

    [next_slot] = [
        r
        for r in runs(rt, "hourly-cron")
        if r["idempotency_key"] == "hourly-cron:2027-01-15T11:00:00.000Z"
    ]
    window = json.loads(rt.store.get_run(next_slot["id"])["payload"])
    assert (window["lastTimestamp"][:19], window["timestamp"][:19]) == (
        "2027-01-15T09:00:00",
        "2027-01-15T11:00:00",
    )
    for seeded, ended in ((lost, utc(2027, 1, 15, 9, 30)), (own, utc(2027, 1, 15, 10, 30))):
        rolled = periods(rt, seeded.subscription_id)
        assert [(p[1], p[2]) for p in rolled][0][0] == ended
        assert len(rolled) == 2 and rolled[1][0] == ended and rolled[1][2] == "active", rolled
    assert {r["status"] for r in runs(rt, "attempt-billing-period-transition")} == {"completed"}

    code, report = health(at(env, "2027-01-15T11:10:00Z"))
    assert (
        code == 0
        and report["hourly-cron"]["status"] == "ok"
        and report["hourly-cron"]["lost"] == []
    )
    assert report["hourly-cron"]["duplicated"] == []
    invariants.check(rt.db)
