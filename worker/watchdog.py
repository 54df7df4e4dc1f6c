"""The worker's background check-ups: heartbeats, request deadline, request budget.

One daemon thread does all three, so a worker has a single timer thread
whatever its options. It wakes up often enough for the tightest of them
(the heartbeat interval, or a quarter of ``request_timeout``).

A request that overruns ``request_timeout`` cannot be stopped from another
thread in Python; the watchdog logs where it is stuck and asks the master
for a replacement (``recycle``), which then drains this worker.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable

from morello.master.channel import WorkerChannel, heartbeat_fields

from .stats import ActiveRequest, RequestStats

#: Never wake up more often than this, however small the intervals.
_MIN_TICK = 0.01


class Watchdog(threading.Thread):
    """Send heartbeats; ask for recycling on a stuck request or after ``max_requests``."""

    def __init__(
        self,
        channel: WorkerChannel,
        stats: RequestStats,
        *,
        threads: Callable[[], int],
        heartbeat_interval: float,
        request_timeout: float | None = None,
        max_requests: int = 0,
        report: Callable[[str], None] = print,
    ) -> None:
        super().__init__(name="morello worker watchdog", daemon=True)
        self.channel = channel
        self.stats = stats
        #: Counts the request threads running now (for the heartbeat).
        self.threads = threads
        self.heartbeat_interval = heartbeat_interval
        self.request_timeout = request_timeout
        self.max_requests = max_requests
        #: Where the stacks of stuck requests are written (one message each).
        self.report = report
        #: Set while the worker drains: asking for a replacement is moot then.
        self.draining = False
        #: The reason of the ``recycle`` message sent, if any (it is sent once).
        self.recycle_reason: str | None = None
        self._stopped = threading.Event()
        # (thread id, start time) of the overdue requests already reported.
        self._reported: set[tuple[int, float]] = set()
        tick = heartbeat_interval
        if request_timeout is not None:
            tick = min(tick, request_timeout / 4)
        self._tick = max(tick, _MIN_TICK)

    def stop(self) -> None:
        """End the thread at its next wake-up."""
        self._stopped.set()

    def run(self) -> None:
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        while not self._stopped.wait(self._tick):
            self.check_requests()
            now = time.monotonic()
            if now >= next_heartbeat:
                self.send_heartbeat()
                # Skip beats missed while the process was stopped or starved.
                next_heartbeat = max(next_heartbeat + self.heartbeat_interval, now)

    def send_heartbeat(self) -> None:
        """Send one ``heartbeat`` with the current counters."""
        fields = heartbeat_fields(threads=self.threads(), **self.stats.snapshot())
        self.channel.send("heartbeat", **fields)

    def check_requests(self) -> None:
        """Report overdue requests and ask for recycling when due."""
        if self.request_timeout is not None:
            overdue = [r for r in self.stats.active() if r.age > self.request_timeout]
            keys = {(r.thread_id, r.started) for r in overdue}
            self._reported &= keys  # forget requests that have ended
            for request in overdue:
                key = (request.thread_id, request.started)
                if key not in self._reported:
                    self._reported.add(key)
                    self.report(self._describe(request))
            if overdue:
                self.recycle("request_timeout")
        if self.max_requests and self.stats.requests >= self.max_requests:
            self.recycle("max_requests")

    def recycle(self, reason: str) -> None:
        """Ask the master for a replacement, once in this worker's life."""
        if self.recycle_reason is not None or self.draining:
            return
        self.recycle_reason = reason
        self.channel.send("recycle", reason=reason)

    def _describe(self, request: ActiveRequest) -> str:
        frame = sys._current_frames().get(request.thread_id)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (finished)\n"
        return (
            f"Request {request.method} {request.path} has been running for "
            f"{request.age:.1f}s, longer than request_timeout ({self.request_timeout}s); "
            f"thread {request.thread_id} is at:\n{stack.rstrip()}"
        )
