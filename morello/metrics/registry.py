"""Metrics kept in this process: counters, gauges and histograms with labels.

Recording takes no lock for counters and histograms: each thread adds into
its own cells (like the worker's request counters), and readers sum every
thread's cells. A cell is written by one thread only, so no increment is
lost; a reader summing while a thread is between two writes may see that
observation in the bucket and not yet in the sum, which the next read
corrects. Gauges are one value per series, changed under a lock (they are
set, not counted, and rarely on a hot path).

:meth:`Registry.families` gives the cumulative values (what this process
recorded since it started); :meth:`Registry.deltas` what changed since its
last call, which is what a prefork worker sends the master in each heartbeat.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .handlers import OTHER

logger = logging.getLogger("morello.metrics")

#: Default histogram bucket bounds, in seconds (also the request latency buckets).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Default for how many label combinations one metric keeps; later ones count as ``other``.
MAX_SERIES = 100
#: Longest label value accepted.
MAX_LABEL_VALUE = 200
KINDS = ("counter", "gauge", "histogram")
#: How the master combines a gauge over workers: the sum, max or min over live
#: workers, or one series per worker (a ``pid`` label).
GAUGE_MODES = ("sum", "max", "min", "pid")
#: Name prefix kept for morello's own metrics.
RESERVED_PREFIX = "morello_"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Sample suffixes the exposition adds; a family name ending in one would clash.
_SUFFIXES = ("_bucket", "_sum", "_count", "_created", "_total", "_info")


@dataclass
class FamilyData:
    """One metric's definition and values: what the exposition renders.

    ``series`` maps label values to a number (counter, gauge) or, for a
    histogram, to per-bucket counts (not cumulative; one more than
    ``buckets``, for +Inf) followed by the sum.
    """

    name: str
    kind: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    gauge_mode: str = "sum"
    series: dict[tuple[str, ...], Any] = field(default_factory=dict)


class Series:
    """One label combination of a metric; records without a lock (see the module doc).

    One subclass per kind, so that recording tests nothing it need not; the
    methods of the other kinds raise TypeError.
    """

    __slots__ = ("metric", "values", "_local", "_cells", "_cells_lock")

    def __init__(self, metric: Metric, values: tuple[str, ...]) -> None:
        self.metric = metric
        self.values = values
        self._local = threading.local()
        self._cells: list[list[float]] = []
        self._cells_lock = threading.Lock()

    def _cell(self) -> list[float]:
        """This thread's cell (created on its first use, kept after the thread ends)."""
        cell = self._local.cell = [0.0] * self.metric.width
        with self._cells_lock:
            self._cells.append(cell)
        return cell

    def _all_cells(self) -> list[list[float]]:
        with self._cells_lock:
            return list(self._cells)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (counters: never negative; gauges)."""
        raise TypeError(f"{self.metric.name} is a {self.metric.kind}: use observe()")

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` (gauges only)."""
        raise TypeError(f"{self.metric.name} is a {self.metric.kind}: dec() is for gauges")

    def set(self, value: float) -> None:
        """Set the value (gauges only)."""
        raise TypeError(f"{self.metric.name} is a {self.metric.kind}: set() is for gauges")

    def observe(self, value: float) -> None:
        """Count ``value`` in its bucket and add it to the sum (histograms only)."""
        raise TypeError(f"{self.metric.name} is a {self.metric.kind}, not a histogram")

    def value(self) -> Any:
        """The cumulative value: a number, or a histogram's bucket counts then the sum."""
        raise NotImplementedError


class _CounterSeries(Series):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if not 0 <= amount < math.inf:
            raise ValueError(f"{self.metric.name}: a counter only goes up, not by {amount!r}")
        try:
            cell = self._local.cell
        except AttributeError:
            cell = self._cell()
        cell[0] += amount

    def value(self) -> float:
        return sum(cell[0] for cell in self._all_cells())


class _HistogramSeries(Series):
    __slots__ = ()

    def observe(self, value: float) -> None:
        # One NaN or infinity would make the sum useless for good.
        if not math.isfinite(value):
            raise ValueError(f"{self.metric.name}: cannot observe {value!r}")
        try:
            cell = self._local.cell
        except AttributeError:
            cell = self._cell()
        cell[bisect_left(self.metric.buckets, value)] += 1
        cell[-1] += value

    def value(self) -> list[float]:
        cells = self._all_cells()
        if not cells:
            return [0.0] * self.metric.width
        return [sum(column) for column in zip(*cells, strict=True)]


