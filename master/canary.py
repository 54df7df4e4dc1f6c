"""Canary gating of a rolling restart: the first new worker is judged before the others start.

With ``canary_seconds`` above 0, a HUP starts one worker of the new
generation and retires nobody: that *canary* serves beside every old worker
(it is the surge worker). From the moment it is ready, for ``canary_seconds``,
the master compares it with the old generation over the same window, from
the difference of each worker's cumulative heartbeat counters (requests,
``status["5xx"]``, ``latency_buckets``) between the window's start and now:

* its 5xx rate may exceed the old workers' by ``canary_max_5xx_rate`` at most
  (absolute: 0.01 is one percentage point);
* its p99 latency may reach ``canary_max_p99_ratio`` times the old workers'
  at most. The p99 is interpolated in the heartbeat histogram, whose first
  bucket is :data:`~morello.master.channel.LATENCY_BUCKETS`\\ ``[0]`` (5 ms): a
  p99 below it counts as that much, so sub-millisecond noise fails nobody.
  It is compared only when the old workers served ``canary_min_requests`` too.

The canary is judged once it has served ``canary_min_requests``. A window
that ends with fewer is extended, up to :data:`MAX_WINDOWS` windows in all;
a canary still short of requests then passes unjudged (a quiet service must
remain deployable) and the event log says so. A canary that stops serving
by itself (it crashed, was aborted for silence, or drained on its own) fails.
One the master retired (it asked to be recycled) hands over to the next new
worker, which starts a new window.

While a canary is judged the arbiter starts no other new worker, and retires
an old one only when the old generation has more ready workers than the
target: TTIN raises the target, filled by new workers once the canary passed;
TTOU retires old workers at once, never the canary; USR2 is refused (a new
master would start the new code unjudged). Another HUP retires the canary
being judged and starts a new one; a rollback then goes back to the
generation that served before the first HUP (the judged one never became
current). After a rollback the old workers keep serving, but a worker
started later (a crashed one's replacement, a TTIN) loads the code on disk:
revert or fix it.

:meth:`Canary.check` is called by the arbiter on every pass of its loop; it
returns why the rollout must be rolled back, or None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import systemd
from .channel import LATENCY_BUCKETS
from .settings import Settings
from .workers import State, Worker

#: A window short of requests is extended to at most this many windows in all.
MAX_WINDOWS = 3
#: The quantile compared.
QUANTILE = 0.99


@dataclass
class Counts:
    """Requests, 5xx answers and the latency histogram of some workers over some time."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> Counts:
        """The cumulative counts of one heartbeat (missing or malformed fields count 0)."""
        status = stats.get("status")
        buckets = stats.get("latency_buckets")
        counts = cls(_count(stats.get("requests")),
                     _count(status.get("5xx")) if isinstance(status, Mapping) else 0)  # fmt: skip
        if isinstance(buckets, list) and len(buckets) == len(counts.buckets):
            counts.buckets = [_count(value) for value in buckets]
        return counts

    def __add__(self, other: Counts) -> Counts:
        pairs = zip(self.buckets, other.buckets, strict=True)
        return Counts(self.requests + other.requests, self.errors + other.errors,
                      [a + b for a, b in pairs])  # fmt: skip

    def __sub__(self, other: Counts) -> Counts:
        # A counter never goes back in a live worker: a negative difference is noise.
        pairs = zip(self.buckets, other.buckets, strict=True)
        return Counts(max(0, self.requests - other.requests), max(0, self.errors - other.errors),
                      [max(0, a - b) for a, b in pairs])  # fmt: skip

    @property
    def error_rate(self) -> float:
        """The share of 5xx answers (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float = QUANTILE) -> float | None:
        """The ``q`` latency quantile in seconds, interpolated in its bucket (None: no data).

        As Prometheus' ``histogram_quantile``: the slowest bucket has no upper
        bound, so a quantile there is the largest finite bound.
        """
        total = sum(self.buckets)
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.buckets):
            if seen + count >= rank and count:
                if index == len(LATENCY_BUCKETS):
                    return LATENCY_BUCKETS[-1]
                lower = LATENCY_BUCKETS[index - 1] if index else 0.0
                return lower + (LATENCY_BUCKETS[index] - lower) * (rank - seen) / count
            seen += count
        return LATENCY_BUCKETS[-1]


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return 0
    return int(value)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


class Canary:
    """The canary of the rollout to ``generation``; see the module docstring."""

    def __init__(self, settings: Settings, generation: int,
                 note: Callable[..., None]) -> None:  # fmt: skip
        self.settings = settings
        self.generation = generation
        #: ``note(level, message, *args)``: log an event for the status page.
        self.note = note
        self.worker: Worker | None = None
        self.started = 0.0
        #: Each ready worker's counts when the window started, by pid.
        self.baseline: dict[int, Counts] = {}
        self.passed = False
        #: The last comparison, as the status page shows it.
        self.summary: str | None = None

    @property
    def judging(self) -> bool:
        """Whether the rollout must wait for this canary's verdict."""
        return not self.passed

    def serving(self, workers: Mapping[int, Worker]) -> Worker | None:
        """The worker being judged, while it still serves (None once the canary passed)."""
        worker = self.worker
        if self.passed or worker is None or not worker.active or worker.pid not in workers:
            return None
        return worker

    def check(self, workers: Mapping[int, Worker], now: float) -> str | None:
        """Move on (pick the canary, judge it when its window is over); return why
        the rollout must be rolled back, or None."""
        if self.passed:
            return None
        worker = self.worker
        if worker is None:
            self._pick(workers, now)
            return None
        if worker.state is not State.READY or worker.pid not in workers:
            if worker.retired_for is not None:
                self.worker = None  # retired by the master (recycled): the next one takes over
                return None
            return f"canary worker {worker.id} (pid {worker.pid}) stopped serving"
        seconds = self.settings.canary_seconds
        if now < self.started + seconds:
            return None
        canary, old = self.measure(workers)
        self.summary = (
            f"5xx rate {canary.error_rate:.1%} vs {old.error_rate:.1%}, p99 "
            f"{_ms(canary.quantile())} vs {_ms(old.quantile())}, "
            f"{canary.requests} vs {old.requests} requests"
        )
        if canary.requests >= self.settings.canary_min_requests:
            failure = self.compare(canary, old)
            if failure is None:
                self._pass("canary worker %d passed: %s", worker.id, self.summary)
            else:
                self.note(logging.ERROR, "canary worker %d failed: %s", worker.id, self.summary)
            return failure
        if now >= self.started + seconds * MAX_WINDOWS:
            self._pass("canary worker %d passed unjudged: %d request(s) in %.0fs, fewer than "
                       "canary_min_requests=%d", worker.id, canary.requests, now - self.started,
                       self.settings.canary_min_requests)  # fmt: skip
        return None

    def _pick(self, workers: Mapping[int, Worker], now: float) -> None:
        """Make the first ready worker of the new generation the canary, if there is one."""
        for worker in workers.values():
            if (worker.generation == self.generation and worker.state is State.READY
                    and worker.recycle_reason is None):  # fmt: skip
                break
        else:
            return
        self.worker, self.started, self.summary = worker, now, None
        self.baseline = {
            w.pid: Counts.of(w.stats) for w in workers.values() if w.state is State.READY
        }
        seconds = self.settings.canary_seconds
        self.note(logging.INFO, "canary: worker %d (pid %d) of generation %d serves beside "
                  "the old workers for %gs", worker.id, worker.pid, self.generation,
                  seconds)  # fmt: skip
        systemd.status(f"rolling restart to generation {self.generation}: canary worker "
                       f"{worker.id} judged for {seconds:g}s")  # fmt: skip

    def measure(self, workers: Mapping[int, Worker]) -> tuple[Counts, Counts]:
        """What the canary and the old generation served since the window started."""
        assert self.worker is not None
        zero = Counts()
        canary = Counts.of(self.worker.stats) - self.baseline.get(self.worker.pid, zero)
        old = zero
        for worker in workers.values():
            if worker.generation < self.generation and worker.pid in self.baseline:
                old = old + (Counts.of(worker.stats) - self.baseline[worker.pid])
        return canary, old

    def compare(self, canary: Counts, old: Counts) -> str | None:
        """Why ``canary`` fails next to ``old``, or None when it passes."""
        settings = self.settings
        if canary.error_rate - old.error_rate > settings.canary_max_5xx_rate:
            return f"canary 5xx rate {canary.error_rate:.1%} vs {old.error_rate:.1%}"
        canary_p99, old_p99 = canary.quantile(), old.quantile()
        if canary_p99 is None or old_p99 is None or old.requests < settings.canary_min_requests:
            return None
        if canary_p99 > max(old_p99, LATENCY_BUCKETS[0]) * settings.canary_max_p99_ratio:
            return f"canary p99 latency {_ms(canary_p99)} vs {_ms(old_p99)}"
        return None

    def _pass(self, message: str, *args: Any) -> None:
        self.passed = True
        self.note(logging.INFO, message, *args)

    def describe(self, workers: Mapping[int, Worker], now: float) -> dict[str, Any]:
        """The canary as ``/status`` shows it, under ``master.rollout.canary``."""
        worker = self.worker
        requests = None
        if worker is not None and worker.pid in workers:
            requests = self.measure(workers)[0].requests
        if self.passed:
            state = "passed"
        elif worker is None:
            state = "starting"
        else:
            state = "judging"
        left = None
        if state == "judging":
            left = round(max(0.0, self.started + self.settings.canary_seconds - now), 1)
        return {
            "state": state,
            "pid": None if worker is None else worker.pid,
            "seconds": self.settings.canary_seconds,
            "seconds_left": left,
            "requests": requests,
            "min_requests": self.settings.canary_min_requests,
            "summary": self.summary,
        }
