"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
the browser reads commands on fd 3 and writes replies on fd 4, NUL-separated JSON), so a test
can load a page with its JavaScript running, evaluate expressions in it, and wait for the page
to change — with no client library and no network port."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


class Browser:
    def __init__(self, width: int = 1280, height: int = 900):
        if CHROMIUM is None:
            raise AssertionError("chromium is not installed: `make chromium` (make test does it)")
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()

        def wire():  # in the child: our pipe ends become fds 3 (commands) and 4 (replies)
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self._buffer = b""
        self._next = 0
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise AssertionError("chromium did not answer in time")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 30) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def wait_for(self, expression: str, timeout: float = 30):
        """Poll `expression` in the page until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}")

    def text(self, element_id: str) -> str:
        return self.evaluate(f"document.getElementById({json.dumps(element_id)}).textContent")

    def screenshot(self, name: str) -> Path:
        import base64

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(data["data"]))
        assert path.stat().st_size > 5000
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except AssertionError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to)
        os.close(self._from)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(rt, tmp_path, password: str | None = None, **env_extra):
    """`flowjobs serve --port 0` on 127.0.0.1 against `rt`'s database, as a context manager
    yielding its base URL; the built-in crons off, one minutely schedule."""
    import contextlib
    import signal
    import sys

    from tests.cli_helpers import cli_env, listening_url

    @contextlib.contextmanager
    def running():
        env = cli_env(rt.db.url, **env_extra)
        if password:
            env["FLOWJOBS_DASHBOARD_PASSWORD"] = password
        config = tmp_path / "serve-flowjobs.toml"
        config.write_text(
            '[schedules.minutely]\ntask = "hello-world"\ncron = "* * * * *"\n'
            "[schedules.hourly-cron]\nenabled = false\n[schedules.daily-cron]\nenabled = false\n"
        )
        env["FLOWJOBS_CONFIG"] = str(config)
        log = tmp_path / "serve.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flowjobs", "serve", "--port", "0"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            yield listening_url(log)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)

    return running()
