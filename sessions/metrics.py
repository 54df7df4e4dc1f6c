"""Session store metrics, by store: exported by the master like the application's metrics.

``morello_session_store_seconds{store, op}``: each round trip to the store
(``load``, ``save``, ``lock``, ``apply``...); ``morello_session_lock_wait_seconds{store}``:
time to get a session lock, however it ended; ``morello_session_optimistic_retries_total``:
optimistic saves that lost a race and merged again; ``morello_session_store_errors_total``:
store calls that failed (each a 503); ``morello_session_lock_timeouts_total``: locks
not acquired within ``lock_timeout`` (each a 503).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

from morello.metrics import REGISTRY
from morello.metrics.registry import Series

#: Round trips to a store: from a local RAM dict to a remote server.
ROUND_TRIP_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: Waits for a session lock, up to the default ``lock_timeout`` of 30 s.
LOCK_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)

_ROUND_TRIP = REGISTRY.define(
    "morello_session_store_seconds", "Round trips to the session store, in seconds, by operation.",
    "histogram", ("store", "op"), buckets=ROUND_TRIP_BUCKETS, internal=True,
)  # fmt: skip
_LOCK_WAIT = REGISTRY.define(
    "morello_session_lock_wait_seconds", "Time to acquire a session lock, in seconds.",
    "histogram", ("store",), buckets=LOCK_WAIT_BUCKETS, internal=True,
)  # fmt: skip
_RETRIES = REGISTRY.define(
    "morello_session_optimistic_retries", "Optimistic saves that lost a race and merged again.",
    "counter", ("store",), internal=True,
)  # fmt: skip
_ERRORS = REGISTRY.define(
    "morello_session_store_errors", "Session store calls that failed (answered 503).",
    "counter", ("store", "op"), internal=True,
)  # fmt: skip
_LOCK_TIMEOUTS = REGISTRY.define(
    "morello_session_lock_timeouts", "Session locks not acquired in time (answered 503).",
    "counter", ("store",), internal=True,
)  # fmt: skip


class StoreMetrics:
    """The series of one store, looked up once so that recording is a plain call."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.lock_wait = _LOCK_WAIT.labels(store)
        self.retries = _RETRIES.labels(store)
        self.lock_timeouts = _LOCK_TIMEOUTS.labels(store)
        self._round_trips: dict[str, Series] = {}

    def round_trip(self, op: str, seconds: float) -> None:
        """One call of ``op`` took ``seconds``."""
        series = self._round_trips.get(op)
        if series is None:
            series = self._round_trips[op] = _ROUND_TRIP.labels(self.store, op)
        series.observe(seconds)

    def error(self, op: str) -> None:
        """A call of ``op`` failed."""
        _ERRORS.labels(self.store, op).inc()

    @contextlib.contextmanager
    def waiting_for_lock(self) -> Iterator[None]:
        """Time the ``with`` block as a lock wait, however it ends."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.lock_wait.observe(time.perf_counter() - started)


@functools.cache
def store_metrics(store_class: type) -> StoreMetrics:
    """The metrics of ``store_class``, labelled ``ram``, ``file``, ``redis``... after it."""
    name = store_class.__name__.lower()
    return StoreMetrics(name.removesuffix("session") or name)
