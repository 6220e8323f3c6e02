"""Alerts: a failed run, a missed slot, a run waiting too long — delivered to a real SMTP
server and a local HTTP receiver, once, however many workers notice."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowjobs.ops.alerts import find, raise_alerts
from tests.billing_helpers import drain
from tests.integration.test_notifications import Collect, free_port


class Receiver:
    def __init__(self):
        self.posts = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def channels():
    from aiosmtpd.controller import Controller

    handler = Collect()
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    receiver = Receiver()
    yield smtp.port, handler, receiver
    smtp.stop()
    receiver.close()


def alert_sections(port, url, **alerts):
    return {
        "mail": {"transport": "smtp", "host": "127.0.0.1", "port": port, "retries": 0},
        "alerts": {"email": ["ops@example.com"], "webhook_url": url, **alerts},
    }


def test_a_failed_run_is_alerted_once_with_two_workers(make_runtime, channels):
    port, smtp, receiver = channels
    workers = [
        make_runtime(**alert_sections(port, receiver.url, waiting_over="0s")) for _ in range(2)
    ]
    failed = workers[0].trigger("test-abort")
    drain(workers[0])
    assert workers[0].store.get_run(failed.id)["status"] == "failed"

    start = threading.Barrier(2)
    raised = []

    def notice(rt):
        start.wait()
        raised.append(raise_alerts(rt))

    threads = [threading.Thread(target=notice, args=(rt,)) for rt in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(raised) == [0, 1]  # both noticed; one triggered
    assert raise_alerts(workers[1]) == 0  # and noticing again later changes nothing
    for rt in workers:
        drain(rt)

    assert len(receiver.posts) == 1 and len(smtp.messages) == 1
    post = receiver.posts[0]
    assert post["kind"] == "run_failed" and post["details"]["runId"] == failed.id
    rcpts, mail = smtp.messages[0]
    assert (
        rcpts == ["ops@example.com"]
        and mail["Subject"] == f"[flowjobs] Run failed: test-abort ({failed.id})"
    )


def test_an_alert_whose_webhook_is_down_is_emailed_once_and_the_webhook_retried_alone(
    make_runtime, channels, clock
):
    """Every retry of the alert's run sent its email again while the webhook stayed down."""
    port, smtp, receiver = channels
    down = f"http://127.0.0.1:{free_port()}/hook"
    rt = make_runtime(**alert_sections(port, down, waiting_over="0s"))
    failed = rt.trigger("test-abort")
    drain(rt)
    assert rt.store.get_run(failed.id)["status"] == "failed"
    assert raise_alerts(rt) == 1
    drain(rt)
    [first] = rt.store.list_runs(task="send-alert", status="completed")
    [rest] = rt.store.list_runs(task="send-alert", status="retrying")
    assert json.loads(rest["payload"])["channels"] == ["webhook"]
    assert rest["parent_id"] == first["id"] and "URLError" in rest["error"]
    for _ in range(4):
        clock.advance(120)
        drain(rt)
    assert rt.store.get_run(rest["id"])["status"] == "failed"
    assert len(smtp.messages) == 1  # one email, not one per attempt of the webhook
    assert rt.store.count_runs(task="send-alert") == 2


def test_missed_slots_and_long_waits_are_found(make_runtime, clock):
    rt = make_runtime(
        schedules={"minutely": {"task": "hello-world", "cron": "* * * * *"}},
        alerts={"webhook_url": "http://127.0.0.1:9/x", "waiting_over": "5m"},
    )
    rt.scheduler.tick()  # first sight at 08:00
    clock.advance(10 * 60)  # nobody ticked for ten minutes
    waiting = rt.trigger("noop", delay=-400)  # due 6 min 40 s ago
    kinds = {}
    for alert in find(rt):
        kinds.setdefault(alert["kind"], []).append(alert)
    assert len(kinds["slot_missed"]) >= 8  # 08:01 … 08:08 are over a minute late
    assert kinds["slot_missed"][0]["key"] == "alert:missed-slot:minutely:2027-01-15T08:01:00.000Z"
    assert [a["details"]["runId"] for a in kinds["run_waiting"]] == [waiting.id]


def test_alerts_are_a_worker_duty_only_when_configured(make_runtime):

    def duty_names(rt):
        return [name for _, _, name in rt.duties()]

    assert "alerts" not in duty_names(make_runtime())
    assert "alerts" in duty_names(make_runtime(alerts={"email": ["ops@example.com"]}))


def test_two_running_workers_deliver_each_alert_once(sqlite_url, channels, tmp_path):
    import signal

    from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until

    port, smtp, receiver = channels
    env = cli_env(
        sqlite_url,
        FLOWJOBS_MAIL_TRANSPORT="smtp",
        FLOWJOBS_MAIL_HOST="127.0.0.1",
        FLOWJOBS_MAIL_PORT=str(port),
        FLOWJOBS_ALERTS_EMAIL="ops@example.com",
        FLOWJOBS_ALERTS_WEBHOOK_URL=receiver.url,
        FLOWJOBS_ALERTS_INTERVAL="200ms",
        FLOWJOBS_ALERTS_WAITING_OVER="0s",
        FLOWJOBS_ALERTS_MISSED_SLOTS="false",
    )
    first = flowjobs("trigger", "test-abort", env=env).stdout.strip()
    workers = [
        start_worker("--no-scheduler", env=env, stderr_path=tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    try:
        wait_until(
            lambda: len(receiver.posts) >= 1 and len(smtp.messages) >= 1, message="the first alert"
        )
        second = flowjobs("trigger", "test-abort", env=env).stdout.strip()
        wait_until(
            lambda: len(receiver.posts) >= 2 and len(smtp.messages) >= 2, message="the second alert"
        )
        # both workers keep looking every 200 ms; a third finding proves they looked again since
        third = flowjobs("trigger", "test-abort", env=env).stdout.strip()
        wait_until(
            lambda: len(receiver.posts) >= 3 and len(smtp.messages) >= 3, message="the third alert"
        )
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
    assert sorted(p["details"]["runId"] for p in receiver.posts) == sorted([first, second, third])
    assert len(smtp.messages) == 3
