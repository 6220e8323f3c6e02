"""Sending email: `smtp`, `file` (one .eml per message in a folder — the demo's default) or
`console` (printed to stderr). `[mail] transport` picks one.

SMTP: STARTTLS and AUTH when configured; tenacity retries connection failures and temporary
4xx answers (recipients refused with 4xx included, e.g. greylisting) within the call; a
permanent 5xx raises `MailRejected` at once (the run fails with the server's answer); a server
that stays unreachable or keeps answering 4xx raises `MailUnavailable` (the run's own retries
take over). A message the server accepted is sent, whatever its answer to QUIT. When it was
accepted for some recipients and refused for others, `send` returns those refused with a
temporary (4xx) answer — greylisted, a full mailbox — for the caller to send to later (they
used to be logged and dropped); those refused for good are logged.
"""

from __future__ import annotations

import logging
import smtplib
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from flowjobs.errors import FlowjobsError


class MailUnavailable(FlowjobsError):
    pass


class MailRejected(FlowjobsError):
    pass


def one_line(text: str) -> str:
    """A header value from text people typed: line breaks, tabs and runs of spaces become one
    space (a name with a line break made every email that carried it fail, and could have
    added headers of its own)."""
    return " ".join(text.split())


def build(email, text: str, html: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = one_line(email.subject)
    msg["From"] = email.sender
    msg["To"] = ", ".join(email.to)
    if email.reply_to:
        msg["Reply-To"] = email.reply_to
    msg["Date"] = format_datetime(datetime.now(UTC))  # "+0000": `-0000` says the zone is unknown
    msg["Message-ID"] = make_msgid(domain="flowjobs.local")
    msg["X-Flowjobs-Task"] = email.task
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for filename, data in email.attachments:
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return msg


class SmtpMailer:
    def __init__(self, settings, sleep=time.sleep):
        self.s = settings
        self._sleep = sleep

    def send(self, msg: EmailMessage) -> dict[str, str]:
        """Send `msg`; returns the recipients the server refused for now (address -> its
        answer) while it accepted the message for the others."""
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        retrying = Retrying(
            stop=stop_after_attempt(self.s.retries + 1),
            reraise=True,
            sleep=self._sleep,
            wait=wait_exponential_jitter(multiplier=0.5, max=10, jitter=0.5),
            retry=retry_if_exception(_temporary),
        )
        try:
            refused = retrying(self._send_once, msg)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            if exc.smtp_code >= 500:
                raise MailRejected(
                    f"SMTP server {self.s.host}:{self.s.port} refused the message: "
                    f"{exc.smtp_code} {text}"
                ) from None
            raise MailUnavailable(
                f"SMTP server {self.s.host}:{self.s.port} kept answering {exc.smtp_code} {text}"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            answers = "; ".join(f"{to}: {_answer(*reply)}" for to, reply in exc.recipients.items())
            if _greylisted(exc):  # e.g. 450 greylisted: the run's own retries, minutes apart
                raise MailUnavailable(
                    f"SMTP server {self.s.host}:{self.s.port} asked to try the recipients "
                    f"later: {answers}"
                ) from None
            raise MailRejected(f"SMTP server refused every recipient: {answers}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MailUnavailable(
                f"cannot send through SMTP server {self.s.host}:{self.s.port} after "
                f"{self.s.retries + 1} tries: {exc or type(exc).__name__}"
            ) from None
        later = {to: _answer(*reply) for to, reply in refused.items() if 400 <= reply[0] < 500}
        never = {to: _answer(*reply) for to, reply in refused.items() if to not in later}
        if never:  # sent to the others; these are not tried again
            logging.getLogger("flowjobs.mail").warning(
                "%r was not sent to %s (the server refused them; the other recipients have it)",
                msg["Subject"],
                "; ".join(f"{to}: {answer}" for to, answer in never.items()),
            )
        return later

    def _send_once(self, msg: EmailMessage) -> dict:
        smtp = smtplib.SMTP(self.s.host, self.s.port, timeout=self.s.timeout)
        try:
            if (
                self.s.starttls
            ):  # the server's certificate is verified (system CAs, or [mail] ca_file)
                import ssl

                smtp.starttls(context=ssl.create_default_context(cafile=self.s.ca_file or None))
            if self.s.username:
                self._login(smtp)
            refused = smtp.send_message(msg)
        except BaseException:
            smtp.close()
            raise
        # Accepted: sent. A QUIT that fails or times out now must not send it again (it did,
        # once per try and per attempt of the run).
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
        return refused

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH PLAIN when offered (one round trip, a clear 535 on bad credentials), else smtplib's choice."""
        smtp.ehlo_or_helo_if_needed()
        offered = (smtp.esmtp_features.get("auth") or "").upper().split()
        if "PLAIN" in offered:
            smtp.user, smtp.password = self.s.username, self.s.password
            smtp.auth("PLAIN", smtp.auth_plain)
        else:
            smtp.login(self.s.username, self.s.password)


def _answer(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


def _greylisted(exc: smtplib.SMTPRecipientsRefused) -> bool:
    """Every recipient refused with a 4xx (temporary) answer."""
    return all(400 <= code < 500 for code, _ in exc.recipients.values())


def _temporary(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _greylisted(exc)
    return isinstance(exc, (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError))


class FileMailer:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def send(self, msg: EmailMessage) -> dict[str, str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = msg["Message-ID"].strip("<>").replace("@", "_").replace("/", "_")
        tmp = self.folder / f".{name}.part"
        tmp.write_bytes(bytes(msg))
        tmp.replace(self.folder / f"{name}.eml")
        return {}


class ConsoleMailer:
    def send(self, msg: EmailMessage) -> dict[str, str]:
        body = msg.get_body(preferencelist=("plain",))
        sys.stderr.write(
            f"--- email to {msg['To']}: {msg['Subject']}\n{body.get_content() if body else ''}\n"
        )
        return {}


def make_mailer(settings, base_dir: Path):
    if settings.transport == "smtp":
        return SmtpMailer(settings)
    if settings.transport == "console":
        return ConsoleMailer()
    return FileMailer(base_dir / settings.dir)
