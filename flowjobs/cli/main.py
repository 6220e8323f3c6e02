"""The `flowjobs` entry point, without typer.

`flowjobs trigger …` with a plain, well-formed command line runs straight away (typer, its
click core and every other command's module cost ~100 ms of start-up that scripts and cron
jobs pay at every call); everything else, including help and every mistake, goes to the typer
application in `flowjobs.cli.app`. Errors become one line on stderr and a documented exit
status here, for both paths, Click's usage errors included (`error: … (see `flowjobs CMD
--help`)`, exit 2): never a traceback, never a usage block.

`--database URL` (a root option, like `--config`) picks the database for this command; a
command that only reads asks `State.runtime(read_only=True)`, which refuses (exit 4, naming
the place) to create a database that is not there.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import TYPE_CHECKING

from flowjobs.errors import BadInput, ConfigError, ExitStatus, FlowjobsError

if TYPE_CHECKING:
    from flowjobs.config import Settings
    from flowjobs.runtime import Runtime

LOG_FORMATS = ("auto", "text", "json")
_GLOBAL_OPTIONS = {
    "--config": "config",
    "-c": "config",
    "--log-level": "log_level",
    "--log-format": "log_format",
    "--database": "database",
}


class State:
    """What the root options decide, shared by every command: the configuration file (read
    when a command first needs the runtime) and the log level."""

    def __init__(
        self,
        config: str | None,
        log_level: str,
        log_format: str = "auto",
        database: str | None = None,
    ):
        self.config = config
        self.log_level = log_level
        self.log_format = log_format
        self.database = database  # --database URL: before FLOWJOBS_DATABASE_URL and the file
        self._settings: Settings | None = None
        self._runtime: Runtime | None = None
        self._checked = False
        self.leave_open = False  # True: the runtime is not closed at exit (`fast_trigger`)

    def settings(self) -> Settings:
        if self._settings is None:
            from flowjobs.config import load_settings

            self._settings = load_settings(self.config, database=self.database)
            if self.database:  # processes this one starts (run-worker --processes N) use it too
                os.environ["FLOWJOBS_DATABASE_URL"] = self._settings.database.url
        return self._settings

    def database_origin(self) -> str:
        """Where the database URL came from, as an operator would look for it."""
        from flowjobs.config import database_origin

        return database_origin(self.settings(), self.config, self.database)

    def runtime(self, read_only: bool = False, existing: bool = False) -> Runtime:
        """The runtime. `read_only` (the command only reads) or `existing` (it changes things
        that must already be there: a run, a subscription): a database that does not exist yet
        is an error (exit 4, naming the place) rather than created with its schema."""
        if (read_only or existing) and not self._checked:
            from flowjobs.store.inspect import require_database

            require_database(self.settings(), self.database_origin())
            self._checked = True
        if self._runtime is None:
            from flowjobs.runtime import Runtime

            self._runtime = Runtime(self.settings())
        return self._runtime


def log_level_number(name: str) -> int | None:
    level = getattr(logging, name.upper(), None)
    return (
        level
        if isinstance(level, int) and name.lower() in ("debug", "info", "warning", "error")
        else None
    )


def setup(
    config: str | None, log_level: str, log_format: str, database: str | None = None
) -> State:
    """Configure logging for the process; the State every command receives."""
    from flowjobs.logs import configure

    level = log_level_number(log_level)
    if level is None:  # both callers check the option first
        raise ValueError(f"unknown log level {log_level!r}")
    configure(level, log_format)
    if level > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("stripe").setLevel(logging.WARNING)  # one INFO line per request otherwise
    global _STATE
    _STATE = State(config, log_level, log_format, database)
    return _STATE


_STATE: State | None = None  # this process's, so that `guarded` can name the database in errors


def database_failure(exc: BaseException) -> FlowjobsError | None:
    """A driver error an operator can meet (locked, full, gone away, read-only) as a flowjobs
    error naming the database; None for anything else."""
    from flowjobs.store import failures

    runtime = _STATE._runtime if _STATE is not None else None
    if runtime is not None and "db" in runtime.__dict__:
        return runtime.db.translate(exc)
    settings = _STATE._settings if _STATE is not None else None
    url = settings.database_url() if settings is not None else ""
    if url.startswith("sqlite:///"):  # failed before the runtime's database was made
        path = url[len("sqlite:///") :]
        return failures.translate(exc, path, path)
    if url:
        from flowjobs.store.db import redact

        return failures.translate(exc, redact(url))
    return failures.translate(exc, "(the configured one)")


def take_option(arg: str, rest: list[str], options: dict[str, str]) -> tuple[str, str] | None:
    """`--name value`, `--name=value` or `-n value` as (its key in `options`, value), the value
    taken from `rest` when separate; None when not plainly well formed (the typer app decides)."""
    name, eq, value = arg.partition("=")
    if name not in options or (eq and not name.startswith("--")):
        return None
    if not eq:
        if not rest:
            return None
        value = rest.pop(0)
    if value.startswith("-") and value != "-":
        return None
    return options[name], value


def parse_root(argv: list[str]) -> tuple[dict, list[str]] | None:
    """The root options before the command, as the typer app reads them, and the rest; None
    when they are not plainly well formed (the typer app then reads them)."""
    root: dict[str, str | None] = {
        "config": os.environ.get("FLOWJOBS_CONFIG") or None,
        "log_level": os.environ.get("FLOWJOBS_LOG_LEVEL") or "info",
        "log_format": os.environ.get("FLOWJOBS_LOG_FORMAT") or "auto",
        "database": None,
    }
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        taken = take_option(rest.pop(0), rest, _GLOBAL_OPTIONS)
        if taken is None:
            return None
        root[taken[0]] = taken[1]
    level = root["log_level"]
    if level is None or log_level_number(level) is None or root["log_format"] not in LOG_FORMATS:
        return None
    return root, rest


def fast_trigger(argv: list[str]) -> int | None:
    """Run `flowjobs [root options] trigger …` without typer; None when it is not that."""
    parsed = parse_root(argv)
    if parsed is None or not parsed[1] or parsed[1][0] != "trigger":
        return None
    from flowjobs.cli.triggering import parse_argv, run_trigger

    params = parse_argv(parsed[1][1:])
    if params is None:
        return None
    state = setup(**parsed[0])
    state.leave_open = True  # `_quick_exit`: one run written, no teardown to pay for
    return run_trigger(state, **params)


def guarded(command) -> None:
    """Run `command()` and exit with its status; errors are one line on stderr. The runtime
    the command opened is closed on the way out, whatever happened: its background
    checkpointer (if it started one) stops and the database connections close, so that an SQLite
    WAL is checkpointed back into the database rather than left behind (a long `serve`); see
    `_close`."""
    try:
        code = _closing(command)
        sys.stdout.flush()  # here, not at interpreter exit: a closed pipe is met below
    except ConfigError as exc:
        sys.stderr.write(f"error: invalid {exc.source}:\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        sys.exit(int(exc.exit_status))
    except FlowjobsError as exc:
        sys.stderr.write(f"error: {exc}{_looked_in(exc)}\n")
        sys.exit(int(exc.exit_status))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except BrokenPipeError as exc:
        if not _stdout_closed():  # another pipe (a socket, stderr): an error like any other
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(int(ExitStatus.FAILURE))
        _reader_gone()
    except Exception as exc:  # a bug: say so in one line, never a traceback
        known = database_failure(exc)
        if known is not None:
            sys.stderr.write(f"error: {known}\n")
            _reclaim_space(known)
            logging.getLogger("flowjobs").debug("database failure", exc_info=True)
            sys.exit(int(known.exit_status))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            # the output's disk (`runs list > file` on a full disk: exit 6), or its terminal
            # gone (EIO: exit 1); one line
            where = f" ({exc.filename})" if exc.filename else " (writing the output)"
            sys.stderr.write(f"error: {exc.strerror}{where}\n")
            _silence_stdout()
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            sys.exit(int(ExitStatus.DISK_FULL if full else ExitStatus.FAILURE))
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(run with --log-level debug and report it)\n"
        )
        logging.getLogger("flowjobs").debug("unexpected error", exc_info=True)
        sys.exit(int(ExitStatus.FAILURE))
    if code:
        sys.exit(code)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (the kernel reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # not a file descriptor at all
        return False


def _reader_gone() -> None:
    """stdout's reader stopped reading (`| head -1`, `| grep -q`): it has what it wanted, and
    the command did what it was asked; exit 0 without a word, as a script in a pipeline under
    `set -o pipefail` needs. The rest of the output goes nowhere, so the flush at exit cannot
    fail again."""
    _silence_stdout()
    sys.exit(0)


def _silence_stdout() -> None:
    """The rest of stdout to /dev/null: the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


