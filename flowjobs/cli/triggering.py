"""What `flowjobs trigger` does, without typer: create one run, optionally wait for it to end.

Shortcuts name a billing object instead of a task and payload:
`flowjobs trigger billing-run BILLING_RUN_ID` charges it now (flowjobs.billing.charge_now):
`attempt-billing-run` keyed `attempt-billing-run:<id>` like every other path to that billing
run, `scheduled_for` moved to now when still ahead; it says on stderr what it did.

`flowjobs trigger` is what cron jobs and scripts call most, so it starts without typer
(`flowjobs.cli.main`): `parse_argv` reads a well-formed command line itself and hands
anything else (help, mistakes, unusual forms) to the typer command, which says what is wrong.
A test checks that both read every accepted form the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from flowjobs.cli import output
from flowjobs.errors import BadInput, ExitStatus
from flowjobs.store.states import TERMINAL, RunStatus


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), -float("inf")):  # 1e400 reads as Infinity
        raise ValueError(f"{text} is too large for a JSON number")
    return value


class _DuplicateKey(ValueError):
    """A key twice in one JSON object: Python's reader would keep the last value, silently."""


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(
                    f"payload has the key {json.dumps(key, ensure_ascii=False)[:60]} twice in one "
                    "object (each key may appear once)"
                )
            seen.add(key)
    return obj


def _read_payload(payload: str | None, payload_file: Path | None):
    if payload is not None and payload_file is not None:
        raise BadInput("give --payload or --payload-file, not both")
    if payload_file is not None:
        try:
            payload = payload_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"--payload-file: cannot read {payload_file}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"--payload-file: {payload_file} is not UTF-8 text (byte {exc.start}: "
                f"{exc.object[exc.start : exc.start + 1]!r}); JSON is UTF-8"
            ) from None
    if payload is None:
        return {}
    try:
        value = json.loads(
            payload, object_pairs_hook=_object, parse_constant=_not_json, parse_float=_finite
        )
    except _DuplicateKey as exc:
        raise BadInput(str(exc)) from None
    except ValueError as exc:
        raise BadInput(f"payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput("payload is nested too deeply to be read") from None
    if value is None:  # the client reads a missing payload as {}; `-p null` is not one
        raise BadInput("payload must be a JSON object, got null (leave --payload out for {})")
    return value


def _duration(value: str | None, option: str) -> float | None:
    from flowjobs.durations import parse_duration

    return output.parse_option(value, parse_duration, option)


NO_WORKER_AFTER = 3.0  # seconds a due run may wait untaken before `--wait` says why
LOOK_AGAIN = 10.0  # seconds between later looks (a note only when the answer changes)


class Terminated(KeyboardInterrupt):
    """SIGTERM during `trigger --wait` (`timeout`, systemd, a CI job canceled): met as Ctrl-C
    is, naming the run left behind, then exit 143. It used to end the process at once, silent."""


def _terminated_as_interrupt() -> None:
    """From here to the command's end (it waits, then exits), SIGTERM raises `Terminated`."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)


def wait_for(store, run_id: str, timeout: float | None, on_slow=None) -> str | None:
    """Poll until the run ends; returns its status, or None on timeout. `on_slow(status,
    waited)` is called when the run has waited NO_WORKER_AFTER seconds, then every LOOK_AGAIN
    seconds (the workers it counted on may have died since)."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    look_at = started + NO_WORKER_AFTER
    pause = 0.01
    lost = False  # the database stopped answering: the run is written, so wait on (and say so)
    while True:
        try:
            status = store.run_status(run_id)
        except Exception as exc:
            if not _passing(store, exc):
                raise
            if not lost:
                from flowjobs.store.failures import one_line

                output.note(
                    f"the database stopped answering ({one_line(exc)}); run {run_id} "
                    "is written and a worker runs it once the database is back: still waiting "
                    "(Ctrl-C to stop waiting)"
                )
            lost, status, pause = True, None, 0.5
        else:
            if lost:
                output.note(f"the database is back; still waiting for run {run_id}")
            lost = False
        if status in TERMINAL:
            return status
        now = time.monotonic()
        if on_slow is not None and now >= look_at and not lost:
            try:
                on_slow(status, now - started)
            except Exception as exc:
                if not _passing(store, exc):
                    raise
            look_at = now + LOOK_AGAIN
        if deadline is not None and now >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25) if not lost else pause


def _passing(store, exc: BaseException) -> bool:
    """A database fault `--wait` rides out: the database is away or locked, not wrong."""
    from flowjobs.errors import DatabaseLocked, DatabaseUnavailable

    return isinstance(exc, (DatabaseUnavailable, DatabaseLocked)) or store.db.is_transient(exc)


