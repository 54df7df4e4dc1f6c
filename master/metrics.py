"""Cluster statistics from worker heartbeats, and their Prometheus exposition.

The master feeds every ``heartbeat`` message (see :mod:`morello.master.channel`)
to a :class:`StatsBook` and calls :meth:`StatsBook.retire` when a worker exits,
so the cluster counters keep what exited workers served and never go
backwards. :func:`prometheus_text` renders the book, plus facts only the
master knows, in the Prometheus text exposition format 0.0.4.

Metrics (all prefixed ``morello_``):

``morello_requests_total`` (counter)
    Requests completed by every worker, live or exited.
``morello_responses_total{status_class="1xx".."5xx"}`` (counter)
    Responses by status class.
``morello_request_duration_seconds`` (histogram)
    Request latency: ``_bucket{le=...}`` (cumulative, buckets of
    :data:`~morello.master.channel.LATENCY_BUCKETS` then ``+Inf``), ``_sum``,
    ``_count``. ``_count`` equals the ``+Inf`` bucket.
``morello_in_flight_requests`` (gauge)
    Requests being served right now, over live workers.
``morello_busy_threads`` (gauge)
    Worker threads serving a request right now.
``morello_worker_threads`` (gauge)
    Worker threads in all live workers.
``morello_oldest_request_age_seconds`` (gauge)
    Age of the oldest request in flight in any worker (0 when idle).
``morello_workers{state="..."}`` (gauge)
    Worker processes by state; ``booting``, ``ready`` and ``retiring`` are
    always present (possibly 0), other states when some worker is in them.
``morello_worker_restarts_total{reason="crash|recycle|rollout|scale"}`` (counter)
    Workers that ended while the master ran, by why: ``crash`` (died, or
    failed to boot), ``recycle`` (max_requests, request_timeout, max_rss),
    ``rollout`` (replaced by a rolling restart), ``scale`` (scaled down).
    Every reason is always present.
``morello_master_uptime_seconds`` (gauge)
    Seconds since the master started.
``morello_master_generation`` (gauge)
    Configuration generation, incremented by every reload.
``morello_worker_rss_bytes{pid="..."}`` (gauge)
    Resident memory of each live worker, when the master could measure it.

Then the families workers report in the heartbeats' ``metrics`` field,
rendered by ``prometheus_client`` (see :mod:`.metrics_families`):

``morello_handler_request_duration_seconds{app, handler, status_class}`` (histogram)
    Request latency by application (mount point), dispatched handler
    (``/orders/default``; ``none`` when no handler was found; ``other``
    past ``metrics_max_handlers``) and status class.
``morello_session_*``
    Session store timings and failures (see :mod:`morello.sessions.metrics`).
Application metrics
    Whatever the application defines with :mod:`morello.metrics`.

The ``status`` mapping given to :func:`prometheus_text` is the master's
``/status`` document: ``{"master": {"uptime": seconds, "generation": n,
"restarts_by_reason": {"crash": n, ...}, ...}, "workers": [{"pid": n, "state": str, "rss": bytes or
None, ...}, ...]}``. Missing or malformed entries are skipped rather than
reported as zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from morello.metrics.exposition import exposition

from .channel import LATENCY_BUCKETS, STATUS_CLASSES
from .metrics_families import FamilyBook
from .workers import RESTART_REASONS

#: Largest counter value accepted from a worker; anything bigger is garbage.
MAX_COUNT = 2**63 - 1
#: Largest duration (seconds) accepted from a worker: a cumulative latency sum
#: can grow faster than wall time (many threads), so leave ample room.
MAX_SECONDS = 1e12
#: Worker states always exported, so their series never vanish from a scrape.
WORKER_STATES: tuple[str, ...] = ("booting", "ready", "retiring")

# latency_sum is kept in integer microseconds: float sums regrouped when a
# worker retires could drop by one ulp, which Prometheus would read as a
# counter reset; integer sums are exact so the total only ever grows.
_MICROS = 1_000_000
_BUCKET_SLOTS = len(LATENCY_BUCKETS) + 1


def _count(value: Any, previous: int) -> int:
    """``value`` as a non-negative count, or ``previous`` when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return previous
    if not (0 <= value <= MAX_COUNT):  # also rejects NaN
        return previous
    return int(value)


