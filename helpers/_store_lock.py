"""A first-come, first-served queue in front of SQLite's write lock.

Why
    SQLite serialises writers with a file lock and a *polling* busy handler: a writer that
    finds the database locked sleeps and tries again. Under continuous writing that is
    unfair: the writer that has just committed takes the lock again before the sleepers
    wake, so one annotator can wait tens of seconds (up to the busy timeout, then
    "database is locked") while another writes hundreds of events. Measured before this
    queue (issue 14): 8 writer processes, p50 15.9 ms but p99 7.2 s, max 20.7 s, and one
    annotator completed 1 write while another completed 243.

How
    Every write transaction on a file-backed database first takes a ticket, then waits
    until every writer with an earlier ticket has finished, and only then sends
    ``BEGIN IMMEDIATE``. The queue lives in a small file beside the database
    (``<database>-writeq``) and uses only kernel byte-range locks on it:

    * bytes 0-15 hold the ticket dispenser (next ticket) and a "now serving" hint; the
      dispenser is read and advanced under an exclusive lock on those bytes;
    * the writer holding ticket ``t`` keeps an exclusive lock on byte ``_SLOT_BASE + t``
      from the moment it takes the ticket until its transaction has committed or rolled
      back;
    * a writer's turn has come when it can take a shared lock on every earlier ticket's
      byte, ``[_SLOT_BASE, _SLOT_BASE + t)``: the kernel grants it only once no earlier
      ticket is held. Waiting is a short sleep between such tests, shorter the nearer
      the front (the head of the queue tests every 0.1-0.5 ms), so the wait keeps the
      store's ``timeout``; the order comes from the tickets, not from who wakes first.

    The locks are Linux *open file description* locks (``F_OFD_SETLK``): they belong to
    one ``open()`` of the file, so every transaction - in another process or another
    thread of the same process - is its own queue member, and the kernel drops them when
    the descriptor is closed or the process dies.

What it guarantees
    * Writers of one database on one machine start their transactions in the order they
      asked (FIFO), across processes and threads; nobody is overtaken, so a writer's wait
      is bounded by the work of the writers queued before it.
    * A crashed member never blocks the queue: a process killed (even with SIGKILL)
      while holding or waiting for a ticket loses its locks with the process, and the
      writers behind it continue; a writer that dies in the queue is simply skipped.
    * Mutual exclusion and durability are still SQLite's own (``BEGIN IMMEDIATE``, WAL,
      ``synchronous=FULL``): the queue only orders writers, so anything it cannot order
      (a foreign program writing the same file, a queue file deleted under running
      writers) is still correct, merely served by SQLite's busy handler again.
    * A writer that cannot get its turn within ``timeout`` seconds (a writer ahead of it
      hangs) gives up with :class:`QueueTimeout`, like SQLite's busy timeout.

Cost
    Each write transaction adds about ten system calls (open, fcntl, pread/pwrite, close),
    a few microseconds. Under saturation (every annotator writing continuously) the total
    rate is lower than without the queue, 0.83-0.85x in the 60 s runs of
    ``benchmarks/bench_store_fairness.py`` on the shared 2-core machine, because every
    write is now handed over to another process instead of the last writer taking the
    lock again; in exchange no annotator waits more than the others (8 and 16 writers:
    writes per annotator max/min 1.00, worst annotator p99 103-187 ms, against 0.85-3.1 s
    and waits up to 7.7 s without the queue; ``benchmarks/RESULTS.d/store.md``).

Limits
    * One machine and a local filesystem, as for SQLite's WAL mode itself: NFS, SMB and
      other network filesystems are unsupported (their byte-range locks are emulated or
      advisory across hosts, and WAL needs shared memory anyway). Use PostgreSQL when
      annotators work from several machines.
    * Linux only (OFD locks, kernel 3.15 or newer). Elsewhere (macOS, Windows)
      :func:`queue_for` returns None and writers fall back to SQLite's busy handler,
      which is correct but not fair.
    * A process that forks while one of its threads is inside a write transaction hands
      the child a copy of that descriptor; if the parent then dies, the ticket is held
      until the child exits. (Open stores after forking, as the store's docs say.)
    * In-memory databases need no queue (one connection, one process).

Examples
--------
>>> import os, tempfile
>>> q = queue_for(os.path.join(tempfile.mkdtemp(), "labels.sqlite"))
>>> with q.turn(timeout=5.0) as seconds_left:
...     pass  # PRAGMA busy_timeout = seconds_left * 1000; BEGIN IMMEDIATE ... COMMIT
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import struct
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

try:  # pragma: no cover - import guard for platforms without fcntl
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["QUEUE_SUFFIX", "QueueTimeout", "WriteQueue", "database_file", "queue_for"]

#: Suffix of the queue file beside the database (``labels.sqlite-writeq``).
QUEUE_SUFFIX = "-writeq"

# struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid (0 for OFD locks), padded to 32 bytes. Checked at run time by _ofd_works.
_FLOCK = "hhqqi4x"
_HEADER = 16  # bytes 0-7: next ticket; bytes 8-15: "now serving" hint (little-endian)
_PROBE = (1 << 19, 1 << 20)  # bytes used by the self-test
_SLOT_BASE = 1 << 20  # ticket t is held as an exclusive lock on byte _SLOT_BASE + t
_MAX_TICKET = 1 << 60  # a counter beyond this (a corrupt file) starts again at 0

# Polling: the head of the queue re-tests after 0.1 ms, growing by half up to 0.5 ms;
# a writer further back every 1 ms per writer ahead of it beyond the head, at most 10 ms.
_HEAD_MIN_S = 0.0001
_HEAD_MAX_S = 0.0005
_STEP_S = 0.001
_FAR_MAX_S = 0.010


class QueueTimeout(Exception):
    """The writer did not get its turn within the timeout."""

    def __init__(self, waited: float, ahead: int) -> None:
        super().__init__(f"waited {waited:.3g} s in the write queue, {ahead} writer(s) ahead")
        self.waited = waited
        self.ahead = ahead


def _lock(fd: int, cmd: int, kind: int, start: int, length: int) -> bool:
    """One fcntl byte-range lock call; False when a non-blocking request conflicts."""
    try:
        fcntl.fcntl(fd, cmd, struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_u64(fd: int, offset: int) -> int:
    raw = os.pread(fd, 8, offset)
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0


def _open_queue_file(queue_path: str) -> int:
    """Open the queue file read-write; create it with exactly its database's permission
    bits (owner-only without a database), so every user who may write the database
    (a group, say) may also queue."""
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        return os.open(queue_path, flags)
    except FileNotFoundError:
        pass
    try:
        mode = os.stat(queue_path[: -len(QUEUE_SUFFIX)]).st_mode & 0o666
    except OSError:
        mode = 0
    mode = mode or 0o600
    try:
        fd = os.open(queue_path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:  # another writer created it just now
        return os.open(queue_path, flags)
    try:
        os.fchmod(fd, mode)  # exactly the database's bits, whatever the umask
    except OSError:
        os.close(fd)
        raise
    return fd


_ofd_checked: bool | None = None
_ofd_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _ofd_lock
    _ofd_lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _ofd_works(path: str) -> bool:
    """Check once per process that OFD locks behave as the queue needs (layout included).

    Two descriptors of one file in this process must conflict with each other (they
    would not with process-owned POSIX locks, nor with a wrongly packed struct flock).
    """
    global _ofd_checked
    if _ofd_checked is not None:
        return _ofd_checked
    with _ofd_lock:
        if _ofd_checked is not None:
            return _ofd_checked
        ok = False
        fd1 = _open_queue_file(path)
        fd2 = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(8):  # other processes may probe at the same moment
                x = random.randrange(_PROBE[0], _PROBE[1] - 1)
                if not _lock(fd1, fcntl.F_OFD_SETLK, fcntl.F_WRLCK, x, 1):
                    continue
                conflict = not _lock(fd2, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, x, 1)
                beside = _lock(fd2, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, x + 1, 1)
                _lock(fd1, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _PROBE[0], _PROBE[1] - _PROBE[0])
                _lock(fd2, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _PROBE[0], _PROBE[1] - _PROBE[0])
                if conflict and beside:
                    ok = True
                    break
        except OSError:
            ok = False
        finally:
            os.close(fd2)
            os.close(fd1)
        if not ok:
            warnings.warn(
                "the SQLite write queue is disabled: open-file-description locks did not "
                "behave as expected on this system; writers are served by SQLite's busy "
                "handler, which is not fair under continuous writing",
                RuntimeWarning,
                stacklevel=3,
            )
        _ofd_checked = ok
        return ok


class WriteQueue:
    """The FIFO write queue of one SQLite database file.

    Parameters
    ----------
    database : str
        Path of the database file; the queue file is ``database + QUEUE_SUFFIX``.

    Notes
    -----
    Holds no open file between transactions and no state shared between threads: each
    :meth:`turn` opens the queue file, takes a ticket, waits, and closes the file (which
    releases every lock it held) when the transaction is over.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.path = database + QUEUE_SUFFIX
        self._warned = False

    def __repr__(self) -> str:
        return f"WriteQueue({self.path!r})"

    def _open(self) -> int | None:
        try:
            return _open_queue_file(self.path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"cannot open the SQLite write queue {self.path!r} ({exc.strerror}); "
                    "writing without it (correct, but writers are not served in order)",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return None

    @contextlib.contextmanager
    def turn(self, timeout: float) -> Iterator[float]:
        """Wait for this writer's turn; hold it for the body of the ``with`` block.

        Parameters
        ----------
        timeout : float
            Seconds to wait for the writers ahead before raising :class:`QueueTimeout`.

        Yields
        ------
        float
            Seconds left of ``timeout`` when the turn came: the SQLite busy timeout to
            use, so that the whole wait stays within ``timeout``.
        """
        start = time.monotonic()
        deadline = start + timeout
        fd = self._open()
        if fd is None:
            yield timeout
            return
        served = False
        ticket = -1
        try:
            ticket = _take_ticket(fd)
            _wait_turn(fd, ticket, start, deadline)
            served = True
            yield max(deadline - time.monotonic(), 0.0)
        finally:
            try:
                if served:
                    os.pwrite(fd, (ticket + 1).to_bytes(8, "little"), 8)
                # explicit unlock (not just close): a forked child may share the descriptor
                _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, 0, 0)
            finally:
                os.close(fd)


