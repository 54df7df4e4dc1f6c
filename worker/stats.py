"""Request counters of one worker, gathered by a WSGI middleware.

:class:`RequestStats` holds cumulative counters (requests, status classes,
a latency histogram) and the requests running right now, per thread, which
the heartbeat reports and the request watchdog inspects.
:class:`StatsMiddleware` feeds it from every request.

This sits on every request, so the bookkeeping is two short critical
sections on one lock (start, end) touching a few integers; everything that
has to build dictionaries or lists happens in :meth:`RequestStats.snapshot`,
on the heartbeat thread.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from morello.master.channel import LATENCY_BUCKETS, STATUS_CLASSES

WSGIApp = Callable[..., Any]

# Index into RequestStats._status for a status that could not be classified
# (an application that raised before start_response counts as a 5xx: the
# server answers 500 then).
_SERVER_ERROR = STATUS_CLASSES.index("5xx")


@dataclass(frozen=True)
class ActiveRequest:
    """A request being served right now (for the watchdog)."""

    thread_id: int
    started: float  # time.monotonic()
    method: str
    path: str

    @property
    def age(self) -> float:
        return time.monotonic() - self.started


class RequestStats:
    """Thread-safe request counters of one worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self._status = [0] * len(STATUS_CLASSES)
        # One bucket per bound in LATENCY_BUCKETS, plus one for slower requests.
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        # thread id -> (monotonic start, environ) of the request it serves. The
        # environ is kept, not copied: method and path are read only when needed.
        self._active: dict[int, tuple[float, dict[str, Any]]] = {}

    def begin(self, thread_id: int, started: float, environ: dict[str, Any]) -> None:
        """A request started on ``thread_id``."""
        with self._lock:
            self._active[thread_id] = (started, environ)

    def end(self, thread_id: int, started: float, status: str | None) -> None:
        """The request on ``thread_id`` ended (its body sent, or it failed)."""
        elapsed = time.monotonic() - started
        index = _status_index(status)
        bucket = bisect_left(LATENCY_BUCKETS, elapsed)
        with self._lock:
            self._active.pop(thread_id, None)
            self.requests += 1
            self._status[index] += 1
            self._latency[bucket] += 1
            self._latency_sum += elapsed

    def active(self) -> list[ActiveRequest]:
        """The requests running now, oldest first."""
        with self._lock:
            items = list(self._active.items())
        requests = [
            ActiveRequest(
                thread_id,
                started,
                str(environ.get("REQUEST_METHOD", "?")),
                str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "")),
            )
            for thread_id, (started, environ) in items
        ]
        requests.sort(key=lambda request: request.started)
        return requests

    def snapshot(self) -> dict[str, Any]:
        """The counters, named as in :func:`morello.master.channel.heartbeat_fields`."""
        now = time.monotonic()
        with self._lock:
            requests = self.requests
            status = list(self._status)
            latency = list(self._latency)
            latency_sum = self._latency_sum
            starts = [started for started, _environ in self._active.values()]
        return {
            "requests": requests,
            "in_flight": len(starts),
            # cheroot runs one request per thread at a time.
            "busy_threads": len(starts),
            "oldest_request_age": round(now - min(starts), 6) if starts else 0.0,
            "status": dict(zip(STATUS_CLASSES, status, strict=True)),
            "latency_buckets": latency,
            "latency_sum": round(latency_sum, 6),
            "latency_count": sum(latency),
        }


def _status_index(status: str | None) -> int:
    # "200 OK" -> index of "2xx"; anything unparseable is a server error.
    if status:
        digit = ord(status[0]) - 49  # ord("1") == 49
        if 0 <= digit < len(STATUS_CLASSES):
            return digit
    return _SERVER_ERROR


class StatsMiddleware:
    """WSGI middleware that reports every request to a :class:`RequestStats`.

    A request ends when the server closes the response iterable (after the
    last byte was written), so latency includes sending the body.
    """

    def __init__(self, app: WSGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        thread_id = threading.get_ident()
        started = time.monotonic()
        self.stats.begin(thread_id, started, environ)
        response = _TrackedResponse(self.stats, thread_id, started, start_response)
        try:
            response.body = self.app(environ, response.start_response)
        except BaseException:
            response.status = None  # the server answers 500
            response.close()
            raise
        return response


class _TrackedResponse:
    """The application's response iterable, reporting its end to the stats.

    One object per request carries both the ``start_response`` wrapper
    (which records the status) and the iterable the server consumes.
    """

    __slots__ = ("stats", "thread_id", "started", "start_response_", "status", "body", "done")

    def __init__(
        self,
        stats: RequestStats,
        thread_id: int,
        started: float,
        start_response: Callable[..., Any],
    ) -> None:
        self.stats = stats
        self.thread_id = thread_id
        self.started = started
        self.start_response_ = start_response
        self.status: str | None = None
        self.body: Iterable[bytes] = ()
        self.done = False

    def start_response(self, status: str, headers: list[Any], exc_info: Any = None) -> Any:
        self.status = status
        if exc_info is None:
            return self.start_response_(status, headers)
        return self.start_response_(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body
        except Exception:
            # The server answers 500 if it can; if the headers are already
            # out, the client gets a truncated body: a failure either way.
            self.status = None
            raise

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.stats.end(self.thread_id, self.started, self.status)
