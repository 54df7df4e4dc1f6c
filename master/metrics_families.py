"""The metric families workers report in their heartbeats, added up by the master.

Each heartbeat's ``metrics`` field (see :mod:`morello.master.channel`) says
what changed in a worker since its previous heartbeat: per-handler request
latencies, session store timings, and the application's own metrics
(:mod:`morello.metrics`). :class:`FamilyBook` adds the increases of counters
and histograms to totals that therefore never decrease, whichever workers
exit, are rolled or scaled away; it keeps each live worker's last gauge
values and combines them as the gauge's mode says (sum, max, min, or one
series per worker pid), forgetting a worker's gauges when it exits.

A worker is not trusted: malformed entries and series are skipped, a name
defined again differently is ignored, and the number of families and of
series per family is bounded (series past the bound count under ``other``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from morello.metrics.handlers import OTHER
from morello.metrics.registry import GAUGE_MODES, KINDS, FamilyData, check_definition

from .channel import STATUS_CLASSES

logger = logging.getLogger("morello.master")

#: Most families the master keeps; later ones are ignored (and logged once).
MAX_FAMILIES = 500
#: Most series one family keeps (workers each bound theirs; many workers over
#: time can still bring more); later ones count under ``other``.
MAX_SERIES = 1000
#: The per-handler latency family, bounded by handlers rather than series.
HANDLER_FAMILY = "morello_handler_request_duration_seconds"
#: Names of morello's own families workers may report (all others under
#: ``morello_`` belong to the master's built-in metrics).
INTERNAL_PREFIXES = ("morello_handler_", "morello_session_")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )


class _Family:
    """One family's definition, totals (counters, histograms) and live gauges."""

    def __init__(self, data: FamilyData) -> None:
        self.data = data
        # Gauges: worker id -> (pid, label values -> last value).
        self.gauges: dict[int, tuple[int, dict[tuple[str, ...], float]]] = {}
        # The handler family: the (app, handler) pairs counted separately.
        self.handlers: set[tuple[str, str]] = set()

    def valid_value(self, value: Any) -> bool:
        kind = self.data.kind
        if kind == "counter":
            return _is_number(value) and value >= 0
        if kind == "gauge":
            return _is_number(value)
        return (
            isinstance(value, list)
            and len(value) == len(self.data.buckets) + 2
            and all(_is_count(count) for count in value[:-1])
            and _is_number(value[-1])
        )


