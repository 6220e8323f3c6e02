"""Pieces shared by the billing task modules: payloads that reference one object, times,
and the mapping of billing errors to run outcomes.

Payloads keep the seed's wire names. A task that upstream received a whole object
(`{billingRun: {...}}`) accepts that form too, but stores only the id (`billingRunId`): the
row is re-read when the run executes, never trusted from the payload, and one billing run
has one payload whatever path triggered it (so idempotency keys never conflict).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from flowjobs.core.clock import iso


class Payload(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


def lift_ref(data, object_key: str, id_key: str):
    """`{object_key: {id: X, ...}}` → `{id_key: X}` (the seed's whole-object payloads)."""
    if isinstance(data, dict) and id_key not in data and isinstance(data.get(object_key), dict):
        data = {**data, id_key: data[object_key].get("id")}
        data.pop(object_key)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "livemode"}  # the seed sent it; unused
    return data


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_of(moment: datetime) -> str:
    return iso(int(utc(moment).timestamp() * 1000))


def run_billing(fn, *args):
    """Call a billing function; a missing object or a refused rule ends the run at once."""
    from flowjobs.billing.repo import BillingError
    from flowjobs.errors import AbortTaskRunError, NotFound

    try:
        return fn(*args)
    except (NotFound, BillingError) as exc:
        raise AbortTaskRunError(str(exc)) from None


def fan_out(ctx, pages, task: str, field: str, object_id=lambda row: row) -> list:
    """Trigger `task` `{field: id}` for every row of every page, keyed `<task>:<id>` (one batch
    insert per page); returns the rows."""
    from flowjobs.core.client import TriggerItem

    seen = []
    for page in pages:
        ctx.batch_trigger(
            [
                TriggerItem(
                    task, {field: object_id(row)}, idempotency_key=f"{task}:{object_id(row)}"
                )
                for row in page
            ]
        )
        seen += page
    return seen
