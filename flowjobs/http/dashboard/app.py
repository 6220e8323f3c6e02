"""Dashboard pages, plain WSGI on top of the same runtime as the webhook intake; Jinja2
templates with autoescaping, one small script (static/live.js) for live refresh.

    /                     overview: counts per status and queue, throughput chart, p50/p95
                          per task, oldest waiting run, live workers (polls /api/overview)
    /runs, /runs/<id>     search (id, idempotency key, task, status, time); detail
    /workers, /schedules, /events[/<id>[/raw]]
    /billing/<kind>[/<id>]  subscriptions, invoices, billing runs, payments
    POST /runs/<id>/{replay,cancel}, POST /billing/billing-runs/<id>/retry (a failed billing
                          run's period billed again: flowjobs.billing.retry) behind [dashboard]
                          allow_actions, a confirmation page and a CSRF token (HMAC of a
                          per-process secret)

All SQL lives in flowjobs.store.insights (job tables) and the billing read models."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from flowjobs.core.clock import iso, parse_iso
from flowjobs.ops import workers as worker_presence
from flowjobs.store import insights
from flowjobs.store.states import ORDER, PENDING, TERMINAL, RunStatus

STATUSES = tuple(status.value for status in ORDER)
STATIC = Path(__file__).parent / "templates"  # live.js ships with the templates
HOUR_MS, DAY_MS, MINUTE_MS = 3_600_000, 86_400_000, 60_000
RANGES = {"hour": (HOUR_MS, MINUTE_MS), "day": (DAY_MS, 15 * MINUTE_MS)}
COLOURS = {
    RunStatus.COMPLETED.value: "#1a7f37",
    RunStatus.FAILED.value: "#cf222e",
    RunStatus.CANCELED.value: "#8c959f",
    RunStatus.EXPIRED.value: "#9a6700",
}
BILLING_KINDS = {  # url part: (title, billing.views list kind, show kind or None)
    "subscriptions": ("Subscriptions", "subscriptions", "subscription"),
    "invoices": ("Invoices", "invoices", "invoice"),
    "billing-runs": ("Billing runs", "billing-runs", "billing-run"),
    "payments": ("Payments", "payments", None),
}
PAYLOAD_LINKS = {  # a billing task's payload key -> the billing page it names
    "billingRunId": "billing-runs",
    "subscriptionId": "subscriptions",
    "invoiceId": "invoices",
}
ACTIONS = {
    "replay": "Replay",
    "cancel": "Cancel",
}
FIELD_LINKS = {  # a billing row's id column -> the page of what it names
    "subscription_id": "/billing/subscriptions/{}",
    "invoice_id": "/billing/invoices/{}",
    "billing_run_id": "/billing/billing-runs/{}",
    "claimed_by_run": "/runs/{}",
    "customer_id": "/billing/subscriptions?customer={}",
}


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["iso"] = iso
    env.filters["ago"] = ago
    env.tests["web_url"] = web_url
    return env


def web_url(value) -> bool:
    """Whether a stored URL may be a link: http(s) or file (the local storage's) only —
    autoescaping lets `javascript:` and `data:` by."""
    return isinstance(value, str) and value.lower().startswith(("https://", "http://", "file://"))


def ago(ms: int | None) -> str:
    """A duration in ms as `3 s`, `4 min`, `2 h`, `3 d`."""
    if ms is None:
        return ""
    s = abs(ms) / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit}"
    return f"{s:.0f} s"


def _html(start_response, template: str, status: str = "200 OK", **context):
    data = _env().get_template(template).render(**context).encode()
    start_response(
        status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _json(start_response, body) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
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


def _redirect(start_response, location: str):
    start_response("303 See Other", [("Location", location), ("Content-Length", "0")])
    return [b""]


def authorised(settings, environ) -> bool:
    """No password configured: open (serve refuses to listen beyond loopback then)."""
    if not settings.password:
        return True
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).partition(b":")
    except ValueError:
        return False
    # bytes: compare_digest refuses str with non-ASCII characters (it raised: a 500)
    return hmac.compare_digest(user, settings.username.encode()) & hmac.compare_digest(
        password, settings.password.encode()
    )


SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY"),  # the confirmation pages cannot be framed (clickjacking)
    (
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),  # no-referrer made a browser's form POST `Origin: null`
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def _hardened(start_response):
    def start(status, headers, exc_info=None):
        headers = [*headers, *SECURITY_HEADERS]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return start


def _loopback_host(host: str) -> bool:
    """`Host` names this machine's loopback (any port; none at all from an HTTP/1.0 client)."""
    if not host:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOOPBACK_NAMES or name.startswith("127.")


def _same_site(environ) -> bool:
    """A POST from the dashboard's own pages: its browser says so (Sec-Fetch-Site), or its
    Origin names the host it was sent to; a client that sends neither (curl) passes."""
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True
    return origin.split("://", 1)[-1].lower() == environ.get("HTTP_HOST", "").lower()


def run_summary(row: dict, now: int) -> dict:
    waiting = row["status"] in PENDING and row["run_at"] > now
    return {
        "id": row["id"],
        "task": row["task"],
        "status": row["status"],
        "attempts": row["attempt"],
        "queue": row["queue"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "runs_at": iso(row["run_at"]) if waiting else None,
        "runs_in": ago(row["run_at"] - now) if waiting else None,
        "idempotency_key": row["idempotency_key"],
        "error": row["error"],
    }


def chart_svg(data: dict, width: int = 760, height: int = 170) -> str:
    """Stacked bars of finished runs per slot by final status. Only numbers and fixed status
    names go into the markup, so it is safe to insert as is."""
    slots, series = data["slots"], data["series"]
    totals = [sum(series[s][i] for s in series) for i in range(slots)]
    top = max(max(totals, default=0), 1)
    left, plot_h = 34, height - 24
    bar_w = (width - left) / slots
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="throughput-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'data-total="{sum(totals)}">',
        f'<line x1="{left}" y1="{plot_h}" x2="{width}" y2="{plot_h}" stroke="#bbb"/>',
        f'<text x="{left - 4}" y="10" font-size="10" text-anchor="end">{top}</text>',
        f'<text x="{left - 4}" y="{plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for i in range(slots):
        y = plot_h
        for status, counts in series.items():
            n = counts[i]
            if not n:
                continue
            h = n / top * (plot_h - 6)
            y -= h
            parts.append(
                f'<rect class="bar {status}" x="{left + i * bar_w + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="{COLOURS[status]}">'
                f"<title>{n} {status}</title></rect>"
            )
    start = iso(data["start"]) or ""
    parts.append(
        f'<text x="{left}" y="{height - 4}" font-size="10">{start[11:16]} UTC</text>'
        f'<text x="{width}" y="{height - 4}" font-size="10" text-anchor="end">now</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _csrf_ok(expected: str, form: dict) -> bool:
    return hmac.compare_digest(form.get("csrf", [""])[0].encode(), expected.encode())


class Dashboard:
    def __init__(self, runtime):
        self.rt = runtime
        self.settings = runtime.settings.dashboard
        self._secret = secrets.token_bytes(32)  # per process: tokens die with it

    def csrf_token(self, action: str) -> str:
        """The token a form for `action` (its path) carries; checked on POST."""
        return hmac.new(self._secret, action.encode(), hashlib.sha256).hexdigest()

    def __call__(self, environ, start_response):
        start_response = _hardened(start_response)
        if not self.settings.password and not _loopback_host(environ.get("HTTP_HOST", "")):
            # Without a password the dashboard is for this machine only: a page asked for under
            # another host name came through a proxy that publishes it, or from a web page that
            # rebound its own name to 127.0.0.1 (DNS rebinding) to read the billing data.
            return _text(
                start_response,
                "403 Forbidden",
                "the dashboard answers to localhost only unless [dashboard] password is set "
                "(forward only /webhooks/ from a proxy)",
            )
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
        parts = path.split("/")
        if path == "/":
            return self.overview(start_response, query)
        if path == "/api/overview":
            return _json(start_response, self.overview_data(query.get("range", "hour")))
        if path == "/static/live.js":
            data = (STATIC / "live.js").read_bytes()
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/javascript; charset=utf-8"),
                    ("Content-Length", str(len(data))),
                ],
            )
            return [data]
        if path == "/runs":
            return self.runs(start_response, query)
        if parts[1] == "runs" and len(parts) == 3:
            return self.run(start_response, parts[2])
        if parts[1] == "runs" and len(parts) == 4 and parts[3] in ACTIONS:
            return self.action(environ, start_response, parts[2], parts[3], method)
        if path == "/workers":
            return self.workers(start_response, query)
        if path == "/schedules":
            return self.schedules(start_response)
        if path == "/events":
            return self.events(start_response, query)
        if parts[1] == "events" and len(parts) == 3:
            return self.event(start_response, parts[2])
        if parts[1] == "events" and len(parts) == 4 and parts[3] == "raw":
            return self.event(start_response, parts[2], raw=True)
        if parts[1] == "billing" and len(parts) == 3 and parts[2] in BILLING_KINDS:
            return self.billing_list(start_response, parts[2], query)
        if parts[1] == "billing" and len(parts) == 4 and parts[2] in BILLING_KINDS:
            return self.billing_object(start_response, parts[2], parts[3])
        if path.startswith("/billing/billing-runs/") and len(parts) == 5 and parts[4] == "retry":
            return self.billing_retry(environ, start_response, parts[3], method)
        return _text(start_response, "404 Not Found", f"no page {path}")

    # -- overview ------------------------------------------------------------------------
    def overview_data(self, span: str = "hour") -> dict:
        span = span if span in RANGES else "hour"
        store, now = self.rt.store, self.rt.clock.now_ms()
        counts = insights.status_counts(store)
        oldest = insights.oldest_waiting(store, now)
        workers = worker_presence.report(store, now, DAY_MS)
        chart = insights.throughput(store, now, *RANGES[span])
        return {
            "now": iso(now),
            "range": span,
            "counts": counts,
            "total": sum(counts.values()),
            "queues": insights.queue_counts(store),
            "oldest": None
            if oldest is None
            else {**oldest, "run_at": iso(oldest["run_at"]), "waited": ago(oldest["waited_ms"])},
            "workers": [
                {
                    "id": w["id"],
                    "host": w["host"],
                    "pid": w["pid"],
                    "queues": w["queues"],
                    "concurrency": w["concurrency"],
                    "in_flight": w["in_flight"],
                    "processed": w["processed"],
                    "state": w["state"],
                    "heartbeat": ago(now - w["heartbeat_at"]),
                }
                for w in workers
            ],
            "alive": sum(1 for w in workers if w["state"] == "alive"),
            "chart": chart_svg(chart),
            "finished": {s: sum(v) for s, v in chart["series"].items()},
        }

    def overview(self, start_response, query):
        span = query.get("range") if query.get("range") in RANGES else "hour"
        data = self.overview_data(span)
        now = self.rt.clock.now_ms()
        return _html(
            start_response,
            "overview.html.j2",
            title="Overview",
            data=data,
            statuses=STATUSES,
            terminal=[s.value for s in ORDER if s in TERMINAL],
            colours=COLOURS,
            durations=insights.durations(self.rt.store, now - DAY_MS),
            upcoming=[
                {**u, "runs_at": iso(u["run_at"]), "runs_in": ago(u["run_at"] - now)}
                for u in insights.upcoming(self.rt.store, now, 10)
            ],
            bucket_min=RANGES[span][1] // MINUTE_MS,
        )

    # -- runs ----------------------------------------------------------------------------
    def runs(self, start_response, query):
        size = self.settings.page_size
        page = max(int(query.get("page", "1")) if query.get("page", "1").isdigit() else 1, 1)
        status = query.get("status") if query.get("status") in STATUSES else None
        task = query.get("task") or None
        text = (query.get("q") or "").strip() or None
        bounds = {}
        for name in ("since", "until"):
            try:
                bounds[name] = parse_iso(query[name]) if query.get(name) else None
            except ValueError:
                bounds[name] = None
        rows = insights.search_runs(
            self.rt.store,
            text=text,
            status=status,
            task=task,
            since=bounds["since"],
            until=bounds["until"],
            limit=size + 1,
            offset=(page - 1) * size,
        )
        if text and len(rows) == 1 and rows[0]["id"] == text and page == 1:
            return _redirect(start_response, f"/runs/{text}")
        now = self.rt.clock.now_ms()
        queues = [
            {"queue": q, "due": due, "executing": running, "oldest": wait}
            for q, due, running, wait in self.rt.store.queue_depths(now)
        ]
        filters = {
            "q": text,
            "status": status,
            "task": task,
            "since": query.get("since") if bounds["since"] is not None else None,
            "until": query.get("until") if bounds["until"] is not None else None,
        }

        def link(p):
            return "/runs?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": p})

        return _html(
            start_response,
            "runs.html.j2",
            title="Runs",
            runs=[run_summary(r, now) for r in rows[:size]],
            queues=queues,
            statuses=STATUSES,
            tasks=insights.tasks_seen(self.rt.store),
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
        now = self.rt.clock.now_ms()
        shown = {
            k: (iso(v) if k.endswith("_at") and isinstance(v, int) else v) for k, v in row.items()
        }
        if row["status"] in PENDING and row["run_at"] > now:
            shown["runs_in"] = ago(row["run_at"] - now)
        logs = [{**line, "at": iso(line["at"])} for line in self.rt.store.logs(run_id)]
        children = [
            run_summary(c, now) for c in self.rt.store.list_runs(parent_id=run_id, limit=200)
        ]
        return _html(
            start_response,
            "run.html.j2",
            title=f"Run {run_id}",
            run=shown,
            payload=_pretty(row["payload"]),
            result=_pretty(row["result"]) if row["result"] else "",
            attempts=self.rt.store.attempts(run_id),
            logs=logs,
            children=children,
            billing_links=billing_links(row),
            allow_actions=self.settings.allow_actions,
            can_cancel=row["status"] in PENDING or row["status"] == RunStatus.EXECUTING,
            can_replay=row["status"] in TERMINAL,  # one not ended would run twice (409)
            retry_billing_run=self._failed_billing_run(row),
        )

    def _failed_billing_run(self, row: dict) -> str | None:
        """The failed billing run a failed run's payload names (its page offers the retry)."""
        from flowjobs.billing import enums as E
        from flowjobs.billing.views import billing_run_status
        from flowjobs.errors import NotFound

        if row["status"] != RunStatus.FAILED:
            return None
        for _label, url, object_id in billing_links(row):
            if url.startswith("/billing/billing-runs/"):
                try:
                    failed = (
                        billing_run_status(self.rt.billing, object_id) == E.BillingRunStatus.FAILED
                    )
                except NotFound:
                    return None
                return object_id if failed else None
        return None

    def _refused(self, environ, start_response, path: str):
        """None when a POST to `path` carries its CSRF token and the confirmation; else the
        answer refusing it."""
        if not _same_site(environ):
            return _text(start_response, "403 Forbidden", "a form of another site: refused")
        kind = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return _text(start_response, "415 Unsupported Media Type", "a form post is expected")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            form = parse_qs(environ["wsgi.input"].read(min(max(length, 0), 4096)).decode())
        except (ValueError, UnicodeDecodeError):
            return _text(start_response, "400 Bad Request", "not a form this page sends")
        if not _csrf_ok(self.csrf_token(path), form):
            return _text(start_response, "403 Forbidden", "missing or wrong CSRF token")
        if form.get("confirm") != ["yes"]:
            action = path.rsplit("/", 1)[1]
            return _text(start_response, "400 Bad Request", f"{action} needs the confirmation form")
        return None

    def _read_only(self, start_response):
        return _text(
            start_response,
            "403 Forbidden",
            "the dashboard is read-only ([dashboard] allow_actions)",
        )

    def billing_retry(self, environ, start_response, billing_run_id, method):
        from flowjobs.billing.models import BillingRun
        from flowjobs.billing.retry import retry_billing_run
        from flowjobs.errors import BadInput, NotFound

        if not self.settings.allow_actions:
            return self._read_only(start_response)
        with self.rt.billing.unit() as s:
            found = s.get(BillingRun, billing_run_id)
            run = (
                None
                if found is None
                else {
                    "id": found.id,
                    "status": found.status,
                    "period": found.billing_period_id,
                    "subscription": found.subscription_id,
                }
            )
        if run is None:
            return _text(start_response, "404 Not Found", f"no billing run {billing_run_id}")
        path = f"/billing/billing-runs/{billing_run_id}/retry"
        if method != "POST":
            return _html(
                start_response,
                "confirm.html.j2",
                title="Retry this billing run?",
                run=run,
                action="retry",
                path=path,
                csrf=self.csrf_token(path),
                back=f"/billing/billing-runs/{billing_run_id}",
            )
        refused = self._refused(environ, start_response, path)
        if refused is not None:
            return refused
        try:
            done = retry_billing_run(self.rt.billing, billing_run_id)
        except (BadInput, NotFound) as exc:
            return _text(start_response, "409 Conflict", str(exc))
        return _redirect(start_response, f"/billing/billing-runs/{done.billing_run}")

    def action(self, environ, start_response, run_id, action, method):
        if not self.settings.allow_actions:
            return self._read_only(start_response)
        row = self.rt.store.get_run(run_id)
        if row is None:
            return _text(start_response, "404 Not Found", f"no run {run_id}")
        path = f"/runs/{run_id}/{action}"
        if method != "POST":
            return _html(
                start_response,
                "confirm.html.j2",
                title=f"{ACTIONS[action]}?",
                run=row,
                action=action,
                path=path,
                csrf=self.csrf_token(path),
                back=f"/runs/{run_id}",
            )
        refused = self._refused(environ, start_response, path)
        if refused is not None:
            return refused
        if action == "cancel":
            outcome = self.rt.store.cancel(run_id, self.rt.clock.now_ms())
            if outcome not in ("canceled", "requested", "abandoned"):
                return _text(
                    start_response, "409 Conflict", f"run {run_id} is {outcome}; nothing to cancel"
                )
            return _redirect(start_response, f"/runs/{run_id}")
        if row["status"] not in TERMINAL:  # as `runs replay` without --force
            return _text(
                start_response,
                "409 Conflict",
                f"run {run_id} is {row['status']}, not ended: a replay would run its task a "
                "second time beside it; cancel it first",
            )
        result = self.rt.client.replay(row)
        return _redirect(start_response, f"/runs/{result.id}")

    # -- workers, schedules, inbox ----------------------------------------------------------
    def workers(self, start_response, query):
        now = self.rt.clock.now_ms()
        rows = [
            {
                **w,
                "started": iso(w["started_at"]),
                "heartbeat": ago(now - w["heartbeat_at"]),
                "stopped": iso(w["stopped_at"]),
            }
            for w in worker_presence.report(self.rt.store, now, 7 * DAY_MS)
        ]
        return _html(start_response, "workers.html.j2", title="Workers", workers=rows)

    def schedules(self, start_response):
        health = {h["id"]: h for h in self.rt.scheduler.health()}
        rows = [
            {**d, **{k: health.get(d["id"], {}).get(k, []) for k in ("missing", "duplicated")}}
            for d in self.rt.scheduler.describe()
        ]
        return _html(start_response, "schedules.html.j2", title="Schedules", schedules=rows)

    def events(self, start_response, query):
        from flowjobs.outbound.views import delivery_rows
        from flowjobs.webhooks.inbox import listing

        source = query.get("source") if query.get("source") in ("stripe", "supabase") else None
        status = query.get("status") or None
        rows = listing(self.rt.billing, source, query.get("type") or None, status, 200)
        deliveries = delivery_rows(self.rt.billing, limit=200)  # Flowglad events to merchants
        return _html(
            start_response,
            "events.html.j2",
            title="Webhook inbox",
            events=rows,
            filters={"source": source, "status": status, "type": query.get("type") or ""},
            deliveries=deliveries,
        )

    def event(self, start_response, inbox_id, raw: bool = False):
        from flowjobs.errors import NotFound
        from flowjobs.webhooks.inbox import load

        try:
            row = load(self.rt.billing, inbox_id)
        except NotFound:
            return _text(start_response, "404 Not Found", f"no inbox event {inbox_id}")
        if raw:  # the bytes as received (what the signature was checked on), never rendered
            data = bytes(row.body or b"")
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Content-Length", str(len(data))),
                ],
            )
            return [data]
        body = bytes(row.body or b"").decode("utf-8", "replace")
        return _html(
            start_response,
            "event.html.j2",
            title=f"Inbox event {inbox_id}",
            event=row,
            body=_pretty(body),
            headers=json.dumps(row.headers or {}, indent=2),
        )

    # -- billing -------------------------------------------------------------------------
    def billing_list(self, start_response, kind, query):
        from flowjobs.billing.views import LISTS, list_rows

        title, list_kind, show_kind = BILLING_KINDS[kind]
        valid = [v.value for v in LISTS[list_kind][1]]
        status = query.get("status") if query.get("status") in valid else None
        customer = query.get("customer") or None
        organization = query.get("organization") or None
        rows = list_rows(
            self.rt.billing, list_kind, status, customer, limit=200, organization=organization
        )
        return _html(
            start_response,
            "billing_list.html.j2",
            title=title,
            kind=kind,
            rows=[money_row(r) for r in rows],
            statuses=valid,
            filters={
                "status": status,
                "customer": customer or "",
                "organization": organization or "",
            },
            linkable=show_kind is not None,
        )

    def billing_object(self, start_response, kind, object_id):
        from flowjobs.billing.enums import BillingRunStatus
        from flowjobs.billing.views import display, show
        from flowjobs.errors import NotFound

        title, _list_kind, show_kind = BILLING_KINDS[kind]
        if show_kind is None:
            return _text(start_response, "404 Not Found", f"no page for one of {kind}")
        try:
            shown = show(self.rt.billing, show_kind, object_id)
        except NotFound as exc:
            return _text(start_response, "404 Not Found", str(exc))
        main_key = {"subscription": "subscription", "invoice": "invoice"}.get(
            show_kind, "billingRun"
        )
        main = shown[main_key]
        currency = main.get("currency") or next(
            (p.get("currency") for p in shown.get("payments", [])), None
        )
        money = shown.get("money")
        related = {  # rows without a currency of their own (invoice lines) take the object's
            name: [money_row(r, currency) for r in rows]
            for name, rows in shown.items()
            if isinstance(rows, list)
        }
        now = self.rt.clock.now_ms()
        mentioning = insights.runs_mentioning(self.rt.store, object_id)
        seen = {r["id"] for r in mentioning}
        children = []
        if kind == "billing-runs":  # what its outcome set off: PDFs, emails, event deliveries
            for name in ("payments", "invoices"):
                for r in shown.get(name, []):
                    for c in insights.runs_mentioning(self.rt.store, r["id"]):
                        if c["id"] not in seen:
                            seen.add(c["id"])
                            children.append(c)
            children.sort(key=lambda c: (c["created_at"], c["id"]))
        runs = [run_summary(r, now) for r in mentioning]
        return _html(
            start_response,
            "billing_object.html.j2",
            title=f"{title[:-1] if title.endswith('s') else title} {object_id}",
            kind=kind,
            fields=[(k, v, _field_link(k, main.get(k))) for k, v in display(main, currency)],
            main=main,
            money=[
                (k, format_amount(v, money.get("currency") or currency))
                for k, v in money.items()
                if isinstance(v, int)
            ]
            if money
            else [],
            related=related,
            runs=runs,
            children=[run_summary(c, now) for c in children],
            can_retry=self.settings.allow_actions
            and kind == "billing-runs"
            and main.get("status") == BillingRunStatus.FAILED,
        )


