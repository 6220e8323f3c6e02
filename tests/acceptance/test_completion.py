"""Shell completion: `flowjobs --install-completion` installs it, and the installed hook completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOWJOBS = str(Path(sys.executable).with_name("flowjobs"))  # the console script, as a user types it


def test_install_completion_and_complete_commands(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    installed = subprocess.run(
        [FLOWJOBS, "--install-completion", "bash"], env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    script = (tmp_path / ".bash_completions" / "flowjobs.sh").read_text()
    assert "_FLOWJOBS_COMPLETE=complete_bash" in script
    assert "flowjobs.sh" in (tmp_path / ".bashrc").read_text()

    def complete(words: str) -> list[str]:
        hook = {
            **env,
            "_FLOWJOBS_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return subprocess.run([FLOWJOBS], env=hook, capture_output=True, text=True).stdout.split()

    assert complete("flowjobs ru") == ["run-worker", "run-scheduler", "runs"]
    assert complete("flowjobs billing s") == ["show", "summary"]
    assert "replay-event" in complete("flowjobs rep")