def _take_ticket(fd: int) -> int:
    """Draw the next ticket and lock its byte, under the dispenser lock."""
    _lock(fd, fcntl.F_OFD_SETLKW, fcntl.F_WRLCK, 0, _HEADER)
    try:
        ticket = _read_u64(fd, 0)
        if ticket >= _MAX_TICKET:
            ticket = 0
        # a byte still held here belongs to a writer from before a counter reset: skip it
        while not _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK, _SLOT_BASE + ticket, 1):
            ticket += 1
        os.pwrite(fd, (ticket + 1).to_bytes(8, "little"), 0)
    finally:
        _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, 0, _HEADER)
    return ticket


def _earlier_free(fd: int, ticket: int) -> bool:
    """True when no ticket before ``ticket`` is held (tested with a shared lock)."""
    if not _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, _SLOT_BASE, ticket):
        return False
    _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _SLOT_BASE, ticket)  # our own byte stays
    return True


def _wait_turn(fd: int, ticket: int, start: float, deadline: float) -> None:
    """Return once no earlier ticket is held; raise QueueTimeout at the deadline.

    Waiters poll, each on its own timer: the head of the queue (the writer right behind
    the holder of the turn) re-tests after 0.1 ms, then every 0.15, 0.23 ... up to 0.5 ms;
    a writer with k writers ahead every min(k - 1, 10) ms. Kernel wake-ups sent by the
    releasing writer (a futex word in a shared mapping, or a datagram) were tried and gave
    10-40% fewer writes per second on the busy 2-core machine than this polling, probably
    because the woken writer is queued on the waker's CPU behind the waker's own
    follow-up work; the hand-over is on the critical path of every write.
    """
    if ticket == 0:  # nothing before it (and a lock of length 0 would mean "to the end")
        return
    delay = _HEAD_MIN_S
    was_head = False
    while not _earlier_free(fd, ticket):
        now = time.monotonic()
        ahead = max(1, ticket - _read_u64(fd, 8))
        if now >= deadline:
            raise QueueTimeout(now - start, ahead)
        if ahead <= 1:
            delay = min(delay * 1.5, _HEAD_MAX_S) if was_head else _HEAD_MIN_S
            was_head = True
        else:
            delay = min(_STEP_S * (ahead - 1), _FAR_MAX_S)
            was_head = False
        time.sleep(min(delay, max(deadline - now, 0.0)))


