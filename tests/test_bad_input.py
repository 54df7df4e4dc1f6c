"""Malformed and hostile requests, sent as raw bytes over loopback.

Each request gets a 4xx (or a 500 for a handler's own bug), tracebacks appear
only where ``request.show_tracebacks`` is on, and the server still answers a
normal request afterwards. Statuses are compared with CherryPy 18 where it
gets them right; where it does not, the test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import (
    Conn,
    alive_root,
    assert_alive,
    cherrypy_reference,
    raw_exchange,
    status_of,
)

import morello
from morello.testing import running

#: Small enough to trip with a modest request.
MAX_HEADER = 10_000
GLOBAL_CONFIG = {"server.max_request_header_size": MAX_HEADER}
FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"


def build(cp: Any) -> tuple[Any, dict[str, Any]]:
    """The app under test, for morello and for the CherryPy reference alike."""

    class Root(alive_root(cp)):
        @cp.expose
        def echo(self, *args: str, **kwargs: str) -> str:
            return repr((args, sorted(kwargs.items())))

        @cp.expose
        def crash(self) -> str:
            raise ValueError("kaboom")

        @cp.expose
        def returns_int(self) -> int:
            return 42

        @cp.expose
        def returns_object(self) -> object:
            return object()

        @cp.expose
        def returns_ints(self) -> list[int]:
            return [1, 2]

        @cp.expose
        def returns_str_unencoded(self) -> str:
            return "text"

        returns_str_unencoded._cp_config = {"tools.encode.on": False}

    return Root(), {}


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    """Serves :func:`build` at ``/`` and again at ``/quiet`` with tracebacks off."""
    root, config = build(morello)
    quiet = morello.Application(
        build(morello)[0], "/quiet", {"/": {"request.show_tracebacks": False}}
    )
    with running({"": root, "/quiet": quiet}, config, GLOBAL_CONFIG) as client:
        yield client.port


@pytest.fixture(scope="module")
def reference() -> Iterator[int]:
    with cherrypy_reference("test_bad_input:build", GLOBAL_CONFIG) as port:
        yield port


@pytest.fixture(autouse=True)
def still_serving(app: int) -> Iterator[None]:
    yield
    assert_alive(app)


def request(line: bytes, headers: bytes = b"", body: bytes = b"") -> bytes:
    """Raw request bytes: ``line``, a Host header, ``headers`` and ``body``."""
    return line + b"\r\nHost: localhost\r\n" + headers + b"\r\n" + body


def send(port: int, data: bytes) -> tuple[int, bytes]:
    """Send ``data``, half-close, and return the first response's status and all bytes."""
    raw = raw_exchange(port, data, shutdown=True)
    return status_of(raw), raw


def body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


# -- query strings and paths ----------------------------------------------


@pytest.mark.parametrize(
    ("target", "echoed"),
    [
        (b"/echo?a=1&&b=2", b"[('a', '1'), ('b', '2')]"),
        (b"/echo?a=1;b=2", b"[('a', '1'), ('b', '2')]"),
        (b"/echo?=x", b"[('', 'x')]"),
        (b"/echo?a", b"[('a', '')]"),
        (b"/echo?a=1=2", b"[('a', '1=2')]"),
        # Broken percent-escapes are kept as they are.
        (b"/echo?%", b"[('%', '')]"),
        (b"/echo?a=%zz", b"[('a', '%zz')]"),
        (b"/echo?a=%2", b"[('a', '%2')]"),
        (b"/echo?a=1+2&b=%2B", b"[('a', '1 2'), ('b', '+')]"),
        (b"/echo?a=%00", b"[('a', '\\x00')]"),
        (b"/echo/%zz", b"(('%zz',), [])"),
        (b"/echo/a%2", b"(('a%2',), [])"),
        (b"/echo/a%00b", b"(('a\\x00b',), [])"),
        (b"/echo/a%2Fb", b"(('a/b',), [])"),
        (b"/echo/caf%C3%A9", "(('café',), [])".encode()),
    ],
)
def test_odd_but_parseable_urls_reach_the_handler(
    app: int, reference: int, target: bytes, echoed: bytes
) -> None:
    data = request(b"GET " + target + b" HTTP/1.1")
    for port in (app, reference):
        status, raw = send(port, data)
        assert status == 200
        assert echoed in body_of(raw)