CLOSE_WAIT_S = 10.0  # seconds the teardown at exit may take before the process leaves anyway


def _closing(command):
    try:
        return command()
    finally:
        state = _STATE
        runtime = state._runtime if state is not None and not state.leave_open else None
        if runtime is not None:
            _close(runtime)


def _close(runtime) -> None:
    """Close `runtime` from a helper thread, waiting at most CLOSE_WAIT_S: a thread the command
    left behind (a task past `--shutdown-timeout`, a request still being served) may hold the
    write lock, and the process must exit all the same. Nothing is lost either way: SQLite's
    WAL is durable and the next connection reads it."""
    import threading

    log = logging.getLogger("flowjobs")

    def close() -> None:
        try:
            runtime.close()
        except Exception as exc:  # a database that went away: nothing left to close well
            log.debug("closing the runtime: %s", exc)

    closer = threading.Thread(target=close, name="flowjobs-close", daemon=True)
    closer.start()
    closer.join(CLOSE_WAIT_S)
    if closer.is_alive():
        log.debug("the database was not closed within %.0f s; exiting without", CLOSE_WAIT_S)


def _looked_in(error: FlowjobsError) -> str:
    """For a "not found": the database it was looked for in (a wrong database is the usual
    cause of a run id that "vanished")."""
    from flowjobs.errors import NotFound

    runtime = _STATE._runtime if _STATE is not None else None
    if not isinstance(error, NotFound) or not error.in_database or runtime is None:
        return ""
    try:
        from flowjobs.store.db import redact

        url = runtime.settings.database_url()
        where = url[len("sqlite:///") :] if url.startswith("sqlite:///") else redact(url)
    except Exception:
        return ""
    return f" (looked in database {where})" if where not in str(error) else ""


