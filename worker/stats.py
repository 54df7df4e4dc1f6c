"""Request counters of one worker, gathered by a WSGI middleware.

:class:`RequestStats` holds cumulative counters (requests, status classes,
a latency histogram) and the requests running right now, per thread, which
the heartbeat reports and the request watchdog inspects.
:class:`StatsMiddleware` feeds it from every request.

This sits on every request, so it takes no lock: each request thread
counts into its own :class:`_Counters`, which no other thread writes, and
the heartbeat thread sums them in :meth:`RequestStats.snapshot`. A sum
taken while a thread is between two of its increments may count that one
request in some fields and not yet in others; the next heartbeat is exact
(the counters are cumulative), and no increment is ever lost, which a
shared counter updated without a lock could not promise. The running
requests are one dict keyed by thread id: each thread sets and pops its own
key, single dict operations that the GIL keeps whole, and readers copy it
in one call. Everything that builds dictionaries or lists happens on the
heartbeat thread.

Each request is also counted under the handler it was dispatched to (see
:mod:`morello.metrics.handlers`), by status class and latency bucket: one
dictionary lookup more per request. At most ``max_handlers`` distinct
handlers are kept; later ones count as ``other``. The heartbeat sends what
changed since the previous one (``metrics``, with the application's own
metrics), so the master only ever adds.
"""

from __future__ import annotations

import functools
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from morello.master.channel import LATENCY_BUCKETS, MAX_SERIES_PER_HEARTBEAT, STATUS_CLASSES

from morello.http.native import NativeRequest, native_server
from morello.metrics import REGISTRY
from morello.metrics.handlers import NO_HANDLER, OTHER, current
from morello.metrics.registry import FamilyData, Registry, entry

WSGIApp = Callable[..., Any]

#: Longest request path a heartbeat reports (the master shows it on its status page).
MAX_PATH_REPORTED = 200

# Index into RequestStats._status for a status that could not be classified
# (an application that raised before start_response counts as a 5xx: the
# server answers 500 then).
_SERVER_ERROR = STATUS_CLASSES.index("5xx")

#: The per-handler latency histogram the master exports.
HANDLER_FAMILY = FamilyData(
    "morello_handler_request_duration_seconds",
    "histogram",
    "Time to serve a request, in seconds, by application, handler and status class.",
    ("app", "handler", "status_class"),
    LATENCY_BUCKETS,
)
#: Default for how many distinct handlers a worker counts separately.
MAX_HANDLERS = 100
_SLOTS = len(LATENCY_BUCKETS) + 1
# A handler's cell: per status class its latency buckets, then per status class its sum.
_SUMS = len(STATUS_CLASSES) * _SLOTS
_CELL = _SUMS + len(STATUS_CLASSES)
# Requests that ended without passing a dispatcher (refused early, not a morello app).
_UNDISPATCHED = (None, NO_HANDLER)


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


class _Counters:
    """The counts of the requests one thread has finished (written by that thread only)."""

    __slots__ = ("cells", "handlers", "latency", "latency_sum", "requests", "status")

    def __init__(self) -> None:
        self.requests = 0
        self.status = [0] * len(STATUS_CLASSES)
        # One bucket per bound in LATENCY_BUCKETS, plus one for slower requests.
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        # Handler key as the dispatcher gave it -> its cell (several keys may
        # share the cell of "other"); cells: the counted key -> its cell.
        self.handlers: dict[Any, list[float]] = {}
        self.cells: dict[tuple[str | None, str], list[float]] = {}


