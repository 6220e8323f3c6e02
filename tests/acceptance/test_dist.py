"""`make dist`'s single file runs flowjobs on a bare Python 3.11: no virtualenv, no site-packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BARE = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    """Built the way `make dist` builds it (shiv, the project and its dependencies)."""
    out = tmp_path_factory.mktemp("dist") / "flowjobs.pyz"
    shiv = Path(sys.executable).with_name("shiv")
    subprocess.run(
        [str(shiv), "-c", "flowjobs", "--compile-pyc", "-o", str(out), str(ROOT), "-q"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.mark.slow
def test_the_single_file_runs_help_and_a_burst_worker_without_a_virtualenv(pyz, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(pyz, work / "flowjobs.pyz")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "SHIV_ROOT": str(work / ".shiv"),
        "FLOWJOBS_DATABASE_URL": f"sqlite:///{work / 'jobs.db'}",
    }

    def run(*args):
        # -I: ignore the environment and user site; -S: not even the interpreter's site-packages
        return subprocess.run(
            [BARE, "-I", "-S", "flowjobs.pyz", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    helped = run("--help")
    assert helped.returncode == 0 and "run-worker" in helped.stdout, helped.stderr
    run_id = run("trigger", "hello-world", "--payload", '{"from": "pyz"}').stdout.strip()
    assert run_id.startswith("run_")
    worker = run("run-worker", "--burst", "--no-scheduler")
    assert worker.returncode == 0, worker.stderr
    shown = run("runs", "show", run_id, "--json")
    assert json.loads(shown.stdout)["status"] == "completed", shown.stderr
