"""Identifiers: `<prefix>_<21 characters of [0-9A-Za-z]>` (Flowglad's nanoid convention)."""

import secrets
import string

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
LENGTH = 21


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def is_id(value: str, prefix: str) -> bool:
    head, _, tail = value.partition("_")
    return head == prefix and len(tail) == LENGTH and all(c in ALPHABET for c in tail)
