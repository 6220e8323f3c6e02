"""A loopback HTTP server answering JSON, for tests that stand a small fake in front of a real
HTTP client (the stripe SDK): `answer(request)` returns (status, headers, body) for each request
and may block (a server slower than the client's timeout)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonStub:
    """`with JsonStub(answer) as stub:` serves on a free loopback port (`stub.url`) until the
        block ends. `answer` gets {method, path, auth, key, body} (auth: the Authorization header, key:
    the Idempotency-Key one) and returns (status, headers, body);
        every request is kept in `stub.requests`, in order."""

    def __init__(self, answer: Callable[[dict], tuple[int, dict, object]]):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = {
                    "method": self.command,
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "key": self.headers.get("Idempotency-Key"),
                    "body": self.rfile.read(length).decode(),
                }
                outer.requests.append(request)
                status, headers, body = answer(request)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