class _GaugeSeries(Series):
    """A gauge is one value per process: set, or changed under the lock."""

    __slots__ = ("_value",)

    def __init__(self, metric: Metric, values: tuple[str, ...]) -> None:
        super().__init__(metric, values)
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._cells_lock:
            self.set(self._value + amount)

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def set(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{self.metric.name}: a gauge must be finite, not {value!r}")
        self._value = value

    def value(self) -> float:
        return self._value


_SERIES_CLASSES: dict[str, type[Series]] = {
    "counter": _CounterSeries, "gauge": _GaugeSeries, "histogram": _HistogramSeries,
}  # fmt: skip


class Metric:
    """A metric family: its definition and its series, one per label combination."""

    def __init__(
        self,
        name: str,
        doc: str,
        kind: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_series: int = MAX_SERIES,
        gauge_mode: str = "sum",
    ) -> None:
        self.name = name
        self.doc = doc
        self.kind = kind
        self.label_names = tuple(labels)
        self.buckets = tuple(float(bound) for bound in buckets) if kind == "histogram" else ()
        self.max_series = max_series
        self.gauge_mode = gauge_mode
        # Cells per thread: a counter's value; a histogram's buckets, +Inf, then the sum.
        self.width = len(self.buckets) + 2 if kind == "histogram" else 1
        self._series: dict[tuple[str, ...], Series] = {}
        self._lock = threading.Lock()
        self._warned = False
        self._default = None if self.label_names else self._add(())

    def spec(self) -> tuple[Any, ...]:
        """What makes two definitions of the same name the same metric."""
        return (self.kind, self.label_names, self.buckets, self.gauge_mode)

    def labels(self, *values: Any, **named: Any) -> Series:
        """The series for these label values (given in order, or by name)."""
        if named:
            if values or set(named) != set(self.label_names):
                raise ValueError(
                    f"{self.name} takes the labels {self.label_names}, got {sorted(named)}"
                )
            values = tuple(named[label] for label in self.label_names)
        # Label values are strings almost always: look them up as they are first.
        series = self._series.get(values)
        if series is not None:
            return series
        key = tuple(str(value) for value in values)
        series = self._series.get(key)
        if series is not None:
            return series
        if len(key) != len(self.label_names):
            raise ValueError(f"{self.name} takes {len(self.label_names)} label value(s) "
                             f"{self.label_names}, got {len(key)}")  # fmt: skip
        for value in key:
            if len(value) > MAX_LABEL_VALUE:
                raise ValueError(f"{self.name}: label value longer than {MAX_LABEL_VALUE} "
                                 f"characters: {value[:40]!r}...")  # fmt: skip
        return self._add(key)

    def _add(self, key: tuple[str, ...]) -> Series:
        with self._lock:
            series = self._series.get(key)
            if series is not None:
                return series
            if len(self._series) >= self.max_series:
                key = (OTHER,) * len(self.label_names)
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "metric %s has %d label combinations, its limit: new ones count as %r",
                        self.name, self.max_series, OTHER,
                    )  # fmt: skip
                series = self._series.get(key)
                if series is not None:
                    return series
            series = self._series[key] = _SERIES_CLASSES[self.kind](self, key)
            return series

    def _unlabelled(self) -> Series:
        if self._default is None:
            raise ValueError(f"{self.name} has labels {self.label_names}: use .labels(...) first")
        return self._default

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to the metric without labels."""
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` from the gauge without labels."""
        self._unlabelled().dec(amount)

    def set(self, value: float) -> None:
        """Set the gauge without labels."""
        self._unlabelled().set(value)

    def observe(self, value: float) -> None:
        """Observe ``value`` in the histogram without labels."""
        self._unlabelled().observe(value)

    def all_series(self) -> list[Series]:
        with self._lock:
            return list(self._series.values())

    def data(self) -> FamilyData:
        """The definition, without values."""
        return FamilyData(self.name, self.kind, self.doc, self.label_names, self.buckets,
                          self.gauge_mode)  # fmt: skip


