"""Metric families rendered in the Prometheus text format, by ``prometheus_client``.

Both ends use it: a single-process application for its own metrics
(:func:`morello.metrics.text`), and the master for what its workers report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from .registry import FamilyData


class _Families:
    """A ``prometheus_client`` collector yielding fixed families."""

    def __init__(self, families: Iterable[FamilyData]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield prometheus_family(family)


def prometheus_family(family: FamilyData) -> Metric:
    """``family`` as a ``prometheus_client`` metric family."""
    labels = list(family.labels)
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(family.name, family.doc, labels=labels)
        bounds = [floatToGoString(bound) for bound in family.buckets] + ["+Inf"]
        for values, counts in sorted(family.series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(bounds, counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric(list(values), buckets, counts[-1])
        return histogram
    kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    metric = kind(family.name, family.doc, labels=labels)
    for values, value in sorted(family.series.items()):
        metric.add_metric(list(values), value if math.isfinite(value) else math.nan)
    return metric


def exposition(families: Iterable[FamilyData]) -> str:
    """The text exposition (format 0.0.4) of ``families``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families)))  # type: ignore[arg-type]
    return generate_latest(registry).decode()
