"""Text from outside (a task's errors and logs, an endpoint's answer) as the databases hold it."""


def storable(text: str | None) -> str | None:
    """Text from a task (an error, a traceback, a log line) as both databases hold it:
    PostgreSQL's text cannot contain a NUL character (psycopg refused the whole write, so the
    outcome of a task whose error held one was lost and the run taken for crashed), so a NUL
    is written as the four characters `\\x00`, on SQLite too. Also for what an outbound
    webhook's endpoint answered, and the error a failure hook is given."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00")
