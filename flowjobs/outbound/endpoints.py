"""Merchants' webhook endpoints: add, list, enable/disable, rotate the secret, send a test.

An endpoint belongs to one organisation and one mode (livemode true/false), like upstream's
per-organisation, per-mode Svix application. Its event-type filter is a list of Flowglad event
types (spec §3 FlowgladEventType); empty means every type. Rotating the secret replaces it at
once: requests signed from then on verify only with the new secret.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing.models import Organization
from flowjobs.config import OutboundWebhookSettings
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import BadInput, NotFound
from flowjobs.outbound import signing
from flowjobs.outbound.models import WebhookEndpoint

EVENT_TYPES = tuple(t.value for t in E.FlowgladEventType)
TEST_EVENT_TYPE = "webhook.test"


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")  # `_`: docker-compose service names


def check_url(url: str) -> str:
    """An http(s) URL every delivery can be sent to, or BadInput saying why not. Each refusal
    here was a URL accepted once whose every delivery then failed for good (a space or a
    non-ASCII character in the path), was retried for a day (`http://-bad-.com/`, port 0), or
    went elsewhere than it reads (credentials, which are never sent; a backslash, which sends
    `http://a.com\\@b.com/` to b.com)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for http://[::1/
        raise BadInput(f"--url is not a valid URL: {exc} (got {url!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--url must be an http:// or https:// URL with a host (got {url!r})")
    if "\\" in url:
        raise BadInput(f"--url must not contain a backslash (got {url!r})")
    if "@" in parts.netloc:
        raise BadInput(
            f"--url must not carry credentials (user:password@): they are not sent; put a "
            f"token in the path or query instead (got {_masked(parts)})"
        )
    rest = url[len(f"{parts.scheme}://{parts.netloc}") :]
    bad = [c for c in rest if ord(c) <= 0x20 or ord(c) >= 0x7F]
    if bad:
        raise BadInput(
            f"--url has {bad[0]!r} in its path or query: percent-encode it (got {url!r})"
        )
    try:
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise BadInput(f"--url has an invalid port (got {url!r})") from None
    if port == 0:
        raise BadInput(f"--url has an invalid port 0 (got {url!r})")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
        return url
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode()  # what the connection does: `bad..host` fails
    except UnicodeError:
        raise BadInput(f"--url has an invalid host name {host!r}") from None
    if not all(_LABEL.fullmatch(label) for label in ascii_host.rstrip(".").split(".")):
        raise BadInput(
            f"--url has an invalid host name {host!r}: each dot-separated part is 1-63 letters, "
            "digits, hyphens or underscores, not starting or ending with a hyphen"
        )
    return url


def _masked(parts) -> str:
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"***@{netloc}").geturl()


def check_event_types(types: list[str] | None) -> list[str] | None:
    if not types:
        return None
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise BadInput(f"unknown event type {', '.join(unknown)} (known: {', '.join(EVENT_TYPES)})")
    return sorted(set(types))


def check_secret(secret: str) -> str:
    try:
        signing.key_of(secret)
    except ValueError as exc:
        raise BadInput(f"--secret: {exc}") from None
    return secret


def add(
    b,
    organization_id: str,
    url: str,
    *,
    livemode: bool,
    event_types: list[str] | None = None,
    description: str | None = None,
    secret: str | None = None,
) -> WebhookEndpoint:
    check_url(url)
    types = check_event_types(event_types)
    secret = check_secret(secret) if secret else signing.new_secret()
    with b.unit() as s:
        if s.get(Organization, organization_id) is None:
            raise NotFound(f"organization {organization_id} does not exist")
        endpoint = WebhookEndpoint(
            id=ids.new_id("whep"),
            organization_id=organization_id,
            livemode=livemode,
            url=url,
            secret=secret,
            event_types=types,
            enabled=True,
            description=description,
        )
        s.add(endpoint)
        return endpoint


def listing(b, organization_id: str, livemode: bool | None = None) -> list[WebhookEndpoint]:
    with b.unit() as s:
        if s.get(Organization, organization_id) is None:
            raise NotFound(f"organization {organization_id} does not exist")
        query = select(WebhookEndpoint).where(WebhookEndpoint.organization_id == organization_id)
        if livemode is not None:
            query = query.where(WebhookEndpoint.livemode == livemode)
        return list(
            s.exec(query.order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id)))
        )


def _owned(s, organization_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = s.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.organization_id != organization_id:
        raise NotFound(f"organization {organization_id} has no endpoint {endpoint_id}")
    return endpoint


def set_enabled(b, organization_id: str, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
    with b.unit() as s:
        endpoint = _owned(s, organization_id, endpoint_id)
        endpoint.enabled = enabled
        return endpoint


def rotate_secret(
    b, organization_id: str, endpoint_id: str, secret: str | None = None
) -> WebhookEndpoint:
    secret = check_secret(secret) if secret else signing.new_secret()
    with b.unit() as s:
        endpoint = _owned(s, organization_id, endpoint_id)
        if secret == endpoint.secret:
            raise BadInput("the new secret is the current one")
        endpoint.secret = secret
        endpoint.secret_rotated_at = s.info["now"]
        return endpoint


def send_test(
    b,
    settings: OutboundWebhookSettings,
    organization_id: str,
    endpoint_id: str | None = None,
    livemode: bool | None = None,
) -> list[dict]:
    """POST a signed `webhook.test` message to the endpoint(s) now, outside the queue; nothing
    is recorded. Returns one result per endpoint."""
    import json

    from flowjobs.outbound.deliver import post

    with b.unit() as s:
        if endpoint_id is not None:
            targets = [_owned(s, organization_id, endpoint_id)]
        else:
            if s.get(Organization, organization_id) is None:
                raise NotFound(f"organization {organization_id} does not exist")
            query = select(WebhookEndpoint).where(
                WebhookEndpoint.organization_id == organization_id, WebhookEndpoint.enabled == True
            )
            if livemode is not None:
                query = query.where(WebhookEndpoint.livemode == livemode)
            targets = list(
                s.exec(query.order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id)))
            )
        if not targets:
            raise BadInput(f"organization {organization_id} has no enabled endpoint")
        now = s.info["now"]
    results = []
    for endpoint in targets:
        msg_id = ids.new_id("msg")
        body = json.dumps(
            {
                "type": TEST_EVENT_TYPE,
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "data": {
                    "object": "webhook_endpoint",
                    "id": endpoint.id,
                    "organizationId": organization_id,
                    "livemode": endpoint.livemode,
                },
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        answer = post(
            endpoint.url,
            body,
            signing.headers(endpoint.secret, msg_id, int(now.timestamp()), body),
            settings,
        )
        results.append(
            {
                "endpointId": endpoint.id,
                "url": endpoint.url,
                "messageId": msg_id,
                "ok": answer.ok,
                "status": answer.status,
                "latencyMs": answer.latency_ms,
                "error": answer.error,
                "response": answer.excerpt,
            }
        )
    return results


def masked(secret: str) -> str:
    return secret[: len(signing.PREFIX)] + "…" + secret[-4:]


def as_dict(endpoint: WebhookEndpoint, show_secret: bool = False) -> dict:
    return {
        "id": endpoint.id,
        "organizationId": endpoint.organization_id,
        "livemode": endpoint.livemode,
        "url": endpoint.url,
        "eventTypes": endpoint.event_types or [],
        "enabled": endpoint.enabled,
        "description": endpoint.description,
        "secret": endpoint.secret if show_secret else masked(endpoint.secret),
        "secretRotatedAt": iso_datetime(endpoint.secret_rotated_at),
        "createdAt": iso_datetime(endpoint.created_at),
    }