class FamilyBook:
    """Totals of the metric families reported by every worker, live and exited.

    Not thread-safe: the master's single-threaded loop owns it.
    """

    def __init__(self, max_handlers: int = 100) -> None:
        self.max_handlers = max_handlers
        self._families: dict[str, _Family] = {}
        self._complained: set[str] = set()
        # Live worker id -> (app, handler) -> requests it served (memory attribution).
        self._served: dict[int, dict[tuple[str, str], int]] = {}

    def update(self, worker_id: int, pid: Any, entries: Any) -> None:
        """Add one heartbeat's ``metrics`` entries from ``worker_id`` (``pid``)."""
        if not isinstance(entries, list):
            return
        for item in entries:
            family = self._family(item)
            if family is None:
                continue
            series = item.get("series")
            if isinstance(series, list):
                self._add_series(family, worker_id, pid, series)

    def retire(self, worker_id: int) -> None:
        """``worker_id`` exited: its counts stay in the totals, its gauges go."""
        self._served.pop(worker_id, None)
        for family in self._families.values():
            family.gauges.pop(worker_id, None)

    def top_handlers(self, worker_id: int, count: int) -> list[tuple[str, str, int]]:
        """The ``count`` handlers ``worker_id`` served most since it started, with requests."""
        served = self._served.get(worker_id, {})
        ranked = sorted(served.items(), key=lambda item: (-item[1], item[0]))[:count]
        return [(app, handler, requests) for (app, handler), requests in ranked]

    def families(self) -> list[FamilyData]:
        """Every family with its values (gauges combined over live workers)."""
        result = []
        for family in self._families.values():
            data = family.data
            if data.kind == "gauge":
                data = _combined_gauges(family)
            result.append(data)
        return result

    def _family(self, item: Any) -> _Family | None:
        """The family ``item`` reports into (defined by it if new), or None to skip it."""
        if not isinstance(item, Mapping):
            return None
        name = item.get("name")
        if not isinstance(name, str):
            return None
        family = self._families.get(name)
        try:
            data = _definition(item)
        except (TypeError, ValueError) as exc:
            self._complain(name, f"metric {name!r} from a worker is malformed: {exc}")
            return None
        if family is None:
            if len(self._families) >= MAX_FAMILIES:
                self._complain("", f"more than {MAX_FAMILIES} metric families: ignoring more")
                return None
            family = self._families[name] = _Family(data)
        elif _spec(family.data) != _spec(data):
            self._complain(name, f"metric {name} reported with another definition than "
                                 "before: ignoring that one")  # fmt: skip
            return None
        return family

    def _add_series(self, family: _Family, worker_id: int, pid: Any, series: list[Any]) -> None:
        data = family.data
        for item in series:
            if not (isinstance(item, list) and len(item) == 2):
                continue
            labels, value = item
            if not (
                isinstance(labels, list)
                and len(labels) == len(data.labels)
                and all(isinstance(label, str) for label in labels)
                and family.valid_value(value)
            ):
                continue
            key = self._bounded(family, worker_id, tuple(labels))
            if data.name == HANDLER_FAMILY:
                served = self._served.setdefault(worker_id, {})
                served[key[:2]] = served.get(key[:2], 0) + sum(value[:-1])
            if data.kind == "gauge":
                family.gauges.setdefault(worker_id, (pid, {}))[1][key] = float(value)
            elif data.kind == "counter":
                data.series[key] = data.series.get(key, 0.0) + value
            else:
                total = data.series.get(key)
                data.series[key] = list(value) if total is None else [
                    a + b for a, b in zip(total, value, strict=True)
                ]

    def _bounded(
        self, family: _Family, worker_id: int, key: tuple[str, ...]
    ) -> tuple[str, ...]:
        """``key``, or the ``other`` series standing for it past the family's bound."""
        data = family.data
        if data.name == HANDLER_FAMILY:
            app, handler, status_class = key
            if status_class not in STATUS_CLASSES:
                status_class = OTHER
            pair = (app, handler)
            if pair not in family.handlers and handler != OTHER:
                if len(family.handlers) >= self.max_handlers:
                    return (app, OTHER, status_class)
                family.handlers.add(pair)
            return (app, handler, status_class)
        # A gauge's series are per worker, and forgotten with it.
        series = family.gauges.get(worker_id, (0, {}))[1] if data.kind == "gauge" else data.series
        if key in series or len(series) < MAX_SERIES:
            return key
        return (OTHER,) * len(key)

    def _complain(self, name: str, message: str) -> None:
        """Log ``message`` once per family name (and at most for MAX_FAMILIES names)."""
        if name not in self._complained and len(self._complained) < MAX_FAMILIES:
            self._complained.add(name)
            logger.warning("%s", message)


def _definition(item: Mapping[str, Any]) -> FamilyData:
    """The family ``item`` defines; raises ValueError or TypeError when it is malformed."""
    name, kind, doc = item.get("name"), item.get("kind"), item.get("doc")
    labels, buckets, gauge = item.get("labels"), item.get("buckets"), item.get("gauge")
    if not isinstance(labels, list) or not isinstance(buckets, list):
        raise ValueError("labels and buckets must be lists")
    if kind not in KINDS or gauge not in GAUGE_MODES:
        raise ValueError(f"unknown kind {kind!r} or gauge mode {gauge!r}")
    internal = isinstance(name, str) and name.startswith(INTERNAL_PREFIXES)
    exported = check_definition(
        name, doc, kind, tuple(labels), tuple(buckets), 1, gauge, internal
    )
    if exported != name:
        raise ValueError("counter names are sent without _total")
    if name == HANDLER_FAMILY and (kind, tuple(labels)) != (
        "histogram", ("app", "handler", "status_class")
    ):
        raise ValueError("not the per-handler latency histogram")
    if kind != "histogram":
        buckets = []
    return FamilyData(name, kind, doc, tuple(labels), tuple(float(b) for b in buckets), gauge)


def _spec(data: FamilyData) -> tuple[Any, ...]:
    return (data.kind, data.labels, data.buckets, data.gauge_mode)


def _combined_gauges(family: _Family) -> FamilyData:
    """A gauge family's values over the live workers, combined by its mode."""
    data = family.data
    if data.gauge_mode == "pid":
        combined = FamilyData(data.name, data.kind, data.doc, (*data.labels, "pid"),
                              gauge_mode=data.gauge_mode)  # fmt: skip
        for pid, values in family.gauges.values():
            for key, value in values.items():
                combined.series[(*key, str(pid))] = value
        return combined
    combine = {"sum": sum, "max": max, "min": min}[data.gauge_mode]
    by_key: dict[tuple[str, ...], list[float]] = {}
    for _pid, values in family.gauges.values():
        for key, value in values.items():
            by_key.setdefault(key, []).append(value)
    combined = FamilyData(data.name, data.kind, data.doc, data.labels, gauge_mode=data.gauge_mode)
    combined.series = {key: combine(values) for key, values in by_key.items()}
    return combined