class Registry:
    """The metrics of one process, by name."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()
        # Series -> the value last given out by deltas(); guarded by _delta_lock.
        self._sent: dict[Series, Any] = {}
        self._delta_lock = threading.Lock()

    def define(
        self,
        name: str,
        doc: str,
        kind: str,
        labels: Iterable[str] = (),
        *,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        max_series: int = MAX_SERIES,
        gauge: str = "sum",
        internal: bool = False,
    ) -> Metric:
        """The metric ``name``, defined now or earlier with the same definition.

        Raises ValueError for a bad name, labels, buckets or limit, and for a
        name already defined differently.
        """
        if isinstance(labels, str):
            raise ValueError(f"{name}: labels must be a sequence of names, not a string")
        labels = tuple(labels)
        bounds = tuple(buckets)
        name = check_definition(name, doc, kind, labels, bounds, max_series, gauge, internal)
        metric = Metric(name, doc, kind, labels, bounds, max_series, gauge)
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                self._metrics[name] = metric
                return metric
        if existing.spec() != metric.spec():
            raise ValueError(f"metric {name} is already defined differently "
                             f"({existing.kind}, labels {existing.label_names})")  # fmt: skip
        return existing

    def metrics(self) -> list[Metric]:
        with self._lock:
            return list(self._metrics.values())

    def families(self) -> list[FamilyData]:
        """Every metric with its cumulative values."""
        families = []
        for metric in self.metrics():
            family = metric.data()
            family.series = {s.values: s.value() for s in metric.all_series()}
            families.append(family)
        return families

    def deltas(self, limit: int) -> list[dict[str, Any]]:
        """What changed since the last call, as heartbeat ``metrics`` entries.

        Counters and histograms give the increase, gauges their current value.
        At most ``limit`` series are given; the others wait for the next call.
        Entries: ``{"name", "kind", "doc", "labels", "buckets", "gauge",
        "series": [[label values, value], ...]}``.
        """
        entries = []
        budget = limit
        with self._delta_lock:
            for metric in self.metrics():
                changed = []
                for series in metric.all_series():
                    if budget <= 0:
                        break
                    current = series.value()
                    previous = self._sent.get(series)
                    delta = _delta(metric.kind, current, previous)
                    if delta is None:
                        continue
                    self._sent[series] = current
                    changed.append([list(series.values), delta])
                    budget -= 1
                if changed:
                    entries.append(entry(metric.data(), changed))
        return entries


def entry(family: FamilyData, series: list[list[Any]]) -> dict[str, Any]:
    """One heartbeat ``metrics`` entry for ``family`` with ``series``."""
    return {
        "name": family.name,
        "kind": family.kind,
        "doc": family.doc,
        "labels": list(family.labels),
        "buckets": list(family.buckets),
        "gauge": family.gauge_mode,
        "series": series,
    }


def _delta(kind: str, current: Any, previous: Any) -> Any:
    """What to send for a series now at ``current``, last sent at ``previous``; None: nothing."""
    if kind == "gauge":
        return None if current == previous else current
    if kind == "counter":
        delta = current - (previous or 0.0)
        return delta if delta > 0 else None
    previous = previous or [0.0] * len(current)
    counts = [int(new - old) for new, old in zip(current[:-1], previous[:-1], strict=True)]
    if not any(counts):
        return None
    # Float sums regrouped by a reader can come out an ulp lower: never negative.
    return [*counts, max(current[-1] - previous[-1], 0.0)]


def check_definition(
    name: Any,
    doc: Any,
    kind: str,
    labels: tuple[Any, ...],
    buckets: tuple[Any, ...],
    max_series: Any,
    gauge: Any,
    internal: bool,
) -> str:
    """Raise ValueError for a bad definition; return the name as it is exported."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"bad metric name {name!r}: letters, digits, '_' and ':', "
                         "not starting with a digit")  # fmt: skip
    if kind == "counter" and name.endswith("_total"):
        name = name[: -len("_total")]  # the exposition adds it back
    if name.endswith(_SUFFIXES):
        raise ValueError(f"metric name {name!r} ends in a suffix the exposition adds to samples")
    if name.startswith(RESERVED_PREFIX) and not internal:
        raise ValueError(f"metric name {name!r}: the prefix {RESERVED_PREFIX!r} is morello's own")
    if not isinstance(doc, str) or not doc.strip():
        raise ValueError(f"metric {name}: a documentation string is required")
    if kind not in KINDS:
        raise ValueError(f"metric {name}: kind must be one of {KINDS}, not {kind!r}")
    reserved = {"le"} if kind == "histogram" else {"pid"} if gauge == "pid" else set()
    for label in labels:
        if not isinstance(label, str) or not _LABEL.fullmatch(label) or label.startswith("__"):
            raise ValueError(f"metric {name}: bad label name {label!r}")
        if label in reserved:
            raise ValueError(f"metric {name}: label {label!r} is added by the exposition")
    if len(set(labels)) != len(labels):
        raise ValueError(f"metric {name}: a label is named twice in {labels}")
    if kind == "histogram":
        if not buckets or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
            for b in buckets
        ):
            raise ValueError(f"metric {name}: buckets must be finite numbers")
        if list(buckets) != sorted(set(buckets)):
            raise ValueError(f"metric {name}: buckets must be strictly increasing")
    if isinstance(max_series, bool) or not isinstance(max_series, int) or max_series < 1:
        raise ValueError(f"metric {name}: max_series must be a positive integer")
    if gauge not in GAUGE_MODES:
        raise ValueError(f"metric {name}: gauge must be one of {GAUGE_MODES}, not {gauge!r}")
    return name
