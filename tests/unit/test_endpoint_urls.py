"""`endpoints add --url`: the URLs refused because every delivery to them would fail, be
retried for a day, or go somewhere else than the URL reads (flowjobs.outbound.endpoints)."""

import pytest

from flowjobs.errors import BadInput
from flowjobs.outbound.endpoints import check_url


@pytest.mark.parametrize(
    "url, why",
    [
        ("https://example.com/a b", "' ' in its path or query: percent-encode it"),
        ("https://example.com/über", "'ü' in its path or query"),
        ("https://example.com/x?q=\x7f", "in its path or query"),
        ("http://exa mple.com/", "invalid host name 'exa mple.com'"),
        ("http://-bad-.com/", "invalid host name '-bad-.com'"),
        ("http://example.com:0/", "invalid port 0"),
        ("http://user:pw@example.com/x", "must not carry credentials"),
        ("http://example.com\\@evil.com/", "must not contain a backslash"),
    ],
)
def test_a_url_no_delivery_could_reach_as_it_reads_is_refused(url, why):
    with pytest.raises(BadInput, match=None) as refused:
        check_url(url)
    assert why in str(refused.value)
    assert "pw" not in str(refused.value)  # a password is not echoed back


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/hook",
        "https://bücher.de/x?a=1",  # an IDN host: encoded by the connection
        "http://127.0.0.1:9/x",
        "http://[::1]:80/",
        "https://hooks.example.com/flowglad?token=abc%20d",
        "http://billing_receiver:8080/hook",  # a docker-compose service name
    ],
)
def test_urls_a_delivery_can_reach_are_accepted(url):
    assert check_url(url) == url
