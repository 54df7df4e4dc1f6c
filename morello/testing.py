"""Testing morello applications over real HTTP on a loopback port.

Two styles:

* pytest: ``pytest_plugins = ["morello.testing"]`` in ``conftest.py`` gives the
  ``serve`` fixture::

      def test_hello(serve):
          client = serve(Root(), config={"/": {"tools.gzip.on": True}})
          response = client.get("/")
          assert response.status == 200 and response.body == b"Hello world!"

* unittest, for suites ported from CherryPy: subclass :class:`WebCase`
  (also importable as ``CPWebCase``), define ``setup_server()`` and use
  ``getPage`` / ``assertStatus`` / ``assertHeader`` / ``assertBody`` /
  ``assertInBody``.

Both mount on ``morello.tree``, start the engine with the server on a free
port of 127.0.0.1, and stop everything afterwards (config and tree reset).
"""

from __future__ import annotations

import http.client
import re
import socket
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import morello
from morello.lib.httputil import HeaderMap

__all__ = ["Client", "HTTPResponse", "WebCase", "CPWebCase", "free_port", "running", "serve"]

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class HTTPResponse:
    """What came back: ``status`` (int), ``reason``, ``headers``, ``body`` (bytes)."""

    status: int
    reason: str
    headers: HeaderMap
    header_list: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Client:
    """A tiny HTTP/1.1 client for one test server (a new connection per request)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> HTTPResponse:
        """Send one request; ``path`` is sent as given (it may be malformed on purpose)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            items = headers.items() if isinstance(headers, dict) else (headers or [])
            # A given Host replaces http.client's (the server refuses two).
            conn.putrequest(
                method, path, skip_host=_has(items, "Host"), skip_accept_encoding=True
            )
            for name, value in items:
                conn.putheader(name, value)
            if isinstance(body, str):
                body = body.encode("utf-8")
            if body is not None and not _has(items, "Content-Length"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            raw = conn.getresponse()
            header_list = raw.getheaders()
            data = raw.read()
            return HTTPResponse(raw.status, raw.reason, HeaderMap(header_list), header_list, data)
        finally:
            conn.close()

    def get(self, path: str, headers: Any = None) -> HTTPResponse:
        return self.request("GET", path, headers=headers)

    def head(self, path: str, headers: Any = None) -> HTTPResponse:
        return self.request("HEAD", path, headers=headers)

    def post(self, path: str, body: Any = None, headers: Any = None) -> HTTPResponse:
        return self.request("POST", path, body=body, headers=headers)


def _has(items: Any, name: str) -> bool:
    return any(key.lower() == name.lower() for key, _ in items)


def _start(config: dict[str, Any] | None) -> int:
    port = free_port()
    morello.config.update(
        {
            "environment": "test_suite",
            "server.socket_host": HOST,
            "server.socket_port": port,
            "log.screen": False,
            **(config or {}),
        }
    )
    morello.engine.start()
    return port


def _stop() -> None:
    morello.engine.exit()
    morello.tree.apps.clear()
    morello.config.reset()
    # Rebuild the cheroot server next time: the port changes per test.
    morello.server.httpserver = None
    morello.server.listen_socket = None


class running:  # noqa: N801 - used like a function: with running(...) as client
    """Context manager: mount the given apps, start the engine, yield a :class:`Client`.

    ``apps`` maps script names to roots (or Applications / WSGI callables
    with ``graft=True``); ``global_config`` goes to ``morello.config``.
    """

    def __init__(
        self,
        apps: dict[str, Any],
        app_config: dict[str, Any] | None = None,
        global_config: dict[str, Any] | None = None,
    ) -> None:
        self.apps = apps
        self.app_config = app_config
        self.global_config = global_config

    def __enter__(self) -> Client:
        for script_name, root in self.apps.items():
            morello.tree.mount(root, script_name, self.app_config)
        port = _start(self.global_config)
        return Client(HOST, port)

    def __exit__(self, *exc_info: Any) -> None:
        _stop()


def serve_fixture() -> Iterator[Callable[..., Client]]:
    """Body of the ``serve`` fixture: a factory that starts one server per test."""
    started: list[running] = []

    def start(
        root: Any,
        config: dict[str, Any] | None = None,
        script_name: str = "",
        global_config: dict[str, Any] | None = None,
    ) -> Client:
        if started:
            raise RuntimeError(
                "serve() was already called in this test; mount several apps with running()"
            )
        context = running({script_name: root}, config, global_config)
        client = context.__enter__()
        started.append(context)
        return client

    try:
        yield start
    finally:
        for context in started:
            context.__exit__(None, None, None)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for WebCase users
    pass
else:
    serve = pytest.fixture(serve_fixture, name="serve")


class WebCase(unittest.TestCase):
    """unittest base class in the style of CherryPy's ``helper.CPWebCase``.

    Define ``setup_server()`` (a staticmethod that mounts apps on
    ``morello.tree``); the server runs for the whole class.
    """

    HOST = HOST
    PORT = 0
    scheme = "http"
    script_name = ""
    global_config: dict[str, Any] = {}
    status: str = ""
    headers: list[tuple[str, str]] = []
    body: bytes = b""

    @staticmethod
    def setup_server() -> None:
        """Mount the applications under test."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.setup_server()
        cls.PORT = _start(cls.global_config)

    @classmethod
    def tearDownClass(cls) -> None:
        _stop()
        super().tearDownClass()

    @property
    def prefix(self) -> str:
        return self.script_name.rstrip("/")

    def base(self) -> str:
        return f"{self.scheme}://{self.HOST}:{self.PORT}"

    def getPage(  # noqa: N802 - CherryPy's name
        self,
        url: str,
        headers: list[tuple[str, str]] | None = None,
        method: str = "GET",
        body: bytes | str | None = None,
        protocol: str | None = None,
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """Request ``url`` (prefixed with ``script_name``); sets status/headers/body."""
        if url.startswith("/") and self.prefix and not url.startswith(self.prefix):
            url = self.prefix + url
        response = Client(self.HOST, self.PORT).request(method, url, body, headers or [])
        self.status = f"{response.status} {response.reason}"
        self.headers = response.header_list
        self.body = response.body
        return self.status, self.headers, self.body

    def assertStatus(
        self, status: int | str | tuple[Any, ...] | list[Any], msg: str | None = None
    ) -> None:  # noqa: N802
        """``status`` may be an int, ``"404"``, ``"404 Not Found"`` or a list of those."""
        wanted = status if isinstance(status, (tuple, list)) else [status]
        code, _, reason = self.status.partition(" ")
        for item in wanted:
            if isinstance(item, int) and int(code) == item:
                return
            if isinstance(item, str) and (self.status == item or code == item):
                return
        self.fail(msg or f"Status {self.status!r} does not match {status!r}")

    def assertHeader(self, key: str, value: str | None = None, msg: str | None = None) -> str:  # noqa: N802
        """The header is present (with ``value``, if given); returns its value."""
        for name, actual in self.headers:
            if name.lower() == key.lower() and (value is None or str(value) == actual):
                return actual
        self.fail(msg or f"{key!r}: {value!r} not in headers {self.headers!r}")

    def assertHeaderIn(self, key: str, values: list[str], msg: str | None = None) -> str:  # noqa: N802
        for name, actual in self.headers:
            if name.lower() == key.lower() and actual in values:
                return actual
        self.fail(msg or f"{key!r} not one of {values!r} in {self.headers!r}")

    def assertHeaderItemValue(self, key: str, value: str, msg: str | None = None) -> str:  # noqa: N802
        """One comma-separated item of the header equals ``value``."""
        for name, actual in self.headers:
            if name.lower() == key.lower() and value in [v.strip() for v in actual.split(",")]:
                return value
        self.fail(msg or f"{value!r} not in {key!r} header items")

    def assertNoHeader(self, key: str, msg: str | None = None) -> None:  # noqa: N802
        if any(name.lower() == key.lower() for name, _ in self.headers):
            self.fail(msg or f"{key!r} is in headers {self.headers!r}")

    def _as_bytes(self, value: bytes | str) -> bytes:
        return value.encode("utf-8") if isinstance(value, str) else value

    def assertBody(self, value: bytes | str, msg: str | None = None) -> None:  # noqa: N802
        if self.body != self._as_bytes(value):
            self.fail(msg or f"expected body {value!r}, got {self.body!r}")

    def assertInBody(self, value: bytes | str, msg: str | None = None) -> None:  # noqa: N802
        if self._as_bytes(value) not in self.body:
            self.fail(msg or f"{value!r} not in body {self.body[:500]!r}")

    def assertNotInBody(self, value: bytes | str, msg: str | None = None) -> None:  # noqa: N802
        if self._as_bytes(value) in self.body:
            self.fail(msg or f"{value!r} found in body")

    def assertMatchesBody(
        self, pattern: bytes | str, msg: str | None = None, flags: int = 0
    ) -> None:  # noqa: N802
        if re.search(self._as_bytes(pattern), self.body, flags) is None:
            self.fail(msg or f"{pattern!r} does not match body")

    def assertErrorPage(self, status: int, message: str | None = None) -> None:  # noqa: N802
        """The response is morello's error page for ``status`` (and ``message``)."""
        self.assertStatus(status)
        self.assertInBody(str(status))
        if message is not None:
            import html

            self.assertInBody(html.escape(message, quote=False))


#: CherryPy's name for :class:`WebCase`.
CPWebCase = WebCase
