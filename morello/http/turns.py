"""The pool's queue of ready connections, whose idle threads take turns at the selector.

cheroot runs its keep-alive selector on a thread of its own, which hands
each ready connection to a pool thread through a queue: two thread
wake-ups, and two handovers of the interpreter lock, per request. Here the
pool's threads take turns instead (the "leader/followers" pattern): a
thread with nothing queued for it polls the connection manager itself
(:meth:`~morello.http.gathering.GatheringManager.poll`), while the other
idle threads wait. When the poll finds complete requests, the polling
thread queues all but the first, wakes a waiting thread to poll next and
to take the queued ones, and serves the first itself. A pool of one thread
thus polls and serves in turn, without waking anybody.

While every thread is busy nobody polls: new connections wait in the
kernel's accept queue (where another worker process sharing the socket may
take them) and partial requests in their sockets. :attr:`TurnQueue.unpolled_for`
tells the pool how long that has lasted, to grow when work waits for it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Any

__all__ = ["TurnQueue"]

#: Longest single poll, in seconds: the manager's periodic checks (idle
#: connections, request deadlines) need a turn at least this often.
POLL_TIMEOUT = 0.5
#: While connections are queued, a free thread still polls (without
#: waiting) when the last poll is this old, before taking the oldest one:
#: new connections and requests are noticed while the queue drains.
POLL_INTERVAL = 0.002


class TurnQueue:
    """A FIFO of connections for the pool's threads, and the turn at polling for more.

    It stands in for the :class:`queue.Queue` of cheroot's thread pool:
    ``put`` (connections, and cheroot's shutdown requests), ``get`` and
    ``qsize`` behave the same, except that ``get`` polls the connection
    manager set with :meth:`poll_with` when nothing is queued and no other
    thread is polling. A ``maxsize`` above 0 bounds what ``put`` queues
    (connections a poll finds are queued for the threads regardless).
    """

    def __init__(self, server: Any, maxsize: int = 0) -> None:
        self.server = server
        self.maxsize = maxsize
        #: Queued items, oldest first, each with the monotonic time it was queued.
        self.queue: collections.deque[tuple[Any, float]] = collections.deque()
        lock = threading.Lock()
        self._turn = threading.Condition(lock)
        self._room = threading.Condition(lock)  # put() waits on it while the queue is full
        self._waiting = 0  # threads waiting in get()
        self._manager: Any = None
        self._polling = False
        self._longest_wait = 0.0
        # monotonic time the last poll ended (or polling was allowed).
        self._polled_at = time.monotonic()

    # -- queue.Queue's interface, as cheroot's pool uses it --------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Queue ``item`` for the next free thread.

        When ``maxsize`` items are queued, waits for room as
        :meth:`queue.Queue.put` does (``block``, ``timeout``), then raises
        :class:`queue.Full`.
        """
        with self._turn:
            if self.maxsize > 0:
                deadline = None if timeout is None else time.monotonic() + timeout
                while len(self.queue) >= self.maxsize:
                    left = None if deadline is None else deadline - time.monotonic()
                    if not block or (left is not None and left <= 0):
                        raise queue.Full
                    self._room.wait(left)
            self.queue.append((item, time.monotonic()))
            if self._waiting:
                self._turn.notify()
                return
            manager = self._manager if self._polling else None
        if manager is not None:
            # Only the thread polling is free: it must not wait out its poll.
            manager.wake()

    def qsize(self) -> int:
        """Items queued."""
        return len(self.queue)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The oldest queued item; polls for connections while nothing is queued.

        Blocks until there is an item (``block`` and ``timeout`` are
        accepted for :class:`queue.Queue`'s signature; cheroot's threads
        always block without a timeout).
        """
        with self._turn:
            while True:
                may_poll = self._manager is not None and not self._polling
                if self.queue and not (may_poll and self._poll_due()):
                    return self._take()
                if may_poll:
                    self._polling = True
                    break
                self._waiting += 1
                try:
                    self._turn.wait()
                finally:
                    self._waiting -= 1
        return self._lead()

    def _poll_due(self) -> bool:
        """Whether the last poll is :data:`POLL_INTERVAL` old: work that has come
        since must not wait for the queue to drain."""
        return time.monotonic() - self._polled_at >= POLL_INTERVAL

    def oldest_wait(self) -> float:
        """The longest a taken item waited since the last call, or the oldest queued one waits."""
        waited, self._longest_wait = self._longest_wait, 0.0
        try:
            queued_at = self.queue[0][1]
        except IndexError:
            return waited
        return max(waited, time.monotonic() - queued_at)

    def _take(self) -> Any:
        item, queued_at = self.queue.popleft()
        if self.maxsize > 0:
            self._room.notify()
        # Racing threads may lose a sample here; the next one comes soon.
        self._longest_wait = max(self._longest_wait, time.monotonic() - queued_at)
        return item

    # -- the turn at the selector -------------------------------------------------

    def poll_with(self, manager: Any) -> None:
        """Let idle threads poll ``manager`` from now on (None: nobody polls).

        Setting None returns once the thread polling, if any, has finished.
        """
        with self._turn:
            previous, self._manager = self._manager, manager
            self._polled_at = time.monotonic()
            self._turn.notify_all()
            while manager is None and self._polling:
                previous.wake()
                self._turn.wait(POLL_TIMEOUT)

    @property
    def unpolled_for(self) -> float:
        """Seconds since the last poll ended, while no thread polls (0 while one does)."""
        if self._polling or self._manager is None:
            return 0.0
        return max(time.monotonic() - self._polled_at, 0.0)

    def waits_unpolled(self) -> bool:
        """Whether a socket has something to do while no thread polls (False while one does)."""
        manager = self._manager
        if manager is None or self._polling:
            return False
        return manager.has_pending_events()

    def _lead(self) -> Any:
        """Poll until something comes, then hand the turn on; return this thread's item."""
        found: list[Any] = []
        try:
            while True:
                manager = self._manager
                if manager is None:
                    break
                try:
                    # With work queued, only a look at what has come meanwhile.
                    found = manager.poll(0 if self.queue else POLL_TIMEOUT)
                except Exception:
                    # A thread that dies here leaves cheroot's pool serving nobody.
                    self.server.error_log(
                        "Error polling for connections", level=logging.ERROR, traceback=True
                    )
                if found or self.queue:
                    break
        finally:
            with self._turn:
                self._polling = False
                now = self._polled_at = time.monotonic()
                self.queue.extend((conn, now) for conn in found)
                if self._manager is None:
                    self._turn.notify_all()  # poll_with(None) waits for this
                elif self._waiting:
                    # One to poll next, and one for each item this thread leaves.
                    self._turn.notify(max(len(self.queue), 1))
        return self.get()
