"""Database URLs as they may be shown: in messages, logs and status lines."""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMETERS = ("password", "passfile", "sslpassword")  # libpq's, in a query string


def redact(url: str) -> str:
    """The URL with its password (after `user:`, or a `password=` parameter) replaced by ***.
    A password may hold `@`: the host follows the last one."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all (an unbalanced [ in a host): show nothing of it
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMETERS for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs],
                safe="*",
            )
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to hide: the URL exactly as given
    return urlunsplit(parts._replace(netloc=netloc, query=query))
