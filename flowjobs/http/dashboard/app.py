"""Dashboard pages: /runs (filters, pages), /runs/<id> (payload, attempts with tracebacks, log,
parent and children, replay behind a confirmation), /schedules, /events. Plain WSGI on top of
the same runtime as the webhook intake; Jinja2 templates with autoescaping."""

from __future__ import annotations

import base64
import hmac
import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from flowjobs.cli.views import run_summary
from flowjobs.core.clock import iso, parse_iso
from flowjobs.store.states import ORDER

STATUSES = tuple(status.value for status in ORDER)


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def _html(start_response, template: str, status: str = "200 OK", **context):
    data = _env().get_template(template).render(**context).encode()
    start_response(
        status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _text(start_response, status: str, text: str, headers=()):
    data = text.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *headers,
        ],
    )
    return [data]


def authorised(settings, environ) -> bool:
    """No password configured: open (serve refuses to listen beyond loopback then)."""
    if not settings.password:
        return True
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user, settings.username) & hmac.compare_digest(
        password, settings.password
    )


class Dashboard:
    def __init__(self, runtime):
        self.rt = runtime
        self.settings = runtime.settings.dashboard

    def __call__(self, environ, start_response):
        if not authorised(self.settings, environ):
            return _text(
                start_response,
                "401 Unauthorized",
                "authentication required",
                [("WWW-Authenticate", 'Basic realm="flowjobs"')],
            )
        method, path = (
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "/").rstrip("/") or "/",
        )
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/":
            start_response("302 Found", [("Location", "/runs"), ("Content-Length", "0")])
            return [b""]
        if path == "/runs":
            return self.runs(start_response, query)
        if path.startswith("/runs/"):
            parts = path.split("/")
            if len(parts) == 3:
                return self.run(start_response, parts[2])
            if len(parts) == 4 and parts[3] == "replay":
                return self.replay(environ, start_response, parts[2], method)
        if path == "/schedules":
            return self.schedules(start_response)
        if path == "/events":
            return self.events(start_response, query)
        return _text(start_response, "404 Not Found", f"no page {path}")

    def runs(self, start_response, query):
        size = self.settings.page_size
        page = max(int(query.get("page", "1")) if query.get("page", "1").isdigit() else 1, 1)
        status = query.get("status") if query.get("status") in STATUSES else None
        task = query.get("task") or None
        since = query.get("since") or None
        try:
            since_ms = parse_iso(since) if since else None
        except ValueError:
            since, since_ms = None, None
        rows = self.rt.store.list_runs(
            status=status, task=task, since=since_ms, limit=size + 1, offset=(page - 1) * size
        )
        queues = [
            {"queue": q, "due": due, "executing": running, "oldest": wait}
            for q, due, running, wait in self.rt.store.queue_depths(self.rt.clock.now_ms())
        ]
        filters = {"status": status, "task": task, "since": since}

        def link(p):
            return "/runs?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": p})

        return _html(
            start_response,
            "runs.html.j2",
            title="Runs",
            runs=[run_summary(r) for r in rows[:size]],
            queues=queues,
            statuses=STATUSES,
            filters=filters,
            page=page,
            has_next=len(rows) > size,
            prev_url=link(page - 1),
            next_url=link(page + 1),
        )

    def run(self, start_response, run_id):
        row = self.rt.store.get_run(run_id)
        if row is None:
            return _text(start_response, "404 Not Found", f"no run {run_id}")
        shown = {
            k: (iso(v) if k.endswith("_at") and isinstance(v, int) else v) for k, v in row.items()
        }
        logs = [{**line, "at": iso(line["at"])} for line in self.rt.store.logs(run_id)]
        return _html(
            start_response,
            "run.html.j2",
            title=f"Run {run_id}",
            run=shown,
            payload=_pretty(row["payload"]),
            result=_pretty(row["result"]) if row["result"] else "",
            attempts=self.rt.store.attempts(run_id),
            logs=logs,
            children=self.rt.store.list_runs(parent_id=run_id, limit=200),
            allow_actions=self.settings.allow_actions,
        )

    def replay(self, environ, start_response, run_id, method):
        if not self.settings.allow_actions:
            return _text(
                start_response,
                "403 Forbidden",
                "the dashboard is read-only ([dashboard] allow_actions)",
            )
        row = self.rt.store.get_run(run_id)
        if row is None:
            return _text(start_response, "404 Not Found", f"no run {run_id}")
        if method != "POST":
            return _html(start_response, "confirm.html.j2", title="Replay?", run=row)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(min(length, 4096)).decode())
        if form.get("confirm") != ["yes"]:
            return _text(start_response, "400 Bad Request", "replay needs the confirmation form")
        result = self.rt.client.replay(row)
        start_response(
            "303 See Other", [("Location", f"/runs/{result.id}"), ("Content-Length", "0")]
        )
        return [b""]

    def schedules(self, start_response):
        health = {h["id"]: h for h in self.rt.scheduler.health()}
        rows = [
            {**d, **{k: health.get(d["id"], {}).get(k, []) for k in ("missing", "duplicated")}}
            for d in self.rt.scheduler.describe()
        ]
        return _html(start_response, "schedules.html.j2", title="Schedules", schedules=rows)

    def events(self, start_response, query):
        from flowjobs.webhooks.inbox import listing

        source = query.get("source") if query.get("source") in ("stripe", "supabase") else None
        status = query.get("status") or None
        from flowjobs.outbound.views import delivery_rows

        rows = listing(self.rt.billing, source, None, status, 200)
        deliveries = delivery_rows(
            self.rt.billing, limit=200
        )  # outbound: Flowglad events to merchants
        return _html(
            start_response,
            "events.html.j2",
            title="Webhook inbox",
            events=rows,
            filters={"source": source, "status": status},
            deliveries=deliveries,
        )


def _pretty(text: str | None) -> str:
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text
