"""Run localstripe (a stateful fake Stripe server) the way flowjobs' tests and demo need it.

    python scripts/localstripe_server.py [--port 0]

Prints one line, `listening on http://127.0.0.1:PORT`, once it accepts connections, then
serves until SIGTERM/SIGINT. Three fixes over the stock `localstripe` command (see
../shared/testing.md):

1. binds 127.0.0.1 only (the stock command listens on every interface), on a free port when
   --port is 0;
2. keeps its store in memory: the stock server pickles the whole store to a shared
   /tmp/localstripe.pickle after every write, which slows writes ~7x and leaks state between
   servers;
3. honours `Idempotency-Key` like Stripe: a repeated (key, method, path) with the same body
   replays the first response; with a different body it is refused with Stripe's 400
   `idempotency_error`. (Stock localstripe ignores the header, so a retried charge charged
   twice.) `DELETE /_config/idempotency` forgets every key, as Stripe does after 24 hours:
   tests use it to prove that a late retry still cannot charge twice;
4. accepts `off_session` when confirming a PaymentIntent, as Stripe does (stock localstripe
   answers 400 "Unexpected off_session"); it changes nothing there.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import socket
import sys


def _patch_store() -> None:
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None


def _patch_confirm() -> None:
    """Accept `off_session` on POST /v1/payment_intents/{id}/confirm (before the server module
    turns `extra_apis` into routes)."""
    from localstripe import resources
    from localstripe.errors import UserError

    original = resources.PaymentIntent._api_confirm

    def confirm(id, off_session=None, **kwargs):
        if off_session is not None and resources.try_convert_to_bool(off_session) not in (
            True,
            False,
        ):
            raise UserError(400, "Bad request")
        return original(id, **kwargs)

    resources.extra_apis[:] = [
        (m, u, confirm if f == original else f) for m, u, f in resources.extra_apis
    ]


def idempotency_middleware():
    from aiohttp import web

    seen: dict[tuple, tuple[str, int, bytes, str]] = {}
    locks: dict[tuple, asyncio.Lock] = {}

    @web.middleware
    async def middleware(request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        body = await request.read()
        ident = (request.headers.get("Authorization", ""), key)
        digest = hashlib.sha256(
            request.method.encode() + request.path.encode() + b"\0" + body
        ).hexdigest()
        lock = locks.setdefault(ident, asyncio.Lock())
        async with lock:  # a concurrent request with the same key waits for the first
            if ident in seen:
                first_digest, status, payload, content_type = seen[ident]
                if first_digest != digest:
                    return _idempotency_error(key)
                return web.Response(
                    status=status,
                    body=payload,
                    content_type=content_type,
                    headers={"Idempotent-Replayed": "true"},
                )
            response = await handler(request)
            if response.status < 500:  # Stripe does not keep 5xx results
                payload = response.body if isinstance(response.body, bytes) else b""
                seen[ident] = (digest, response.status, payload, response.content_type)
            return response

    middleware.forget = lambda: (seen.clear(), locks.clear())
    return middleware


def _idempotency_error(key: str):
    from aiohttp import web

    message = (
        f"Keys for idempotent requests can only be used with the same parameters they "
        f"were first used with. Try using a key other than '{key}' if you meant to "
        f"execute a different request."
    )
    body = {"error": {"type": "idempotency_error", "message": message}}
    return web.Response(status=400, text=json.dumps(body), content_type="application/json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _patch_store()
    _patch_confirm()
    from aiohttp import web
    from localstripe import server

    idempotency = idempotency_middleware()
    server.app.middlewares.insert(0, idempotency)

    async def forget_keys(request):
        idempotency.forget()
        return web.Response()

    server.app.router.add_delete("/_config/idempotency", forget_keys)
    server.app.middlewares[:] = [
        m for m in server.app.middlewares if m is not server.save_store_middleware
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections queue from now on, so the announcement below is true
    port = sock.getsockname()[1]
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    async def announce(app):
        print(f"listening on http://127.0.0.1:{port}", flush=True)

    server.app.on_startup.append(announce)
    web.run_app(server.app, sock=sock, print=None, access_log=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
