"""A network partition on PostgreSQL, with real processes (issue 12).

The test runs its own PostgreSQL server listening on 127.0.0.1 and on a private address at the
root end of a veth pair whose other end is in a network namespace it creates. A worker inside
the namespace (`ip netns exec NS python -m flowjobs run-worker`) claims a blocking run; the
link is cut (`ip link set <root end> down`: every packet is dropped, nothing is refused, as in
a real partition); the stale worker cannot renew its lease, which expires; a second worker on
loopback rescues the run and completes it. The stale worker's task finishes during the
partition too; when the link returns, its late write is refused by the fence: the takeover
attempt stands, the stale attempt is recorded `crashed`, nothing completes twice, and the stale
worker — which never died — goes on to run new work.

Everything the test creates (namespace, veth pair, server, processes) is removed in teardown.
If the machine does not allow network namespaces, the test fails saying so: it never skips.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowjobs.runtime import Runtime
from flowjobs.store.db import Database
from flowjobs.store.migrate import upgrade
from tests.acceptance.faults import invariants
from tests.cli_helpers import cli_env, start_worker, wait_until
from tests.conftest import make_settings

LEASE = 3.0  # seconds: short, yet long enough that a busy 2-core machine renews it in time
_names = itertools.count()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def free_subnet() -> int:
    """The third octet of a 10.200.N.0/30 that no interface of this machine uses."""
    used = ip("-4", "-o", "addr", "show").stdout
    for n in [os.getpid() % 250 + i for i in range(250)]:
        if f" 10.200.{n % 250}." not in used:
            return n % 250
    raise RuntimeError("no free 10.200.N.0/30 subnet")


@dataclass
class Netns:
    ns: str
    host_if: str  # the root namespace's end, holding host_ip
    ns_if: str  # the namespace's end, holding ns_ip
    host_ip: str
    ns_ip: str

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def cut(self) -> None:
        ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        ip("link", "set", self.host_if, "up")


@pytest.fixture
def netns():
    tag = f"{os.getpid() % 100000}{next(_names)}"
    n = free_subnet()
    net = Netns(
        ns=f"flowjobs-part-{tag}",
        host_if=f"fjh{tag}",
        ns_if=f"fjn{tag}",
        host_ip=f"10.200.{n}.1",
        ns_ip=f"10.200.{n}.2",
    )
    made = ip("netns", "add", net.ns, check=False)
    if made.returncode != 0:
        pytest.fail(
            f"network namespaces are not permitted here (`ip netns add` said: {made.stderr.strip()}); "
            "the partition test needs root or CAP_NET_ADMIN/CAP_SYS_ADMIN",
            pytrace=False,
        )
    try:
        ip("link", "add", net.host_if, "type", "veth", "peer", "name", net.ns_if)
        ip("link", "set", net.ns_if, "netns", net.ns)
        ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
        ip("link", "set", net.host_if, "up")
        ip("netns", "exec", net.ns, "ip", "addr", "add", f"{net.ns_ip}/30", "dev", net.ns_if)
        ip("netns", "exec", net.ns, "ip", "link", "set", net.ns_if, "up")
        ip("netns", "exec", net.ns, "ip", "link", "set", "lo", "up")
        yield net
    finally:
        ip("link", "del", net.host_if, check=False)  # deletes both ends of the pair
        ip("netns", "del", net.ns, check=False)
        assert net.ns not in ip("netns", "list").stdout
        assert ip("link", "show", net.host_if, check=False).returncode != 0


@pytest.fixture
def partition_pg(netns):
    """A PostgreSQL server of this test's own on 127.0.0.1 and on the veth's root end; yields
    (loopback URL, URL through the namespace's link) of a migrated database."""
    import psycopg
    from pgtmp import pg_server

    with pg_server(extra_listen=[netns.host_ip]) as server:
        with psycopg.connect(
            server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE partition")
        url = server.rsplit("/", 1)[0] + "/partition"
        upgrade(Database(url))
        yield url, url.replace("@127.0.0.1:", f"@{netns.host_ip}:")


class Procs:
    """Processes the test started; whatever is still running at the end is killed, by pid."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def add(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def procs():
    made = Procs()
    yield made
    made.close()


def started(folder: Path) -> list[tuple[str, int, int]]:
    """(run, attempt, pid) of every test-block start."""
    out = []
    for p in folder.glob("*.started"):
        run, attempt, pid, _ = p.name.split(".")
        out.append((run, int(attempt), int(pid)))
    return out


def test_partitioned_worker_is_fenced_and_rides_it_out(netns, partition_pg, procs, tmp_path):
    url, url_via_ns = partition_pg
    rt = Runtime(make_settings(url, tmp_path))
    try:
        _partition(rt, netns, url, url_via_ns, procs, tmp_path)
    finally:
        rt.close()


def _partition(rt, netns, url, url_via_ns, procs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    timing = {"FLOWJOBS_WORKER_LEASE": f"{LEASE:g}s", "FLOWJOBS_WORKER_RESCUE_INTERVAL": "100ms"}
    run = rt.trigger("test-block", {"dir": str(work)})

    # The stale-to-be worker, inside the namespace, reaching the server over the veth.
    stale_log = tmp_path / "stale.log"
    stale = procs.add(
        subprocess.Popen(
            netns.exec_argv(
                sys.executable,
                "-m",
                "flowjobs",
                "run-worker",
                "--no-scheduler",
                "--concurrency",
                "2",
            ),
            env=cli_env(url_via_ns, **timing),
            stdout=subprocess.DEVNULL,
            stderr=open(stale_log, "w"),
        )
    )
    wait_until(lambda: started(work), timeout=60, message="the namespaced worker to start the run")
    assert started(work) == [(run.id, 1, stale.pid)]
    stale_id = rt.store.get_run(run.id)["worker"]
    assert stale_id.split(":")[1] == str(stale.pid)

    # The other worker, on loopback, up and idle before the cut.
    other_log = tmp_path / "other.log"
    other = procs.add(
        start_worker("--no-scheduler", env=cli_env(url, **timing), stderr_path=other_log)
    )
    wait_until(
        lambda: ": concurrency " in other_log.read_text(),
        timeout=60,
        message="the loopback worker to come up",
    )
    assert rt.store.get_run(run.id)["attempt"] == 1

    # Cut the link mid-task.
    cut_ms = int(time.time() * 1000)
    netns.cut()
    lease_at_cut = rt.store.get_run(run.id)["lease_expires_at"]  # the stale worker's last renewal
    wait_until(
        lambda: len(started(work)) == 2,
        timeout=LEASE * 4 + 30,
        message="the loopback worker to take over",
    )
    taken = rt.store.get_run(run.id)
    assert (taken["status"], taken["attempt"]) == ("executing", 2)
    assert taken["worker"].split(":")[1] == str(other.pid)
    takeover_s = (taken["attempt_started_at"] - cut_ms) / 1000
    lease_left_s = (lease_at_cut - cut_ms) / 1000  # of the stale worker's lease when the link went
    rescued_s = (
        rt.store.attempts(run.id)[0]["finished_at"] - lease_at_cut
    ) / 1000  # after it expired

    # Both tasks end; the takeover's outcome is written, the stale one's waits behind the cut.
    (work / "release").touch()
    wait_until(
        lambda: rt.store.get_run(run.id)["status"] == "completed",
        message="the takeover to complete",
    )
    wait_until(
        lambda: len((work / "completed.log").read_text().split()) == 2,
        message="the stale worker's task to finish, unaware",
    )
    assert stale.poll() is None, stale_log.read_text()

    # Restore the link: the stale worker's late write is refused by the fence.
    restored = time.monotonic()
    netns.restore()
    wait_until(
        lambda: "its outcome is discarded" in stale_log.read_text(),
        timeout=180,
        message="the stale worker to write its late outcome (and be refused)",
    )
    fenced_after_s = time.monotonic() - restored
    assert stale.poll() is None, f"the stale worker died:\n{stale_log.read_text()}"
    invariants.check(rt.db, now_ms=int(time.time() * 1000), workers_stopped=False)

    final = rt.store.get_run(run.id)
    assert (final["status"], final["attempt"], final["result"]) == ("completed", 2, '"done"')
    assert final["worker"].split(":")[1] == str(other.pid)  # the takeover attempt stands
    attempts = [(a["number"], a["outcome"], a["worker"]) for a in rt.store.attempts(run.id)]
    assert attempts == [(1, "crashed", stale_id), (2, "succeeded", final["worker"])]
    assert Counter((work / "completed.log").read_text().split()) == {
        run.id: 2
    }  # ran twice, completed once

    # The stale worker rode it out: with the loopback worker gone, it runs new work.
    other.send_signal(signal.SIGTERM)
    assert other.wait(30) == 0, other_log.read_text()
    after = rt.trigger("test-record", {"dir": str(work)})
    wait_until(
        lambda: rt.store.get_run(after.id)["status"] == "completed",
        timeout=60,
        message="the once-stale worker to run new work",
    )
    assert rt.store.get_run(after.id)["worker"] == stale_id
    stale.send_signal(signal.SIGTERM)
    assert stale.wait(30) == 0, stale_log.read_text()
    invariants.check(rt.db)

    log = stale_log.read_text()
    print(
        f"partition: lease {LEASE:g}s, {lease_left_s:.2f}s of it left at the cut, rescued {rescued_s:.2f}s "
        f"after it expired; takeover {takeover_s:.2f}s after the cut; the stale write was refused {fenced_after_s:.2f}s after "
        f"the link returned; stale worker log: "
        f"{'database unavailable' if 'database is unavailable' in log else 'no outage logged'}"
    )
    assert 0 <= lease_left_s <= LEASE and 0 <= rescued_s < 2
    assert (
        lease_left_s <= takeover_s < LEASE + 2
    )  # the partition costs at most a lease, plus a rescue interval
