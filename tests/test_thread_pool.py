"""The adaptive request thread pool, on a real server with real clients.

CPU-bound requests keep the pool small (more threads would only fight for
the interpreter lock); requests that block make it grow to its maximum,
never beyond, and it shrinks back once the threads sit idle.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bus_support import wait_until

from morello.httpserver import Server
from morello.process.bus import Bus
from morello.thread_pool import AdaptiveThreadPool

#: CPU time one "/" request burns in the server.
BURN_SECONDS = 0.002


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """``/sleep?S`` blocks S seconds; anything else burns the CPU for a while."""
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
        body = b"slept"
    else:
        deadline = time.thread_time() + BURN_SECONDS
        while time.thread_time() < deadline:
            pass
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def serve(bus: Bus) -> Iterator[Callable[..., tuple[int, AdaptiveThreadPool]]]:
    """``serve(thread_pool, thread_pool_max)`` starts ``app``; returns its port and pool."""

    def start(thread_pool: int, thread_pool_max: int) -> tuple[int, AdaptiveThreadPool]:
        server = Server(bus, app)
        server.socket_port = 0
        server.socket_queue_size = 64
        server.thread_pool, server.thread_pool_max = thread_pool, thread_pool_max
        server.subscribe()
        bus.start()
        return server.bound_addr[1], server.httpserver.requests

    yield start
    bus.exit()


def sleep_concurrently(port: int, count: int, seconds: float) -> list[int]:
    """``count`` clients, each on its own connection, ask for a ``seconds`` sleep at once."""
    statuses: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", f"/sleep?{seconds}")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        finally:
            conn.close()

    clients = [threading.Thread(target=client) for _ in range(count)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(30)
    return statuses


#: Keep-alive clients in another process (so their CPU use is not the server's):
#: argv is port, connections, seconds; prints the statuses other than 200 and the count.
LOAD_CLIENT = """
import http.client, sys, threading, time
port, connections, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds
bad, done = [], []
def run():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < deadline:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            bad.append(response.status)
        done.append(1)
    conn.close()
threads = [threading.Thread(target=run) for _ in range(connections)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(bad, len(done))
"""


def test_cpu_bound_load_keeps_the_pool_small(serve: Any) -> None:
    port, pool = serve(1, 10)
    load = subprocess.run(
        [sys.executable, "-c", LOAD_CLIENT, str(port), "8", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    bad, done = load.stdout.split("] ")
    assert bad == "[" and int(done) > 0
    # Eight connections always had requests waiting for the one thread, but
    # the CPU was busy: more threads would only have taken turns on it.
    assert pool.peak <= 3
    assert pool.size <= 3


def test_blocking_requests_grow_the_pool_to_its_maximum(serve: Any) -> None:
    port, pool = serve(1, 10)
    assert pool.size == 1
    started = time.monotonic()
    assert sleep_concurrently(port, 10, 0.3) == [200] * 10
    # One thread would take 3 s; ten threads answer them together.
    assert time.monotonic() - started < 1.5
    assert pool.peak == 10


def test_the_pool_never_exceeds_its_maximum(serve: Any) -> None:
    port, pool = serve(1, 4)
    started = time.monotonic()
    assert sleep_concurrently(port, 12, 0.2) == [200] * 12
    assert pool.peak == 4
    # Three rounds of four, not twelve rounds of one.
    assert time.monotonic() - started < 1.8


def test_idle_threads_are_retired_down_to_the_minimum(serve: Any) -> None:
    port, pool = serve(2, 8)
    pool.idle_timeout = 0.5
    assert sleep_concurrently(port, 8, 0.2) == [200] * 8
    assert pool.peak == 8
    wait_until(lambda: pool.size == 2, timeout=10)
    # ...and they are gone, not just counted out.
    wait_until(lambda: len([t for t in pool._threads if t.is_alive()]) == 2, timeout=10)
    # The pool still grows again afterwards.
    assert sleep_concurrently(port, 8, 0.2) == [200] * 8
    assert pool.size > 2


def test_no_maximum_keeps_the_pool_at_thread_pool(serve: Any) -> None:
    port, pool = serve(2, -1)
    assert pool.max == 2
    assert sleep_concurrently(port, 6, 0.1) == [200] * 6
    assert pool.peak == 2


def test_stopping_a_grown_pool_finishes_requests_and_joins_every_thread(
    serve: Any, bus: Bus
) -> None:
    port, pool = serve(1, 6)
    results: list[list[int]] = []
    clients = threading.Thread(target=lambda: results.append(sleep_concurrently(port, 6, 0.5)))
    clients.start()
    wait_until(lambda: pool.size == 6 and pool.idle == 0, timeout=10)
    threads = [t for t in pool._threads] + [pool._manager]
    bus.exit()
    assert not [t for t in threads if t.is_alive()]
    clients.join(10)
    assert results == [[200] * 6]
