"""Delivering one alert (found by `flowjobs.ops.alerts`): by email (the mail adapter) and/or
an HTTP POST of JSON to `[alerts] webhook_url`. The `send-alert` task calls it, with retries."""

from __future__ import annotations

import json

ALERT_TASK = "send-alert"


def deliver(services, alert: dict) -> dict:
    """Email and/or webhook; raises (so the run is retried) when a configured channel fails."""
    settings = services.settings.alerts
    sent = {}
    if settings.email:
        from flowjobs.adapters.mailer import build
        from flowjobs.notifications.render import Email, Message, bodies

        message = Message(
            alert["subject"],
            [alert["text"]],
            [(k, str(v)) for k, v in alert["details"].items()],
            footer="flowjobs alert",
        )
        email = Email(
            ALERT_TASK,
            list(settings.email),
            f"[flowjobs] {alert['subject']}",
            message,
            f"flowjobs <{services.settings.mail.from_address}>",
        )
        services.mailer.send(build(email, *bodies(message)))
        sent["email"] = list(settings.email)
    if settings.webhook_url:
        import urllib.request

        body = json.dumps(
            {
                "kind": alert["kind"],
                "subject": alert["subject"],
                "text": alert["text"],
                "details": alert["details"],
            }
        ).encode()
        request = urllib.request.Request(
            settings.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "flowjobs"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            sent["webhook"] = response.status
    return sent
