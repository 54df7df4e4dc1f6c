"""Benchmark: what the metrics cost per request, in this process (no server, no sockets).

Times, per call, the worker's request statistics (``RequestStats.begin`` and
``end`` of a request the dispatcher recorded a handler for, which counts it
in the cluster and per-handler histograms), the dispatcher's recording of
the handler, the application metrics' ``inc``/``observe``/``labels``, and,
for scale, a whole request through a morello application and the worker's
statistics middleware. Each figure is the best of the rounds.

    python benchmarks/metrics_cost.py [--duration 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from collections.abc import Callable
from typing import Any

from morello.worker.stats import RequestStats, StatsMiddleware

import morello
from morello.metrics.handlers import current, dispatched
from morello.metrics.registry import Registry


def per_call(action: Callable[[], Any], duration: float, rounds: int) -> float:
    """Best nanoseconds per call of ``action`` over ``rounds`` rounds of about ``duration``."""
    best = float("inf")
    for _ in range(rounds):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < duration:
            for _ in range(1000):
                action()
            calls += 1000
        best = min(best, elapsed / calls * 1e9)
    return best


def request_stats() -> Callable[[], None]:
    stats = RequestStats(registry=Registry())
    thread_id = threading.get_ident()
    key = ("", "/orders/default")
    environ: dict[str, Any] = {}

    def one() -> None:
        started = time.monotonic()
        stats.begin(thread_id, started, environ)
        current.key = key  # what the dispatcher leaves for the statistics
        stats.end(thread_id, started, "200 OK")

    return one


def whole_request() -> Callable[[], None]:
    class Orders:
        @morello.expose
        def default(self, order_id: str) -> str:
            return "order"

    class Root:
        orders = Orders()

    morello.config.update({"environment": "production", "log.screen": False})
    morello.tree.mount(Root(), "")
    app = StatsMiddleware(morello.tree, RequestStats(registry=Registry()))
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/orders/12", "SCRIPT_NAME": "",
        "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "x",
        "SERVER_PORT": "80", "HTTP_HOST": "x", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }  # fmt: skip

    def one() -> None:
        body = app(dict(environ), lambda status, headers, exc_info=None: None)
        for _ in body:
            pass
        body.close()

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    registry = Registry()
    counter = registry.define("bench_hits", "Hits.", "counter")
    histogram = registry.define("bench_seconds", "Durations.", "histogram")
    labelled = registry.define("bench_pages", "Pages.", "counter", ("page",))
    series = labelled.labels("home")
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("RequestStats.begin + end (per-handler counting included)", request_stats()),
        ("dispatcher recording the handler", lambda: dispatched("", "/orders/default")),
        ("counter.inc()", counter.inc),
        ("histogram.observe(0.3)", lambda: histogram.observe(0.3)),
        ("series.inc() (labels looked up once)", series.inc),
        ("counter.labels('home').inc()", lambda: labelled.labels("home").inc()),
    ]
    for name, action in cases:
        print(f"  {name:58} {per_call(action, args.duration, args.rounds):8.0f} ns")
    # A whole request takes far longer: fewer, longer rounds are enough.
    whole = per_call(whole_request(), args.duration, args.rounds) / 1000
    print(f"  {'a whole request through morello and the statistics':58} {whole:8.1f} us")


if __name__ == "__main__":
    main()
