"""Delivering one alert (found by `flowjobs.ops.alerts`): by email (the mail adapter) and/or
an HTTP POST of JSON to `[alerts] webhook_url`. The `send-alert` task calls it, with retries."""

from __future__ import annotations

import json
import logging

ALERT_TASK = "send-alert"


CHANNELS = ("email", "webhook")


def deliver(services, alert: dict, channels=CHANNELS) -> tuple[dict, dict[str, Exception]]:
    """Send the alert on each configured channel of `channels`; returns what each channel that
    worked said, and the error of each that failed (the caller retries only those: retrying the
    whole alert sent its email again for every failed webhook attempt)."""
    sent: dict = {}
    failed: dict[str, Exception] = {}
    for channel in channels:
        try:
            result = _SEND[channel](services, alert)
        except Exception as exc:
            failed[channel] = exc
        else:
            if result is not None:
                sent[channel] = result
    return sent, failed


def _email(services, alert: dict):
    settings = services.settings.alerts
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
        deferred = services.mailer.send(build(email, *bodies(message))) or {}
        if deferred:  # the others have it; sent again, they would get it twice
            logging.getLogger("flowjobs.alerts").warning(
                "alert %r was not sent to %s: the mail server deferred them",
                alert["subject"],
                "; ".join(f"{to}: {answer}" for to, answer in deferred.items()),
            )
        return [to for to in settings.email if to not in deferred]
    return None


def _webhook(services, alert: dict):
    settings = services.settings.alerts
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
            return response.status
    return None


_SEND = {"email": _email, "webhook": _webhook}
