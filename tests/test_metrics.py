"""StatsBook (cluster counters from heartbeats) and the Prometheus text exposition."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest
from morello.master.channel import LATENCY_BUCKETS, STATUS_CLASSES, heartbeat_fields
from morello.master.metrics import StatsBook, escape_label_value, prometheus_text

SLOTS = len(LATENCY_BUCKETS) + 1


def beat(
    requests: int = 0,
    *,
    in_flight: int = 0,
    busy: int = 0,
    threads: int = 10,
    age: float = 0.0,
    status: dict[str, int] | None = None,
    buckets: list[int] | None = None,
    latency_sum: float = 0.0,
) -> dict[str, Any]:
    """A heartbeat; by default every request is a fast 2xx."""
    buckets = buckets if buckets is not None else [requests] + [0] * (SLOTS - 1)
    return heartbeat_fields(
        requests=requests,
        in_flight=in_flight,
        busy_threads=busy,
        threads=threads,
        oldest_request_age=age,
        status=status if status is not None else {"2xx": requests},
        latency_buckets=buckets,
        latency_sum=latency_sum,
        latency_count=sum(buckets),
    )


def counters(totals: dict[str, Any]) -> list[float]:
    """Every cumulative counter of ``totals`` as one flat list."""
    return [
        totals["requests"],
        *(totals["status"][name] for name in STATUS_CLASSES),
        *totals["latency_buckets"],
        totals["latency_sum"],
        totals["latency_count"],
    ]


# --- a tiny parser for the text format, so the tests read what a scraper reads ---

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse_exposition(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """(family types, samples) from exposition ``text``, checking the format as it goes."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helps, f"TYPE before HELP for {name}"
            assert name not in types, f"family {name} declared twice"
            types[name] = kind
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"unparsable line {line!r}"
        name, raw_labels, raw_value = match.groups()
        labels: dict[str, str] = {}
        position = 0
        while raw_labels and position < len(raw_labels):
            label = _LABEL.match(raw_labels, position)
            assert label, f"bad labels in {line!r}"
            labels[label.group(1)] = _unescape(label.group(2))
            position = label.end()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or types.get(family) == "histogram", f"{name} has no TYPE"
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(raw_value)
    return types, samples


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def status_doc(**master: Any) -> dict[str, Any]:
    return {
        "master": {
            "pid": 1,
            "uptime": 12.5,
            "generation": 2,
            "restarts": 9,
            "restarts_by_reason": {"crash": 3, "recycle": 4, "rollout": 2, "scale": 0},
            **master,
        },
        "workers": [
            {"id": 1, "pid": 101, "state": "ready", "rss": 50_000_000},
            {"id": 2, "pid": 102, "state": "ready", "rss": 60_000_000},
            {"id": 3, "pid": 103, "state": "booting", "rss": None},
        ],
    }


# --- StatsBook ---------------------------------------------------------------


def test_totals_sum_live_workers_and_gauges() -> None:
    book = StatsBook()
    book.update(1, beat(10, in_flight=2, busy=2, age=0.5, latency_sum=1.25))
    book.update(2, beat(5, in_flight=1, busy=1, age=3.0, latency_sum=0.5))
    totals = book.totals()
    assert totals["requests"] == 15
    assert totals["status"] == {"1xx": 0, "2xx": 15, "3xx": 0, "4xx": 0, "5xx": 0}
    assert totals["latency_buckets"] == [15] + [0] * (SLOTS - 1)
    assert totals["latency_sum"] == pytest.approx(1.75)
    assert totals["latency_count"] == 15
    assert (totals["in_flight"], totals["busy_threads"], totals["threads"]) == (3, 3, 20)
    assert totals["oldest_request_age"] == 3.0


def test_empty_book() -> None:
    totals = StatsBook().totals()
    assert counters(totals) == [0] * len(counters(totals))
    assert totals["oldest_request_age"] == 0.0


def test_retire_keeps_counters_and_drops_gauges() -> None:
    book = StatsBook()
    book.update(1, beat(10, in_flight=4, busy=3, latency_sum=2.0))
    book.update(2, beat(7, in_flight=1, busy=1, latency_sum=1.0))
    before = book.totals()
    book.retire(1)
    after = book.totals()
    assert counters(after) == counters(before)
    assert (after["in_flight"], after["busy_threads"], after["threads"]) == (1, 1, 10)
    book.retire(1)  # twice, or an unknown worker: nothing happens
    book.retire(99)
    assert counters(book.totals()) == counters(before)


