"""The master's side of its worker processes.

What it knows about each one (:class:`Worker`), how many it may run, how it
forks one with a channel to it (:func:`fork_worker`), and how it reads the
messages on those channels (:class:`Channels`).
"""

from __future__ import annotations

import enum
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from .channel import MAX_MESSAGE, ChannelError, MessageReader
from .control import Conflict
from .settings import default_workers

#: Why a worker ended, as ``morello_worker_restarts_total{reason}`` counts it: it
#: died or failed to boot, asked to be replaced (max_requests, request_timeout,
#: max_rss), was replaced by a rolling restart, or was retired by a scale-down.
RESTART_REASONS: tuple[str, ...] = ("crash", "recycle", "rollout", "scale")

#: Default ``max_workers``: this many per CPU...
WORKERS_PER_CPU = 4
#: ...but no more than one per this much memory (a worker with its app and threads).
MEMORY_PER_WORKER = 128 << 20
# Reads of an exited worker's channel at most (64 KiB each): far more than it can hold.
EXIT_DRAIN_READS = 64


def default_max_workers(workers: int) -> int:
    """The ``max_workers`` used when none is configured: never below ``workers``."""
    by_memory = psutil.virtual_memory().total // MEMORY_PER_WORKER
    return max(workers, 1, min(WORKERS_PER_CPU * default_workers(), by_memory))


class State(enum.Enum):
    BOOTING = "booting"
    READY = "ready"
    #: SIGTERM sent (or the worker said it is draining): no longer counted as capacity.
    RETIRING = "retiring"


@dataclass(eq=False)
class Worker:
    """One worker: its pid, its end of the channel and its last reported counters."""

    id: int
    pid: int
    channel: socket.socket
    generation: int
    state: State = State.BOOTING
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    last_heartbeat: float = field(default_factory=time.monotonic)
    #: Why the worker should be replaced (set by it or by the master), if it should.
    recycle_reason: str | None = None
    #: Why the master retired it (a :data:`RESTART_REASONS` entry), if it did.
    retired_for: str | None = None
    #: When the worker must be gone: after it, SIGKILL.
    kill_at: float | None = None
    #: Set once SIGABRT was sent for a missed heartbeat, so it is sent once.
    aborted: bool = False
    #: Why it could not boot, as its last message said (a warm-up answer, an import error).
    exit_error: str | None = None
    rss: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: (time, requests) of the heartbeat before the last one, for the request rate.
    previous_beat: tuple[float, int] | None = None
    #: When :attr:`stats` arrived.
    stats_at: float = 0.0
    reader: MessageReader = field(default_factory=MessageReader)

    @property
    def active(self) -> bool:
        """Booting or ready: part of the capacity the master keeps up."""
        return self.state is not State.RETIRING

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the worker, unless it is already gone (then it is reaped soon)."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def measure_rss(self) -> bool:
        """Update :attr:`rss`; False when the process cannot be measured (it is gone)."""
        try:
            self.rss = psutil.Process(self.pid).memory_info().rss
        except psutil.Error:
            return False
        return True

    def age(self, now: float) -> float:
        return now - self.started

    def heartbeat(self, message: dict[str, Any], now: float) -> None:
        """Keep the counters of a heartbeat, and those of the one before it."""
        if self.stats:
            self.previous_beat = (self.stats_at, self.stats.get("requests", 0))
        self.stats, self.stats_at = message, now

    def request_rate(self) -> float | None:
        """Requests per second between the last two heartbeats (None before two)."""
        if self.previous_beat is None:
            return None
        at, requests = self.previous_beat
        elapsed = self.stats_at - at
        if elapsed <= 0:
            return None
        return max(0, self.stats.get("requests", 0) - requests) / elapsed

    def describe(self, now: float) -> dict[str, Any]:
        """This worker's entry in ``/status``."""
        rate = self.request_rate()
        return {
            "id": self.id,
            "pid": self.pid,
            "state": self.state.value,
            "generation": self.generation,
            "age": round(self.age(now), 3),
            "requests": self.stats.get("requests", 0),
            "requests_per_second": None if rate is None else round(rate, 2),
            "oldest_request": self.stats.get("oldest_request"),
            "in_flight": self.stats.get("in_flight", 0),
            "busy_threads": self.stats.get("busy_threads", 0),
            "threads": self.stats.get("threads", 0),
            "rss": self.rss,
            "recycle_reason": self.recycle_reason,
            "retired_for": self.retired_for,
        }


