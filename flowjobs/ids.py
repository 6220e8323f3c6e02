"""Identifiers: `<prefix>_<21 characters of [0-9A-Za-z]>` (Flowglad's nanoid convention)."""

import os
import string

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
LENGTH = 21
_LIMIT = 256 - 256 % len(
    ALPHABET
)  # bytes at or above it are dropped: every character is equally likely


def new_id(prefix: str) -> str:
    """21 characters drawn uniformly from the OS's random source (one read, not one per
    character: ids are made for every run, and a read per character was a fifth of the cost
    of a trigger)."""
    chars: list[str] = []
    while len(chars) < LENGTH:
        chars += [ALPHABET[b % 62] for b in os.urandom(32) if b < _LIMIT]
    return prefix + "_" + "".join(chars[:LENGTH])


def is_id(value: str, prefix: str) -> bool:
    head, _, tail = value.partition("_")
    return head == prefix and len(tail) == LENGTH and all(c in ALPHABET for c in tail)