def test_counter_going_backwards_is_a_reset() -> None:
    book = StatsBook()
    book.update(1, beat(100, latency_sum=4.0))
    book.update(1, beat(5, latency_sum=0.25))
    totals = book.totals()
    assert totals["requests"] == 105
    assert totals["status"]["2xx"] == 105
    assert totals["latency_sum"] == pytest.approx(4.25)
    book.update(1, beat(8, latency_sum=0.5))
    assert book.totals()["requests"] == 108


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "heartbeat",
        42,
        [1, 2],
        {"requests": "many"},
        {"requests": -5},
        {"requests": True},
        {"requests": math.nan},
        {"requests": math.inf},
        {"requests": 10**40},
        {"latency_sum": -1.0},
        {"latency_sum": math.nan},
        {"latency_sum": "1"},
        {"status": "2xx"},
        {"status": {"2xx": "x", "9xx": 4}},
        {"latency_buckets": [1, 2, 3]},
        {"latency_buckets": "x" * SLOTS},
        {"latency_buckets": [None] * SLOTS},
        {"in_flight": -1, "busy_threads": [], "threads": {}, "oldest_request_age": "old"},
        {},
    ],
)
def test_malformed_heartbeat_keeps_previous_values(garbage: Any) -> None:
    book = StatsBook()
    book.update(1, beat(10, in_flight=2, busy=2, age=1.5, latency_sum=0.75))
    before = book.totals()
    book.update(1, garbage)
    assert book.totals() == before
    # A good heartbeat after the garbage is counted once, not twice.
    book.update(1, beat(12, in_flight=2, busy=2, age=1.5, latency_sum=0.8))
    assert book.totals()["requests"] == 12


def test_partly_bad_heartbeat_takes_the_good_fields() -> None:
    book = StatsBook()
    book.update(1, beat(10))
    book.update(1, {**beat(20), "status": {"2xx": "bad", "5xx": 3}, "threads": -4})
    totals = book.totals()
    assert totals["requests"] == 20
    assert totals["status"]["2xx"] == 10 and totals["status"]["5xx"] == 3
    assert totals["threads"] == 10


def test_integral_floats_are_accepted_as_counts() -> None:
    book = StatsBook()
    book.update(1, {**beat(0), "requests": 7.0})
    assert book.totals()["requests"] == 7


def test_totals_never_decrease_under_random_traffic() -> None:
    """Updates, resets, garbage and retirements in any order: counters only grow."""
    rng = random.Random(20240607)
    book = StatsBook()
    state: dict[int, dict[str, Any]] = {}
    previous = counters(book.totals())
    next_id = 1
    for _ in range(3000):
        action = rng.random()
        if action < 0.05 and state:
            worker = rng.choice(list(state))
            book.retire(worker)
            del state[worker]
        elif action < 0.10 and len(state) < 6:
            state[next_id] = {"buckets": [0] * SLOTS, "sum": 0.0}
            next_id += 1
        elif action < 0.13 and state:
            book.update(rng.choice(list(state)), {"requests": rng.choice([-1, "x", None])})
        elif action < 0.16 and state:  # the worker's counters restart from zero
            state[rng.choice(list(state))] = {"buckets": [0] * SLOTS, "sum": 0.0}
        elif state:
            worker = rng.choice(list(state))
            counts = state[worker]
            for _ in range(rng.randint(0, 20)):
                duration = rng.expovariate(5.0)
                slot = next((i for i, b in enumerate(LATENCY_BUCKETS) if duration <= b), SLOTS - 1)
                counts["buckets"][slot] += 1
                counts["sum"] += duration
            total = sum(counts["buckets"])
            book.update(
                worker, beat(total, buckets=list(counts["buckets"]), latency_sum=counts["sum"])
            )
        current = counters(book.totals())
        assert all(new >= old for new, old in zip(current, previous, strict=True))
        previous = current


def test_latency_sum_is_exact_across_retirement() -> None:
    """Floats summed in another grouping could shrink by an ulp: a false counter reset."""
    book = StatsBook()
    for worker in range(1, 50):
        book.update(worker, beat(1, latency_sum=0.1 + worker * 1e-7))
    previous = book.totals()["latency_sum"]
    for worker in range(1, 50):
        book.retire(worker)
        current = book.totals()["latency_sum"]
        assert current == previous
        previous = current


# --- exposition ----------------------------------------------------------------