def _seconds(value: Any, previous: float) -> float:
    """``value`` as a non-negative finite duration, or ``previous``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return previous
    if not (0 <= value <= MAX_SECONDS):
        return previous
    return float(value)


@dataclass
class _Sample:
    """One worker's last heartbeat, cleaned: cumulative counters plus gauges."""

    requests: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * _BUCKET_SLOTS)
    latency_micros: int = 0
    latency_count: int = 0
    in_flight: int = 0
    busy_threads: int = 0
    threads: int = 0
    oldest_request_age: float = 0.0

    @classmethod
    def from_heartbeat(cls, heartbeat: Mapping[str, Any], previous: _Sample) -> _Sample:
        """Clean ``heartbeat``; a missing or malformed field keeps its ``previous`` value.

        Keeping the previous value (rather than 0) matters: a zero would look
        like a counter reset, and the next good heartbeat would then be
        counted a second time.
        """
        status = dict(previous.status)
        raw_status = heartbeat.get("status")
        if isinstance(raw_status, Mapping):
            for name in STATUS_CLASSES:
                status[name] = _count(raw_status.get(name), status[name])
        buckets = list(previous.buckets)
        raw_buckets = heartbeat.get("latency_buckets")
        # A list of the wrong length cannot be lined up with the bucket bounds.
        if isinstance(raw_buckets, list) and len(raw_buckets) == _BUCKET_SLOTS:
            buckets = [_count(new, old) for new, old in zip(raw_buckets, buckets, strict=True)]
        latency_sum = _seconds(heartbeat.get("latency_sum"), -1.0)
        latency_micros = (
            previous.latency_micros if latency_sum < 0 else round(latency_sum * _MICROS)
        )
        return cls(
            requests=_count(heartbeat.get("requests"), previous.requests),
            status=status,
            buckets=buckets,
            latency_micros=latency_micros,
            latency_count=_count(heartbeat.get("latency_count"), previous.latency_count),
            in_flight=_count(heartbeat.get("in_flight"), previous.in_flight),
            busy_threads=_count(heartbeat.get("busy_threads"), previous.busy_threads),
            threads=_count(heartbeat.get("threads"), previous.threads),
            oldest_request_age=_seconds(
                heartbeat.get("oldest_request_age"), previous.oldest_request_age
            ),
        )

    def went_backwards_from(self, older: _Sample) -> bool:
        """Whether any counter is lower than in ``older`` (the worker's counters were reset)."""
        if self.requests < older.requests or self.latency_count < older.latency_count:
            return True
        if self.latency_micros < older.latency_micros:
            return True
        if any(self.status[name] < older.status[name] for name in STATUS_CLASSES):
            return True
        return any(new < old for new, old in zip(self.buckets, older.buckets, strict=True))

    def add_counters(self, other: _Sample) -> None:
        """Add ``other``'s counters (not its gauges) to this sample's."""
        self.requests += other.requests
        for name in STATUS_CLASSES:
            self.status[name] += other.status[name]
        pairs = zip(self.buckets, other.buckets, strict=True)
        self.buckets = [mine + theirs for mine, theirs in pairs]
        self.latency_micros += other.latency_micros
        self.latency_count += other.latency_count


