"""Database URLs as they may be shown: in messages, logs and status lines."""

import re


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