def _untaken(rt, run_id: str):
    """What `--wait` says when a due run is still waiting after a few seconds: whether any live
    worker (a recent heartbeat in `flowjobs workers`) takes its queue, and if so how busy; said
    again later only when that changes (the workers it counted on went away)."""
    last: bool | None = None  # the last answer given: no live worker (True) or busy ones

    def say(status: str | None, waited: float) -> None:
        nonlocal last
        now = rt.clock.now_ms()
        row = rt.store.get_run(run_id)
        if (
            row is None
            or status not in (RunStatus.QUEUED, RunStatus.RETRYING)
            or row["run_at"] > now
        ):
            return  # taken, or not due yet (--delay): nothing to explain
        queue = row["queue"]
        try:
            from flowjobs.ops.workers import alive

            live = [
                w
                for w in alive(rt.store, now)
                if {"*", queue} & {q.strip() for q in str(w["queues"]).split(",")}
            ]
        except Exception:  # an older schema without the workers table: judge by the runs
            live = None
        busy = sum(running for _, _, running, _ in rt.store.queue_depths(now))
        nobody = live == [] or (live is None and not busy)
        if nobody:
            why = f"no live worker takes queue {queue!r}: start `flowjobs run-worker`"
        else:
            count = (
                f"{len(live)} live {'worker takes' if len(live) == 1 else 'workers take'} queue "
                f"{queue!r}; "
                if live
                else ""
            )
            one = live is not None and len(live) == 1
            if busy:
                they = "it is" if one else "they are"
                why = f"{count}{they} busy ({busy} {'run' if busy == 1 else 'runs'} executing)"
            else:  # "busy (0 runs executing)" said nothing true
                why = (
                    f"{count}yet no run is executing: {'it' if one else 'they'} may be stopping, "
                    "or gone without a word (looked at again every 10 s)"
                )
        if last == nobody:  # the same answer (counts aside): said already
            return
        last = nobody
        output.note(f"note: run {run_id} is still {status} after {int(waited)} s; {why}")

    return say


def _failure(rt, run_id: str, lines: int = 10) -> tuple[str | None, list[str]]:
    """A run that did not complete: its error, and its last log lines."""
    row = rt.store.get_run(run_id) or {}
    from flowjobs.core.clock import iso

    logs = [
        f"{iso(line['at'])} [{line['level']}] #{line['attempt']} {line['message']}"
        for line in rt.store.logs(run_id)[-lines:]
    ]
    return row.get("error"), logs


SHORTCUTS = {"billing-run": "attempt-billing-run"}


def _check_shortcut(name: str, object_id: str | None, payload: dict, options: dict) -> str:
    """`trigger billing-run ID`: the id, or BadInput for what cannot run (before any database
    is opened; flowjobs.billing.charge_now charges it)."""
    if not object_id:
        raise BadInput(f"`trigger {name}` needs the id, e.g. flowjobs trigger {name} billing_run_…")
    if payload:
        raise BadInput(f"`trigger {name} ID` takes no --payload")
    given = [option for option, value in options.items() if value]
    if given:
        raise BadInput(
            f"`trigger {name} ID` charges now under the billing run's own key; it takes no "
            f"{', '.join(given)}"
        )
    return object_id


def _trigger(rt, task_id: str, body, **options):
    """rt.trigger; an unknown task id is answered with the closest ids, not all of them."""
    from flowjobs.core.client import check_key, validate_payload
    from flowjobs.errors import UnknownTask

    try:
        # the checks the trigger makes, first without the database: bad input makes no file
        task = rt.task(task_id)
        validate_payload(task, body)
        if options.get("idempotency_key") is not None:
            check_key(options["idempotency_key"], task.id)
        return rt.trigger(task_id, body, **options)
    except UnknownTask:
        from flowjobs.cli.filters import unknown_task

        raise unknown_task(task_id, [t.id for t in rt.registry.all()]) from None