def database_file(database: str | None, query: Mapping[str, Any] | None = None) -> str | None:
    """The file SQLite opens for a SQLAlchemy URL's database part, or None (in memory).

    ``sqlite:///file:path?mode=ro&uri=true`` names the file inside a URI; ``mode=memory``
    and ``file::memory:`` are in-memory databases.
    """
    if database in (None, "", ":memory:"):
        return None
    query = dict(query or {})
    if str(query.get("uri", "")).lower() in ("1", "true", "yes", "on") and database.startswith(
        "file:"
    ):
        parts = urllib.parse.urlsplit(database)
        params = {**dict(urllib.parse.parse_qsl(parts.query)), **query}
        path = urllib.parse.unquote(parts.path)
        if params.get("mode") == "memory" or path in ("", ":memory:"):
            return None
        return path
    return database


def queue_for(database: str | None) -> WriteQueue | None:
    """The write queue of a SQLite database file, or None where no queue is needed or
    possible.

    Parameters
    ----------
    database : str or None
        The database file path as SQLite will open it. None, ``""`` and ``":memory:"``
        (in-memory databases) give None, as does a platform without OFD locks.
    """
    if database in (None, "", ":memory:"):
        return None
    if fcntl is None or not sys.platform.startswith("linux"):  # pragma: no cover
        return None
    if not hasattr(fcntl, "F_OFD_SETLK") or struct.calcsize(_FLOCK) != 32:  # pragma: no cover
        return None
    path = os.path.realpath(os.path.abspath(str(database)))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return None  # SQLite will refuse to open it and say why
    try:
        ok = _ofd_works(path + QUEUE_SUFFIX)
    except OSError:
        return None
    return WriteQueue(path) if ok else None
