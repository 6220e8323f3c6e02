"""How an idle worker learns that a run may be due, without polling the jobs table.

- PostgreSQL: a connection LISTENs on `flowjobs_runs`; every enqueue NOTIFYs it when its
  transaction commits (`queries` "notify"). The listener reconnects after a failure.
- SQLite: every commit by any process appends to the WAL file. On Linux the worker asks the
  kernel (inotify) to tell it when that file is written, so a new run wakes it within a
  fraction of a millisecond at no cost while nothing happens; elsewhere (or when inotify is
  unavailable: no watches left) it looks at the file's modification time every few
  milliseconds instead.

A worker opens one `Listener` for its life (`Wakeups.listen`) and closes it when it stops;
`Listener.wait` returns when new work may be there, when the worker's own `wake` event is set
(a slot freed, a stop), or after the given seconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import threading
import time

WAL_CHECK = 0.02  # seconds between looks at the WAL file's modification time (no inotify)
WAKE_CHECK = 0.05  # seconds between looks at the worker's own `wake` event while watching

log = logging.getLogger("flowjobs.worker")


class Wakeups:
    def __init__(self, db):
        self.db = db

    def listen(self, wake: threading.Event, stopping: threading.Event) -> Listener:
        """A listener for one worker: PostgreSQL NOTIFYs set `wake` (a daemon thread, until
        `stopping` is set); a SQLite file is watched by `Listener.wait` itself."""
        if self.db.dialect == "postgresql":
            threading.Thread(
                target=self._listen, args=(wake, stopping), name="flowjobs-listen", daemon=True
            ).start()
            return Listener(wake)
        if self.db.path == ":memory:":
            return Listener(wake)
        wal = self.db.path + "-wal"
        watch = WalWatch.open(wal)
        return WatchingListener(wake, watch) if watch else PollingListener(wake, wal)

    def _listen(self, wake: threading.Event, stopping: threading.Event) -> None:
        while not stopping.is_set():
            conn = None
            try:
                conn = self.db.connect()
                conn.execute("LISTEN flowjobs_runs")
                while not stopping.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        wake.set()
            except Exception as exc:
                log.debug("listener reconnecting after %s", exc)
                time.sleep(1.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass


class Listener:
    """Wakes on the worker's own event only (PostgreSQL: the LISTEN thread sets it)."""

    def __init__(self, wake: threading.Event):
        self.wake = wake

    def wait(self, seconds: float) -> None:
        self.wake.wait(seconds)

    def close(self) -> None:
        pass


class PollingListener(Listener):
    """SQLite without inotify: a stat() of the WAL file every WAL_CHECK seconds."""

    def __init__(self, wake: threading.Event, wal: str):
        super().__init__(wake)
        self.wal = wal
        self._stamp = _mtime(wal)

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.wake.is_set():
                return
            time.sleep(min(left, WAL_CHECK))  # cheaper than Event.wait with a timeout
            stamp = _mtime(self.wal)
            if stamp != self._stamp:
                self._stamp = stamp
                return


class WatchingListener(Listener):
    """SQLite on Linux: the kernel reports every write to the WAL file (inotify)."""

    def __init__(self, wake: threading.Event, watch: WalWatch):
        super().__init__(wake)
        self.watch = watch

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.watch.wait(min(left, WAKE_CHECK)):
                return

    def close(self) -> None:
        self.watch.close()


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


# -- inotify (Linux), through the C library: no package needed ---------------------------
_IN_MODIFY = 0x002
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_IGNORED = 0x8000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
_libc: ctypes.CDLL | bool | None = None  # False: no inotify here


def _inotify():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            lib.inotify_init1, lib.inotify_add_watch  # noqa: B018  (present?)
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


class WalWatch:
    """An inotify descriptor watching one WAL file for writes. Every commit appends to the WAL
    (a checkpoint may truncate it: also a write); when the file is replaced or removed, the
    watch is set again on the next wait (until then it falls back to a short sleep)."""

    def __init__(self, lib, fd: int, path: str):
        self._lib = lib
        self.fd = fd
        self.path = path
        self._wd = -1
        self._add()

    @property
    def _watching(self) -> bool:
        return self._wd >= 0

    @classmethod
    def open(cls, path: str) -> WalWatch | None:
        lib = _inotify()
        if lib is None:
            return None
        fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:  # no inotify instances left (fs.inotify.max_user_instances)
            log.debug("inotify unavailable (errno %d): polling the WAL file", ctypes.get_errno())
            return None
        return cls(lib, fd, path)

    def _add(self) -> None:
        self._wd = self._lib.inotify_add_watch(  # -1: the WAL file does not exist yet
            self.fd, os.fsencode(self.path), _IN_MODIFY | _IN_DELETE_SELF | _IN_MOVE_SELF
        )

    def wait(self, seconds: float) -> bool:
        """True when the WAL file was written (or replaced) within `seconds`."""
        if not self._watching:
            self._add()
            if not self._watching:
                time.sleep(min(seconds, WAL_CHECK))
                return os.path.exists(self.path)
        try:
            ready, _, _ = select.select([self.fd], [], [], seconds)
        except (OSError, ValueError):  # closed meanwhile
            return True
        if not ready:
            return False
        self._read()
        return True

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size + length
            if mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF) and self._wd >= 0:
                if not mask & _IN_IGNORED:  # moved: stop following the old file
                    self._lib.inotify_rm_watch(self.fd, self._wd)
                self._wd = -1  # watch the file at the path on the next wait

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
