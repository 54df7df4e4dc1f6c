"""Per-handler latencies and application metrics on ``/metrics`` of a real master.

Two workers serve a small shop; the tests count what the clients got
answered and compare it with what ``/metrics`` says, after parsing the whole
exposition with ``prometheus_client`` (a scraper's parser): counts must be
exact, and never go down while workers are scaled away or rolled by HUP.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from morello.master.channel import LATENCY_BUCKETS
from morello.worker.stats import RequestStats
from prefork_support import Load, MasterProcess, running_master, wait_for, write_app
from prometheus_client.parser import text_string_to_metric_families
from test_benchmarks import run_benchmark

import morello
from morello.metrics.handlers import current
from morello.metrics.registry import Registry
from morello.testing import Client

pytestmark = pytest.mark.timeout(120)

HANDLER = "morello_handler_request_duration_seconds"


# --- the handler the dispatchers record ------------------------------------------------
# A handler answers with the key the dispatcher recorded on its thread just before.


def recorded() -> str:
    return repr(current.key)


class Items:
    @morello.expose
    def index(self) -> str:
        return recorded()


class Order:
    items = Items()

    @morello.expose
    def index(self) -> str:
        return recorded()


class Orders:
    def _cp_dispatch(self, vpath: list[str]) -> Order:
        vpath.pop(0)  # the order id
        return Order()

    @morello.expose
    def default(self, *ignored: str) -> str:
        return recorded()


class Site:
    orders = Orders()

    @morello.expose
    def index(self) -> str:
        return recorded()

    @morello.expose
    def page(self, *args: str) -> str:
        return recorded()

    @morello.expose
    def default(self, *args: str) -> str:
        return recorded()


@morello.expose
class Resource:
    def GET(self, *args: str) -> str:  # noqa: N802
        return recorded()


@pytest.mark.parametrize(
    ("path", "handler"),
    [
        ("/", "/index"),
        ("/page", "/page"),
        ("/page/1/2", "/page"),
        ("/no/such/thing", "/default"),
        ("/orders/", "/orders/default"),
        ("/orders/12/", "/orders/*/index"),
        ("/orders/13/items/", "/orders/*/items/index"),
    ],
)
def test_the_dispatcher_records_the_object_path_not_the_url(
    serve: Callable[..., Client], path: str, handler: str
) -> None:
    client = serve(Site(), script_name="/shop")
    assert client.get("/shop" + path).body.decode() == repr(("/shop", handler))


def test_the_method_dispatcher_records_the_resource(serve: Callable[..., Client]) -> None:
    class Api:
        things = Resource()

    config = {"/": {"request.dispatch": morello.dispatch.MethodDispatcher()}}
    client = serve(Api(), config)
    assert client.get("/things/42").body.decode() == repr(("", "/things"))


def test_routes_record_the_route_and_action(serve: Callable[..., Client]) -> None:
    pytest.importorskip("routes")
    dispatcher = morello.dispatch.RoutesDispatcher()

    class Blog:
        @morello.expose
        def show(self, **ignored: Any) -> str:
            return recorded()

    dispatcher.connect("post", "/blog/{year}/{slug}", controller=Blog(), action="show")
    client = serve(None, {"/": {"request.dispatch": dispatcher}})
    assert client.get("/blog/2024/hello").body.decode() == repr(("", "/post/show"))


# --- the worker's per-handler counters -----------------------------------------------------


def handler_series(stats: RequestStats) -> dict[tuple[str, ...], list[float]]:
    """The per-handler series of one heartbeat's ``metrics``."""
    entries = [e for e in stats.snapshot()["metrics"] if e["name"] == HANDLER]
    return {tuple(labels): value for e in entries for labels, value in e["series"]}


def serve_one(
    stats: RequestStats, key: tuple[str, str] | None, status: str, seconds: float
) -> None:
    """One request as the worker sees it: dispatched to ``key``, answered ``status``."""
    started = time.monotonic() - seconds
    stats.begin(threading.get_ident(), started, {})
    current.key = key
    stats.end(threading.get_ident(), started, status)


def test_worker_counts_handlers_and_sends_only_what_changed() -> None:
    stats = RequestStats(registry=Registry())
    serve_one(stats, ("", "/a"), "200 OK", 0.3)
    serve_one(stats, ("", "/a"), "200 OK", 0.001)
    serve_one(stats, ("/api", "/b"), "503 Busy", 0.02)
    serve_one(stats, None, "400 Bad Request", 0.001)
    assert current.key is None  # cleared for the next request on this thread
    series = handler_series(stats)
    fast, slow = LATENCY_BUCKETS.index(0.005), LATENCY_BUCKETS.index(0.5)
    counts = series[("/", "/a", "2xx")]
    assert (counts[fast], counts[slow], sum(counts[:-1])) == (1, 1, 2)
    assert counts[-1] == pytest.approx(0.301, abs=0.01)
    assert sum(series[("/api", "/b", "5xx")][:-1]) == 1
    assert sum(series[("none", "none", "4xx")][:-1]) == 1
    assert handler_series(stats) == {}  # nothing new since
    serve_one(stats, ("", "/a"), "200 OK", 0.001)
    assert list(handler_series(stats)) == [("/", "/a", "2xx")]


