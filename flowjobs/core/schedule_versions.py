"""Whose definition of a schedule stands, when scheduler processes disagree.

Processes started with different versions of flowjobs.toml (or of a task's `@task(cron=...)`)
each hold their own definition of a schedule; each schedule's state row stores one
(`definition`, `defined_at`, `definition_seen_at`). This module decides, from a process's
definition and that row, whether the process fires the schedule, stores its own definition
there, or falls silent (`Standing`); when the standing definition's processes are gone
(`stalled_since`); and how to tell an operator that the schedulers fire a schedule otherwise
than the configuration at hand (`fired_as`). It reads and writes nothing itself: the caller
passes the stored row and the time, and executes the write it is told to
(`Versions.take_part`). See docs/scheduling.md, "Editing a schedule".

A definition is versioned by when its source was written (the configuration file's
modification time; for a schedule declared on a task, its module's, or the file's if later):
the newest stands, and is never given up for an older one — both crons firing in turn is the
failure this exists to prevent. A standing definition that no process has ticked for
DEFINITION_LEASE_MS (or five ticks, if longer) is reported `stalled` by `health` and alerted:
its processes are gone, and the others, with an older file, fire nothing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from flowjobs.core.clock import iso

if TYPE_CHECKING:
    from flowjobs.core.scheduler import Schedule

log = logging.getLogger("flowjobs.scheduler")
DEFINITION_LEASE_MS = 10 * 60_000
DEFINITION_SEEN_EVERY_MS = 60_000  # how often processes firing it say they are still there


class Standing(StrEnum):
    """A scheduler process's definition of a schedule against the stored one."""

    CURRENT = "current"  # the same: fire it
    TAKE = "take"  # none stored, an older one, or a newer one nobody fires any more: store ours
    STALE = "stale"  # a newer process has another: do not fire until restarted


@dataclass(frozen=True)
class Part:
    """What a process does with a schedule in a tick (`Versions.take_part`): fire it or not,
    and the write to make first in the tick's transaction — a statement of the store's
    catalogue (`schedule_define`, `schedule_seen`) and its parameters — if any."""

    fires: bool
    write: str | None = None
    params: dict[str, Any] | None = None


def source_of(fn) -> str | None:
    """The file a task's function was defined in, or None (a builtin, a C function)."""
    import inspect

    try:
        return inspect.getsourcefile(fn)
    except TypeError:
        return None


def written_at(path) -> int:
    """When the file at `path` was last written (epoch ms), or 0 when it cannot be told (no
    file, a module inside a zip): the version of the schedules it defines."""
    if path is None:
        return 0
    try:
        return int(os.stat(path).st_mtime * 1000)
    except OSError:
        return 0


def lease_ms(interval: float) -> int:
    """How long the standing definition may go unticked before it is `stalled`: the lease, or
    five ticks of `interval` (seconds) if longer."""
    return max(DEFINITION_LEASE_MS, int(5 * interval * 1000))


def enabled_in(state: dict) -> bool:
    """Whether the stored (newest) definition enables the schedule, `schedules disable` aside."""
    if state.get("enabled") is not None:
        return bool(state["enabled"])
    try:
        return bool(json.loads(state.get("definition") or "{}").get("enabled", True))
    except ValueError:
        return True


def stalled_since(state: dict, now: int, lease: int) -> int | None:
    """When the standing definition of a schedule (its stored `state`) was last fired, if that
    is longer than `lease` (ms) before `now` (its processes are gone); else None."""
    seen = state.get("definition_seen_at")
    if state.get("definition") is None or seen is None:
        return None
    return seen if now - seen > lease else None


