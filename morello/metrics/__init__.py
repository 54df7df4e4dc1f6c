"""Application metrics: counters, gauges and histograms, exported by the master.

Define a metric once, at import time, and record from any handler::

    import morello.metrics

    ORDERS = morello.metrics.counter("shop_orders", "Orders placed.", labels=("kind",))
    BASKET = morello.metrics.histogram("shop_basket_euros", "Basket value.",
                                       buckets=(10, 50, 100, 500))

    ORDERS.labels("gift").inc()
    BASKET.observe(42.0)

Recording takes no lock (each thread counts in its own cells). ``labels()``
finds the series in a dict; keep the series it returns when a hot path uses
the same labels again and again.

Under ``morello serve`` each worker sends what changed in its heartbeats and
the master adds it up on its ``/metrics``: counters and histograms keep
growing when workers exit or are replaced; gauges combine the live workers'
values as their ``gauge`` mode says (``sum``, ``max``, ``min``, or ``pid``:
one series per worker). In a single process the values simply accumulate
here: :func:`text` renders them for an application's own page.

Names follow Prometheus rules; ``morello_`` is reserved for morello's own
metrics. A counter's exported name ends in ``_total`` (added when missing).
Each metric keeps at most ``max_series`` label combinations (default
:data:`~.registry.MAX_SERIES`); later combinations count under the label
value ``other``. A bad definition raises ValueError when it is made.
"""

from __future__ import annotations

from collections.abc import Iterable

from .registry import DEFAULT_BUCKETS, MAX_SERIES, Metric, Registry

#: The metrics of this process.
REGISTRY = Registry()


def counter(name: str, doc: str, labels: Iterable[str] = (), *,
            max_series: int = MAX_SERIES) -> Metric:  # fmt: skip
    """A counter (only goes up): ``inc(amount=1)``, or ``labels(...).inc()``."""
    return REGISTRY.define(name, doc, "counter", labels, max_series=max_series)


def gauge(name: str, doc: str, labels: Iterable[str] = (), *,
          max_series: int = MAX_SERIES, mode: str = "sum") -> Metric:  # fmt: skip
    """A gauge: ``set(v)``, ``inc()``, ``dec()``; ``mode`` combines workers (see the module)."""
    return REGISTRY.define(name, doc, "gauge", labels, max_series=max_series, gauge=mode)


def histogram(name: str, doc: str, labels: Iterable[str] = (), *,
              buckets: Iterable[float] = DEFAULT_BUCKETS,
              max_series: int = MAX_SERIES) -> Metric:  # fmt: skip
    """A histogram: ``observe(value)`` counts it in the first bucket whose bound is >= value."""
    return REGISTRY.define(name, doc, "histogram", labels, buckets=buckets, max_series=max_series)


def text() -> str:
    """This process's metrics in the Prometheus text format (cumulative since it started)."""
    # prometheus_client is imported only when asked: most processes never render.
    from .exposition import exposition

    return exposition(REGISTRY.families())