class RequestStats:
    """Request counters of one worker process, kept per thread without a lock."""

    def __init__(self, max_handlers: int = MAX_HANDLERS, registry: Registry = REGISTRY) -> None:
        self.max_handlers = max_handlers
        self.registry = registry
        # Handler keys counted separately, over all threads (added under the lock).
        self._known: set[tuple[str | None, str]] = set()
        # Cumulative per-handler cells as last sent, guarded by _delta_lock.
        self._sent: dict[tuple[str | None, str], list[float]] = {}
        self._delta_lock = threading.Lock()
        self._local = threading.local()
        # Every thread's counters, kept after the thread ends (they are cumulative).
        # Appended to once per thread, under the lock.
        self._counters: list[_Counters] = []
        self._lock = threading.Lock()
        # thread id -> (monotonic start, request) of the request it serves: the
        # WSGI environ or the server's NativeRequest, kept as it is (method and
        # path are read only when needed).
        self._active: dict[int, tuple[float, Any]] = {}

    def begin(self, thread_id: int, started: float, request: Any) -> None:
        """A request started on ``thread_id`` (``request``: its environ or NativeRequest)."""
        self._active[thread_id] = (started, request)

    def end(self, thread_id: int, started: float, status: str | None) -> None:
        """The request on ``thread_id`` ended (its body sent, or it failed)."""
        elapsed = time.monotonic() - started
        try:
            counters = self._local.counters
        except AttributeError:
            counters = self._local.counters = _Counters()
            with self._lock:
                self._counters.append(counters)
        self._active.pop(thread_id, None)
        handler = current.key
        current.key = None
        cell = counters.handlers.get(handler)
        if cell is None:
            cell = self._handler_cell(counters, handler)
        index = _status_index(status)
        bucket = bisect_left(LATENCY_BUCKETS, elapsed)
        counters.status[index] += 1
        counters.latency[bucket] += 1
        counters.latency_sum += elapsed
        counters.requests += 1
        cell[index * _SLOTS + bucket] += 1
        cell[_SUMS + index] += elapsed

    def _handler_cell(self, counters: _Counters, handler: Any) -> list[float]:
        """The cell ``handler`` counts in on this thread (its first request there)."""
        key = _UNDISPATCHED if handler is None else handler
        counted = key in self._known
        if not counted:
            with self._lock:
                # Another thread may have added it meanwhile.
                counted = key in self._known or len(self._known) < self.max_handlers
                if counted:
                    self._known.add(key)
        if not counted:
            key = (key[0], OTHER)
        cell = counters.cells.get(key)
        if cell is None:
            cell = counters.cells[key] = [0.0] * _CELL
        if counted:
            # Keys past the limit are not remembered: their number has no bound.
            counters.handlers[handler] = cell
        return cell

    @property
    def requests(self) -> int:
        """Requests finished so far."""
        return sum(counters.requests for counters in self._all_counters())

    def _all_counters(self) -> list[_Counters]:
        with self._lock:
            return list(self._counters)

    def active(self) -> list[ActiveRequest]:
        """The requests running now, oldest first."""
        requests = [
            ActiveRequest(thread_id, started, *_method_and_path(request))
            for thread_id, (started, request) in self._active.copy().items()
        ]
        requests.sort(key=lambda request: request.started)
        return requests

    def snapshot(self) -> dict[str, Any]:
        """The counters, named as in :func:`morello.master.channel.heartbeat_fields`."""
        now = time.monotonic()
        running = list(self._active.copy().values())
        oldest = min(running, key=lambda item: item[0], default=None)
        requests = 0
        status = [0] * len(STATUS_CLASSES)
        latency = [0] * (len(LATENCY_BUCKETS) + 1)
        latency_sum = 0.0
        for counters in self._all_counters():
            requests += counters.requests
            status = [a + b for a, b in zip(status, counters.status, strict=True)]
            latency = [a + b for a, b in zip(latency, counters.latency, strict=True)]
            latency_sum += counters.latency_sum
        return {
            "requests": requests,
            "in_flight": len(running),
            # cheroot runs one request per thread at a time.
            "busy_threads": len(running),
            "oldest_request_age": round(now - oldest[0], 6) if oldest else 0.0,
            # Only the oldest request's path is read: one per heartbeat, never per request.
            "oldest_request": None if oldest is None else {
                "age": round(now - oldest[0], 3),
                "path": _method_and_path(oldest[1])[1][:MAX_PATH_REPORTED],
            },
            "status": dict(zip(STATUS_CLASSES, status, strict=True)),
            "latency_buckets": latency,
            "latency_sum": round(latency_sum, 6),
            "latency_count": sum(latency),
            "metrics": self._metric_deltas(),
        }

    def _metric_deltas(self) -> list[dict[str, Any]]:
        """Per-handler latencies, then the registry's metrics, changed since the last call."""
        with self._delta_lock:
            series = self._handler_deltas()
        entries = [entry(HANDLER_FAMILY, series)] if series else []
        return entries + self.registry.deltas(MAX_SERIES_PER_HEARTBEAT - len(series))

    def _handler_deltas(self) -> list[list[Any]]:
        totals: dict[tuple[str | None, str], list[float]] = {}
        for counters in self._all_counters():
            for key, cell in list(counters.cells.items()):
                total = totals.get(key)
                totals[key] = list(cell) if total is None else [
                    a + b for a, b in zip(total, cell, strict=True)
                ]
        series = []
        budget = MAX_SERIES_PER_HEARTBEAT
        for key, total in totals.items():
            sent = self._sent.get(key, [0.0] * _CELL)
            app = "none" if key[0] is None else key[0] or "/"
            for index, status_class in enumerate(STATUS_CLASSES):
                start = index * _SLOTS
                counts = [int(new - old) for new, old in zip(
                    total[start : start + _SLOTS], sent[start : start + _SLOTS], strict=True
                )]  # fmt: skip
                if any(counts) and budget > 0:
                    elapsed = max(total[_SUMS + index] - sent[_SUMS + index], 0.0)
                    series.append([[app, key[1], status_class], [*counts, elapsed]])
                    budget -= 1
                    sent[start : start + _SLOTS] = total[start : start + _SLOTS]
                    sent[_SUMS + index] = total[_SUMS + index]
            self._sent[key] = sent
        return series


def _method_and_path(request: Any) -> tuple[str, str]:
    """The method and path of a running request, from its environ or NativeRequest."""
    if isinstance(request, NativeRequest):
        return request.head.method.decode("latin-1"), request.head.path.decode("latin-1")
    return (
        str(request.get("REQUEST_METHOD", "?")),
        str(request.get("SCRIPT_NAME", "")) + str(request.get("PATH_INFO", "")),
    )


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
        native = native_server(app)
        if native is not None:
            # Offered only when the application offers it (the server looks).
            self.serve_native = functools.partial(self._track, native)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._track(self.app, environ, start_response)

    def _track(self, app: WSGIApp, request: Any, start_response: Callable[..., Any]) -> Any:
        """Call ``app`` with ``request`` (an environ or a NativeRequest), counting it."""
        thread_id = threading.get_ident()
        started = time.monotonic()
        self.stats.begin(thread_id, started, request)
        response = _TrackedResponse(self.stats, thread_id, started, start_response)
        try:
            response.body = app(request, response.start_response)
        except BaseException:
            response.status = None  # the server answers 500
            response.close()
            raise
        return response


_SAFE_ITERATORS = (type(iter([])), type(iter(())))


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
            chunks = iter(self.body)
        except Exception:
            self.status = None
            raise
        # Walking a list or a tuple cannot fail: no need to watch it.
        return chunks if type(chunks) in _SAFE_ITERATORS else self._watched(chunks)

    def _watched(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
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