class StatsBook:
    """Cumulative request statistics over live and exited workers.

    Not thread-safe: the master's single-threaded loop owns it. The metric
    families of the heartbeats' ``metrics`` field (per-handler latencies,
    session stores, the application's metrics) go to :attr:`families`, whose
    per-handler family keeps at most ``max_handlers`` handlers apart.
    """

    def __init__(self, max_handlers: int = 100) -> None:
        self._live: dict[int, _Sample] = {}
        # Counters of exited workers, and of workers whose counters were reset.
        self._retired = _Sample()
        self.families = FamilyBook(max_handlers)
        # Live worker id -> its RSS when first measured.
        self._first_rss: dict[int, int] = {}

    def update(self, worker_id: int, heartbeat: Mapping[str, Any]) -> None:
        """Record ``worker_id``'s latest heartbeat; malformed fields are ignored.

        A counter lower than in the previous heartbeat of the same worker is
        a reset: the old counters are folded into the retired totals, so the
        cluster totals still never decrease.
        """
        if not isinstance(heartbeat, Mapping):
            return
        self.families.update(worker_id, heartbeat.get("pid"), heartbeat.get("metrics"))
        previous = self._live.get(worker_id, _Sample())
        sample = _Sample.from_heartbeat(heartbeat, previous)
        if sample.went_backwards_from(previous):
            self._retired.add_counters(previous)
            # Clean again against zeros so no stale value is counted twice.
            sample = _Sample.from_heartbeat(heartbeat, _Sample())
        self._live[worker_id] = sample

    def retire(self, worker_id: int) -> None:
        """``worker_id`` exited: keep its counters in the totals, drop its gauges."""
        self.families.retire(worker_id)
        self._first_rss.pop(worker_id, None)
        sample = self._live.pop(worker_id, None)
        if sample is not None:
            self._retired.add_counters(sample)

    def note_rss(self, worker_id: int, rss: int) -> None:
        """``worker_id`` was measured at ``rss`` bytes (its first measure is kept)."""
        self._first_rss.setdefault(worker_id, rss)

    def memory_report(self, worker_id: int, rss: int, handlers: int = 5) -> str:
        """How much ``worker_id`` grew since first measured, and what it served most.

        For the log line of a worker recycled for ``max_rss``.
        """
        first = self._first_rss.get(worker_id)
        growth = ""
        if first is not None:
            growth = f"grew {(rss - first) / 2**20:+.1f} MiB since it started; "
        top = self.families.top_handlers(worker_id, handlers)
        if not top:
            return growth + "no request served"
        served = ", ".join(
            f"{handler if app == '/' else app + ' ' + handler} ({requests})"
            for app, handler, requests in top
        )
        return f"{growth}served most: {served}"

    def totals(self) -> dict[str, Any]:
        """Cluster totals.

        Counters (live plus retired): ``requests``, ``status`` (by class),
        ``latency_buckets`` (per bucket, not cumulative, overflow last),
        ``latency_sum`` (seconds), ``latency_count``. Gauges (live workers
        only): ``in_flight``, ``busy_threads``, ``threads``, and
        ``oldest_request_age`` (the maximum).
        """
        counters = _Sample()
        counters.add_counters(self._retired)
        for sample in self._live.values():
            counters.add_counters(sample)
        return _as_dict(counters, list(self._live.values()))


def _as_dict(counters: _Sample, live: list[_Sample]) -> dict[str, Any]:
    """Counters from ``counters`` and gauges summed (age: maximum) over ``live``."""
    return {
        "requests": counters.requests,
        "status": dict(counters.status),
        "latency_buckets": list(counters.buckets),
        "latency_sum": counters.latency_micros / _MICROS,
        "latency_count": counters.latency_count,
        "in_flight": sum(sample.in_flight for sample in live),
        "busy_threads": sum(sample.busy_threads for sample in live),
        "threads": sum(sample.threads for sample in live),
        "oldest_request_age": max((sample.oldest_request_age for sample in live), default=0.0),
    }


