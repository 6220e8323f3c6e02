"""A real HTTP proxy on loopback in front of localstripe that can make Stripe slow or failing.

Every request is forwarded to localstripe at once (so Stripe *acts* on it); what happens to
the answer depends on the proxy's mode for that request:
- `hold`: the answer is kept until `release()` (or 60 s) — longer than the client's timeout,
  so the client sees a read timeout after sending: an unknown outcome;
- `fail`: the request is not forwarded; a 500 `api_error` is answered instead;
- otherwise the answer is passed through.

`rules` is a list of (method, path regex, mode); the first match wins. `seen` records
(method, path, mode) of every request.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class StripeProxy:
    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.host, self.port = target.hostname, target.port
        self.rules: list[tuple[str, str, str]] = []
        self.seen: list[tuple[str, str, str]] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = outer._mode(self.command, self.path)
                with outer._lock:
                    outer.seen.append((self.command, self.path, mode))
                if mode == "fail":
                    return self._answer(
                        500,
                        {"Content-Type": "application/json"},
                        json.dumps(
                            {"error": {"type": "api_error", "message": "proxy: failing"}}
                        ).encode(),
                    )
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                upstream = http.client.HTTPConnection(outer.host, outer.port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    }
                finally:
                    upstream.close()
                if mode == "hold":
                    outer._released.wait(60)  # Stripe acted; its answer comes too late
                self._answer(response.status, kept, payload)

            def _answer(self, status, headers, payload):
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _mode(self, method: str, path: str) -> str:
        for rule_method, pattern, mode in list(self.rules):
            if rule_method in (method, "*") and re.search(pattern, path):
                return mode
        return "pass"

    def set(self, *rules: tuple[str, str, str]) -> None:
        """Replace the rules; answers held so far stay held until `release()`."""
        self.rules = list(rules)

    def release(self) -> None:
        """Let every held answer go (to clients that stopped waiting long ago); new holds wait again."""
        self._released.set()
        self._released = threading.Event()

    def count(self, method: str, pattern: str, mode: str | None = None) -> int:
        return sum(
            1
            for m, p, md in self.seen
            if m == method and re.search(pattern, p) and mode in (None, md)
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.server.shutdown()
        self.server.server_close()


def forget_idempotency_keys(localstripe_url: str) -> None:
    """Make localstripe forget every idempotency key, as Stripe does after 24 hours."""
    import urllib.request

    request = urllib.request.Request(localstripe_url + "/_config/idempotency", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
