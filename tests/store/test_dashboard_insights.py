"""store/insights.py — the statements behind the dashboard — on both backends, with a pinned
clock: counts per status and queue, throughput buckets by outcome, duration percentiles, the
oldest waiting run, delayed runs, run search and the JSON feed the overview polls."""

from __future__ import annotations

import io
import json

from flowjobs.store import insights
from flowjobs.store.states import ORDER, RunStatus
from tests.billing_helpers import drain


def _get(app, path, query=""):
    status = {}
    out = b"".join(
        app(
            {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "wsgi.input": io.BytesIO(),
            },
            lambda code, headers: status.setdefault("code", code),
        )
    )
    return status["code"], out.decode()


def test_counts_throughput_durations_and_waiting(make_runtime, clock):
    rt = make_runtime()
    assert insights.status_counts(rt.store) == {s.value: 0 for s in ORDER}
    assert insights.oldest_waiting(rt.store, clock.now_ms()) is None

    done = [rt.trigger("hello-world", {"i": i}) for i in range(3)]
    failed = rt.trigger("test-exit")
    drain(rt)
    clock.advance(120)
    waiting = rt.trigger("noop")
    clock.advance(1)
    rt.trigger("noop", queue="other")
    later = rt.trigger("noop", delay="1h")
    clock.advance(29)
    now = clock.now_ms()

    counts = insights.status_counts(rt.store)
    assert list(counts) == [s.value for s in ORDER]
    assert counts[RunStatus.COMPLETED] == 3 and counts[RunStatus.FAILED] == 1
    assert counts[RunStatus.QUEUED] == 2 and counts[RunStatus.DELAYED] == 1

    queues = insights.queue_counts(rt.store)
    assert queues["other"][RunStatus.QUEUED] == 1 and queues["other"][RunStatus.COMPLETED] == 0
    assert queues["default"][RunStatus.COMPLETED] == 3

    chart = insights.throughput(rt.store, now, 3_600_000, 60_000)
    assert chart["slots"] == 60 and chart["start"] == now + 1 - 3_600_000
    assert sum(chart["series"][RunStatus.COMPLETED]) == 3
    assert sum(chart["series"][RunStatus.FAILED]) == 1
    # they finished 150 s before `now`: the slot 3 minutes from the end
    assert chart["series"][RunStatus.COMPLETED][57] == 3
    day = insights.throughput(rt.store, now, 86_400_000, 900_000)
    assert day["slots"] == 96 and sum(day["series"][RunStatus.COMPLETED]) == 3
    assert (
        sum(
            insights.throughput(rt.store, now + 7_200_000, 3_600_000, 60_000)["series"][
                RunStatus.COMPLETED
            ]
        )
        == 0
    )  # out of the window an hour later

    durations = {d["task"]: d for d in insights.durations(rt.store, now - 86_400_000)}
    assert durations["hello-world"]["attempts"] == 3
    assert 0 <= durations["hello-world"]["p50"] <= durations["hello-world"]["p95"]
    assert durations["test-exit"]["attempts"] == 1

    oldest = insights.oldest_waiting(rt.store, now)
    assert oldest["id"] == waiting.id and oldest["waited_ms"] == 30_000
    upcoming = insights.upcoming(rt.store, now)
    assert [u["id"] for u in upcoming] == [later.id]
    assert failed.id and done


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert insights._percentile(values, 50) == 50
    assert insights._percentile(values, 95) == 95
    assert insights._percentile([7], 95) == 7
    assert insights._percentile([1, 2], 50) == 1


def test_search_by_id_key_task_status_and_time(make_runtime, clock):
    rt = make_runtime()
    first = rt.trigger("hello-world", {"x": 1}, idempotency_key="order-1")
    clock.advance(60)
    second = rt.trigger("noop", idempotency_key="order-2")
    store = rt.store

    def ids(**kw):
        return [r["id"] for r in insights.search_runs(store, **kw)]

    assert ids() == [second.id, first.id]
    assert ids(text=first.id) == [first.id]
    assert ids(text="order-2") == [second.id]
    assert ids(text="nothing") == []
    assert ids(task="noop") == [second.id]
    assert ids(status=RunStatus.QUEUED) == [second.id, first.id]
    assert ids(status=RunStatus.FAILED) == []
    start = store.get_run(first.id)["created_at"]
    assert ids(since=start + 1) == [second.id]
    assert ids(until=start + 1) == [first.id]
    assert ids(limit=1, offset=1) == [first.id]
    assert insights.tasks_seen(store) == ["hello-world", "noop"]


