"""The webhook handler tasks (spec §8.2, §9), one per routed event kind, with the seed's ids.

Each receives `{inboxId}` — the stored event — and runs flowjobs.webhooks' handler for it.
(Upstream passed the whole event as the payload; the inbox keeps the raw bytes once, and the
run links back to it.) A handler that finds an object missing, or a record it cannot accept,
ends the run at once instead of retrying.
"""

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy
from flowjobs.webhooks.routes import HANDLER_TASKS

# A handler that cannot reach Stripe (a blip, a deploy of theirs) is tried again for about two
# hours (10 s, 30 s, 1.5 min, … an hour), as Stripe itself redelivers: with the default two
# attempts a second apart, a checkout paid during a blip was lost until someone replayed it.
HANDLER_RETRY = RetryPolicy(max_attempts=8, min_wait=10, max_wait=3600, factor=3)


class InboxRef(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    inbox_id: str = Field(alias="inboxId", min_length=1)


def _handler(task_id: str):
    def body(payload: InboxRef, ctx):
        from flowjobs.billing.repo import BillingError
        from flowjobs.errors import AbortTaskRunError, BadInput, ConfigError, NotFound
        from flowjobs.webhooks.handle import handle

        try:
            result = handle(ctx.billing, task_id, payload.inbox_id)
        except (NotFound, BadInput, BillingError, ConfigError) as exc:
            # ConfigError: no Stripe key for the event's mode; retrying cannot help (replay the
            # event with `flowjobs events replay` once the key is set)
            raise AbortTaskRunError(str(exc)) from None
        ctx.log.info("%s", result)
        return result

    body.__doc__ = f"Handle a stored webhook event ({task_id})."
    return body


TASKS = [
    task(task_id, payload=InboxRef, retry=HANDLER_RETRY)(_handler(task_id))
    for task_id in HANDLER_TASKS
]
