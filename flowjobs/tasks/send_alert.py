"""`send-alert`: deliver one alert (found by flowjobs.ops.alerts) by email and/or webhook."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    subject: str
    text: str
    details: dict[str, Any] = {}
    # the channels still to send on (a run of its own for the ones that failed); None: all
    channels: list[Literal["email", "webhook"]] | None = None


@task("send-alert", payload=Alert, retry=RetryPolicy(max_attempts=4, min_wait=5, max_wait=120))
def send_alert(payload: Alert, ctx):
    """Deliver an alert to [alerts] email and webhook_url. When one channel fails and another
    worked, the failed one gets a run of its own (retried as this one is), so the working one
    is not sent again."""
    from flowjobs.notifications.alerts import CHANNELS, deliver

    alert = payload.model_dump(exclude={"channels"})
    sent, failed = deliver(ctx.services, alert, payload.channels or CHANNELS)
    if failed and not sent:
        raise next(iter(failed.values()))
    if failed:
        rest = ctx.trigger(
            "send-alert",
            {**alert, "channels": sorted(failed)},
            idempotency_key=f"{ctx.run_id}:rest",
        )
        ctx.log.warning(
            "alert sent by %s; %s failed (%s): run %s retries it",
            ", ".join(sent),
            ", ".join(failed),
            "; ".join(f"{k}: {v}" for k, v in failed.items()),
            rest.id,
        )
        return {**sent, "retriedBy": rest.id}
    ctx.log.info("alert delivered: %s", sent)
    return sent
