"""The dashboard in a real headless Chromium with JavaScript off: pages load, filters (plain GET
forms) work, a run's detail shows its traceback; only the overview carries a script (its live
refresh, tested in test_dashboard_live.py), so the rest works without one. A screenshot of each
page is kept in test-artifacts/dashboard/."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from flowjobs.store.states import RunStatus
from tests.billing_helpers import drain
from tests.cli_helpers import cli_env, serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url: str, screenshot: str | None = None) -> str:
    """The DOM Chromium builds for `url` (JavaScript disabled); optionally a screenshot."""
    if CHROMIUM is None:
        raise AssertionError("chromium is not installed: `make chromium` (make test does it)")
    flags = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ]
    if screenshot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*flags, f"--screenshot={ARTIFACTS / screenshot}", url],
            capture_output=True,
            timeout=90,
            check=True,
        )
        assert (ARTIFACTS / screenshot).stat().st_size > 5000
    return subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True
    ).stdout


@pytest.fixture
def dashboard(sqlite_url, tmp_path):
    """On SQLite only: the pages read through the same store code on both backends (tested
    elsewhere), and each Chromium start costs a second or two."""
    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(
        make_settings(
            sqlite_url,
            tmp_path,
            schedules={"minutely": {"task": "hello-world", "cron": "* * * * *"}},
        )
    )
    ok = rt.trigger("hello-world", {"customer": "Ada <ada@example.com>"})
    bad = rt.trigger("test-exit")  # fails with a traceback
    drain(rt)
    rt.scheduler.tick()
    env = cli_env(rt.db.url, FLOWJOBS_DASHBOARD_ALLOW_ACTIONS="true")
    config = tmp_path / "flowjobs.toml"
    config.write_text(
        '[schedules.minutely]\ntask = "hello-world"\ncron = "* * * * *"\n'
        "[schedules.hourly-cron]\nenabled = false\n[schedules.daily-cron]\nenabled = false\n"
    )
    env["FLOWJOBS_CONFIG"] = str(config)
    try:
        with serving(env, tmp_path / "serve.log") as (_proc, base):
            yield rt, base, ok.id, bad.id
    finally:
        rt.close()


def test_pages_load_filter_and_show_a_traceback_in_chromium(dashboard):
    rt, base, ok_id, bad_id = dashboard
    runs = browse(f"{base}/runs", "runs.png")
    assert ok_id in runs and bad_id in runs and "Filter" in runs and "<script" not in runs
    failed = browse(f"{base}/runs?status=failed", "runs-failed.png")
    assert bad_id in failed and ok_id not in failed
    by_task = browse(f"{base}/runs?task=hello-world")
    assert ok_id in by_task and bad_id not in by_task
    detail = browse(f"{base}/runs/{bad_id}", "run-detail.png")
    assert "Traceback (most recent call last)" in detail and 'class="traceback"' in detail
    assert "Replay this run" in detail
    escaped = browse(f"{base}/runs/{ok_id}")
    assert "Ada &lt;ada@example.com&gt;" in escaped  # user data is escaped, never markup
    schedules = browse(f"{base}/schedules", "schedules.png")
    assert "minutely" in schedules and "* * * * *" in schedules
    events = browse(f"{base}/events", "events.png")
    assert "no events" in events


def test_replay_needs_confirmation_and_links_the_new_run(dashboard):
    rt, base, ok_id, _ = dashboard
    import re

    confirm = browse(f"{base}/runs/{ok_id}/replay")
    assert "Yes, replay it" in confirm
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', confirm).group(1)
    request = urllib.request.Request(
        f"{base}/runs/{ok_id}/replay", data=f"confirm=yes&csrf={token}".encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        new_id = urllib.parse.urlparse(response.url).path.rsplit("/", 1)[1]
    assert rt.store.get_run(new_id)["replay_of"] == ok_id
    unconfirmed = urllib.request.Request(
        f"{base}/runs/{ok_id}/replay", data=f"csrf={token}".encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unconfirmed, timeout=10)
    assert refused.value.code == 400
    # the new run has not ended: replaying it would run its task twice
    token = re.search(
        r'name="csrf" value="([0-9a-f]{64})"', browse(f"{base}/runs/{new_id}/replay")
    ).group(1)
    live = urllib.request.Request(
        f"{base}/runs/{new_id}/replay", data=f"confirm=yes&csrf={token}".encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(live, timeout=10)
    assert refused.value.code == 409
    assert f"run {new_id} is queued, not ended" in refused.value.read().decode()
    page = browse(f"{base}/runs/{new_id}")  # so its page offers no replay, only a cancel
    assert "Replay this run" not in page and "Cancel this run" in page
    assert [r["id"] for r in rt.store.list_runs(limit=100) if r["replay_of"] == new_id] == []


def test_read_only_by_default_and_password_protected_beyond_loopback(make_runtime, tmp_path):
    from tests.cli_helpers import flowjobs

    rt = make_runtime()
    env = cli_env(rt.db.url)
    refused = flowjobs("serve", "--host", "0.0.0.0", "--port", "0", env=env)
    assert refused.returncode == 2 and "set [dashboard] password" in refused.stderr

    from flowjobs.http.dashboard.app import Dashboard

    def call(app, path, method="GET", auth=None):
        import io

        status = {}
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "wsgi.input": io.BytesIO(b""),
        }
        if auth:
            environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(auth.encode()).decode()
        b"".join(app(environ, lambda code, headers: status.setdefault("code", code)))
        return status["code"]

    run = rt.trigger("noop")
    # read-only: refused before any token check
    for path in (
        f"/runs/{run.id}/replay",
        f"/runs/{run.id}/cancel",
        "/billing/billing-runs/x/retry",
    ):
        assert call(Dashboard(rt), path, "POST").startswith("403")
        assert call(Dashboard(rt), path).startswith("403")
    assert rt.store.get_run(run.id)["status"] == RunStatus.QUEUED
    locked = make_runtime(dashboard={"password": "s3cret"})
    assert call(Dashboard(locked), "/runs").startswith("401")
    assert call(Dashboard(locked), "/").startswith("401")
    assert call(Dashboard(locked), "/api/overview").startswith("401")
    assert call(Dashboard(locked), "/runs", auth="admin:wrong").startswith("401")
    assert call(Dashboard(locked), "/runs", auth="admin:s3cret").startswith("200")


def wsgi(app, path, method="GET", body=b"", **headers) -> tuple[str, dict, str]:
    """One request to the dashboard's WSGI app: (status, headers, body)."""
    import io

    answer: dict = {}
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items() if k != "content_type"},
    }
    if "content_type" in headers:
        environ["CONTENT_TYPE"] = headers["content_type"]

    def start(status, header_list, exc_info=None):
        answer.update(status=status, headers=dict(header_list))

    text = b"".join(app(environ, start)).decode()
    return answer["status"], answer["headers"], text


