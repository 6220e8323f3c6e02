"""`flowjobs trigger billing-run ID`: charge one billing run now.

- `scheduled`: `attempt-billing-run` is triggered under the key every path uses
  (`attempt-billing-run:<id>`). A run whose `scheduled_for` is still ahead has it moved to
  now, and a flowjobs run already waiting under the key (the rollover triggers one for the
  period's start) is made due now; both are written in the run's log. A key held by a run that
  has already ended (its billing run was put back to `scheduled` since) gets a fresh run keyed
  `attempt-billing-run:<id>:now-<ms>` — the claim makes a duplicate harmless.
- `started` / `awaiting_payment_confirmation`: already being charged; the flowjobs run that
  holds the claim is returned, nothing is triggered.
- `succeeded`, `failed`, `aborted`, `abandoned`: refused (`BadInput`, exit 2) naming the state.

All of it in one billing transaction: the trigger commits with the new `scheduled_for`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowjobs.billing import enums as E
from flowjobs.billing.models import BillingRun
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import BadInput, NotFound
from flowjobs.store.states import PENDING, RunStatus

TASK = "attempt-billing-run"


@dataclass
class ChargeNow:
    run_id: str  # the flowjobs run that charges it
    status: str  # that run's status
    deduplicated: bool  # an existing run was returned
    action: str  # "queued", "moved", "expedited", "already charging"
    detail: str  # one sentence for the operator


def charge_now(b, billing_run_id: str) -> ChargeNow:
    with b.unit() as s:
        run = s.get(BillingRun, billing_run_id)
        if run is None:
            raise NotFound(f"no billing run {billing_run_id!r}")
        if run.status in E.RUN_FINAL:
            raise BadInput(
                f"billing run {run.id} is {run.status}; only scheduled billing runs are executed"
            )
        if run.status != E.BillingRunStatus.SCHEDULED:
            return _charging(b, run)
        return _trigger(b, s, run)


def _charging(b, run: BillingRun) -> ChargeNow:
    if not run.claimed_by_run:
        raise BadInput(f"billing run {run.id} is {run.status} and no flowjobs run holds it")
    status = b.client.store.run_status(run.claimed_by_run) or "unknown"
    return ChargeNow(
        run.claimed_by_run,
        status,
        True,
        "already charging",
        f"billing run {run.id} is already {run.status}: run {run.claimed_by_run} ({status}) charges it",
    )


def _trigger(b, s, run: BillingRun) -> ChargeNow:
    from flowjobs.core.client import raw_connection

    store, now = b.client.store, s.info["now"]
    now_ms = int(now.timestamp() * 1000)
    moved = run.scheduled_for if run.scheduled_for > now else None
    if moved is not None:
        run.scheduled_for = now
        s.flush()
    enq = b.queue_billing_run(s, run.id)
    conn = raw_connection(s)
    if enq.deduplicated and enq.status not in PENDING | {RunStatus.EXECUTING}:
        enq = b.trigger(s, TASK, {"billingRunId": run.id}, key=f"{TASK}:{run.id}:now-{now_ms}")
    expedited = enq.deduplicated and enq.status in PENDING and store.run_now(conn, enq.id, now_ms)
    notes = []
    if moved is not None:
        notes.append(f"scheduled_for moved from {iso_datetime(moved)} to {iso_datetime(now)}")
    if expedited:
        notes.append(f"run {enq.id}, waiting until later, made due now")
    for note in notes:
        store.log_in(conn, enq.id, now_ms, f"flowjobs trigger billing-run {run.id}: {note}")
    action = "moved" if moved is not None else "expedited" if expedited else "queued"
    said = "; ".join(notes) or ("already queued" if enq.deduplicated else "queued")
    return ChargeNow(
        enq.id,
        RunStatus.QUEUED if expedited else enq.status,
        enq.deduplicated,
        action,
        f"billing run {run.id}: {said}; run {enq.id} charges it now",
    )