def _reclaim_space(error: FlowjobsError) -> None:
    """After a write failed for space, truncate an SQLite WAL, so that the space an operator
    frees is not eaten again by a WAL that is never checkpointed below its size."""
    from flowjobs.errors import DiskFull

    runtime = _STATE._runtime if _STATE is not None else None
    if isinstance(error, DiskFull) and runtime is not None and "db" in runtime.__dict__:
        runtime.db.reclaim_space()


def _click_exceptions():
    import importlib

    try:
        return importlib.import_module("typer._click.exceptions")  # typer ≥ 0.24 bundles click
    except ImportError:  # pragma: no cover - an older typer on plain click
        return importlib.import_module("click.exceptions")


def _command_names(root, argv: list[str]) -> list[str]:
    """The (sub)command names `argv` walks down from the root command (its options and their
    values skipped): `--database x runs list --status` → ["runs", "list"]."""
    names: list[str] = []
    command, words = root, iter(argv)
    for word in words:
        if word == "--":
            break
        if word.startswith("-"):
            option = next((p for p in command.params if word.split("=")[0] in p.opts), None)
            takes_value = option is not None and not getattr(option, "is_flag", False)
            if takes_value and "=" not in word:
                next(words, None)
            continue
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        names.append(word)
        command = sub
    return names


def usage_error(exc, argv: list[str] | None = None, root=None) -> str:
    """A Click usage error as flowjobs writes every error: one `error: …` line, with where
    to read more (instead of Click's usage block or typer's boxed panel; `root`: the root
    command, to name the subcommand when Click gives no context). An option of
    flowjobs itself given after the command (`runs list --database x.db`) is named as such,
    with the command line it belongs in (made from `argv`, default `sys.argv[1:]`), rather
    than offered the command's own options."""
    names: list[str] = []
    ctx = getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:  # the root's name may be `python -m …`
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    argv = sys.argv[1:] if argv is None else argv
    if not names and root is not None:  # some errors come without their command's context
        names = _command_names(root, argv)
    misplaced = _misplaced_root_option(exc, names, argv)
    if misplaced is not None:
        return f"error: {misplaced}"
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    path = " ".join(["flowjobs", *names])
    return f"error: {message} (see `{path} --help`)"


