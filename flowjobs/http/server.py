"""HTTP intake (`flowjobs serve`): a WSGI app served by waitress.

    POST /webhooks/stripe/{livemode|testmode}   Stripe-Signature verified on the raw bytes
    POST /webhooks/supabase                     Authorization: Bearer <[supabase] webhook_token>
    GET  /healthz                               200 when the database answers
    GET  /metrics                               Prometheus text (flowjobs.ops.metrics)
    GET  /, /api/overview, /runs, /workers, ...      the dashboard (flowjobs.http.dashboard)

200 is returned only after the event is committed to the inbox (with its handler's run);
the handler runs on the workers. A request that fails verification, or whose body is not an
event of the shape flowjobs reads (flowjobs.webhooks.shapes), is recorded as `rejected` with
the reason and answered 400 (Stripe redelivers). Bodies are capped (`[server] max_body`,
413 above it), slow clients time out (`[server] timeout`), and no request can take the
process down: an unexpected error is a 500 with a one-line JSON body.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time

from flowjobs.errors import BadInput, DatabaseError, DatabaseGone

log = logging.getLogger("flowjobs.serve")
access = logging.getLogger("flowjobs.access")
STRIPE_PATH = re.compile(r"^/webhooks/stripe/([^/]+)/?$")


def _reply(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


GONE_STOP_DELAY = 0.5  # seconds between the first 503 for a vanished database file and the stop


class WebhookApp:
    def __init__(self, runtime):
        self.rt = runtime
        self.settings = runtime.settings
        self.max_body = self.settings.server.max_body_bytes()
        from flowjobs.http.dashboard.app import Dashboard

        self.dashboard = Dashboard(runtime)
        self.gone: DatabaseGone | None = None  # the database file went away: serve exits 4
        self.on_gone = None  # called then (serve closes the server)

    def __call__(self, environ, start_response):
        """Every request is answered and written to the access log (logger flowjobs.access:
        method, path, status, bytes, milliseconds, client)."""
        started = time.perf_counter()
        seen: dict = {}

        def recording(status, headers, *exc_info):
            seen["status"] = int(status.split(" ", 1)[0])
            length = next((v for k, v in headers if k.lower() == "content-length"), None)
            seen["bytes"] = int(length) if length and length.isdigit() else None
            return start_response(status, headers, *exc_info)

        try:
            return self._answer(environ, recording)
        finally:
            fields = {
                "method": environ.get("REQUEST_METHOD", "-"),
                "path": environ.get("PATH_INFO", "/"),
                "status": seen.get("status"),
                "bytes": seen.get("bytes"),
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "remote": environ.get("REMOTE_ADDR", "-"),
            }
            access.info(
                "%s %s %s %s %.1fms %s",
                fields["method"],
                # decoded `%0a` would start a forged line of its own in the text log
                fields["path"].encode("unicode_escape").decode("ascii"),
                fields["status"] or "-",
                fields["bytes"] if fields["bytes"] is not None else "-",
                fields["duration_ms"],
                fields["remote"],
                extra=fields,
            )

    def _answer(self, environ, start_response):
        try:
            return self._route(environ, start_response)
        except DatabaseGone as exc:  # no request can be kept from now on: 503, and stop
            if self.gone is None:
                log.error("%s (exit code 4)", exc)
                self.gone = exc
                if self.on_gone is not None:  # once this 503 has gone out
                    threading.Timer(GONE_STOP_DELAY, self.on_gone).start()
            return _reply(
                start_response, "503 Service Unavailable", {"error": "database unavailable"}
            )
        except DatabaseError as exc:
            log.error("database unavailable: %s", exc)
            return _reply(
                start_response, "503 Service Unavailable", {"error": "database unavailable"}
            )
        except Exception as exc:  # never let one request take the server down
            translated = self.rt.db.translate(exc)  # a driver's error the store did not name
            if translated is not None and self.rt.db.is_transient(exc):  # (a read during a
                # PostgreSQL restart): it passes, not a bug
                log.error("database unavailable: %s", translated)
                return _reply(
                    start_response, "503 Service Unavailable", {"error": "database unavailable"}
                )
            log.exception(
                "unexpected error handling %s %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
            )
            return _reply(start_response, "500 Internal Server Error", {"error": "internal error"})

    def _route(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if path == "/healthz" or method not in ("GET", "HEAD"):
            # SQLite: a file deleted or replaced under this server took what it wrote into the
            # old file and answered as if kept (a webhook's 200, a dashboard action's), and its
            # health check stayed green; a stat a request
            self.rt.db.ensure_same_file("serve")
        if path == "/healthz":
            return self._health(start_response)
        if path == "/metrics" and method == "GET":
            from flowjobs.http.dashboard.app import authorised
            from flowjobs.ops.metrics import exposition

            if not authorised(self.settings.dashboard, environ):
                return _reply(
                    start_response, "401 Unauthorized", {"error": "authentication required"}
                )
            data = exposition(self.rt)
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                    ("Content-Length", str(len(data))),
                ],
            )
            return [data]
        stripe_path = STRIPE_PATH.match(path)
        if stripe_path or path.rstrip("/") == "/webhooks/supabase":
            if method != "POST":
                return _reply(start_response, "405 Method Not Allowed", {"error": "use POST"})
            body = self._body(environ)
            if body is None:
                return _reply(
                    start_response,
                    "413 Payload Too Large",
                    {"error": f"body over {self.max_body} bytes"},
                )
            if stripe_path:
                return self._stripe(environ, start_response, stripe_path.group(1), body)
            return self._supabase(environ, start_response, body)
        if not path.startswith("/webhooks/"):
            return self.dashboard(environ, start_response)
        return _reply(start_response, "404 Not Found", {"error": f"no route for {path}"})

    def _body(self, environ) -> bytes | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.max_body:
            return None
        data = environ["wsgi.input"].read(min(length, self.max_body + 1)) if length else b""
        return None if len(data) > self.max_body else data

    def _health(self, start_response):
        self.rt.db.ping()
        return _reply(start_response, "200 OK", {"status": "ok"})

    def _stripe(self, environ, start_response, mode: str, body: bytes):
        from flowjobs.webhooks import inbox, parse
        from flowjobs.webhooks.replay import endpoint_secrets

        if mode not in ("livemode", "testmode"):
            return _reply(
                start_response, "400 Bad Request", {"error": "mode must be livemode or testmode"}
            )
        headers = {
            "Stripe-Signature": environ.get("HTTP_STRIPE_SIGNATURE", ""),
            "Content-Type": environ.get("CONTENT_TYPE", ""),
        }
        headers = {k: v for k, v in headers.items() if v}
        live = mode == "livemode"
        # the signature is checked on the raw bytes first, so a rejected row says whether Stripe sent it
        signed = parse.Incoming("stripe", body, {}, headers)
        parse.verify_stripe(
            signed, endpoint_secrets(self.settings, live), self.settings.stripe.webhook_tolerance
        )
        try:
            incoming = parse.parse("stripe", body, headers)  # strict JSON, then the shapes' models
        except BadInput as exc:
            return self._reject("stripe", body, headers, str(exc), start_response, signed)
        incoming.signature, incoming.signature_detail = signed.signature, signed.signature_detail
        try:
            inbox.check(
                incoming,
                expected_live=live,
                require_signature=True,
                allow_mode_mismatch=False,
                over_http=True,
            )
        except parse.Rejected as exc:
            return self._reject("stripe", body, headers, str(exc), start_response, incoming)
        result = inbox.ingest(self.rt.billing, incoming, via="http")
        return _reply(start_response, "200 OK", {"received": True, **result.as_dict()})

    def _supabase(self, environ, start_response, body: bytes):
        from flowjobs.webhooks import inbox, parse

        token = self.settings.supabase.webhook_token
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _reply(
                start_response, "401 Unauthorized", {"error": "bad or missing bearer token"}
            )
        try:
            incoming = parse.parse("supabase", body, {})
        except BadInput as exc:
            authorised = parse.Incoming(
                "supabase", body, {}, signature="verified", signature_detail="bearer token"
            )
            return self._reject("supabase", body, {}, str(exc), start_response, authorised)
        incoming.signature, incoming.signature_detail = "verified", "bearer token"
        result = inbox.ingest(self.rt.billing, incoming, via="http")
        return _reply(start_response, "200 OK", {"received": True, **result.as_dict()})

    def _reject(self, source, body, headers, reason, start_response, incoming=None):
        from flowjobs.webhooks.inbox import record_rejected

        inbox_id = record_rejected(self.rt.billing, source, body, headers, reason, incoming)
        log.warning("rejected %s webhook %s: %s", source, inbox_id, reason)
        return _reply(start_response, "400 Bad Request", {"error": reason, "inboxId": inbox_id})


def make_server(runtime, host: str, port: int):
    """A waitress server for the app (not yet serving), and the app; `.effective_port` is the
    bound port."""
    from waitress.server import create_server

    s = runtime.settings.server
    app = WebhookApp(runtime)
    server = create_server(
        app,
        host=host,
        port=port,
        threads=s.threads,
        max_request_body_size=s.max_body_bytes(),
        channel_timeout=int(max(s.timeout, 1)),
        cleanup_interval=int(max(s.timeout / 2, 1)),  # how often idle channels are reaped
        ident="flowjobs",
        clear_untrusted_proxy_headers=True,
    )
    return server, app  # waitress wraps the app: its `application` is not this object
