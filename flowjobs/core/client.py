"""Triggering runs: validate the payload, apply idempotency keys, insert (one or many) rows.

`trigger(..., session=...)` joins the caller's transaction (River's InsertTx): the run exists
if and only if the caller commits. `session` may be a SQLAlchemy Session or Connection, a
`Transaction` from `ctx.transaction()`, or a DB-API connection.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from flowjobs import ids
from flowjobs.core.registry import Registry
from flowjobs.durations import parse_duration
from flowjobs.errors import BadInput, IdempotencyConflict, PayloadInvalid
from flowjobs.store.jobs import Enqueued, JobStore, NewRun

# An idempotency key is stored in two indexes. PostgreSQL refuses an index entry past 2,704
# bytes; 500 characters are at most 2,000 bytes of UTF-8, so a key that passes fits both
# databases, and one refused is refused the same way on both.
MAX_KEY_CHARS = 500


PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1  # the column is a 32-bit integer on PostgreSQL


@dataclass
class TriggerItem:
    """One run to create; durations are seconds or strings like "30s"."""

    task: str
    payload: Any = None
    idempotency_key: str | None = None
    idempotency_key_ttl: float | str | None = None
    delay: float | str | timedelta | None = None
    priority: int = 0
    queue: str | None = None
    run_at: int | datetime | None = None  # epoch ms or an aware datetime; overrides delay
    parent_id: str | None = None
    replay_of: str | None = None


# allow_nan off: NaN and Infinity are not JSON (strict readers of `runs show --json` and
# PostgreSQL's jsonb refuse them); a payload holding one is refused when triggered
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _c_encoder():
    """json's C encoder, made once with `_CANONICAL`'s settings (`_CANONICAL.encode` makes one
    anew on every call: most of its time for a small payload), or None where this Python's
    json has none or makes it differently. It skips the check for circular references, which a
    payload cannot have: it is what a pydantic model dumped (a tree)."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    try:
        encode = make(
            None,  # no markers: no circular-reference check (see above)
            _CANONICAL.default,
            json.encoder.encode_basestring,  # ensure_ascii=False
            None,  # indent
            ":",
            ",",
            True,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan (see _CANONICAL)
        )
        sample = {"b": [1, 2.5, None, True], "a": "é", "c": {"y": "x"}}
        if "".join(encode(sample, 0)) != _CANONICAL.encode(sample):
            return None
    except TypeError:  # no C encoder (None is not callable), or another signature
        return None
    return encode


_ENCODE = _c_encoder()


def canonical_json(value: Any) -> str:
    """The JSON a payload is stored and hashed as: keys sorted, no spaces, UTF-8 as is (the
    same text as `json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`: payload hashes must not change between versions)."""
    if _ENCODE is None:
        return _CANONICAL.encode(value)
    return "".join(_ENCODE(value, 0))


def _seconds(value: float | str | timedelta | None) -> float | None:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadInput(f"a duration is seconds, a string like '30s' or a timedelta, not {value!r}")
    return value


EPOCH_MS_FLOOR = 100_000_000_000  # 1973-03-03 in milliseconds; as seconds, the year 5138


