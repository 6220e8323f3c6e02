"""Shell completion: `flowjobs --install-completion` installs it, and the installed hook completes."""

from __future__ import annotations

import os
import re
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


def test_zsh_script_and_completion_of_task_ids_schedule_ids_and_statuses(tmp_path):
    """`--show-completion zsh` prints zsh (not the shell typer guesses), and the hook that
    script calls completes task ids (the configured modules' too), schedule ids (the
    configuration's too) and `--status` values — as `python -m flowjobs`, from a folder
    whose flowjobs.toml the completion reads."""
    from tests.cli_helpers import ROOT

    (tmp_path / "shop_tasks.py").write_text(
        "from flowjobs.core.registry import task\n\n\n"
        "@task('ship-order')\ndef ship_order(ctx, payload):\n    return None\n"
    )
    (tmp_path / "flowjobs.toml").write_text(
        '[tasks]\nmodules = ["shop_tasks"]\n\n'
        '[schedules.nightly-report]\ntask = "hello-world"\ncron = "0 3 * * *"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWJOBS_")}
    env |= {"PYTHONPATH": str(ROOT), "SHELL": "/bin/bash"}  # zsh asked for under bash
    python = [sys.executable, "-m", "flowjobs"]

    script = subprocess.run(
        [*python, "--show-completion", "zsh"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("#compdef flowjobs")
    assert "compdef _flowjobs_completion flowjobs" in script.stdout
    assert "_FLOWJOBS_COMPLETE=complete_zsh" in script.stdout and "COMPREPLY" not in script.stdout
    refused = subprocess.run(
        [*python, "--show-completion", "tcsh"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: --show-completion: ")

    def complete(words: str) -> list[str]:
        # what the zsh function runs: _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}"
        hook = {**env, "_FLOWJOBS_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": words}
        done = subprocess.run(python, env=hook, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return re.findall(r'"([^"]+)"', done.stdout)

    assert complete("flowjobs trigger hel") == ["hello-world"]
    assert complete("flowjobs trigger sh") == ["ship-order"]  # from the configured module
    assert "billing-run" in complete("flowjobs trigger ")
    assert complete("flowjobs runs list --task sh") == ["ship-order"]
    assert complete("flowjobs schedules preview ") == [
        "daily-cron",
        "hourly-cron",
        "nightly-report",
    ]
    assert complete("flowjobs schedules disable nig") == ["nightly-report"]
    assert complete("flowjobs runs list --status c") == ["completed", "canceled"]
    assert complete("flowjobs runs replay --status f") == ["failed"]