def run_trigger(
    state,
    task_id: str,
    object_id: str | None = None,
    payload: str | None = None,
    payload_file: Path | None = None,
    idempotency_key: str | None = None,
    idempotency_key_ttl: str | None = None,
    delay: str | None = None,
    priority: int = 0,
    queue: str | None = None,
    wait: bool = False,
    timeout: str | None = None,
    as_json: bool = False,
) -> int:
    """Trigger a run of `task_id`, print its id; the exit status."""
    body = _read_payload(payload, payload_file)
    ttl = _duration(idempotency_key_ttl, "--idempotency-key-ttl")
    delay_s = _duration(delay, "--delay")
    wait_s = _duration(timeout, "--timeout")
    if timeout is not None and not wait:
        raise BadInput("--timeout only makes sense with --wait")
    charged = None  # `trigger billing-run ID`: the billing run's id
    if task_id in SHORTCUTS:
        charged = _check_shortcut(
            task_id,
            object_id,
            body,
            {
                "--idempotency-key": idempotency_key,
                "--idempotency-key-ttl": idempotency_key_ttl,
                "--delay": delay,
                "--priority": priority,
                "--queue": queue,
            },
        )
    elif object_id is not None:
        raise BadInput(f"unexpected argument {object_id!r}: task payloads go in --payload")
    elif idempotency_key_ttl is not None and idempotency_key is None:
        raise BadInput(
            "--idempotency-key-ttl needs --idempotency-key (it says how long that holds)"
        )
    # a shortcut charges a billing run that must already exist: no database is made for it
    rt = state.runtime(existing=charged is not None)
    done = None
    if charged is not None:
        from flowjobs.billing.charge_now import charge_now

        done = charge_now(rt.billing, charged)
        run_id, task_id, status, deduplicated = (
            done.run_id,
            SHORTCUTS[task_id],
            done.status,
            done.deduplicated,
        )
    else:
        result = _trigger(
            rt,
            task_id,
            body,
            idempotency_key=idempotency_key,
            idempotency_key_ttl=ttl,
            delay=delay_s,
            priority=priority,
            queue=queue,
        )
        run_id, task_id, status, deduplicated = (
            result.id,
            result.task,
            result.status,
            result.deduplicated,
        )
    if wait:
        _terminated_as_interrupt()
    try:  # from here a Ctrl-C (or with --wait, a SIGTERM) names the run it leaves behind
        if not as_json:  # the id first: whatever happens next, the caller has it
            sys.stdout.write(run_id + "\n")
            sys.stdout.flush()
            if done is not None:
                output.note(done.detail)
            elif deduplicated:
                output.note(
                    f"deduplicated: run {run_id} ({status}) already holds this idempotency key"
                )
        if not wait:
            if as_json:
                shown = {
                    "id": run_id,
                    "task": task_id,
                    "status": status,
                    "deduplicated": deduplicated,
                }
                output.emit_json(
                    shown
                    if done is None
                    else {**shown, "action": done.action, "detail": done.detail or None}
                )
            return 0
        ended = wait_for(rt.store, run_id, wait_s, _untaken(rt, run_id))
    except KeyboardInterrupt as stopped:
        try:
            now = rt.store.run_status(run_id) or "unknown"
        except Exception as exc:  # the database is away: the run is written all the same
            if not _passing(rt.store, exc):
                raise
            now = "written (its status unknown: the database does not answer)"
        goes_on = (
            "it goes on in its worker"
            if now == RunStatus.EXECUTING
            else "a worker runs it when one takes it"
            if now in (RunStatus.QUEUED, RunStatus.DELAYED, RunStatus.RETRYING)
            else "only stopping the wait"
        )
        by = " by SIGTERM" if isinstance(stopped, Terminated) else ""
        output.note(
            f"interrupted{by}: run {run_id} is left {now}; {goes_on} "
            f"(`flowjobs runs show {run_id}`, or `flowjobs runs cancel {run_id}`)"
        )
        if as_json:
            _emit_waited(rt, run_id, task_id, now, deduplicated, done)
        return 143 if by else 130
    if as_json:
        _emit_waited(rt, run_id, task_id, ended, deduplicated, done)  # None: as it stands
    if ended is None:
        output.note(f"error: gave up waiting for {run_id} after {timeout}")
        return int(ExitStatus.WAIT_TIMEOUT)
    if ended != RunStatus.COMPLETED:
        error, logs = _failure(rt, run_id)
        output.note(f"error: run {run_id} ended {ended}" + (f": {error}" if error else ""))
        if logs:
            output.note("last log lines:\n" + "\n".join(f"  {line}" for line in logs))
        return int(ExitStatus.FAILURE)
    return 0


def _emit_waited(rt, run_id, task_id, status, deduplicated, done) -> None:
    """`trigger --wait --json`: the run as it ended (or stands: `status` None, on a timeout,
    reads it from the same row as the result and error)."""
    row = rt.store.get_run(run_id) or {}
    status = status or row.get("status") or "unknown"
    result = row.get("result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            pass
    shown = {
        "id": run_id,
        "task": task_id,
        "status": status,
        "deduplicated": deduplicated,
        "result": result,
        "error": row.get("error"),
    }
    if done is not None:
        shown.update(action=done.action, detail=done.detail or None)
    output.emit_json(shown)


# -- the command line without typer ------------------------------------------------------
_VALUE_OPTIONS = {
    "--payload": "payload",
    "-p": "payload",
    "--payload-file": "payload_file",
    "--idempotency-key": "idempotency_key",
    "--idempotency-key-ttl": "idempotency_key_ttl",
    "--delay": "delay",
    "--priority": "priority",
    "--queue": "queue",
    "--timeout": "timeout",
}
_FLAGS = {"--wait": "wait", "--json": "as_json"}


def parse_argv(args: list[str]) -> dict | None:
    """The arguments after `trigger`, read as the typer command reads them, as run_trigger's
    keyword arguments; None for anything but a plain well-formed command line (the typer
    command then reads it and reports what is wrong)."""
    from flowjobs.cli.main import take_option

    params: dict = {}
    positionals: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positionals += rest
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        if arg in _FLAGS:
            params[_FLAGS[arg]] = True
            continue
        taken = take_option(arg, rest, _VALUE_OPTIONS)
        if taken is None:
            return None
        params[taken[0]] = taken[1]
    if not 1 <= len(positionals) <= 2:
        return None
    if "priority" in params:
        if not params["priority"].isdigit():
            return None
        params["priority"] = int(params["priority"])
    if "payload_file" in params:
        params["payload_file"] = Path(params["payload_file"])
    params["task_id"] = positionals[0]
    params["object_id"] = positionals[1] if len(positionals) > 1 else None
    return params