def _field_link(key: str, value) -> str | None:
    """The page a billing row's id column names (its subscription, invoice, run …)."""
    if key in FIELD_LINKS and isinstance(value, str) and value:
        return FIELD_LINKS[key].format(value)
    return None


def format_amount(amount: int | None, currency: str | None) -> str:
    from flowjobs.billing.money import format_money

    if amount is None:
        return ""
    return format_money(amount, currency) if currency else str(amount)


def money_row(r: dict, currency: str | None = None) -> dict:
    """A billing row with its money fields as money in its currency (`$199.00`), or in
    `currency` when the row has none (an invoice's lines)."""
    from flowjobs.billing.views import MONEY_FIELDS

    currency = r.get("currency") or currency
    out = dict(r)
    for k in (*MONEY_FIELDS, "total", "due"):
        if isinstance(r.get(k), int):
            out[k] = format_amount(r[k], currency)
    return out


def billing_links(row: dict) -> list[tuple[str, str, str]]:
    """(label, url, id) for the billing objects a run's payload names."""
    try:
        payload = json.loads(row["payload"] or "{}")
    except ValueError:
        return []
    if not isinstance(payload, dict):
        return []
    links = []
    for key, kind in PAYLOAD_LINKS.items():
        value = payload.get(key)
        if isinstance(value, str) and value:
            links.append((BILLING_KINDS[kind][0][:-1], f"/billing/{kind}/{value}", value))
    return links


def _pretty(text: str | None) -> str:
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text or ""
