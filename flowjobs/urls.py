"""Database URLs as they may be shown: in messages, logs and status lines."""

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMETERS = ("password", "passfile", "sslpassword")  # libpq's, in a query string


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")


def redact(text: str) -> str:
    """`text` with the password of the URL in it (after `user:`, or a `password=` parameter)
    replaced by ***; `text` may be the URL, or hold it (`--database=URL`). A password may hold
    `@`: the host follows the last one."""
    found = _URL.search(text)
    if found is None:
        return text
    return text[: found.start()] + _redact_url(found.group()) + text[found.end() :]


def _redact_url(url: str) -> str:
    url = _mask_userinfo(url)
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


def _mask_userinfo(url: str) -> str:
    """The password masked up to the last `@` before the query, even where it holds a `/`,
    which ends the authority for `urlsplit` (`u:p@ss:w/rd@host` showed `u:***@ss:w/rd@host`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or rest.startswith("/"):  # no authority (sqlite:////path)
        return url
    head, mark, query = rest.partition("?")
    if "@" not in head:
        return url
    userinfo, host = head.rsplit("@", 1)
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{mark}{query}"