def test_exposition_families_and_values() -> None:
    book = StatsBook()
    book.update(
        1,
        beat(
            10,
            in_flight=2,
            busy=2,
            age=0.75,
            latency_sum=1.5,
            status={"2xx": 8, "4xx": 1, "5xx": 1},
        ),
    )
    types, samples = parse_exposition(prometheus_text(book, status_doc()))
    assert types == {
        "morello_requests_total": "counter",
        "morello_responses_total": "counter",
        "morello_request_duration_seconds": "histogram",
        "morello_in_flight_requests": "gauge",
        "morello_busy_threads": "gauge",
        "morello_worker_threads": "gauge",
        "morello_oldest_request_age_seconds": "gauge",
        "morello_workers": "gauge",
        "morello_worker_restarts_total": "counter",
        "morello_master_uptime_seconds": "gauge",
        "morello_master_generation": "gauge",
        "morello_worker_rss_bytes": "gauge",
    }
    assert value(samples, "morello_requests_total") == 10
    assert value(samples, "morello_responses_total", status_class="2xx") == 8
    assert value(samples, "morello_responses_total", status_class="1xx") == 0
    assert value(samples, "morello_responses_total", status_class="5xx") == 1
    assert value(samples, "morello_in_flight_requests") == 2
    assert value(samples, "morello_busy_threads") == 2
    assert value(samples, "morello_worker_threads") == 10
    assert value(samples, "morello_oldest_request_age_seconds") == 0.75
    assert value(samples, "morello_workers", state="ready") == 2
    assert value(samples, "morello_workers", state="booting") == 1
    assert value(samples, "morello_workers", state="retiring") == 0
    for reason, count in status_doc()["master"]["restarts_by_reason"].items():
        assert value(samples, "morello_worker_restarts_total", reason=reason) == count
    assert value(samples, "morello_master_uptime_seconds") == 12.5
    assert value(samples, "morello_master_generation") == 2
    assert value(samples, "morello_worker_rss_bytes", pid="101") == 50_000_000
    assert value(samples, "morello_worker_rss_bytes", pid="102") == 60_000_000
    assert ("morello_worker_rss_bytes", frozenset({("pid", "103")})) not in samples


def test_histogram_buckets_are_cumulative() -> None:
    book = StatsBook()
    per_bucket = [3, 0, 2, 5, 0, 0, 1, 0, 0, 0, 0, 4]
    assert len(per_bucket) == SLOTS
    book.update(1, beat(sum(per_bucket), buckets=per_bucket, latency_sum=60.5))
    other = [0, 1] + [0] * (SLOTS - 3) + [1]
    book.update(2, beat(2, buckets=other, latency_sum=20.0))
    _, samples = parse_exposition(prometheus_text(book, status_doc()))
    name = "morello_request_duration_seconds"
    bounds = [repr(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
    buckets = [value(samples, f"{name}_bucket", le=bound) for bound in bounds]
    combined = [a + b for a, b in zip(per_bucket, other, strict=True)]
    assert buckets == [sum(combined[: i + 1]) for i in range(SLOTS)]
    assert buckets == sorted(buckets)
    assert value(samples, f"{name}_count") == buckets[-1] == 17
    assert value(samples, f"{name}_sum") == pytest.approx(80.5)
    assert sum(1 for (sample, _) in samples if sample == f"{name}_bucket") == SLOTS


def test_histogram_count_matches_inf_bucket_even_when_a_worker_disagrees() -> None:
    book = StatsBook()
    book.update(1, {**beat(5), "latency_count": 999})
    _, samples = parse_exposition(prometheus_text(book, status_doc()))
    name = "morello_request_duration_seconds"
    assert value(samples, f"{name}_count") == value(samples, f"{name}_bucket", le="+Inf") == 5


def test_exposed_counters_survive_worker_exit() -> None:
    book = StatsBook()
    book.update(1, beat(40, latency_sum=2.0))
    book.update(2, beat(2, latency_sum=0.1))
    types, before = parse_exposition(prometheus_text(book, status_doc()))
    book.retire(1)
    book.update(3, beat(1, latency_sum=0.01))  # the replacement starts from zero
    _, after = parse_exposition(prometheus_text(book, status_doc()))
    for key, old in before.items():
        name = key[0]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if types.get(name) == "counter" or types.get(family) == "histogram":
            assert after[key] >= old, key
    assert value(after, "morello_requests_total") == 43


def test_label_values_are_escaped() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    doc = status_doc()
    doc["workers"].append({"pid": 7, "state": 'odd "state"\\\n', "rss": 1})
    _, samples = parse_exposition(prometheus_text(StatsBook(), doc))
    assert value(samples, "morello_workers", state='odd "state"\\\n') == 1


def test_malformed_status_document_is_skipped_not_fatal() -> None:
    doc = {
        "master": {"uptime": "long", "restarts_by_reason": [], "generation": None},
        "workers": [None, "w", {"state": 5, "pid": "x", "rss": 10}, {"pid": 9, "rss": -3}],
    }
    types, samples = parse_exposition(prometheus_text(StatsBook(), doc))
    for absent in (
        "morello_master_uptime_seconds",
        "morello_worker_restarts_total",
        "morello_master_generation",
    ):
        assert absent not in types
    assert value(samples, "morello_workers", state="ready") == 0
    assert not [key for key in samples if key[0] == "morello_worker_rss_bytes"]
    for doc in ({}, {"master": [], "workers": "abc"}, {"workers": {"a": 1}}):
        parse_exposition(prometheus_text(StatsBook(), doc))
