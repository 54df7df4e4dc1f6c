"""Slow clients hold no request thread: heads (and small bodies) are collected by the selector.

Clients trickle heads and bodies a few bytes at a time while a normal
client must be answered within a second; the head deadline and the
minimum body rate answer 408 and close; keep-alive and pipelining, plain
and over TLS, work as before. The last test does the same to a prefork
master with 250 slow connections.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Conn, alive_root, build_request, served, status_of
from prefork_support import running_master, write_app
from test_cli import app_dir, morello  # noqa: F401  (fixture)
from test_lean_http import echo_app
from test_server import bus, certificate, make_server  # noqa: F401  (fixtures)

from morello.http.gathering import SMALL_BODY, small_body_length
from morello.process.bus import Bus

#: How long a normal request may take while slow clients are connected.
PROMPT = 1.0
HOST = "127.0.0.1"


class Tricklers:
    """Connections that each send their request a few bytes at a time, every ``interval``.

    Each sends its first bytes at once (``(request, how many)`` pairs);
    then a thread sends the next ``step`` bytes on every connection and
    waits ``interval`` (the slow clients' own pace), until :meth:`stop`. A
    connection the server closed is left alone.
    """

    def __init__(
        self,
        connect: Callable[[], socket.socket],
        requests: list[tuple[bytes, int]],
        step: int,
        interval: float,
    ) -> None:
        self.sockets = [connect() for _ in requests]
        self.rest = [request[first:] for request, first in requests]
        for sock, (request, first) in zip(self.sockets, requests, strict=True):
            sock.sendall(request[:first])
        self.step, self.interval = step, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tricklers:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for index, sock in enumerate(self.sockets):
                rest = self.rest[index]
                piece, self.rest[index] = rest[: self.step], rest[self.step :]
                with contextlib.suppress(OSError):
                    sock.sendall(piece)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def slow_head(index: int) -> bytes:
    """A request whose head never ends in time (a slowloris)."""
    return build_request("GET", f"/slow{index}", headers=[("X-Pad", "a" * 4000)])


def slow_post(index: int, length: int = 100) -> bytes:
    return build_request("POST", f"/read{index}", b"b" * length)


def slow_clients(heads: int, bodies: int, body_length: int) -> list[tuple[bytes, int]]:
    """Requests for :class:`Tricklers`: ``heads`` with a part of their head sent, then
    ``bodies`` with their head and 5 body bytes sent."""
    requests = [(slow_head(i), 40) for i in range(heads)]
    for i in range(bodies):
        request = slow_post(i, body_length)
        requests.append((request, len(request) - body_length + 5))
    return requests


def timed_get(port: int, path: str = "/quick") -> tuple[float, int]:
    """Seconds a GET on a new connection took, and its status (None-free: fails on timeout)."""
    started = time.monotonic()
    with Conn(port, timeout=PROMPT * 5) as conn:
        conn.send(build_request("GET", path))
        status = conn.reply().status
    return time.monotonic() - started, status


def answer_while_trickling(conn: socket.socket, within: float, pace: float = 0.1) -> bytes:
    """Send a header byte every ``pace`` seconds until the server answers and closes.

    Returns what it sent back; fails unless that happens within ``within`` seconds.
    """
    conn.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + within
    received = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([conn], [], [], pace)
        if readable:
            chunk = conn.recv(65536)
            if not chunk:
                return received
            received += chunk
            continue
        with contextlib.suppress(OSError):
            conn.sendall(b"x")
    pytest.fail(f"no answer and close within {within}s (got {received[:100]!r})")


@pytest.fixture
def few_threads(bus: Bus) -> Callable[..., int]:  # noqa: F811
    """Start a two-thread server with the given settings; return its port."""

    def start(**settings: object) -> int:
        server = make_server(bus, thread_pool=2, **settings)
        server.app = echo_app
        bus.start()
        return server.bound_addr[1]  # type: ignore[index]

    return start


def plain(port: int) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection((HOST, port), timeout=5)


# -- slow clients do not stop others --------------------------------------------


def test_slow_heads_and_bodies_leave_threads_free(few_threads: Callable[..., int]) -> None:
    port = few_threads()
    with Tricklers(plain(port), slow_clients(6, 4, 100), step=10, interval=0.3):
        for _ in range(5):
            took, status = timed_get(port)
            assert status == 200 and took < PROMPT


def read_to_close(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds the wait)."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def test_a_connection_that_never_sends_gets_408_when_idle_too_long(
    few_threads: Callable[..., int],
) -> None:
    """As cheroot does: a client that opened a connection and said nothing learns why it
    is closed; one that was served is closed without a word."""
    port = few_threads(socket_timeout=1)
    with socket.create_connection((HOST, port), timeout=10) as silent:
        assert status_of(read_to_close(silent)) == 408
    with socket.create_connection((HOST, port), timeout=10) as served:
        served.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = served.recv(65536)
        assert status_of(first) == 200
        assert read_to_close(served) == b""


def test_head_not_complete_in_time_gets_408_and_close(few_threads: Callable[..., int]) -> None:
    port = few_threads(request_head_timeout=1, socket_timeout=30)
    with socket.create_connection((HOST, port), timeout=5) as conn:
        started = time.monotonic()
        received = answer_while_trickling(conn, within=5)
        took = time.monotonic() - started
    assert status_of(received) == 408 and b"connection: close" in received.lower()
    assert 1 <= took < 3


def slow_body_answer(port: int, request: bytes, length: int) -> bytes:
    """Send ``request`` but the last ``length - 10`` body bytes, then one byte every 0.1 s
    until the server answers; return the answer."""
    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(request[: len(request) - length + 10])
        deadline = time.monotonic() + 5
        received = b""
        while time.monotonic() < deadline and not received:
            readable, _, _ = select.select([conn], [], [], 0.1)
            if readable:
                received = conn.recv(65536)
            else:
                with contextlib.suppress(OSError):
                    conn.sendall(b"b")
    assert received, "no answer within 5s"
    return received


@pytest.mark.parametrize("length", [100, SMALL_BODY * 4])
def test_body_below_the_minimum_rate_gets_408(few_threads: Callable[..., int], length: int) -> None:
    """A small body waits in the selector, a large one in a thread: the same rule for both."""
    port = few_threads(min_body_rate=1000, body_rate_grace=0.5, socket_timeout=30)
    received = slow_body_answer(port, slow_post(0, length), length)
    assert status_of(received) == 408 and b"connection: close" in received.lower()


def build_form(cp: Any) -> tuple[Any, dict[str, Any]]:
    class Root(alive_root(cp)):
        @cp.expose
        def form(self, **fields: str) -> str:
            return str(sorted(fields))

    return Root(), {}


def test_framework_answers_a_body_below_the_minimum_rate_with_408() -> None:
    settings = {"server.min_body_rate": 1000, "server.body_rate_grace": 0.5}
    length = SMALL_BODY * 4
    request = build_request(
        "POST", "/form", b"a=" + b"b" * (length - 2),
        [("Content-Type", "application/x-www-form-urlencoded")],
    )  # fmt: skip
    with served(build_form, settings) as port:
        received = slow_body_answer(port, request, length)
    assert status_of(received) == 408 and b"connection: close" in received.lower()


def test_body_at_the_minimum_rate_is_served(few_threads: Callable[..., int]) -> None:
    port = few_threads(min_body_rate=1000, body_rate_grace=0.5)
    body = b"c" * (SMALL_BODY * 2)
    with Conn(port) as conn:
        conn.send(build_request("POST", "/read", body)[: -len(body)])
        for start in range(0, len(body), 8192):  # well above 1000 bytes a second
            conn.send(body[start : start + 8192])
        reply = conn.reply()
    assert (reply.status, reply.body) == (200, b"POST /read? " + body)


# -- requests still flow ----------------------------------------------------------------


def test_keep_alive_and_pipelining_with_trickled_heads(few_threads: Callable[..., int]) -> None:
    port = few_threads()
    with Conn(port) as conn:
        conn.send(build_request("GET", "/one") + build_request("POST", "/read", b"xy"))
        assert conn.reply().body == b"GET /one? -"
        assert conn.reply().body == b"POST /read? xy"
        second = build_request("POST", "/read", b"z" * 10)
        for cut in range(0, len(second), 7):  # the next request arrives in pieces
            conn.send(second[cut : cut + 7])
        assert conn.reply().body == b"POST /read? " + b"z" * 10
        conn.send(build_request("GET", "/last") + b"GET /par")  # a partial one follows
        assert conn.reply().body == b"GET /last? -"
        conn.send(b"tial HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.reply().body == b"GET /partial? -"


def test_expect_continue_is_not_held_for_its_body(few_threads: Callable[..., int]) -> None:
    port = few_threads()
    head = build_request("POST", "/read", b"q" * 20, [("Expect", "100-continue")])[:-20]
    with Conn(port) as conn:
        conn.send(head)
        assert conn.reader.readline().startswith(b"HTTP/1.1 100")
        assert conn.reader.readline() == b"\r\n"
        conn.send(b"q" * 20)
        assert conn.reply().body == b"POST /read? " + b"q" * 20


def test_slow_tls_heads_leave_threads_free(
    few_threads: Callable[..., int],
    certificate: tuple[str, str],  # noqa: F811
) -> None:
    cert, key = certificate
    port = few_threads(ssl_certificate=cert, ssl_private_key=key)
    context = ssl.create_default_context(cafile=cert)

    def connect() -> socket.socket:
        raw = socket.create_connection((HOST, port), timeout=5)
        return context.wrap_socket(raw, server_hostname="localhost")

    with Tricklers(connect, slow_clients(4, 0, 0), step=5, interval=0.3):
        with contextlib.closing(connect()) as sock:
            started = time.monotonic()
            sock.sendall(build_request("GET", "/tls", headers=[("Connection", "close")]))
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert status_of(received) == 200 and received.endswith(b"GET /tls? -")
        assert time.monotonic() - started < PROMPT


def test_small_body_length_only_for_a_plain_content_length() -> None:
    def length(head: bytes, largest: int = SMALL_BODY) -> int:
        return small_body_length(head, 0, len(head), largest)

    assert length(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n") == 12
    assert length(b"POST / HTTP/1.1\r\ncontent-length:12 \r\n\r\n") == 12
    assert length(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", largest=11) == 0
    assert length(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n") == 0
    held = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    assert length(held) == 0
    assert length(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: x\r\n\r\n") == 0
    assert length(b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n") == 0


@pytest.mark.parametrize(
    "line", ["server.request_head_timeout = -1", "server.min_body_rate = 'fast'"]
)
def test_bad_slow_client_settings_stop_the_start(app_dir: Path, line: str) -> None:  # noqa: F811
    (app_dir / "site.conf").write_text(f"[global]\n{line}\n")
    result = morello("serve", "app:Root", "-c", "site.conf", cwd=app_dir)
    assert result.returncode == 2
    assert line.split(" = ")[0] in result.stderr
    assert result.stderr.count("\n") == 1


# -- a prefork master ---------------------------------------------------------------


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Room for a few hundred sockets in this process (and the master it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048 if hard == resource.RLIM_INFINITY else min(hard, 2048)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_prefork_serves_normal_requests_past_hundreds_of_slow_clients(
    tmp_path: Path, many_descriptors: None
) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text("[global]\nserver.request_head_timeout = 2\n")
    with running_master(tmp_path, "-c", "site.conf", workers=2) as master:
        port = master.port
        with Tricklers(plain(port), slow_clients(200, 50, 1000), step=8, interval=1.0) as slow:
            deadline = time.monotonic() + 3  # a few rounds of trickling
            answered = 0
            while time.monotonic() < deadline and answered < 10000:
                took, status = timed_get(port, "/pid")
                assert status == 200 and took < PROMPT, f"{took:.2f}s after {answered} answers"
                answered += 1
            assert answered >= 10
            # The config file's head deadline has passed for the slowloris clients.
            assert status_of(slow.sockets[0].recv(65536)) == 408