def escape_label_value(value: str) -> str:
    """A label value escaped for the text format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the text format spells it (``+Inf``, ``NaN``, plain numbers)."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class _Exposition:
    """Accumulates metric families as text lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        # HELP text escapes only backslash and newline (quotes are literal there).
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name} {escaped}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        if labels:
            inner = ",".join(f'{key}="{escape_label_value(val)}"' for key, val in labels.items())
            name = f"{name}{{{inner}}}"
        self.lines.append(f"{name} {format_value(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _worker_entries(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    workers = status.get("workers")
    if not isinstance(workers, Iterable) or isinstance(workers, (str, bytes, Mapping)):
        return []
    return [worker for worker in workers if isinstance(worker, Mapping)]


#: Master fields in ``/status`` exposed as single samples: key, reader, name, type, help.
_MASTER_SAMPLES: tuple[tuple[str, Callable[[Any, Any], Any], str, str, str], ...] = (
    ("uptime", _seconds, "morello_master_uptime_seconds", "gauge",
     "Seconds since the master started."),
    ("generation", _count, "morello_master_generation", "gauge",
     "Configuration generation, incremented by every reload."),
)  # fmt: skip


def prometheus_text(book: StatsBook, status: Mapping[str, Any]) -> str:
    """Render ``book`` and the master's ``status`` document as Prometheus text 0.0.4.

    The families the workers report follow the master's own.
    """
    totals = book.totals()
    out = _Exposition()
    out.single(
        "morello_requests_total",
        "counter",
        "Requests completed by all workers, including exited ones.",
        totals["requests"],
    )
    out.family("morello_responses_total", "counter", "Responses by HTTP status class.")
    for name in STATUS_CLASSES:
        out.sample("morello_responses_total", totals["status"][name], {"status_class": name})

    histogram = "morello_request_duration_seconds"
    out.family(histogram, "histogram", "Time to serve a request, in seconds.")
    cumulative = 0
    bounds = (*LATENCY_BUCKETS, math.inf)
    for bound, count in zip(bounds, totals["latency_buckets"], strict=True):
        cumulative += count
        out.sample(f"{histogram}_bucket", cumulative, {"le": format_value(bound)})
    out.sample(f"{histogram}_sum", totals["latency_sum"])
    # The +Inf bucket is the count by definition; using it keeps the two equal
    # even if a worker's latency_count disagrees with its buckets.
    out.sample(f"{histogram}_count", cumulative)

    out.single(
        "morello_in_flight_requests",
        "gauge",
        "Requests being served by live workers.",
        totals["in_flight"],
    )
    out.single(
        "morello_busy_threads",
        "gauge",
        "Worker threads serving a request.",
        totals["busy_threads"],
    )
    out.single(
        "morello_worker_threads",
        "gauge",
        "Threads of all live workers.",
        totals["threads"],
    )
    out.single(
        "morello_oldest_request_age_seconds",
        "gauge",
        "Age of the oldest request in flight, in seconds.",
        totals["oldest_request_age"],
    )

    workers = _worker_entries(status)
    by_state = dict.fromkeys(WORKER_STATES, 0)
    for worker in workers:
        state = worker.get("state")
        if isinstance(state, str):
            by_state[state] = by_state.get(state, 0) + 1
    out.family("morello_workers", "gauge", "Worker processes by state.")
    for state, count in by_state.items():
        out.sample("morello_workers", count, {"state": state})

    master = status.get("master")
    if not isinstance(master, Mapping):
        master = {}
    for key, read, name, kind, help_text in _MASTER_SAMPLES:
        value = read(master.get(key), -1)
        if value >= 0:
            out.single(name, kind, help_text, value)
    restarts = master.get("restarts_by_reason")
    if isinstance(restarts, Mapping):
        out.family(
            "morello_worker_restarts_total",
            "counter",
            "Workers that ended while the master ran, by reason.",
        )
        for reason in RESTART_REASONS:
            count = _count(restarts.get(reason), -1)
            if count >= 0:
                out.sample("morello_worker_restarts_total", count, {"reason": reason})

    out.family("morello_worker_rss_bytes", "gauge", "Resident memory of each worker, in bytes.")
    for worker in workers:
        pid = _count(worker.get("pid"), -1)
        rss = _count(worker.get("rss"), -1)
        if pid >= 0 and rss >= 0:
            out.sample("morello_worker_rss_bytes", rss, {"pid": str(pid)})
    return out.text() + exposition(book.families.families())
