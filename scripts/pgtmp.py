"""A throwaway PostgreSQL server for tests and benchmarks.

    python scripts/pgtmp.py check     # exit 0 if initdb/pg_ctl are installed
    (in Python) with pg_server() as url: ...

initdb refuses to run as root, so as root the server runs as the `postgres` user (runuser).
It listens on 127.0.0.1 on a free port, keeps its socket and data in a temp dir, runs with
fsync off (tests; in /dev/shm when it has room, so nothing waits for a disk, unless
`in_memory=False`), and is stopped (and its files removed) on exit. `pg_server(durable=True)`
(benchmarks) keeps PostgreSQL's stock durability instead: fsync, synchronous_commit and
full_page_writes on. `pg_server(extra_listen=[...])`
also listens on those addresses (they must exist on an interface already) and trusts clients
on the subnets this host is directly connected to (`samenet`): the network-partition test
reaches it from a network namespace through a veth pair. The URL yielded is still 127.0.0.1's.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager


def bindir() -> str | None:
    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(path, "initdb")):
            return path
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


MEMORY = "/dev/shm"
MEMORY_NEEDED = 8 * 1024**3  # a test session's server grows to ~2.5 GB (a database per test)


def _memory_folder() -> str | None:
    """A folder in memory (tmpfs) for a server without fsync, if there is room: every test makes
    a database of ~13 MB, which on these machines' disk took 150-280 ms each (~30 s of every
    `make test` per process) and seconds more to remove. None: the usual temp dir."""
    try:
        st = os.statvfs(MEMORY)
    except OSError:
        return None
    return MEMORY if st.f_bavail * st.f_frsize >= MEMORY_NEEDED else None


OWNER = "owner.lock"  # held (flock) by the process that started the server in this folder


def _sweep(bins: str) -> None:
    """Stop and remove the servers a killed test run left behind: a folder whose owner lock
    nobody holds (its owner is gone, whatever PID namespace it ran in). In /dev/shm each holds
    memory until removed, and may be why there is no room there now: swept before choosing."""
    import fcntl

    for folder in {MEMORY, tempfile.gettempdir()}:
        for root in glob.glob(os.path.join(folder, "flowjobs-pg-*")):
            try:
                fd = os.open(os.path.join(root, OWNER), os.O_RDWR)
            except OSError:
                continue  # no lock yet (being made now) or an older run's: not ours to judge
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is alive
            finally:
                os.close(fd)  # (the lock goes with it)
            data = os.path.join(root, "data")
            subprocess.run(
                _as_postgres([f"{bins}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                capture_output=True,
            )
            shutil.rmtree(root, ignore_errors=True)


def _own(root: str) -> int:
    """Take the owner lock of a new server folder: locked before it appears under its name, so
    that a sweep never finds it unheld while this process lives. Returns the fd to keep open."""
    import fcntl

    making = os.path.join(root, OWNER + ".new")
    fd = os.open(making, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(making, os.path.join(root, OWNER))
    return fd


@contextmanager
def pg_server(extra_listen: Sequence[str] = (), durable: bool = False, in_memory: bool = True):
    bins = bindir()
    if bins is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
    _sweep(bins)
    folder = _memory_folder() if in_memory and not durable else None
    root = tempfile.mkdtemp(prefix="flowjobs-pg-", dir=folder)
    owner = _own(root)
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = os.path.join(root, "data")
    port = free_port()

    def run(argv):
        return subprocess.run(_as_postgres(argv), check=True, capture_output=True, text=True)

    try:
        run(
            [
                f"{bins}/initdb",
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        listen = ",".join(["127.0.0.1", *extra_listen])
        if extra_listen:
            with open(os.path.join(data, "pg_hba.conf"), "a") as hba:
                hba.write("host all all samenet trust\n")
        durability = (
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
            if durable
            else "-c fsync=off"
        )
        opts = (
            f"-c listen_addresses={listen} -p {port} -k {root} {durability} -c max_connections=200"
        )
        run(
            [
                f"{bins}/pg_ctl",
                "-D",
                data,
                "-o",
                opts,
                "-l",
                os.path.join(root, "log"),
                "-w",
                "-t",
                "30",
                "start",
            ]
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        os.close(owner)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([f"{bins}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
        os.close(owner)


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        sys.exit(0 if bindir() else 1)
    with pg_server() as url:
        print(url)