@pytest.mark.parametrize("query", [b"a=%FF", b"%FF=1", b"a=%C3%28"])
def test_undecodable_query_string_gives_404(app: int, reference: int, query: bytes) -> None:
    data = request(b"GET /echo?" + query + b" HTTP/1.1")
    assert send(app, data)[0] == send(reference, data)[0] == 404


@pytest.mark.parametrize(
    "target",
    [
        b"/echo/caf\xe9",  # latin-1, raw
        b"/echo/caf\xc3\xa9",  # UTF-8, but raw bytes are not allowed in a URI either
        b"/echo?a=\xff",
        b"echo",  # not origin-form
    ],
)
def test_raw_non_ascii_or_malformed_targets_give_400(
    app: int, reference: int, target: bytes
) -> None:
    data = request(b"GET " + target + b" HTTP/1.1")
    assert send(app, data)[0] == send(reference, data)[0] == 400


@pytest.mark.parametrize(
    "data",
    [
        request(b"GET /echo/a\x00b HTTP/1.1"),
        request(b"GET /echo?a=\x00 HTTP/1.1"),
        request(b"GET /echo/a\tb HTTP/1.1"),
        request(b"GET / HTTP/1.1", b"X-Nul: a\x00b\r\n"),
        request(b"GET / HTTP/1.1", b"Cookie: a=\x00\r\n"),
    ],
)
def test_raw_nul_and_control_bytes_give_400(app: int, reference: int, data: bytes) -> None:
    # CherryPy (cheroot) passes them on (200); %00 stays fine (see above).
    assert send(app, data)[0] == 400
    assert send(reference, data)[0] == 200


# -- request line and headers ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request(b"GET /echo?a=" + b"x" * 2 * MAX_HEADER + b" HTTP/1.1"), 414),
        (request(b"GET / HTTP/1.1", b"X-Big: " + b"y" * 2 * MAX_HEADER + b"\r\n"), 413),
        (
            request(
                b"GET / HTTP/1.1", b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER // 8))
            ),
            413,
        ),
        (request(b"GET / HTTP/1.1", b"Garbage\r\n"), 400),
        (request(b"GET / HTTP/2.0"), 505),
        (request(b"GET / FOO/1.1"), 400),
        (request(b"get / HTTP/1.1"), 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (request(b"GET / HTTP/1.1", b"Cookie: a,b=1\r\n"), 400),
    ],
)
def test_malformed_request_heads(app: int, reference: int, data: bytes, status: int) -> None:
    assert send(app, data)[0] == status
    assert send(reference, data)[0] == status


# -- Content-Length -------------------------------------------------------


def post(length_headers: bytes, body: bytes = b"a=1") -> bytes:
    return request(b"POST /echo HTTP/1.1", FORM + length_headers, body)


@pytest.mark.parametrize(
    "length_headers",
    [
        b"Content-Length: abc\r\n",
        b"Content-Length: \r\n",
        b"Content-Length: 3 3\r\n",
        b"Content-Length: 0x3\r\n",
    ],
)
def test_non_numeric_content_length_gives_400(
    app: int, reference: int, length_headers: bytes
) -> None:
    data = post(length_headers)
    assert send(app, data)[0] == send(reference, data)[0] == 400