def test_the_dashboard_refuses_other_hosts_other_sites_and_framing(make_runtime):
    """A proxy forwarding `/`, or a web page that rebinds its name to 127.0.0.1, reached an
    open dashboard; a form on another site could post its actions (the CSRF token is one per
    path, and any page can fetch it); the pages could be framed; a `javascript:` URL stored as
    a PDF's became a link; a non-ASCII password in Basic auth was a 500."""
    from flowjobs.http.dashboard.app import Dashboard

    rt = make_runtime(dashboard={"allow_actions": True})
    app = Dashboard(rt)
    status, headers, _ = wsgi(app, "/runs", host="127.0.0.1:8080")
    assert status.startswith("200")
    assert (
        headers["X-Frame-Options"] == "DENY"
        and "frame-ancestors 'none'" in (headers["Content-Security-Policy"])
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert wsgi(app, "/runs", host="localhost")[0].startswith("200")
    status, _, text = wsgi(app, "/runs", host="billing.example.com")
    assert status.startswith("403") and "localhost only unless [dashboard] password" in text

    run = rt.trigger("noop", delay=3600)
    path = f"/runs/{run.id}/cancel"
    form = f"confirm=yes&csrf={app.csrf_token(path)}".encode()
    plain = {"host": "127.0.0.1:8080", "content_type": "application/x-www-form-urlencoded"}
    for refused, expected in (
        ({**plain, "origin": "https://evil.example"}, "403"),
        ({**plain, "sec_fetch_site": "cross-site"}, "403"),
        ({**plain, "content_type": "text/plain"}, "415"),
    ):
        assert wsgi(app, path, "POST", form, **refused)[0].startswith(expected), refused
    assert wsgi(app, path, "POST", b"\xff\xfe=1", **plain)[0].startswith("400")
    assert rt.store.get_run(run.id)["status"] == RunStatus.DELAYED
    same = {**plain, "origin": "http://127.0.0.1:8080", "sec_fetch_site": "same-origin"}
    assert wsgi(app, path, "POST", form, **same)[0].startswith("303")
    assert rt.store.get_run(run.id)["status"] == RunStatus.CANCELED

    locked = Dashboard(make_runtime(dashboard={"password": "s3cret"}))
    for creds in ("é:x", "admin:é"):
        auth = "Basic " + base64.b64encode(creds.encode()).decode()
        assert wsgi(locked, "/runs", host="billing.example.com", authorization=auth)[0].startswith(
            "401"
        )
    auth = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert wsgi(locked, "/runs", host="billing.example.com", authorization=auth)[0].startswith(
        "200"
    )


def test_a_pdf_url_that_is_not_a_web_or_file_url_is_shown_not_linked(make_runtime):
    from flowjobs.http.dashboard.app import Dashboard
    from tests.billing_helpers import invoice_for_a_new_customer

    rt = make_runtime()
    with rt.billing.unit() as s:
        invoice_for_a_new_customer(
            s,
            "inv_x",
            "ACME-00000",
            pdf_url="javascript:alert(document.cookie)",
            receipt_pdf_url="file:///var/lib/flowjobs/documents/r.pdf",
        )
    for path in ("/billing/invoices", "/billing/invoices/inv_x"):
        _, _, html = wsgi(Dashboard(rt), path)
        assert 'href="javascript:' not in html and "javascript:alert" in html
    _, _, html = wsgi(Dashboard(rt), "/billing/invoices")
    assert '<a href="file:///var/lib/flowjobs/documents/r.pdf">receipt PDF</a>' in html


def test_runs_are_paged_newest_first(make_runtime, clock):
    import io

    from flowjobs.http.dashboard.app import Dashboard

    rt = make_runtime(dashboard={"page_size": 5})
    ids = []
    for i in range(7):
        ids.append(rt.trigger("hello-world", {"i": i}).id)
        clock.advance(1)

    def page(query):
        out = b"".join(
            Dashboard(rt)(
                {
                    "REQUEST_METHOD": "GET",
                    "PATH_INFO": "/runs",
                    "QUERY_STRING": query,
                    "wsgi.input": io.BytesIO(),
                },
                lambda *a: None,
            )
        ).decode()
        return [i for i in ids if i in out], out

    first, html = page("")
    assert first == ids[2:] and html.index(ids[6]) < html.index(ids[2]) and "older →" in html
    second, html = page("page=2")
    assert second == ids[:2] and "← newer" in html and "older →" not in html
    assert page("since=2099-01-01T00:00:00Z")[0] == []