def _misplaced_root_option(exc, names: list[str], argv: list[str]) -> str | None:
    """For an unknown option of a command that is one of the root command's own options (read
    from the root, as typer declares them): that, and the command line with it moved before
    the command; None for any other usage error."""
    import shlex

    from flowjobs.urls import redact

    name = getattr(exc, "option_name", None)
    ctx = getattr(exc, "ctx", None)
    if not name or ctx is None or not names:
        return None
    option = next(
        (
            param
            for param in ctx.find_root().command.params
            if param.param_type_name == "option" and name in (*param.opts, *param.secondary_opts)
        ),
        None,
    )
    if option is None:
        return None
    takes_value = not option.is_flag and not option.count
    placeholder = option.metavar or "VALUE"
    start = argv.index(names[0]) if names[0] in argv else len(argv)
    at = None  # where it was typed, after the command
    for i in range(start + 1, len(argv)):
        if argv[i] == name or (name.startswith("--") and argv[i].startswith(name + "=")):
            at = i
            break
    if at is None:  # not found as typed: the option before the command path
        line = [name, *([placeholder] if takes_value else []), *names]
    else:
        moved, taken = [argv[at]], 1
        if takes_value and argv[at] == name:
            following = argv[at + 1] if at + 1 < len(argv) else None
            if following is None or (following.startswith("-") and following != "-"):
                moved.append(placeholder)
            else:
                moved.append(following)
                taken = 2
        line = [*argv[:start], *moved, *argv[start:at], *argv[at + taken :]]
    # a password in a database URL is not echoed
    example = shlex.join(["flowjobs", *(redact(arg) if "://" in arg else arg for arg in line)])
    if "\n" in example:  # one line always: a value of several lines stays out
        example = " ".join(["flowjobs", name, *([placeholder] if takes_value else []), *names])
    return f"{name} is an option of flowjobs itself: put it before the command ({example})"


def _typer_app() -> int:
    import typer.main

    from flowjobs.cli.app import app

    errors = _click_exceptions()
    shown = _completion_for_shell(sys.argv[1:])
    if shown is not None:
        return shown
    try:
        # prog_name: completion answers to _FLOWJOBS_COMPLETE and usage says `flowjobs`, however
        # it was started (`python -m flowjobs`, the zipapp)
        code = typer.main.get_command(app).main(prog_name="flowjobs", standalone_mode=False)
    except SystemExit:
        # typer's answer to EPIPE is exit 1 with both streams wrapped in PacifyFlushWrapper
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.stdout = getattr(sys.stdout, "wrapped", sys.__stdout__)
            sys.stderr = getattr(sys.stderr, "wrapped", sys.__stderr__)
            if _stdout_closed():
                _reader_gone()
            print("error: a pipe the command wrote to was closed", file=sys.stderr)
        raise
    except errors.NoArgsIsHelpError as exc:  # `flowjobs runs`: the group's help
        exc.show()
        return int(ExitStatus.BAD_INPUT)
    except errors.UsageError as exc:  # unknown option, missing argument, bad value: exit 2
        sys.stderr.write(usage_error(exc, root=typer.main.get_command(app)) + "\n")
        return int(ExitStatus.BAD_INPUT)
    except errors.ClickException as exc:
        sys.stderr.write(f"error: {' '.join(exc.format_message().split())}\n")
        return exc.exit_code
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return 130
    return code if isinstance(code, int) else 0


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _completion_for_shell(args: list[str]) -> int | None:
    """`--show-completion SHELL` / `--install-completion SHELL` for the shell named (typer's own
    flags take no value and would answer for the shell it guesses: bash under zsh). None when
    the command line names no shell."""
    for flag in ("--show-completion", "--install-completion"):
        shell = None
        for i, arg in enumerate(args):
            if arg.startswith(flag + "="):
                shell = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(args) and not args[i + 1].startswith("-"):
                shell = args[i + 1]
        if shell is None:
            continue
        if shell not in SHELLS:
            raise BadInput(
                f"{flag}: no completion for the shell {shell!r}; use one of: {', '.join(SHELLS)}"
            )
        from typer._completion_shared import get_completion_script, install

        if flag == "--show-completion":
            sys.stdout.write(
                get_completion_script(
                    prog_name="flowjobs", complete_var="_FLOWJOBS_COMPLETE", shell=shell
                )
                + "\n"
            )
        else:
            _shell, path = install(
                shell=shell, prog_name="flowjobs", complete_var="_FLOWJOBS_COMPLETE"
            )
            sys.stdout.write(
                f"{shell} completion installed in {path}\n"
                "Completion will take effect once you restart the terminal\n"
            )
        return 0
    return None


def main() -> None:
    ran_fast = False

    def command():
        nonlocal ran_fast
        code = fast_trigger(sys.argv[1:])
        if code is None:
            return _typer_app()
        ran_fast = True
        return code

    try:
        guarded(command)
    except SystemExit as exc:
        if not ran_fast:
            raise
        _quick_exit(exc.code if isinstance(exc.code, int) else 1)
    if ran_fast:
        _quick_exit(0)


def _quick_exit(code: int) -> None:
    """Leave without tearing the interpreter down (~50 ms of freeing modules and objects):
    the run is committed, output is flushed here, and SQLite's WAL is left as after any exit
    (the next connection reads it). Only `trigger`'s fast path ends this way."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
