"""Messages and their bodies: one `Message` shape, rendered by two Jinja2 templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


@dataclass
class MessageLine:
    description: str
    quantity: int
    unit: str
    amount: str
    period: str = ""  # the billing period the line is for


@dataclass
class Message:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    lines: list[MessageLine] = field(default_factory=list)
    totals: list[tuple[str, str]] = field(default_factory=list)
    action: tuple[str, str] | None = None
    footer: str = "Sent by Flowglad on behalf of your provider."


@dataclass
class Email:
    task: str
    to: list[str]
    subject: str
    message: Message
    sender: str
    reply_to: str | None = None
    attachments: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, PDF bytes)


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def bodies(message: Message) -> tuple[str, str]:
    env = _environment()
    return env.get_template("email.txt.j2").render(m=message), env.get_template(
        "email.html.j2"
    ).render(m=message)
