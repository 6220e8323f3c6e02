"""A merchant's webhook receiver on loopback, for the outbound webhook tests.

It verifies every request with its own implementation of the Standard Webhooks signature
scheme (written from https://www.standardwebhooks.com/ — not flowjobs' signer) and answers
with a scripted sequence of behaviours: an HTTP status, "drop" (close the connection without
answering), "hang" (hold the request until `release` is set, then drop it) or "trickle" (send
an answer's first bytes one every 50 ms, until `release` is set or the client goes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret: str, headers: dict, body: bytes, now: float, tolerance: float = 300) -> bool:
    """Standard Webhooks: key = base64-decode(secret minus "whsec_"); signed content =
    "<webhook-id>.<webhook-timestamp>.<body>"; `webhook-signature` is a space-separated list of
    "<version>,<base64 signature>"; valid when any v1 entry equals HMAC-SHA256 (constant-time
    comparison) and the timestamp is within `tolerance` seconds of now."""
    msg_id, stamp, sigs = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    )
    if not (msg_id and stamp and sigs):
        return False
    try:
        ts = int(stamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    )
    for entry in sigs.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


@dataclass
class Received:
    headers: dict
    body: bytes
    answered: object  # the behaviour used

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    script: list = field(default_factory=list)  # behaviours in order; then `default`
    default: object = 200
    requests: list = field(default_factory=list)
    cond: threading.Condition = field(
        default_factory=threading.Condition
    )  # notified on every request
    hanging: threading.Event = field(default_factory=threading.Event)  # a "hang" request arrived
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    text: bytes | None = None  # the body of every answer (default: "answer <status>")

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(
                    f"the receiver got {len(self.requests)} requests, expected {count}"
                )
            return list(self.requests)


def start(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.cond:
                behaviour = receiver.script.pop(0) if receiver.script else receiver.default
                receiver.requests.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, behaviour)
                )
                receiver.cond.notify_all()
            if behaviour == "hang":
                receiver.hanging.set()
                receiver.release.wait(60)
                behaviour = "drop"
            if behaviour == "trickle":  # an answer one byte at a time, until released
                line = b"HTTP/1.1 200 OK\r\nx-slow: " + b"a" * 400  # ~20 s
                for byte in line:
                    if receiver.release.wait(0.05):
                        break
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        break
                self.close_connection = True
                return
            if behaviour == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            text = receiver.text if receiver.text is not None else f"answer {behaviour}".encode()
            self.send_response(int(behaviour))
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/flowglad"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return server, thread
