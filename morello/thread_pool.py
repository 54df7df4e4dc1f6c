"""A cheroot thread pool that runs as few request threads as the load needs.

Python threads share one interpreter lock: a pool of ten threads serving a
CPU-bound application is slower than one thread (they spend their time
handing the lock around), while an application that waits on a database or
an upstream needs as many threads as requests it waits for at once.
:class:`AdaptiveThreadPool` starts with ``min`` threads and lets a manager
thread, every :attr:`~AdaptiveThreadPool.tick` seconds, compare two things:

* how long connections waited for a thread: in the pool's queue
  (:class:`~morello.http.turns.TurnQueue`, from being queued to being
  taken, and the age of the oldest one still queued), or in their sockets
  while every thread was busy and so none polled them;
* how much CPU the process wanted, per second of wall time: the time its
  threads ran or were ready to run (:class:`CpuDemand`). The interpreter
  lock lets one thread at a time run Python code, so 1.0 means the lock
  was never free.

Work that waits while the CPU has room means every thread is blocked on
something other than the interpreter lock, so another thread helps: the
pool grows, up to ``max``. Work that waits while the CPU is saturated gains
nothing from more threads, so the pool does not grow; if the CPU is
saturated on average over :attr:`~AdaptiveThreadPool.saturated_shrink_after`
seconds, surplus threads are retired. Threads that all sit
idle for :attr:`~AdaptiveThreadPool.idle_timeout` seconds are retired too.
The pool never goes below ``min`` nor above ``max``.

Applications whose requests mostly run C code that releases the lock
(and so use several cores at once) look saturated to this rule: they
should set ``min`` to the number of threads they want always running.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any

from cheroot.workers.threadpool import ThreadPool

from morello.http.turns import TurnQueue

__all__ = ["AdaptiveThreadPool"]


class CpuDemand:
    """How much CPU this process's threads wanted: the time they ran, or were
    ready to run but waited for a CPU.

    Counting the waits too means a machine short of CPU for other reasons
    does not make a CPU-bound process look as if it had CPU to spare. Linux
    reports both per thread (``/proc/self/task/*/schedstat``); elsewhere
    this falls back to the process's CPU time alone.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._cpu_time = time.process_time()
        self._per_thread = os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat")
        self.since_last()

    def since_last(self) -> float:
        """Seconds of CPU demand since the previous call."""
        if not self._per_thread:
            previous, self._cpu_time = self._cpu_time, time.process_time()
            return self._cpu_time - previous
        seen, total = {}, 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat", "rb") as stats:
                    ran, waited = stats.read().split()[:2]
            except OSError:  # the thread ended meanwhile
                continue
            seen[tid] = int(ran) + int(waited)
            total += seen[tid] - self._seen.get(tid, 0)
        self._seen = seen
        return total / 1e9


class AdaptiveThreadPool(ThreadPool):
    """cheroot's :class:`~cheroot.workers.threadpool.ThreadPool`, grown and shrunk with the load.

    ``min`` threads run from :meth:`start` on; ``max`` bounds the growth.
    ``max`` of -1 (cheroot's and CherryPy's "no maximum") keeps the pool at
    ``min``: a pool without a bound would give every slow client a thread
    of its own, and cheroot never grew its pool beyond ``min`` either.
    """

    #: Seconds between the manager thread's looks at the pool.
    tick: float = 0.05
    #: A connection waiting longer than this for a thread is work left waiting.
    #: Handing a connection to an idle thread takes well under a millisecond.
    grow_after: float = 0.002
    #: The pool grows only while the process used less CPU than this (1.0: one core).
    cpu_spare_below: float = 0.75
    #: CPU use from which the process counts as saturated.
    cpu_saturated: float = 0.9
    #: Seconds over which the CPU use is averaged to decide whether it is
    #: saturated (and surplus threads retired).
    saturated_shrink_after: float = 1.0
    #: Threads that stayed idle this many seconds are retired (as many as were
    #: idle at every look during that time).
    idle_timeout: float = 5.0

    def __init__(
        self,
        server: Any,
        min: int = 1,
        max: int = -1,
        accepted_queue_size: int = -1,
        accepted_queue_timeout: float = 10,
    ) -> None:
        super().__init__(server, min, max, accepted_queue_size, accepted_queue_timeout)
        if self.max == math.inf:
            self.max = self.min
        #: The queue of connections ready for a thread, whose idle threads
        #: take turns at polling the server's connection manager.
        self.turns = TurnQueue(server, accepted_queue_size if accepted_queue_size > 0 else 0)
        self._queue = self.turns
        self.get = self.turns.get
        #: The most threads the pool ever ran at once.
        self.peak = 0
        # Guards the thread list against the manager, stop() and size readers.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._manager: threading.Thread | None = None
        self._idle_since = 0.0
        self._idle_floor: int | None = None
        # CPU readings since _window_start, for the saturation check.
        self._window_start = 0.0
        self._window_loads: list[float] = []

    # -- what cheroot calls ---------------------------------------------------

    def start(self) -> None:
        """Start ``min`` threads, and the manager thread if the pool may grow."""
        with self._lock:
            super().start()
        if self.max > self.min:
            self._manager = threading.Thread(
                target=self._manage, name="morello thread pool manager", daemon=True
            )
            self._manager.start()

    def grow(self, amount: int) -> None:
        """Start up to ``amount`` more threads (never above ``max``), without waiting for them.

        cheroot's own waits for each new thread in 0.1 s sleeps.
        """
        with self._lock:
            budget = max(self.max - len(self._threads), 0)
            self._threads.extend(self._spawn_worker() for _ in range(min(amount, budget)))
            self.peak = max(self.peak, len(self._threads))

    def stop(self, timeout: float | None = 5) -> None:
        """Stop the manager, then every thread (joining them, as cheroot does)."""
        self._stopping.set()
        manager = self._manager
        if manager is not None and manager is not threading.current_thread():
            manager.join()
        # Not under the lock: joining takes up to ``timeout``, and the
        # heartbeat must still be able to read the size meanwhile.
        super().stop(timeout)

    @property
    def size(self) -> int:
        """Threads running and not asked to stop."""
        with self._lock:
            self._clear_dead_threads()
            return max(len(self._threads) - len(self._pending_shutdowns), 0)

    # -- the manager ------------------------------------------------------------

    def _manage(self) -> None:
        demand = CpuDemand()
        last_time = self._idle_since = self._window_start = time.monotonic()
        previous = 0.0
        while not self._stopping.wait(self.tick):
            now = time.monotonic()
            reading = demand.since_last() / max(now - last_time, 1e-9)
            # The busier of the last two readings: one tick is short enough for
            # a CPU-bound process to look idle (its clients were not scheduled,
            # or the work only began at the end of the tick).
            load, previous = max(reading, previous), reading
            last_time = now
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._adjust(now, load)
                except Exception:
                    self.server.error_log(
                        "Error resizing the thread pool", level=logging.ERROR, traceback=True
                    )

    def _adjust(self, now: float, load: float) -> None:
        """Grow, shrink or keep the pool, given the CPU ``load`` of the last ticks."""
        self._clear_dead_threads()
        size = len(self._threads) - len(self._pending_shutdowns)
        waited, queued = self._waiting(size)
        # Only while connections still wait: a wait that ended before a quiet
        # spell (clients not sending) says nothing about that spell's CPU use.
        if queued and waited > self.grow_after and load < self.cpu_spare_below:
            # Enough to take what is queued, but no more than the CPU feeds,
            # and at most double: the next tick tells whether that helped.
            wanted = min(size + max(queued, 1), self._fill(size, load), size + max(size, 1))
            self.grow(wanted - size)
            self._idle_floor, self._idle_since = None, now
            self._window_start, self._window_loads = now, []
            return
        self._window_loads.append(load)
        if now - self._window_start >= self.saturated_shrink_after:
            # Judged on the average: single readings swing with the machine's load.
            average = sum(self._window_loads) / len(self._window_loads)
            if average >= self.cpu_saturated:
                self._retire(max(size - self._fill(size, average), 1))
            self._window_start, self._window_loads = now, []
        idle = self.idle
        self._idle_floor = idle if self._idle_floor is None else min(self._idle_floor, idle)
        if now - self._idle_since >= self.idle_timeout:
            # The threads idle all along were not needed.
            self._retire(self._idle_floor)
            self._idle_floor, self._idle_since = None, now

    def _fill(self, size: int, load: float) -> int:
        """The threads that would use ``cpu_spare_below`` of the CPU, if each used
        what the ``size`` current ones use on average."""
        return math.ceil(size * self.cpu_spare_below / max(load, 0.01))

    def _waiting(self, size: int) -> tuple[float, int]:
        """How long work waited for a thread since the last look, and how much waits now.

        Work waits in the queue, or, while every thread is busy and so nobody
        polls (:mod:`morello.http.turns`), in the sockets the server selects on.
        """
        turns = self.turns
        waited, queued = turns.oldest_wait(), turns.qsize()
        unpolled = turns.unpolled_for
        if unpolled > self.grow_after and turns.waits_unpolled():
            # How much waits is unknown (a listening socket reports once however
            # many connections wait on it): take it as enough to double the pool.
            waited, queued = max(waited, unpolled), queued + max(size, 1)
        return waited, queued

    def _retire(self, amount: int) -> None:
        """Ask ``amount`` threads (at most down to ``min``) to end."""
        size = len(self._threads) - len(self._pending_shutdowns)
        amount = min(amount, size - self.min)
        if amount > 0:
            # cheroot's shrink() counts the stop requests already queued in
            # the amount; ours are on top of those.
            self.shrink(amount + len(self._pending_shutdowns))