def check_scale(workers: int, max_workers: int, single_process: str | None) -> None:
    """Raise unless the master may run ``workers`` workers: ValueError for a number out
    of bounds (below one, above ``max_workers``), :class:`Conflict` when the
    application can only run in one worker process (``single_process`` says why)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"the number of workers must be a whole number >= 1, not {workers!r}")
    if workers > max_workers:
        raise ValueError(f"{workers} is above max_workers={max_workers} (--max-workers)")
    if workers > 1 and single_process:
        raise Conflict(
            f"the application keeps sessions in RAM ({single_process}), which "
            "other worker processes cannot see; use file, memcached or redis sessions"
        )


def describe_exit(code: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL``, from ``os.waitstatus_to_exitcode``."""
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def fork_worker(worker_id: int, generation: int, run: Callable[[Worker], object]) -> Worker:
    """Fork a worker process with a new channel to it; return it as the master sees it.

    The child calls ``run`` with its own :class:`Worker` (holding the child's
    end of the channel) and exits with status 3 if that ever returns.
    """
    parent_end, child_end = socket.socketpair()
    # Block signals across fork: the child unblocks them once its handlers
    # are installed, so a SIGTERM sent right away (a quick HUP) is not lost
    # on the handlers it inherited from us.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise
    if pid == 0:
        parent_end.close()
        try:
            run(Worker(worker_id, os.getpid(), child_end, generation))
        finally:
            os._exit(3)
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    child_end.close()
    parent_end.setblocking(False)
    return Worker(worker_id, pid, parent_end, generation)


class Channels:
    """The master's ends of its workers' channels, read when its selector says so.

    Each message goes to ``on_message(worker, message)``. A worker that sends
    something that is not a message has its channel closed and is handed to
    ``on_garbled(worker, error)``.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector,
        on_message: Callable[[Worker, dict[str, Any]], None],
        on_garbled: Callable[[Worker, ChannelError], None],
    ) -> None:
        self.selector = selector
        self.on_message = on_message
        self.on_garbled = on_garbled

    def watch(self, worker: Worker) -> None:
        """Read ``worker``'s messages whenever its channel is readable."""

        def read(sock: socket.socket, mask: int) -> None:
            self._read(worker)

        self.selector.register(worker.channel, selectors.EVENT_READ, read)

    def drain(self, worker: Worker) -> None:
        """Handle the messages an exited ``worker`` left in its channel, then close it."""
        for _ in range(EXIT_DRAIN_READS):
            if not self._read(worker):
                break
        self._close(worker)

    def _read(self, worker: Worker) -> bool:
        """Handle one read of ``worker``'s messages; False when no more is waiting."""
        try:
            data = worker.channel.recv(MAX_MESSAGE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            # The worker closed its end (it is exiting); the master reaps it.
            self._unwatch(worker)
            return False
        try:
            messages = worker.reader.feed(data)
        except ChannelError as exc:
            self._close(worker)
            self.on_garbled(worker, exc)
            return False
        for message in messages:
            self.on_message(worker, message)
        return True

    def _unwatch(self, worker: Worker) -> None:
        try:
            self.selector.unregister(worker.channel)
        except (KeyError, ValueError):
            pass  # already unregistered (end of file, or closed)

    def _close(self, worker: Worker) -> None:
        self._unwatch(worker)
        worker.channel.close()