def _run_at(value: int | datetime) -> int:
    """`run_at`: epoch milliseconds, or an aware datetime. Epoch seconds ran at once, silently."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise BadInput(f"run_at {value.isoformat()} has no timezone; give an aware datetime")
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"run_at is epoch milliseconds (an int) or a datetime, not {value!r}")
    if 0 < value < EPOCH_MS_FLOOR:
        raise BadInput(
            f"run_at {value} is before 1973 as epoch milliseconds; were they seconds? "
            f"(use {value * 1000})"
        )
    return value


def validate_payload(task, payload: Any) -> dict:
    """Validate with the task's pydantic model; return the wire form (camelCase aliases)."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise PayloadInvalid(
            f"payload for {task.id!r} must be a JSON object, got {type(payload).__name__}"
        )
    model = task.payload
    try:  # model_validate and model_dump, without their wrappers (two thirds of the time)
        valid = model.__pydantic_validator__.validate_python(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise PayloadInvalid(f"invalid payload for {task.id!r}: {problems}") from None
    return model.__pydantic_serializer__.to_python(valid, mode="json", by_alias=True)


class Client:
    def __init__(self, store: JobStore, registry: Registry, clock, retry_defaults, key_ttl: float):
        self.store = store
        self.registry = registry
        self.clock = clock
        self.retry_defaults = retry_defaults
        self.key_ttl = key_ttl

    def trigger(self, task: str, payload: Any = None, *, session=None, **options) -> Enqueued:
        return self.batch_trigger([TriggerItem(task, payload, **options)], session=session)[0]

    def withdraw(self, task: str, key_prefix: str, reason: str, *, session) -> list[str]:
        """Cancel the runs of `task` keyed `key_prefix…` that have not started, inside
        `session`'s transaction (a change that makes them untrue withdraws them as it commits);
        their ids. One that is executing already goes on."""
        return self.store.withdraw(
            raw_connection(session), task, key_prefix, self.clock.now_ms(), reason
        )

    def replay(self, run: str | dict, once: bool = False) -> Enqueued:
        """A new run of the same task, payload, queue and priority as `run` (an id or its row),
        linked to it by `replay_of`. Raises NotFound for an unknown id. `once`: under the
        idempotency key `replay-of:<id>`, so that two replays at the same moment (a cron job and
        an operator) make one run."""
        if isinstance(run, str):
            from flowjobs.errors import NotFound

            row = self.store.get_run(run)
            if row is None:
                raise NotFound(f"no run {run!r}")
            run = row
        return self.trigger(
            run["task"],
            json.loads(run["payload"]),
            queue=run["queue"],
            priority=run["priority"],
            replay_of=run["id"],
            idempotency_key=f"replay-of:{run['id']}" if once else None,
        )

    def batch_trigger(self, items: list[TriggerItem], *, session=None) -> list[Enqueued]:
        """Insert many runs in one statement (per 500); all or none."""
        now = self.clock.now_ms()
        runs = self.new_runs(items, now, ids.new_sortable_ids("run", len(items)))
        if session is not None:
            results = self.store.enqueue(raw_connection(session), runs, now)
        elif any(run.idempotency_key is not None for run in runs):
            with self.store.db.transaction(rows=len(runs)) as conn:  # a conflict: all back
                results = self.store.enqueue(conn, runs, now)
                self._check_conflicts(runs, results)
            return results
        else:  # no key, no conflict: one statement where it can be
            return self.store.enqueue_alone(runs, now)
        self._check_conflicts(runs, results)
        return results

    def new_run(self, item: TriggerItem, now: int, run_id: str | None = None) -> NewRun:
        """The row for `item`, validated, not yet inserted (with `run_id`, or a new id)."""
        return self.new_runs([item], now, [run_id or ids.new_sortable_id("run")])[0]

    def new_runs(self, items: list[TriggerItem], now: int, run_ids: list[str]) -> list[NewRun]:
        """The rows for `items`, validated, not yet inserted, with `run_ids`. What depends on
        the task alone (its lookup, queue, retry policy) is found once per task of the batch."""
        tasks: dict[str, tuple[Any, str, int]] = {}
        sha256 = hashlib.sha256
        runs = []
        for item, run_id in zip(items, run_ids):
            known = tasks.get(item.task)
            if known is None:
                task = self.registry.get(item.task)
                policy = task.retry or self.retry_defaults
                known = tasks[item.task] = (task, task.queue, policy.max_attempts)
            task, queue, max_attempts = known
            try:
                text = canonical_json(validate_payload(task, item.payload))
            except ValueError as exc:  # NaN or Infinity (PayloadInvalid is not a ValueError)
                raise PayloadInvalid(f"payload for {task.id!r} is not JSON: {exc}") from None
            if item.run_at is not None:
                run_at = _run_at(item.run_at)
            elif item.delay is None:
                run_at = now
            else:
                run_at = now + int((_seconds(item.delay) or 0) * 1000)
            if item.priority and not PRIORITY_MIN <= item.priority <= PRIORITY_MAX:
                raise BadInput(  # it failed in the driver, "unexpected OverflowError" and the like
                    f"priority {item.priority} is out of range: {PRIORITY_MIN:,} to {PRIORITY_MAX:,}"
                )
            ttl = None if item.idempotency_key_ttl is None else _seconds(item.idempotency_key_ttl)
            if item.idempotency_key is None:
                expires = None
            else:  # an empty key is a key too, with its TTL (it used to never expire)
                check_key(item.idempotency_key, task.id)
                expires = now + int((self.key_ttl if ttl is None else ttl) * 1000)
            runs.append(
                NewRun(  # positional (half the time of keywords): the fields' order
                    run_id,
                    task.id,
                    item.queue or queue,
                    text,
                    sha256(text.encode()).hexdigest(),
                    item.priority,
                    max_attempts,
                    run_at,
                    item.idempotency_key,
                    expires,
                    item.parent_id,
                    item.replay_of,
                )
            )
        return runs

    @staticmethod
    def _check_conflicts(runs: list[NewRun], results: list[Enqueued]) -> None:
        for run, res in zip(runs, results):
            if res.deduplicated and res.payload_hash != run.payload_hash:
                raise IdempotencyConflict(
                    f"idempotency key {run.idempotency_key!r} of task {run.task!r} is held by run "
                    f"{res.id} ({res.status}) with a different payload; use another key or the same payload"
                )


def check_key(key: str, task: str) -> None:
    if not key.strip():  # `--idempotency-key "$KEY"` with KEY unset: every trigger one run
        raise BadInput(
            f"idempotency key of task {task!r} is {'blank' if key else 'empty'}: give a key "
            "that names the work once, or none"
        )
    if len(key) > MAX_KEY_CHARS:
        raise BadInput(
            f"idempotency key of task {task!r} is {len(key):,} characters long; at most "
            f"{MAX_KEY_CHARS} are allowed (a longer identity can be hashed into a key)"
        )
    if "\x00" in key:
        raise BadInput(
            f"idempotency key {key!r} of task {task!r} holds a NUL character, which "
            "PostgreSQL cannot store (refused on SQLite too, so that the database can move)"
        )


def raw_connection(session):
    """The DB-API connection under a SQLAlchemy Session/Connection, a Transaction, or itself."""
    if hasattr(session, "dbapi"):  # flowjobs Transaction
        return session.dbapi
    if hasattr(session, "get_bind") and hasattr(session, "connection"):  # SQLAlchemy Session
        return session.connection().connection.dbapi_connection
    if hasattr(session, "connection") and hasattr(session.connection, "dbapi_connection"):
        return session.connection.dbapi_connection  # SQLAlchemy Connection
    return session
