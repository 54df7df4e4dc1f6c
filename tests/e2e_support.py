"""Helpers for the end-to-end tests: raw HTTP over loopback and a CherryPy reference.

Requests are raw bytes (:func:`build_request`, or hand-made when malformed
on purpose) sent on a :class:`Conn`. Apps are written once as
``build(cherrypy)`` functions returning ``(root, app_config)``;
:func:`cherrypy_reference` serves the same builder with CherryPy 18 in a
subprocess so that a test can compare answers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import morello
from morello.testing import HOST, Client, free_port, running

TIMEOUT = 5.0
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Reply:
    """One parsed response from :func:`exchange`."""

    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes
    will_close: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def build_request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    protocol: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """Raw request bytes with a Host header and (unless ``length`` is off) Content-Length."""
    lines = [f"{method} {path} {protocol}", "Host: localhost"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body is not None and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(*chunks: bytes) -> bytes:
    """A chunked transfer-coding of ``chunks`` (with the terminating zero chunk)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk)
    return out + b"0\r\n\r\n"


class _KeepOpen:
    """The connection's reader as a file http.client may "close" after each response."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def close(self) -> None:
        """Keep reading later responses from the same buffer."""


class Conn:
    """A client connection: raw sends, parsed responses (pipelining-safe), raw reads.

    One buffered reader serves every response, so bytes of a pipelined
    second response are never lost with the first one's buffer.
    """

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: the server sees the end of the request stream."""
        self.sock.shutdown(socket.SHUT_WR)

    def makefile(self, mode: str = "rb", *args: Any) -> _KeepOpen:
        return _KeepOpen(self.reader)

    def reply(self, method: str = "GET") -> Reply:
        """Parse the next response on this connection."""
        raw = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        raw.begin()
        body = raw.read()
        return Reply(raw.status, raw.reason, raw.msg, body, raw.will_close)

    def read_until_closed(self, limit: int = 50_000_000) -> bytes:
        """Everything the server sends until it closes (each read bounded by the timeout)."""
        chunks = []
        total = 0
        while total < limit:
            chunk = self.reader.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)


def exchange(port: int, data: bytes, method: str = "GET") -> Reply:
    """Send raw request bytes on a new connection and parse the response."""
    with Conn(port) as conn:
        conn.send(data)
        return conn.reply(method)


def raw_exchange(port: int, data: bytes, shutdown: bool = False) -> bytes:
    """Send raw bytes and return the raw bytes received until the server closes.

    With ``shutdown``, the client half-closes after sending, so a server
    waiting for more request bytes sees the end of the stream.
    """
    with Conn(port) as conn:
        conn.send(data)
        if shutdown:
            # The server may have answered and closed already (e.g. 413).
            with contextlib.suppress(OSError):
                conn.shutdown_write()
        return conn.read_until_closed()


def status_of(raw: bytes) -> int:
    """The status code of a raw response (``HTTP/1.1 404 Not Found ...``)."""
    line = raw.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), f"not an HTTP response: {raw[:200]!r}"
    return int(line.split()[1])


def get(port: int, path: str) -> Reply:
    """A plain GET on a new connection (closed by the server afterwards)."""
    return exchange(port, build_request("GET", path, headers=[("Connection", "close")]))


def assert_alive(port: int, path: str = "/", body: bytes = b"alive") -> None:
    """The server still answers a normal request with the expected body."""
    reply = get(port, path)
    assert (reply.status, reply.body) == (200, body)


def get_concurrently(client: Client, path: str, count: int = 2, timeout: float = 15.0) -> list[str]:
    """GET ``path`` from ``count`` threads at once; their bodies in the order they were answered."""
    texts: list[str] = []
    threads = [
        threading.Thread(target=lambda: texts.append(client.get(path).text)) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return texts


def alive_root(cp: Any) -> type:
    """A base for a builder's root class: its index answers what :func:`assert_alive` expects."""

    class AliveRoot:
        @cp.expose
        def index(self) -> str:
            return "alive"

    return AliveRoot


def app_and_reference(
    build: Callable[[Any], tuple[Any, dict[str, Any]]],
    global_config: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """The module-scoped ``app`` and ``reference`` fixtures of a test module, each a port.

    ``app`` is ``build(morello)`` served by :func:`served` (with
    ``global_config``), ``reference`` the same ``build`` served by
    :func:`cherrypy_reference`. Use: ``app, reference = app_and_reference(build)``.
    """
    builder = f"{build.__module__}:{build.__name__}"

    @pytest.fixture(scope="module")
    def app() -> Iterator[int]:
        with served(build, global_config) as port:
            yield port

    @pytest.fixture(scope="module")
    def reference() -> Iterator[int]:
        with cherrypy_reference(builder) as port:
            yield port

    return app, reference


@contextlib.contextmanager
def served(
    build: Callable[[Any], tuple[Any, dict[str, Any]]],
    global_config: dict[str, Any] | None = None,
) -> Iterator[int]:
    """Serve ``build(morello)`` at ``/`` with morello in this process; yields the port."""
    root, app_config = build(morello)
    with running({"": root}, app_config, global_config) as client:
        yield client.port


# argv: tests dir, framework, "module:function", port, global config as JSON.
_SERVER_SCRIPT = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
framework = importlib.import_module(sys.argv[2])
module, func = sys.argv[3].split(":")
root, app_config = getattr(importlib.import_module(module), func)(framework)
framework.config.update({
    "environment": "test_suite", "log.screen": False,
    "server.socket_host": "127.0.0.1", "server.socket_port": int(sys.argv[4]),
    **json.loads(sys.argv[5]),
})
framework.tree.mount(root, "", app_config)
framework.engine.start()
print("ready", flush=True)
sys.stdin.read()
framework.engine.exit()
"""


@contextlib.contextmanager
def subprocess_server(
    builder: str, framework: str = "cherrypy", global_config: dict[str, Any] | None = None
) -> Iterator[int]:
    """Serve ``"module:function"`` (a ``build(framework)`` in tests/) in a subprocess.

    ``framework`` is ``"cherrypy"`` (the CherryPy 18 reference) or
    ``"morello"`` (for global config that must not touch this process).
    Yields the port; the subprocess stops when the block ends.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT, TESTS_DIR, framework, builder, str(port),
         json.dumps(global_config or {})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"the {framework} server for {builder} did not start"
        yield port
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def cherrypy_reference(builder: str, global_config: dict[str, Any] | None = None) -> Any:
    """:func:`subprocess_server` with CherryPy 18, the reference."""
    return subprocess_server(builder, "cherrypy", global_config)
