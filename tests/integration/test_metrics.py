"""`GET /metrics`: Prometheus text, read back with prometheus_client's own parser."""

from __future__ import annotations

import io
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.billing_helpers import drain
from tests.cli_helpers import wait_until
from tests.integration.test_webhooks_http import served  # noqa: F401  (fixture)


def scrape(app) -> dict:
    status = {}

    def start_response(code, headers):
        status["code"], status["headers"] = code, dict(headers)

    body = b"".join(
        app(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "wsgi.input": io.BytesIO()},
            start_response,
        )
    )
    assert status["code"] == "200 OK" and status["headers"]["Content-Type"].startswith(
        "text/plain; version=0.0.4"
    )
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_report_runs_durations_queues_lag_and_inbox(make_runtime, clock):
    from flowjobs.http.server import WebhookApp

    rt = make_runtime(schedules={"minutely": {"task": "hello-world", "cron": "* * * * *"}})
    for i in range(3):
        rt.trigger("hello-world", {"n": i})
    drain(rt)
    rt.scheduler.tick()  # first sight of `minutely` at 08:00
    clock.advance(300)  # five minutes without a scheduler
    rt.trigger("noop")
    clock.advance(30)  # the noop has waited 30 s

    m = scrape(WebhookApp(rt))
    assert m[("flowjobs_runs", (("status", "completed"), ("task", "hello-world")))] == 3
    assert (
        m[
            (
                "flowjobs_attempt_duration_seconds_count",
                (("outcome", "succeeded"), ("task", "hello-world")),
            )
        ]
        == 3
    )
    assert (
        m[
            (
                "flowjobs_attempt_duration_seconds_bucket",
                (("le", "+Inf"), ("outcome", "succeeded"), ("task", "hello-world")),
            )
        ]
        == 3
    )
    assert m[("flowjobs_queue_depth", (("queue", "default"),))] == 1
    assert m[("flowjobs_oldest_waiting_run_age_seconds", (("queue", "default"),))] == 30
    assert (
        m[("flowjobs_schedule_lag_seconds", (("schedule", "minutely"),))] == 330 - 60
    )  # 08:01 is due since 270 s


def test_an_empty_system_exports_zero_for_every_known_series(make_runtime):
    """Alert rules need a series to compare on an empty queue: every task × status, every
    task queue and every inbox source × status is exported at 0."""
    from flowjobs.http.server import WebhookApp

    rt = make_runtime()
    m = scrape(WebhookApp(rt))
    tasks = [t.id for t in rt.registry.all()]
    assert len(tasks) > 10
    for task in tasks:
        for status in ("queued", "executing", "failed", "completed"):
            assert m[("flowjobs_runs", (("status", status), ("task", task)))] == 0
    queues = {t.queue for t in rt.registry.all()}
    assert "default" in queues
    for queue in queues:
        assert m[("flowjobs_queue_depth", (("queue", queue),))] == 0
        assert m[("flowjobs_oldest_waiting_run_age_seconds", (("queue", queue),))] == 0
    for source in ("stripe", "supabase"):
        for status in ("received", "routed", "ignored", "rejected"):
            assert m[("flowjobs_webhook_events", (("source", source), ("status", status)))] == 0
    rt.trigger("noop")
    m = scrape(WebhookApp(rt))
    assert m[("flowjobs_runs", (("status", "queued"), ("task", "noop")))] == 1
    assert m[("flowjobs_queue_depth", (("queue", "default"),))] == 1


def test_metrics_over_http(served, tmp_path):
    _, _, base, _ = served
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "flowjobs_runs",
        "flowjobs_attempt_duration_seconds",
        "flowjobs_queue_depth",
        "flowjobs_schedule_lag_seconds",
        "flowjobs_webhook_events",
    } <= names
    # `serve` writes one access-log line per request: method, path, status, bytes, time, client
    line = wait_until(
        lambda: next(
            (ln for ln in (tmp_path / "serve.log").read_text().splitlines() if "/metrics" in ln),
            None,
        ),
        message="the access-log line of GET /metrics",
    )
    assert "GET /metrics 200" in line and "127.0.0.1" in line, line
