"""`flowjobs serve`: webhook intake over HTTP (the dashboard joins it later)."""

from __future__ import annotations

import logging
import os
import signal

import typer

log = logging.getLogger("flowjobs.serve")
# Where serve listens is said whatever --log-level: with `--port 0` it is the only way to know.
address_log = logging.getLogger("flowjobs.serve.address")
address_log.setLevel(logging.INFO)


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, "--host", metavar="HOST", help="Address to bind (default [server] host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        metavar="PORT",
        min=0,
        max=65535,
        help="Port (default [server] port, 8080; 0 picks a free one).",
    ),
):
    """Receive Stripe and Supabase webhooks (POST /webhooks/stripe/livemode|testmode,
    /webhooks/supabase): store each in the inbox, then let the workers handle it. Also serves
    the dashboard at / and Prometheus metrics at /metrics."""
    from flowjobs.errors import BadInput
    from flowjobs.http.server import make_server

    rt = ctx.obj.runtime()
    settings = rt.settings.server
    bind = host or settings.host
    wanted = settings.port if port is None else port
    _resolvable(bind, wanted)  # a typo in --host is named as such, before any other complaint
    if bind not in ("127.0.0.1", "localhost", "::1") and not rt.settings.dashboard.password:
        raise BadInput(
            f"serve would listen on {bind} with the dashboard open to anyone: set [dashboard] password "
            "(FLOWJOBS_DASHBOARD_PASSWORD), or listen on 127.0.0.1 behind a proxy"
        )
    rt.store  # noqa: B018 - migrate before accepting requests
    try:
        server, app = make_server(rt, bind, wanted)
    except OSError as exc:  # a taken port, an address this machine does not have
        raise BadInput(_bind_problem(exc, bind, wanted)) from None
    except ValueError:  # waitress: a host name that does not resolve
        raise BadInput(
            f"cannot listen on {bind}:{wanted}: no such address (check --host)"
        ) from None
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    # the SQLite file went away: stop taking requests, exit 4 (closed by the main thread, as on
    # SIGTERM: a request thread's close() does not wake the server's loop)
    app.on_gone = lambda: os.kill(os.getpid(), signal.SIGTERM)
    # log lines like every other, JSON when piped (`url` a field), text on a terminal
    url = f"http://{server.effective_host}:{server.effective_port}"
    address_log.info("listening on %s", url, extra={"url": url})
    for problem in _refused_everything(rt.settings):
        log.warning("%s", problem)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except OSError:
        pass  # closed by SIGTERM
    finally:
        server.close()
    if app.gone is not None:
        raise app.gone
    log.info("serve stopped")  # as a worker says it stopped (it exited without a word)


def _resolvable(host: str, port: int) -> None:
    import socket

    from flowjobs.errors import BadInput

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadInput(f"cannot listen on {host}:{port}: no such address (check --host)") from None


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use by another program: choose another with --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} (ports below 1024 need privileges): choose another with --port"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host)"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _refused_everything(settings) -> list[str]:
    """The webhook routes that will refuse every event as configured (no secret or token to
    check them with): said at start, not found out from the senders' failure reports."""
    from flowjobs.webhooks.replay import endpoint_secrets

    problems = []
    for mode, live, names in (
        ("livemode", True, "webhook_secret"),
        ("testmode", False, "test_webhook_secret or webhook_secret"),
    ):
        if not any(secret for _, secret in endpoint_secrets(settings, live)):
            problems.append(
                f"POST /webhooks/stripe/{mode} refuses every event (400: not signed) until "
                f"[stripe] {names} is set"
            )
    if not settings.supabase.webhook_token:
        problems.append(
            "POST /webhooks/supabase refuses every event (401) until [supabase] webhook_token "
            "is set"
        )
    return problems