def test_runs_mentioning_a_billing_object(make_runtime):
    rt = make_runtime()
    hit = rt.trigger("noop", delay="1h")
    with rt.db.transaction() as conn:  # a payload naming a billing run (the noop task takes none)
        conn.execute(
            rt.store._prepare("UPDATE flowjobs_runs SET payload = :p WHERE id = :id"),
            {"p": json.dumps({"billingRunId": "billing_run_A%1"}), "id": hit.id},
        )
    rt.trigger("noop")
    assert [r["id"] for r in insights.runs_mentioning(rt.store, "billing_run_A%1")] == [hit.id]
    assert insights.runs_mentioning(rt.store, "billing_run_A") == []  # whole values only
    assert insights.runs_mentioning(rt.store, "billing_run_AX1") == []  # % is not a wildcard


def test_the_overview_feed_and_page(make_runtime, clock):
    from flowjobs.http.dashboard.app import Dashboard

    rt = make_runtime()
    rt.trigger("hello-world")
    drain(rt)
    rt.trigger("noop")
    rt.store.register_worker(
        {"id": "w1", "host": "h", "pid": 1, "version": "v", "queues": "*", "concurrency": 2},
        clock.now_ms(),
    )
    app = Dashboard(rt)
    code, body = _get(app, "/api/overview")
    assert code.startswith("200")
    data = json.loads(body)
    assert data["counts"][RunStatus.QUEUED] == 1 and data["counts"][RunStatus.COMPLETED] == 1
    assert data["total"] == 2 and data["alive"] == 1
    assert {(w["id"], w["state"]) for w in data["workers"]} >= {("w1", "alive")}
    assert data["finished"][RunStatus.COMPLETED] == 1
    assert data["chart"].startswith("<svg") and 'data-total="1"' in data["chart"]
    assert data["oldest"]["task"] == "noop"
    assert json.loads(_get(app, "/api/overview", "range=day")[1])["range"] == "day"

    code, page = _get(app, "/")
    assert code.startswith("200")
    assert 'id="count-queued"' in page and "<svg" in page and "/static/live.js" in page
    assert "hello-world" in page  # its p50/p95 row
    code, script = _get(app, "/static/live.js")
    assert code.startswith("200") and "/api/overview" in script


def test_every_page_answers_on_this_backend(make_runtime, clock):
    """Each page rendered through the WSGI app against this backend (the browser tests run
    on SQLite): the statements behind them parse and run on both."""
    from flowjobs.http.dashboard.app import Dashboard

    rt = make_runtime(dashboard={"allow_actions": True})
    done = rt.trigger("hello-world", {"customer": "Ada"}, idempotency_key="k-1")
    drain(rt)
    later = rt.trigger("noop", delay="1h")
    app = Dashboard(rt)
    pages = [
        ("/", ""),
        ("/", "range=day"),
        ("/runs", ""),
        ("/runs", "q=k-1&status=completed&task=hello-world&since=2000-01-01T00:00:00Z"),
        ("/runs", "until=2099-01-01T00:00:00Z&page=2"),
        (f"/runs/{done.id}", ""),
        (f"/runs/{later.id}", ""),
        (f"/runs/{later.id}/cancel", ""),
        ("/workers", ""),
        ("/schedules", ""),
        ("/events", "source=stripe&status=routed"),
        ("/billing/subscriptions", "status=active"),
        ("/billing/invoices", "customer=cust_x"),
        ("/billing/billing-runs", ""),
        ("/billing/payments", "status=succeeded"),
    ]
    for path, query in pages:
        code, body = _get(app, path, query)
        assert code.startswith("200"), (path, query, body[:500])
    assert "(in 1 h)" in _get(app, "/runs", "status=delayed")[1]
    assert _get(app, "/runs", "q=k-1")[1].count(done.id) >= 1
    assert _get(app, "/billing/invoices/inv_missing")[0].startswith("404")
    assert _get(app, "/events/whevt_missing")[0].startswith("404")
