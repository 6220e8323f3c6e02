"""Text from outside (a task's errors and logs, an endpoint's answer) as the databases hold it."""


def storable(text: str | None) -> str | None:
    """Text from outside as both databases hold it: PostgreSQL's text cannot contain a NUL
    character (psycopg refused the whole write: the outcome of a task whose error held one was
    lost and the run taken for crashed), so a NUL is written as the four characters `\\x00`,
    on SQLite too. Used for a task's errors, tracebacks and log lines, an outbound webhook
    endpoint's answer, the error a failure hook is given, and `db copy` into PostgreSQL."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00")
