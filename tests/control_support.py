"""Fixtures and helpers for the control endpoint and ``morello ctl`` tests.

A :class:`ControlServer` runs in a selector loop on a thread of the test
process, like the master's loop; a fake :class:`ControlApp` stands in for
the master. Loaded as a pytest plugin by conftest.py.
"""

from __future__ import annotations

import http.client
import selectors
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from morello.master.control import (
    ControlServer,
    control_socket,
    parse_address,
)
from morello.master.ctl import UnixHTTPConnection

DEADLINE = 10.0


class FakeMaster:
    """A ControlApp with controllable answers; records scale requests."""

    def __init__(self) -> None:
        self.is_ready = True
        self.fail = False
        self.scaled: list[int] = []
        self.metrics_text = "# HELP morello_up Up.\n# TYPE morello_up gauge\nmorello_up 1\n"
        self.document: dict[str, Any] = {
            "master": {"pid": 4242, "uptime": 3725.0, "generation": 3, "target_workers": 2,
                       "restarts": 5, "state": "running"},
            "workers": [
                {"id": 7, "pid": 5001, "state": "ready", "generation": 3, "age": 125.5,
                 "requests": 1234, "busy_threads": 2, "threads": 10, "rss": 50_000_000},
                {"id": 8, "pid": 5002, "state": "booting", "generation": 3, "age": 1.0,
                 "requests": 0, "busy_threads": 0, "threads": 0, "rss": None},
            ],
        }  # fmt: skip

    def healthy(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def status(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("the fake master broke")
        return self.document

    def metrics(self) -> str:
        return self.metrics_text

    def scale(self, workers: int) -> None:
        if not 1 <= workers <= 32:
            raise ValueError("the number of workers must be from 1 to 32")
        self.scaled.append(workers)


class Loop:
    """The master's loop, reduced to serving one ControlServer, on a thread."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.selector = selectors.DefaultSelector()
        server.register(self.selector)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                timeout = 0.05
                deadline = self.server.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
                for key, mask in self.selector.select(timeout):
                    key.data(key.fileobj, mask)
                self.server.expire()
        except BaseException as exc:  # reported by stop(): the master must never die
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive()
        self.server.close()
        self.selector.close()
        assert not self.errors, self.errors


@dataclass
class Endpoint:
    address: str
    app: FakeMaster
    server: ControlServer


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: UNIX socket paths are limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="mctl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(short_dir: Path) -> Iterator[Callable[..., Endpoint]]:
    """Start a ControlServer (``kind`` "tcp" or "unix"; or ``server``, a subclass) with a
    FakeMaster in a loop thread."""
    loops: list[Loop] = []

    def start_server(
        kind: str = "tcp", app: Any = "fake", server: type[ControlServer] = ControlServer,
        **options: Any,
    ) -> Endpoint:
        bind = f"unix:{short_dir}/ctl{len(loops)}.sock" if kind == "unix" else "127.0.0.1:0"
        sock = control_socket(bind)
        address = bind if kind == "unix" else f"127.0.0.1:{sock.getsockname()[1]}"
        fake = FakeMaster() if app == "fake" else app
        serving = server(sock, fake, **options)
        loops.append(Loop(serving))
        return Endpoint(address, fake, serving)

    yield start_server
    for loop in loops:
        loop.stop()


@pytest.fixture(params=["tcp", "unix"])
def endpoint(request: pytest.FixtureRequest, start: Callable[..., Endpoint]) -> Endpoint:
    return start(request.param)


def connect(address: str) -> socket.socket:
    family, where = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(DEADLINE)
    sock.connect(where)
    return sock


def fetch(
    address: str, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client: (status, lower-cased headers, body)."""
    family, where = parse_address(address)
    if family == socket.AF_UNIX:
        connection: http.client.HTTPConnection = UnixHTTPConnection(where, DEADLINE)
    else:
        connection = http.client.HTTPConnection(*where, timeout=DEADLINE)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        received = {name.lower(): value for name, value in response.getheaders()}
        return response.status, received, response.read()
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(address: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; parse the response."""
    with connect(address) as sock:
        sock.sendall(data)
        raw = read_all(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def assert_still_serving(address: str) -> None:
    assert fetch(address, "GET", "/healthz")[0] == 200