@pytest.mark.parametrize(
    "length_headers",
    [
        b"Content-Length: -3\r\n",
        b"Content-Length: +3\r\n",
        b"Content-Length: 1_0\r\n",
        b"Content-Length: 3\r\nContent-Length: 5\r\n",
        b"Content-Length: 3\r\nContent-Length: 3\r\n",
    ],
)
def test_ambiguous_content_length_gives_400_and_smuggles_nothing(
    app: int, length_headers: bytes
) -> None:
    # CherryPy (cheroot) takes int() of the value and the last of duplicates:
    # a negative length even runs the body as a second request.
    smuggled = b"GET /crash HTTP/1.1\r\nHost: localhost\r\n\r\n"
    status, raw = send(app, post(length_headers, b"a=1" + smuggled))
    assert status == 400
    assert raw.count(b"HTTP/1.1 ") == 1, raw


def test_body_shorter_than_content_length_gives_400(app: int) -> None:
    # The client half-closes after 3 of the 100 announced bytes. CherryPy
    # takes the 3 bytes for the whole body and answers 200.
    status, raw = send(app, post(b"Content-Length: 100\r\n"))
    assert status == 400
    assert b"ended" in body_of(raw)


def test_client_closing_before_the_body_is_complete(app: int) -> None:
    with Conn(app) as conn:
        conn.send(post(b"Content-Length: 100000\r\n", b"a=" + b"1" * 5000))
    # still_serving checks the server once the connection is gone.


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        # RFC 9112 6.3: chunked must be the last coding (400); a coding the
        # server lacks before it is 501.
        (b"Transfer-Encoding: gzip\r\n", b"a=1", 400),
        (b"Transfer-Encoding: gzip, chunked\r\n", b"3\r\na=1\r\n0\r\n\r\n", 501),
        (b"Transfer-Encoding: chunked\r\n", b"zz\r\na=1\r\n0\r\n\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", b"3\r\na=1", 400),
    ],
)
def test_broken_transfer_encodings(app: int, headers: bytes, body: bytes, status: int) -> None:
    # CherryPy answers 500 to broken chunk framing; it is the client's error.
    assert send(app, request(b"POST /echo HTTP/1.1", FORM + headers, body))[0] == status


# -- handler bugs ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/crash", "/returns_int", "/returns_object", "/returns_ints", "/returns_str_unencoded"],
)
def test_handler_bugs_give_500(app: int, reference: int, path: str) -> None:
    data = request(b"GET " + path.encode() + b" HTTP/1.1")
    assert send(app, data)[0] == send(reference, data)[0] == 500


# -- tracebacks -----------------------------------------------------------

#: Requests that morello itself (not cheroot) refuses or fails, by path.
FRAMEWORK_ERRORS = [
    (b"GET %s/echo?a=%%FF HTTP/1.1", b"", b"", 404),
    (b"GET %s/echo HTTP/1.1", b"Cookie: a,b=1\r\n", b"", 400),
    (b"POST %s/echo HTTP/1.1", FORM + b"Content-Length: 10\r\n", b"a=1", 400),
    (b"POST %s/echo HTTP/1.1", FORM + b"Transfer-Encoding: chunked\r\n", b"zz\r\n", 400),
    (b"POST %s/echo HTTP/1.1", FORM + b"Content-Length: 5\r\n", b"a=%FF", 400),
    (b"GET %s/echo/a/b?x=1 HTTP/1.1", b"", b"", 200),
    (b"GET %s/crash HTTP/1.1", b"", b"", 500),
    (b"GET %s/returns_int HTTP/1.1", b"", b"", 500),
]


@pytest.mark.parametrize(("line", "headers", "body", "status"), FRAMEWORK_ERRORS)
def test_tracebacks_only_when_show_tracebacks_is_on(
    app: int, line: bytes, headers: bytes, body: bytes, status: int
) -> None:
    shown = send(app, request(line % b"", headers, body))
    hidden = send(app, request(line % b"/quiet", headers, body))
    assert shown[0] == hidden[0] == status
    if status != 200:
        assert b"Traceback (most recent call last)" in body_of(shown[1])
    assert b"Traceback" not in body_of(hidden[1])
    assert b'File "' not in body_of(hidden[1])
    assert_alive(app, "/quiet/")
