"""The deployment kit stays true to the code: the production configuration is valid, and every
command the systemd units and the crontab run exists with those options."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from flowjobs.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def commands() -> list[list[str]]:
    found = []
    for path in sorted(DEPLOY.iterdir()):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("ExecStart="):
                line = line.removeprefix("ExecStart=")
            elif path.name == "crontab.example" and not line.startswith("#") and line:
                line = line.split("flowjobs/venv/bin/flowjobs", 1)[1].split(">>")[0]
                line = "/opt/flowjobs/venv/bin/flowjobs" + line
            else:
                continue
            args = shlex.split(line)[1:]
            while "--config" in args:
                i = args.index("--config")
                del args[i : i + 2]
            found.append(args)
    return found


def test_production_config_is_valid():
    settings = load_settings(str(DEPLOY / "flowjobs.production.toml"), environ={})
    assert settings.database.url.startswith("postgresql") and settings.stripe.mode == "live"


def test_every_deployed_command_exists():
    found = commands()
    assert len(found) >= 4
    for args in found:
        result = subprocess.run(
            [sys.executable, "-m", "flowjobs", *args, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, (args, result.stderr)