def test_worker_handlers_past_the_limit_count_as_other() -> None:
    stats = RequestStats(max_handlers=2, registry=Registry())

    def serve_many() -> None:
        for n in range(50):
            serve_one(stats, ("", f"/h{n % 5}"), "200 OK", 0.001)

    threads = [threading.Thread(target=serve_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    counts = {key[1]: sum(value[:-1]) for key, value in handler_series(stats).items()}
    assert sum(counts.values()) == 200
    assert len(counts) == 3 and counts["other"] == 120


# --- a real master -----------------------------------------------------------------------

SHOP = '''
import morello.metrics

PLACED = morello.metrics.counter("shop_orders_placed", "Orders placed.", labels=("kind",))
BASKET = morello.metrics.histogram("shop_basket_euros", "Basket values.", buckets=(10, 100))
ALIVE = morello.metrics.gauge("shop_alive", "1 in every live worker.")
PID = morello.metrics.gauge("shop_pid", "Each worker's pid.", mode="pid")
ALIVE.set(1)
PID.set(os.getpid())


class Orders:
    @morello.expose
    def index(self):
        return f"orders from {os.getpid()}"

    @morello.expose
    def default(self, order_id):
        PLACED.labels("web").inc()
        BASKET.observe(int(order_id) % 150)
        return f"order from {os.getpid()} {order_id}"


class Shop:
    orders = Orders()

    @morello.expose
    def fail(self):
        raise ValueError("on purpose")
'''

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[MasterProcess]:
    write_app(tmp_path, extra=SHOP)
    (tmp_path / "site.conf").write_text("[global]\nmaster.heartbeat_interval = 0.2\n")
    with running_master(tmp_path, "-c", "site.conf", app="app:Shop") as master:
        yield master


def scrape(master: MasterProcess) -> tuple[dict[str, str], Samples]:
    """(family types, samples) of ``/metrics``, parsed whole by prometheus_client."""
    code, text = master.control("GET", "/metrics")
    assert code == 200, text
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return types, samples


def handler_count(samples: Samples, handler: str, status_class: str, app: str = "/") -> float:
    labels = {"app": app, "handler": handler, "status_class": status_class}
    return samples.get((f"{HANDLER}_count", frozenset(labels.items())), 0.0)


def counters(types: dict[str, str], samples: Samples) -> Samples:
    """The samples that may never decrease: counters and histogram buckets and counts."""
    growing = {name for name, kind in types.items() if kind in ("counter", "histogram")}
    return {
        key: value for key, value in samples.items()
        if any(key[0].startswith(name) for name in growing) and not key[0].endswith("_sum")
    }  # fmt: skip


def test_handlers_and_app_metrics_are_counted_exactly(shop: MasterProcess) -> None:
    orders = 40
    served_by = set()
    for order_id in range(orders):
        # A new connection each time, so that both workers take some.
        response = requests.get(f"{shop.url}/orders/{order_id}", timeout=10)
        assert response.status_code == 200
        served_by.add(response.text.split()[2])
    assert requests.get(f"{shop.url}/orders/", timeout=10).status_code == 200
    assert requests.get(f"{shop.url}/fail", timeout=10).status_code == 500
    assert requests.get(f"{shop.url}/nowhere/at/all", timeout=10).status_code == 404

    def counted() -> Samples | None:
        _, samples = scrape(shop)
        return samples if handler_count(samples, "/orders/default", "2xx") >= orders else None

    samples = wait_for(counted, what="the order requests on /metrics")
    wait_for(lambda: handler_count(scrape(shop)[1], "none", "4xx") == 1, what="the 404")
    types, samples = scrape(shop)
    assert types[HANDLER] == "histogram"
    # One handler for every order id: the dispatched object, not the URL.
    assert handler_count(samples, "/orders/default", "2xx") == orders
    assert handler_count(samples, "/orders/index", "2xx") == 1
    assert handler_count(samples, "/fail", "5xx") == 1
    assert handler_count(samples, "/fail", "2xx") == 0
    assert handler_count(samples, "none", "4xx") == 1
    handlers = {dict(labels)["handler"] for name, labels in samples if name == f"{HANDLER}_count"}
    assert not any("/orders/1" in handler for handler in handlers), handlers
    # The per-handler histograms add up to the cluster-wide one.
    total = sum(value for (name, _), value in samples.items() if name == f"{HANDLER}_count")
    assert total == samples[("morello_request_duration_seconds_count", frozenset())]

    assert types["shop_orders_placed"] == "counter"
    assert samples[("shop_orders_placed_total", frozenset({("kind", "web")}))] == orders
    assert samples[("shop_basket_euros_count", frozenset())] == orders
    assert samples[("shop_basket_euros_sum", frozenset())] == sum(i % 150 for i in range(orders))
    assert samples[("shop_basket_euros_bucket", frozenset({("le", "10.0")}))] == 11
    # Gauges: summed over the live workers, or one series per worker.
    pids = shop.worker_pids()
    wait_for(lambda: scrape(shop)[1].get(("shop_alive", frozenset())) == 2, what="both gauges")
    _, samples = scrape(shop)
    for pid in pids:
        assert samples[("shop_pid", frozenset({("pid", str(pid))}))] == pid
    if len(served_by) < 2:
        pytest.skip(f"one worker took every connection ({served_by}): counts checked for it")


def test_totals_never_decrease_when_workers_leave(shop: MasterProcess) -> None:
    seen: list[Samples] = []

    def check_monotonic() -> None:
        types, samples = scrape(shop)
        current = counters(types, samples)
        if seen:
            for key, old in seen[-1].items():
                assert current.get(key, 0.0) >= old, key
        seen.append(current)

    with Load(shop.url, "/orders/7") as load:
        wait_for(load.served_more(100))
        check_monotonic()
        first = shop.worker_pids()
        shop.send(signal.SIGTTOU)
        wait_for(lambda: len(shop.worker_pids()) == 1 and not shop.status()["workers"][1:],
                 what="one worker left")  # fmt: skip
        wait_for(load.served_more(50))
        check_monotonic()
        shop.send(signal.SIGHUP)
        shop.wait_ready(1, exclude=first)
        wait_for(load.served_more(50))
        check_monotonic()
    assert load.failures == []
    wait_for(
        lambda: handler_count(scrape(shop)[1], "/orders/default", "2xx") == load.ok,
        what=f"{load.ok} answered orders counted",
    )
    check_monotonic()
    _, samples = scrape(shop)
    assert samples[("shop_orders_placed_total", frozenset({("kind", "web")}))] == load.ok
    # The gauges of the workers that left are gone.
    assert samples[("shop_alive", frozenset())] == 1
    assert len([key for key in samples if key[0] == "shop_pid"]) == 1


def test_memory_recycling_names_what_the_worker_served(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text("[global]\nmaster.heartbeat_interval = 0.2\n")
    with running_master(tmp_path, "-c", "site.conf", "--max-rss", "150M", workers=1) as master:
        first = master.worker_pids()
        # Its memory was measured once: the growth is counted from there.
        wait_for(lambda: master.status()["workers"][0]["rss"], what="a first RSS measure")
        for _ in range(3):
            assert requests.get(f"{master.url}/grow?mb=10", timeout=10).status_code == 200
        assert requests.get(f"{master.url}/pid", timeout=10).status_code == 200
        wait_for(lambda: handler_count(scrape(master)[1], "/grow", "2xx") == 3,
                 what="the growing requests on /metrics")  # fmt: skip
        assert requests.get(f"{master.url}/grow?mb=200", timeout=10).status_code == 200
        master.wait_ready(1, exclude=first)
        line = wait_for(
            lambda: re.search(r"max_rss=\d+; recycling \((.*)\)", master.log()),
            what="the recycling line",
        ).group(1)
    match = re.fullmatch(r"grew \+(\d+)\.\d MiB since it started; served most: "
                         r"/grow \([34]\), /pid \(1\)", line)  # fmt: skip
    assert match and int(match.group(1)) >= 200, line


def test_traced_workers_log_where_their_memory_grew(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text("[global]\nmaster.tracemalloc = 2\n")
    with running_master(tmp_path, "-c", "site.conf", "--max-rss", "150M", workers=1) as master:
        first = master.worker_pids()
        assert requests.get(f"{master.url}/grow?mb=200", timeout=10).status_code == 200
        master.wait_ready(1, exclude=first)
        wait_for(lambda: "memory grown while serving" in master.log(), what="the report")
    # The application line that kept the memory comes first, with about what it kept.
    report = master.log().split("memory grown while serving", 1)[1].splitlines()[1]
    match = re.search(r"\+(\d+)\.\d MiB in \+\d+ block\(s\) at (\S+):(\d+)", report)
    assert match, report
    grown, filename, line = int(match.group(1)), match.group(2), int(match.group(3))
    assert 190 <= grown <= 210
    assert Path(filename) == tmp_path / "app.py"
    assert "bytearray" in (tmp_path / "app.py").read_text().splitlines()[line - 1]


def test_cost_benchmark_prints_every_figure() -> None:
    result = run_benchmark("metrics_cost.py", timeout=120)
    figures = re.findall(r"^  (.+?) +\d+(?:\.\d)? (ns|us)$", result.stdout, re.MULTILINE)
    assert len(figures) == 7, result.stdout
    assert figures[-1][1] == "us"