class Versions:
    """One scheduler process's side of the rules: the version of its definitions, and which
    schedules it has logged as left to a newer definition (so that it says so once)."""

    def __init__(self, started_at: int, lease: int = DEFINITION_LEASE_MS):
        """`started_at` (epoch ms): when this process read its configuration, the version of a
        definition whose source's time is unknown (0: a module in a zip, no configuration
        file), as if the file had been written then; `lease` (ms): see `stalled_since`."""
        self.started_at = started_at
        self.lease_ms = lease
        self.stale: dict[str, str | None] = {}  # schedule id -> the newer definition it is left to

    def version(self, s: Schedule) -> int:
        return s.written_at or self.started_at

    def standing(self, s: Schedule, stored: str | None, at: int | None) -> Standing:
        """This process's definition of `s` against the stored one (`definition`, `defined_at`
        of its row). The one whose source was written last stands: a worker started before
        `flowjobs.toml` was edited stops firing the old cron as soon as a process with the
        edited file ticks (it used to fire both until every worker was restarted), and a
        process with an older file — a `tick` crontab on a machine not yet updated, a worker
        restarted there — does not take it back."""
        mine = s.definition()
        if stored == mine:
            return Standing.CURRENT
        if stored is None or at is None or (at, stored) < (self.version(s), mine):
            return Standing.TAKE  # an equal time is settled by the text: every process agrees
        return Standing.STALE

    def standing_in(self, s: Schedule, states: dict) -> Standing:
        """`standing` against `s`'s row of `states` (the store's `schedule_states`)."""
        state = states.get(s.id) or {}
        return self.standing(s, state.get("definition"), state.get("defined_at"))

    def stalled(self, s: Schedule, states: dict, now: int) -> int | None:
        """When the newest definition of `s` was last fired, if it stands against this
        process's, is enabled there (not here: a newer file may enable what this one disables,
        or the reverse), and no process has fired it for the lease; else None."""
        state = states.get(s.id) or {}
        if self.standing_in(s, states) is not Standing.STALE or not enabled_in(state):
            return None
        return stalled_since(state, now, self.lease_ms)

    def must_define(self, s: Schedule, state: dict | None, now: int) -> bool:
        """Whether a schedule this process does not fire (disabled) still needs a write: its
        definition to store, or to say it is still there — a process whose configuration
        disables a schedule must stop older ones firing it, and keep them stopped."""
        state = state or {}
        standing = self.standing_in(s, {s.id: state})
        if standing is Standing.CURRENT:
            seen = state.get("definition_seen_at")
            return seen is None or now - seen >= DEFINITION_SEEN_EVERY_MS
        return standing is Standing.TAKE

    def take_part(
        self, s: Schedule, stored: str | None, at: int | None, seen: int | None, now: int
    ) -> Part:
        """With the schedule's row (`definition`, `defined_at`, `definition_seen_at`) locked
        by the caller's transaction: store this process's definition when it stands (or say it
        is still there); not fired when a newer process has another (logged once, with the
        fix)."""
        standing = self.standing(s, stored, at)
        if standing is Standing.STALE:
            if self.stale.get(s.id) != stored:
                log.warning(
                    "schedule %s: not fired by this process: a configuration written at %s "
                    "defines it as %s; this process's, written at %s, as %s. Bring this "
                    "machine's configuration up to date and restart this process (or, if the "
                    "newer one is wrong, fix it where it was written)",
                    s.id,
                    iso(at),
                    stored,
                    iso(self.version(s)),
                    s.definition(),
                )
                self.stale[s.id] = stored
            return Part(False)
        if self.stale.pop(s.id, None) is not None:
            log.warning("schedule %s: fired by this process again", s.id)
        if standing is Standing.TAKE:
            if stored is not None:
                log.info("schedule %s: now defined as %s (was %s)", s.id, s.definition(), stored)
            return Part(
                True,
                "schedule_define",
                {
                    "id": s.id,
                    "definition": s.definition(),
                    "defined_at": self.version(s),
                    "now": now,
                },
            )
        if seen is None or now - seen >= DEFINITION_SEEN_EVERY_MS:
            return Part(True, "schedule_seen", {"id": s.id, "now": now})
        return Part(True)

    def fired_as(self, s: Schedule, states: dict) -> dict | None:
        """How the scheduler processes fire `s` when it differs from this configuration: the
        fields that differ (stored, here), when the stored one was written, and whether it
        stands against this one (`superseded`: this configuration is older, and is not fired);
        else None."""
        state = states.get(s.id) or {}
        stored = state.get("definition")
        if stored is None or stored == s.definition():
            return None
        superseded = self.standing_in(s, states) is Standing.STALE
        try:
            theirs = json.loads(stored)
        except ValueError:
            theirs = {}
        mine = json.loads(s.definition())
        changed = {k: [theirs.get(k), v] for k, v in mine.items() if theirs.get(k) != v}
        return {"since": iso(state.get("defined_at")), "changed": changed, "superseded": superseded}
