"""`send-alert`: deliver one alert (found by flowjobs.ops.alerts) by email and/or webhook."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    subject: str
    text: str
    details: dict[str, Any] = {}


@task("send-alert", payload=Alert, retry=RetryPolicy(max_attempts=4, min_wait=5, max_wait=120))
def send_alert(payload: Alert, ctx):
    """Deliver an alert to [alerts] email and webhook_url."""
    from flowjobs.notifications.alerts import deliver

    sent = deliver(ctx.services, payload.model_dump())
    ctx.log.info("alert delivered: %s", sent)
    return sent
