"""The application metrics API (:mod:`morello.metrics`) and the master's FamilyBook.

The registry is exercised in this process (single-process mode: the values
accumulate here and :func:`morello.metrics.text` renders them); the book is
fed heartbeat entries as workers send them, including garbage.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from morello.master.metrics import StatsBook, prometheus_text
from morello.master.metrics_families import MAX_SERIES, FamilyBook
from prometheus_client.parser import text_string_to_metric_families

import morello
import morello.metrics
from morello.metrics import counter, gauge, histogram, text
from morello.metrics.registry import MAX_SERIES as WORKER_MAX_SERIES
from morello.metrics.registry import Registry
from morello.testing import Client


def parsed(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_single_process_metrics_accumulate_and_render() -> None:
    served = counter("test_single_served_total", "Served.", labels=("page",))
    seconds = histogram("test_single_seconds", "Durations.", buckets=(0.1, 1))
    users = gauge("test_single_users", "Users.")
    served.labels("home").inc()
    served.labels(page="home").inc(2)
    seconds.observe(0.05)
    seconds.observe(0.5)
    seconds.observe(7)
    users.set(5)
    users.dec()
    samples = parsed(text())
    assert samples[("test_single_served_total", frozenset({("page", "home")}))] == 3
    assert samples[("test_single_seconds_bucket", frozenset({("le", "0.1")}))] == 1
    assert samples[("test_single_seconds_bucket", frozenset({("le", "1.0")}))] == 2
    assert samples[("test_single_seconds_bucket", frozenset({("le", "+Inf")}))] == 3
    assert samples[("test_single_seconds_sum", frozenset())] == pytest.approx(7.55)
    assert samples[("test_single_users", frozenset())] == 4


def test_same_definition_twice_gives_the_same_metric() -> None:
    first = counter("test_twice", "Twice.", labels=("a",))
    assert counter("test_twice_total", "Twice.", labels=("a",)) is first
    with pytest.raises(ValueError, match="already defined differently"):
        counter("test_twice", "Twice.", labels=("b",))
    with pytest.raises(ValueError, match="already defined differently"):
        gauge("test_twice", "Twice.", labels=("a",))


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (lambda: counter("2bad", "Doc."), "bad metric name"),
        (lambda: counter("bad-name", "Doc."), "bad metric name"),
        (lambda: counter("", "Doc."), "bad metric name"),
        (lambda: counter("morello_mine", "Doc."), "morello's own"),
        (lambda: counter("test_nodoc", " "), "documentation"),
        (lambda: counter("test_lbl", "Doc.", labels=("bad label",)), "bad label name"),
        (lambda: counter("test_lbl2", "Doc.", labels=("__x",)), "bad label name"),
        (lambda: counter("test_lbl3", "Doc.", labels=("a", "a")), "named twice"),
        (lambda: counter("test_lbl4", "Doc.", labels="ab"), "not a string"),
        (lambda: histogram("test_le", "Doc.", labels=("le",)), "added by the exposition"),
        (lambda: gauge("test_pid", "Doc.", labels=("pid",), mode="pid"), "added by"),
        (lambda: histogram("test_bk", "Doc.", buckets=(1, 0.5)), "strictly increasing"),
        (lambda: histogram("test_bk2", "Doc.", buckets=()), "finite numbers"),
        (lambda: histogram("test_bk3", "Doc.", buckets=(1, float("inf"))), "finite"),
        (lambda: histogram("test_count", "Doc."), "suffix"),
        (lambda: gauge("test_mode", "Doc.", mode="avg"), "gauge must be one of"),
        (lambda: counter("test_cap", "Doc.", max_series=0), "max_series"),
    ],
)
def test_bad_definitions_are_refused(define: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        define()


def test_bad_use_is_refused() -> None:
    requests_seen = counter("test_use", "Doc.", labels=("a",))
    with pytest.raises(ValueError, match="use .labels"):
        requests_seen.inc()
    with pytest.raises(ValueError, match="takes 1 label"):
        requests_seen.labels("x", "y")
    with pytest.raises(ValueError, match="longer than"):
        requests_seen.labels("x" * 1000)
    with pytest.raises(ValueError, match="only goes up"):
        requests_seen.labels("x").inc(-1)
    with pytest.raises(ValueError, match="only goes up"):
        requests_seen.labels("x").inc(float("inf"))
    with pytest.raises(ValueError, match="cannot observe"):
        histogram("test_use_h", "Doc.").observe(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        gauge("test_use_g", "Doc.").set(float("inf"))
    with pytest.raises(TypeError, match="histogram"):
        requests_seen.labels("x").observe(1)
    with pytest.raises(TypeError, match="for gauges"):
        requests_seen.labels("x").set(1)


def test_label_combinations_past_the_limit_count_as_other() -> None:
    limited = counter("test_limited", "Doc.", labels=("user",), max_series=3)
    for user in range(10):
        limited.labels(f"user{user}").inc()
    samples = parsed(text())
    users = {dict(labels)["user"]: value for (name, labels), value in samples.items()
             if name == "test_limited_total"}  # fmt: skip
    assert users == {"user0": 1, "user1": 1, "user2": 1, "other": 7}


def test_threads_lose_no_increment() -> None:
    registry = Registry()
    hits = registry.define("hits", "Doc.", "counter")
    sizes = registry.define("sizes", "Doc.", "histogram", buckets=(1, 2))
    sent: list[dict[str, Any]] = []
    stop = threading.Event()

    def heartbeats() -> None:
        while not stop.is_set():
            sent.extend(registry.deltas(100))

    def work() -> None:
        for _ in range(20000):
            hits.inc()
            sizes.observe(1.5)

    reader = threading.Thread(target=heartbeats)
    reader.start()
    workers = [threading.Thread(target=work) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    reader.join()
    sent.extend(registry.deltas(100))
    # The deltas given out add up to every increment, each counted once.
    total_hits = sum(value for e in sent if e["name"] == "hits" for _, value in e["series"])
    size_counts = [v for e in sent if e["name"] == "sizes" for _, v in e["series"]]
    assert total_hits == 80000
    assert sum(v[1] for v in size_counts) == 80000
    assert sum(v[-1] for v in size_counts) == pytest.approx(120000)
    assert registry.deltas(100) == []


def test_deltas_respect_the_limit_and_send_the_rest_later() -> None:
    registry = Registry()
    metric = registry.define("many", "Doc.", "counter", ("n",))
    for n in range(25):
        metric.labels(str(n)).inc()
    first = registry.deltas(10)
    second = registry.deltas(100)
    assert sum(len(e["series"]) for e in first) == 10
    assert sum(len(e["series"]) for e in second) == 15


# --- the master's FamilyBook ------------------------------------------------------


def worker_entries(registry: Registry) -> list[dict[str, Any]]:
    return registry.deltas(10_000)


def test_book_totals_survive_worker_exit_and_gauges_do_not() -> None:
    book = FamilyBook()
    one, two = Registry(), Registry()
    for registry in (one, two):
        registry.define("jobs", "Jobs.", "counter", ("queue",)).labels("a").inc(5)
        registry.define("queue_len", "Length.", "gauge").set(3)
        registry.define("pids", "Pids.", "gauge", gauge="pid").set(7)
        registry.define("lat", "Latency.", "histogram", buckets=(1,)).observe(0.5)
    book.update(1, 101, worker_entries(one))
    book.update(2, 102, worker_entries(two))
    samples = parsed(prometheus_text(_book(book), {}))
    assert samples[("jobs_total", frozenset({("queue", "a")}))] == 10
    assert samples[("queue_len", frozenset())] == 6
    assert samples[("pids", frozenset({("pid", "101")}))] == 7
    assert samples[("lat_count", frozenset())] == 2
    book.retire(1)
    samples = parsed(prometheus_text(_book(book), {}))
    assert samples[("jobs_total", frozenset({("queue", "a")}))] == 10
    assert samples[("lat_count", frozenset())] == 2
    assert samples[("queue_len", frozenset())] == 3
    assert ("pids", frozenset({("pid", "101")})) not in samples


def _book(families: FamilyBook) -> StatsBook:
    book = StatsBook()
    book.families = families
    return book


@pytest.mark.parametrize(
    "garbage",
    [
        None, "x", [None], [{"name": 5}], [{"name": "jobs"}],
        [{"name": "jobs", "kind": "gauge", "doc": "Jobs.", "labels": ["queue"], "buckets": [],
          "gauge": "sum", "series": [[["a"], 1]]}],
        [{"name": "jobs", "kind": "counter", "doc": "Jobs.", "labels": ["queue"], "buckets": [],
          "gauge": "sum", "series": [[["a"], -4], [["a"], "x"], [["a", "b"], 1], [[1], 1],
                                     [["a"], float("nan")], "junk", [["a"]]]}],
        [{"name": "morello_requests", "kind": "counter", "doc": "Fake.", "labels": [],
          "buckets": [], "gauge": "sum", "series": [[[], 1]]}],
        [{"name": "bad name", "kind": "counter", "doc": "D.", "labels": [], "buckets": [],
          "gauge": "sum", "series": [[[], 1]]}],
        [{"name": "lat", "kind": "histogram", "doc": "D.", "labels": [], "buckets": [1.0],
          "gauge": "sum", "series": [[[], [1, 2]], [[], [-1, 0, 0.5]], [[], [1.5, 0, 1]]]}],
    ],
)
def test_book_skips_garbage(garbage: Any) -> None:
    book = FamilyBook()
    registry = Registry()
    registry.define("jobs", "Jobs.", "counter", ("queue",)).labels("a").inc(5)
    registry.define("lat", "D.", "histogram", buckets=(1,)).observe(2)
    book.update(1, 101, worker_entries(registry))
    before = parsed(prometheus_text(_book(book), {}))
    book.update(1, 101, garbage)
    after = parsed(prometheus_text(_book(book), {}))
    assert after == before


def test_book_bounds_series_and_handlers() -> None:
    book = FamilyBook(max_handlers=2)
    registry = Registry()
    metric = registry.define("wide", "Doc.", "counter", ("k",), max_series=MAX_SERIES + 50)
    for n in range(MAX_SERIES + 50):
        metric.labels(str(n)).inc()
    book.update(1, 101, worker_entries(registry))
    handlers = {
        "name": "morello_handler_request_duration_seconds", "kind": "histogram", "doc": "D.",
        "labels": ["app", "handler", "status_class"], "buckets": [1.0], "gauge": "sum",
        "series": [[["/", f"/h{n}", "2xx"], [1, 0, 0.5]] for n in range(5)],
    }  # fmt: skip
    book.update(1, 101, [handlers])
    samples = parsed(prometheus_text(_book(book), {}))
    wide = {dict(labels)["k"]: v for (name, labels), v in samples.items() if name == "wide_total"}
    assert len(wide) == MAX_SERIES + 1 and wide["other"] == 50
    counts = {
        dict(labels)["handler"]: v for (name, labels), v in samples.items()
        if name == "morello_handler_request_duration_seconds_count"
    }  # fmt: skip
    assert counts == {"/h0": 1, "/h1": 1, "other": 3}


def test_book_totals_never_decrease_under_random_traffic() -> None:
    rng = random.Random(7)
    book = FamilyBook()
    live: dict[int, Registry] = {}
    previous: dict[Any, float] = {}
    for step in range(400):
        action = rng.random()
        if action < 0.1 and live:
            book.retire(live.popitem()[0] if rng.random() < 0.5 else rng.choice(list(live)))
        elif action < 0.2 or not live:
            live[step] = Registry()
        else:
            worker = rng.choice(list(live))
            registry = live[worker]
            registry.define("ops", "Ops.", "counter", ("k",)).labels(str(rng.randint(0, 3))).inc()
            registry.define("dur", "Dur.", "histogram", buckets=(0.5,)).observe(rng.random())
            book.update(worker, worker, worker_entries(registry))
        samples = parsed(prometheus_text(_book(book), {}))
        for key, value in previous.items():
            assert samples[key] >= value, key
        previous = {key: value for key, value in samples.items()
                    if key[0].startswith(("ops", "dur"))}  # fmt: skip


def test_worker_default_series_bound_is_below_the_masters() -> None:
    assert WORKER_MAX_SERIES <= MAX_SERIES


def test_metrics_work_in_a_plain_morello_server(serve: Callable[..., Client]) -> None:
    """Without the master, handlers record and the application serves its own page."""
    visits = counter("test_plain_visits", "Visits.")

    class Root:
        @morello.expose
        def index(self) -> str:
            visits.inc()
            return "hi"

        @morello.expose
        def metrics(self) -> str:
            return morello.metrics.text()

    client = serve(Root())
    for _ in range(3):
        assert client.get("/").body == b"hi"
    page = client.get("/metrics").body.decode()
    assert parsed(page)[("test_plain_visits_total", frozenset())] == 3
