"""`flowjobs doctor`: is this installation healthy? Each check says ok, warn or fail, and how
to fix what is not ok. Checks: configuration (the task modules imported and the schedules
resolved as a worker does), database reachability, schema revision, Stripe (the key of the
configured mode) and SMTP reachability, clock skew against the database, and stale workers."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        """`doctor --json`: `fix` is null when there is nothing to fix (as `schedules health`)."""
        fix = self.fix or None
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": fix}


def run_checks(runtime, origin: str = "") -> list[Check]:
    """Every check; nothing is created (no database, no folder) by looking."""
    checks = _configuration(runtime)
    database = _database(runtime, origin)
    checks.append(database)
    if database.status == "ok":
        schema = _schema(runtime)
        checks += [schema, _clock(runtime)]
        if schema.status == "ok":  # the workers' tables as this version knows them
            checks.append(_workers(runtime))
    checks += [_stripe(runtime), _mail(runtime)]
    return checks


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _configuration(rt) -> list[Check]:
    """The configuration as `run-worker`, `tick` and `schedules list` take it: every task module
    imported and every schedule resolved against its task, by the runtime's own `registry` and
    `schedules` (no database needed); what they refuse fails here with their message."""
    from flowjobs.errors import ConfigError

    try:
        tasks = len(rt.registry.all())
        schedules = len(rt.schedules)
    except ConfigError as exc:
        return invalid_configuration(exc.problems, rt.settings.base_dir)
    return [
        Check(
            "configuration",
            "ok",
            f"valid: {_count(tasks, 'task', 'tasks')}, "
            f"{_count(schedules, 'schedule', 'schedules')}",
        )
    ]


def invalid_configuration(problems: list[str], base_dir=None) -> list[Check]:
    """One failing `configuration` check per `field: message` problem, with its fix."""
    return [Check("configuration", "fail", p, _config_fix(p, base_dir)) for p in problems]


def _config_fix(problem: str, base_dir) -> str:
    field = problem.split(": ", 1)[0]
    if field == "tasks.modules":
        where = f"from {base_dir} first, then " if base_dir else "from "
        return (
            "fix the module, or its name in [tasks] modules / FLOWJOBS_TASKS_MODULES "
            f"(modules are imported {where}the Python path)"
        )
    if field.startswith("schedules."):
        sid = field.split(".")[1]
        if field.endswith(".task") or "rejects the schedule payload" in problem:
            return (
                f"fix or remove [schedules.{sid}]: its task must be one `flowjobs tasks list` "
                "shows, and take the schedule payload (payload=SchedulePayload)"
            )
        return f"fix or remove [schedules.{sid}] (see the comments in flowjobs.toml)"
    if field == "tasks":
        return "fix the task's declaration in its module (its id, cron or payload)"
    return "fix flowjobs.toml or the FLOWJOBS_* variables"


def _database(rt, origin: str = "") -> Check:
    from flowjobs.store.db import redact
    from flowjobs.store.inspect import probe

    url = rt.settings.database_url()
    if url.startswith("sqlite:///"):
        from flowjobs.errors import DatabaseError
        from flowjobs.store.db import check_sqlite_version

        try:
            check_sqlite_version()
        except DatabaseError as exc:
            return Check(
                "database", "fail", str(exc), "run flowjobs on a Python with a newer SQLite"
            )
    try:
        found = probe(url, rt.settings.database.busy_timeout)
    except Exception as exc:
        from flowjobs.store.failures import classify, one_line, translate

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else None
        known = translate(exc, path or redact(url), path)
        if known is not None and classify(exc) == "not-sqlite":
            return Check(
                "database",
                "fail",
                str(known),
                "point --database / FLOWJOBS_DATABASE_URL / [database] url at flowjobs' database",
            )
        if known is not None and "read-only" in str(known):
            return _read_only(str(known))
        return Check(
            "database",
            "fail",
            f"{redact(url)}: {one_line(exc)}",
            "check [database] url (or FLOWJOBS_DATABASE_URL / --database) and that the server is running",
        )
    came = f" ({origin})" if origin else ""
    fix = (
        "run `flowjobs db upgrade` to create it (any command that writes, such as "
        "`flowjobs trigger`, also does), or point --database / FLOWJOBS_DATABASE_URL / "
        "[database] url at the existing one"
    )
    if not found.exists:
        from flowjobs.store.failures import folder_read_only, unusable_path

        problem = unusable_path(found.where) if url.startswith("sqlite:///") else None
        if problem:
            return Check(
                "database",
                "fail",
                f"no database can be at {found.where}{came}: {problem}",
                "point --database / FLOWJOBS_DATABASE_URL / [database] url at a file in an "
                "existing folder",
            )
        if url.startswith("sqlite:///") and folder_read_only(url[len("sqlite:///") :]):
            return Check(
                "database",
                "fail",
                f"no database yet at {found.where}{came}, and its folder is read-only: "
                "flowjobs cannot create it there",
                "point --database / FLOWJOBS_DATABASE_URL / [database] url at a writable folder",
            )
        return Check("database", "warn", f"no database yet at {found.where}{came}", fix)
    elsewhere = found.belongs_elsewhere()
    if elsewhere:
        return Check(
            "database",
            "fail",
            f"database {found.where}{came}: {elsewhere}",
            "give flowjobs a database of its own (point --database / FLOWJOBS_DATABASE_URL / "
            "[database] url at it)",
        )
    if found.revision is None:
        return Check("database", "warn", f"no flowjobs tables yet in {found.where}{came}", fix)
    if url.startswith("sqlite:///"):
        from flowjobs.store.failures import folder_read_only, read_only

        if folder_read_only(found.where):  # readable, so the probe found it: writes would fail
            return _read_only(str(read_only(found.where)))
    return Check("database", "ok", f"{found.url}{came}")


def _read_only(message: str) -> Check:
    return Check(
        "database",
        "fail",
        message,
        "make the file and its folder writable for this user, or copy the file (and its "
        "-wal file, if there is one) to a writable folder and point --database at the copy "
        "(`db copy` itself must write beside its source)",
    )


def _schema(rt) -> Check:
    from flowjobs.store.migrate import HEAD, current_revision, known_revisions

    current = current_revision(rt.db)
    if current == HEAD:
        return Check("schema", "ok", f"revision {current}")
    if current is not None and current not in known_revisions():
        return Check(
            "schema",
            "fail",
            f"revision {current} is newer than this flowjobs ({HEAD})",
            "upgrade flowjobs to the version that wrote this database",
        )
    if current is None:
        return Check(
            "schema",
            "warn",
            f"revision none (an empty database), newest {HEAD}",
            "run `flowjobs db upgrade` (a command that writes also creates it on first use)",
        )
    return Check(
        "schema",
        "fail",
        f"revision {current}, older than this flowjobs ({HEAD}): other commands refuse it",
        "stop the flowjobs processes of the older version, then run `flowjobs db upgrade` once",
    )


def _clock(rt) -> Check:
    if rt.db.dialect == "sqlite":
        return Check("clock", "ok", "SQLite: the database shares this machine's clock")
    db_now = rt.db.server_time()
    skew = time.time() - db_now
    if abs(skew) > 2:
        return Check(
            "clock",
            "warn",
            f"this machine is {skew:+.1f} s off the database server",
            "run NTP (chrony or systemd-timesyncd) on both machines; leases and schedules assume one time",
        )
    return Check("clock", "ok", f"{skew * 1000:+.0f} ms against the database")


def _workers(rt) -> Check:
    now = rt.clock.now_ms()
    stale, oldest = rt.store.expired_leases(now)
    if not stale:
        return _liveness(rt, now)
    late = (now - oldest) / 1000
    rescue = rt.settings.worker.rescue_interval + rt.settings.worker.lease
    them = "it" if stale == 1 else "them"
    if late > rescue:
        expired = (
            f"1 run holds a lease that expired {late:.0f} s ago"
            if stale == 1
            else f"{stale} runs hold leases that expired up to {late:.0f} s ago"
        )
        return Check(
            "workers",
            "fail",
            f"{expired}: no worker is rescuing {them}",
            f"start `flowjobs run-worker` (its rescuer returns {them} to the queue)",
        )
    from flowjobs.ops.workers import alive

    held = _count(stale, "run holds an expired lease", "runs hold expired leases")
    if not alive(rt.store, now):
        return Check(
            "workers",
            "warn",
            f"{held} (a worker died) and no worker is alive to rescue {them}",
            f"start `flowjobs run-worker` (its rescuer returns {them} to the queue)",
        )
    return Check(
        "workers",
        "warn",
        f"{held} (a worker died); a live worker's rescuer takes {them} back within {rescue:.0f} s",
        "none needed; check why the worker stopped",
    )


def _liveness(rt, now: int) -> Check:
    """Runs due and no worker alive (a heartbeat in `flowjobs workers`): nothing will run them."""
    from flowjobs.ops.workers import alive

    due = sum(waiting for _, waiting, _, _ in rt.store.queue_depths(now))
    live = alive(rt.store, now)
    if due and not live:
        return Check(
            "workers",
            "warn",
            f"{_count(due, 'run is', 'runs are')} due and no worker is alive to run "
            + ("it" if due == 1 else "them"),
            "start `flowjobs run-worker` (see `flowjobs workers` for the ones seen lately)",
        )
    return Check(
        "workers", "ok", f"{len(live)} alive, {_count(due, 'run', 'runs')} due, no expired lease"
    )


def _stripe(rt) -> Check:
    """The API key of the configured `[stripe] mode`, chosen by the gateway that charges with
    it, asked for one customer."""
    from flowjobs.adapters.stripe_gateway import NoStripeKey, StripeGateway

    s = rt.settings.stripe
    livemode = s.mode == "live"
    setting = f"{s.mode}_api_key"
    base = s.api_base or "https://api.stripe.com"
    gateway = StripeGateway(s.model_copy(update={"max_retries": 0, "timeout": min(s.timeout, 5.0)}))
    try:
        client = gateway.client(livemode)
    except NoStripeKey:
        return Check(
            "stripe",
            "warn",
            f'no {s.mode}-mode API key ([stripe] mode = "{s.mode}"): billing runs cannot charge',
            f"set [stripe] {setting} (or FLOWJOBS_STRIPE_{setting.upper()})",
        )
    try:
        gateway.call(client.v1.customers.list, params={"limit": 1})
    except Exception as exc:
        return Check(
            "stripe",
            "fail",
            f"{base}: {str(exc).splitlines()[0]}",
            f"check [stripe] api_base, {setting} (the {s.mode}-mode key), and outbound HTTPS "
            "from this machine",
        )
    return Check("stripe", "ok", f"{base} answers with the {s.mode}-mode key ({setting})")


def _mail(rt) -> Check:
    m = rt.settings.mail
    if m.transport == "console":
        return Check(
            "mail",
            "warn",
            "transport console: emails are printed, not sent",
            'set [mail] transport = "smtp"',
        )
    if m.transport == "file":
        import os

        folder = rt.settings.base_dir / m.dir
        existing = folder  # the folder, or the nearest parent the first email would create it in
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return Check(
                "mail",
                "fail",
                f"cannot write to {existing}" + ("" if existing == folder else f" (for {folder})"),
                "fix the folder's permissions or [mail] dir",
            )
        later = "" if existing == folder else " (created with the first email)"
        return Check("mail", "ok", f"transport file: .eml files in {folder}{later}")
    import smtplib

    try:
        with smtplib.SMTP(m.host, m.port, timeout=min(m.timeout, 5.0)) as smtp:
            smtp.ehlo()
            if m.starttls:
                import ssl

                smtp.starttls(context=ssl.create_default_context(cafile=m.ca_file or None))
    except (OSError, smtplib.SMTPException) as exc:
        return Check(
            "mail",
            "fail",
            f"SMTP {m.host}:{m.port}: {exc or type(exc).__name__}",
            "check [mail] host/port and that the SMTP server accepts connections from here",
        )
    return Check("mail", "ok", f"SMTP {m.host}:{m.port} answers")
