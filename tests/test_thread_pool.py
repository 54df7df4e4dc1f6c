"""The adaptive request thread pool, on a real server with real clients.

CPU-bound requests keep the pool small (more threads would only fight for
the interpreter lock); requests that block make it grow to its maximum,
never beyond, and it shrinks back once the threads sit idle.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from bus_support import wait_until
from e2e_support import get_concurrently
from prefork_support import DEADLINE, wait_for

from morello.httpserver import Server
from morello.process.bus import Bus
from morello.testing import Client, free_port
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


def sleep_concurrently(port: int, count: int, seconds: float) -> list[str]:
    """``count`` clients, each on its own connection, ask for a ``seconds`` sleep at once."""
    return get_concurrently(Client("127.0.0.1", port, timeout=30), f"/sleep?{seconds}", count)


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


def test_cpu_bound_load_retires_the_threads_blocking_requests_needed(serve: Any) -> None:
    port, pool = serve(1, 8)
    assert sleep_concurrently(port, 8, 0.6) == ["slept"] * 8
    assert pool.peak == 8
    # Eight busy connections keep all eight threads at work (none is idle),
    # but they only take turns on the CPU.
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD_CLIENT, str(port), "8", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: pool.size <= 2, timeout=9)
        assert load.poll() is None  # still loading
        bad, done = load.communicate(timeout=30)[0].split("] ")
        assert bad == "[" and int(done) > 0
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()


def test_blocking_requests_grow_the_pool_to_its_maximum(serve: Any) -> None:
    port, pool = serve(1, 10)
    assert pool.size == 1
    started = time.monotonic()
    # Long enough that no request ends before the pool has had time to grow
    # (doubling every look, when the CPU has room): every one still waits.
    assert sleep_concurrently(port, 10, 0.8) == ["slept"] * 10
    # One thread would take 8 s, two 4 s; ten threads answer them together.
    assert time.monotonic() - started < 2.5
    assert pool.peak == 10


def test_the_pool_never_exceeds_its_maximum(serve: Any) -> None:
    port, pool = serve(1, 4)
    started = time.monotonic()
    assert sleep_concurrently(port, 12, 0.3) == ["slept"] * 12
    assert pool.peak == 4
    # Three rounds of four (0.9 s), not twelve rounds of one (3.6 s).
    assert time.monotonic() - started < 2.5


def test_idle_threads_are_retired_down_to_the_minimum(serve: Any) -> None:
    port, pool = serve(2, 8)
    pool.idle_timeout = 0.5
    assert sleep_concurrently(port, 8, 0.6) == ["slept"] * 8
    assert pool.peak == 8
    wait_until(lambda: pool.size == 2, timeout=10)
    # ...and they are gone, not just counted out.
    wait_until(lambda: len([t for t in pool._threads if t.is_alive()]) == 2, timeout=10)
    # The pool still grows again afterwards.
    assert sleep_concurrently(port, 8, 0.2) == ["slept"] * 8
    assert pool.size > 2


def test_no_maximum_keeps_the_pool_at_thread_pool(serve: Any) -> None:
    port, pool = serve(2, -1)
    assert pool.max == 2
    assert sleep_concurrently(port, 6, 0.1) == ["slept"] * 6
    assert pool.peak == 2


def test_stopping_a_grown_pool_finishes_requests_and_joins_every_thread(
    serve: Any, bus: Bus
) -> None:
    port, pool = serve(1, 6)
    results: list[list[str]] = []
    clients = threading.Thread(target=lambda: results.append(sleep_concurrently(port, 6, 0.5)))
    clients.start()
    wait_until(lambda: pool.size == 6 and pool.idle == 0, timeout=10)
    threads = [t for t in pool._threads] + [pool._manager]
    bus.exit()
    assert not [t for t in threads if t.is_alive()]
    clients.join(10)
    assert results == [["slept"] * 6]


#: quickstart with master.workers: argv is the port and the control port.
QUICKSTART = """
import sys, time
import morello
port, control = int(sys.argv[1]), int(sys.argv[2])
class Root:
    @morello.expose
    def slow(self):
        time.sleep(1)
        return "slept"
morello.quickstart(Root(), "", {"global": {
    "server.socket_host": "127.0.0.1", "server.socket_port": port,
    "server.thread_pool": 1, "server.thread_pool_max": 4,
    "master.workers": 1, "master.control_bind": f"127.0.0.1:{control}",
}})
"""


def test_quickstart_workers_size_their_pools_from_the_server_settings(tmp_path: Path) -> None:
    port, control = free_port(), free_port()
    script = tmp_path / "site.py"
    script.write_text(QUICKSTART)
    master = subprocess.Popen([sys.executable, str(script), str(port), str(control)])
    try:

        def worker_threads(busy: int) -> dict[str, Any] | None:
            """The worker once a heartbeat said ``busy`` of its threads serve requests."""
            status = requests.get(f"http://127.0.0.1:{control}/status", timeout=5).json()
            workers = [w for w in status["workers"] if w["threads"] and w["busy_threads"] == busy]
            return workers[0] if workers else None

        # thread_pool is the workers' minimum...
        assert wait_for(lambda: worker_threads(0), what="a heartbeat")["threads"] == 1
        answers: list[list[str]] = []
        clients = threading.Thread(
            target=lambda: answers.append(get_concurrently(Client("127.0.0.1", port), "/slow", 4))
        )
        clients.start()
        # ...and thread_pool_max their maximum.
        assert wait_for(lambda: worker_threads(4), what="four busy threads")["threads"] == 4
        clients.join(DEADLINE)
        assert answers == [["slept"] * 4]
        master.send_signal(signal.SIGTERM)
        assert master.wait(DEADLINE) == 0
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(DEADLINE)
