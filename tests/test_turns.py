"""The pool's threads take turns at the selector (morello.http.turns), on a real server.

A pool of one thread polls and serves in turn, so no request is handed from
one thread to another; connections that wait while every thread is busy are
all answered, and queued work does not stop the polls; a request waiting
while every thread is busy makes the pool grow; stopping the server does
not wait out a poll.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bus_support import wait_until
from test_server import make_server

from morello.http.connection import LeanConnection
from morello.http.gathering import GatheringManager
from morello.http.turns import POLL_INTERVAL, POLL_TIMEOUT, TurnQueue
from morello.httpserver import Server
from morello.process.bus import Bus
from morello.testing import Client

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
#: Set to let the ``/block`` requests end.
release = threading.Event()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """``/block`` waits for ``release``; anything else answers at once."""
    if environ["PATH_INFO"] == "/block":
        release.wait(30)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def serve(bus: Bus) -> Iterator[Callable[..., Server]]:
    """``serve(threads, max_threads)`` starts ``app``; returns the server."""
    release.clear()

    def start(threads: int, max_threads: int = -1) -> Server:
        server = make_server(
            bus, socket_queue_size=64, thread_pool=threads, thread_pool_max=max_threads
        )
        server.app = app
        bus.start()
        return server

    yield start
    release.set()
    bus.exit()


def test_one_thread_polls_and_serves_without_handing_over(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request on a pool of one thread is served by the thread that found it."""
    pollers: list[int] = []
    servers: list[int] = []
    poll, communicate = GatheringManager.poll, LeanConnection.communicate

    def recording_poll(self: Any, timeout: float) -> list[Any]:
        found = poll(self, timeout)
        if found:
            pollers.append(threading.get_ident())
        return found

    def recording_communicate(self: Any) -> bool:
        servers.append(threading.get_ident())
        return communicate(self)

    monkeypatch.setattr(GatheringManager, "poll", recording_poll)
    monkeypatch.setattr(LeanConnection, "communicate", recording_communicate)
    server = serve(1)
    with socket.create_connection(server.bound_addr, timeout=10) as client:
        for _ in range(20):
            client.sendall(REQUEST)
            assert client.recv(4096).endswith(b"ok")
    assert len(servers) >= 20
    assert set(servers) == set(pollers), "a request went from the polling thread to another"
    assert len(set(servers)) == 1


def test_connections_waiting_while_every_thread_is_busy_are_all_answered(
    serve: Callable[..., Server],
) -> None:
    server = serve(1)
    blocked = socket.create_connection(server.bound_addr, timeout=10)
    blocked.sendall(REQUEST.replace(b"/ ", b"/block "))
    pool = server.httpserver.requests
    wait_until(lambda: pool.idle == 0 and pool.turns.unpolled_for > 0, timeout=10)
    waiting = [socket.create_connection(server.bound_addr, timeout=10) for _ in range(8)]
    try:
        for client in waiting:
            client.sendall(REQUEST)
        release.set()
        assert blocked.recv(4096).endswith(b"ok")
        for client in waiting:
            assert client.recv(4096).endswith(b"ok")
    finally:
        for client in [blocked, *waiting]:
            client.close()


class CountingManager:
    """Stands in for the connection manager: counts polls, finds nothing."""

    def __init__(self) -> None:
        self.polls: list[float] = []

    def poll(self, timeout: float) -> list[Any]:
        self.polls.append(timeout)
        return []

    def wake(self) -> None:
        pass


def test_a_thread_polls_between_queued_connections_once_the_last_poll_is_old() -> None:
    """Queued work does not keep new connections and requests unnoticed until it drains."""
    turns = TurnQueue(server=None)
    manager = CountingManager()
    turns.poll_with(manager)
    for item in ("a", "b", "c"):
        turns.put(item)
    turns._polled_at -= POLL_INTERVAL
    assert turns.get() == "a"  # the last poll is long past: one look first, without waiting
    assert manager.polls == [0]
    assert turns.get() == "b"  # just looked
    assert manager.polls == [0]
    turns._polled_at -= POLL_INTERVAL
    assert turns.get() == "c"
    assert manager.polls == [0, 0]


def test_pool_grows_while_a_request_waits_unpolled(serve: Callable[..., Server]) -> None:
    """With its only thread blocked, a request that waits in its socket gets a new thread."""
    server = serve(1, 4)
    blocked = socket.create_connection(server.bound_addr, timeout=10)
    try:
        blocked.sendall(REQUEST.replace(b"/ ", b"/block "))
        pool = server.httpserver.requests
        wait_until(lambda: pool.idle == 0, timeout=10)
        started = time.monotonic()
        assert Client(*server.bound_addr, timeout=10).get("/").status == 200
        assert time.monotonic() - started < 5
        assert pool.size >= 2
    finally:
        release.set()
        blocked.close()


def test_stop_ends_the_poll_at_once(bus: Bus, serve: Callable[..., Server]) -> None:
    """Stopping does not wait for the polling thread's poll to time out."""
    server = serve(1)
    assert Client(*server.bound_addr, timeout=10).get("/").status == 200
    pool = server.httpserver.requests
    wait_until(lambda: pool.turns._polling, timeout=10)
    started = time.monotonic()
    server.httpserver.stop()
    assert time.monotonic() - started < POLL_TIMEOUT / 2


def test_a_full_queue_makes_put_wait_for_room_as_queue_does() -> None:
    """cheroot's stop() queues one shutdown request per thread and must not fail on a
    full queue (``server.accepted_queue_size``): put() waits for room, or times out."""
    turns = TurnQueue(server=None, maxsize=1)
    turns.put("first")
    with pytest.raises(queue.Full):
        turns.put("second", timeout=0.01)
    with pytest.raises(queue.Full):
        turns.put("second", block=False)
    taker = threading.Timer(0.05, turns.get)
    taker.start()
    turns.put("second")  # waits until the timer's get() made room
    taker.join()
    assert turns.get() == "second"
