"""The lean request path (morello.http) over real sockets.

Requests arrive split at odd places and byte by byte, pipelined several
to a send, over TLS; bodies come with Content-Length, chunked, after
``100 Continue`` or not at all. Every test checks that the lean path, not
cheroot's, answered.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_support import Conn, build_request, chunked, status_of
from test_server import bus, certificate, make_server  # noqa: F401  (fixtures)

from morello.http import connection as lean_connection
from morello.http.reader import SocketReader
from morello.process.bus import Bus

TIMEOUT = 5.0


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answer ``METHOD PATH?QUERY body`` (the body read only when the path says so)."""
    path = environ["PATH_INFO"]
    body = environ["wsgi.input"].read() if path.startswith("/read") else b"-"
    if path == "/stream":  # no Content-Length: chunked, or closed, framing
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"one ", b"two"]
    if path == "/oserror":
        raise FileNotFoundError(path)
    if path == "/empty":
        start_response("204 No Content", [])
        return [b""]
    if path.startswith("/overlong"):  # more than the declared Content-Length
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345", b"678"] if path == "/overlong-later" else [b"12345678"]
    text = f"{environ['REQUEST_METHOD']} {path}?{environ['QUERY_STRING']} ".encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


@pytest.fixture
def lean_served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The heads the lean path served during the test; it must have received something."""
    heads: list[bytes] = []
    receives: list[int] = []
    serve, fill = lean_connection.LeanConnection._serve, SocketReader.fill

    def counting_serve(self: Any, head: bytes) -> bool:
        heads.append(head)
        return serve(self, head)

    def counting_fill(self: SocketReader) -> int:
        receives.append(1)
        return fill(self)

    monkeypatch.setattr(lean_connection.LeanConnection, "_serve", counting_serve)
    monkeypatch.setattr(SocketReader, "fill", counting_fill)
    yield heads
    assert receives, "the lean request path received nothing"


@pytest.fixture
def port(bus: Bus, lean_served: list[bytes]) -> Iterator[int]:  # noqa: F811
    server = make_server(bus, max_request_header_size=1024, max_request_body_size=100)
    server.app = echo_app
    bus.start()
    yield server.bound_addr[1]  # type: ignore[index]


def trickle(conn: Conn, data: bytes, sizes: list[int]) -> None:
    """Send ``data`` in pieces of the given sizes (cycled), each in its own segment."""
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start, index = 0, 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        conn.send(data[start : start + size])
        start += size
        index += 1


def post(path: str, body: bytes, *headers: tuple[str, str]) -> bytes:
    return build_request("POST", path, body, list(headers))


def chunked_post(path: str, body: bytes) -> bytes:
    return build_request("POST", path, body, [("Transfer-Encoding", "chunked")], length=False)


# -- split reads ----------------------------------------------------------------


def test_request_sent_byte_by_byte(port: int) -> None:
    with Conn(port) as conn:
        trickle(conn, post("/read", b"a=1&b=2"), [1])
        reply = conn.reply()
    assert (reply.status, reply.body) == (200, b"POST /read? a=1&b=2")


@pytest.mark.parametrize("sizes", [[2], [3, 7], [5, 1, 11], [13, 17]])
def test_requests_split_at_odd_places(port: int, sizes: list[int]) -> None:
    data = build_request("GET", "/x?q=1") + post("/read", b"0123456789")
    with Conn(port) as conn:
        trickle(conn, data, sizes)
        assert conn.reply().body == b"GET /x?q=1 -"
        assert conn.reply().body == b"POST /read? 0123456789"


@pytest.mark.parametrize("cut", range(1, 14))
def test_chunked_body_split_across_reads(port: int, cut: int) -> None:
    body = chunked(b"ab", b"cdefg")  # 2\r\nab\r\n5\r\ncdefg\r\n0\r\n\r\n
    data = chunked_post("/read", body)
    with Conn(port) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        split = len(data) - len(body) + cut
        conn.send(data[:split])
        conn.send(data[split:])
        conn.send(build_request("GET", "/after"))
        reply = conn.reply("POST")
        assert (reply.status, reply.body) == (200, b"POST /read? abcdefg")
        assert conn.reply().body == b"GET /after? -"


# -- pipelining -------------------------------------------------------------------


def test_pipelined_requests_answered_in_order(port: int, lean_served: list[bytes]) -> None:
    requests = [
        build_request("GET", "/1"),
        post("/read", b"two"),
        chunked_post("/read", chunked(b"thr", b"ee")),
        post("/unread", b"body nobody reads"),
        build_request("HEAD", "/5"),
        build_request("GET", "/6", headers=[("Connection", "close")]),
    ]
    with Conn(port) as conn:
        conn.send(b"".join(requests))
        bodies = [conn.reply(method).body for method in ("GET", "POST", "POST", "POST", "HEAD")]
        last = conn.reply()
        assert last.will_close
        assert conn.read_until_closed() == b""
    assert bodies == [
        b"GET /1? -",
        b"POST /read? two",
        b"POST /read? three",
        b"POST /unread? -",
        b"",
    ]
    assert last.body == b"GET /6? -"
    assert len(lean_served) == len(requests)


# -- limits -----------------------------------------------------------------------


def refused(port: int, data: bytes) -> tuple[int, bytes]:
    """Send ``data``; return the status and the head of the one answer, once the server closed."""
    with Conn(port) as conn:
        conn.send(data)
        raw = conn.read_until_closed()
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    return status_of(raw), raw.partition(b"\r\n\r\n")[0].lower()


def test_oversized_head_is_refused_and_closed(port: int) -> None:
    status, head = refused(port, build_request("GET", "/", headers=[("X-Big", "y" * 2000)]))
    assert status == 413 and b"connection: close" in head


def test_oversized_head_still_arriving_is_refused_and_closed(port: int) -> None:
    # No end of head yet: the limit is enforced on what has arrived.
    status, head = refused(port, b"GET / HTTP/1.1\r\nX-Big: " + b"y" * 2000)
    assert status == 413 and b"connection: close" in head


def test_overlong_request_line_is_414(port: int) -> None:
    status, head = refused(port, b"GET /" + b"x" * 2000)
    assert status == 414 and b"connection: close" in head


@pytest.mark.parametrize("chunked_body", [False, True])
def test_body_over_the_limit_is_413(port: int, chunked_body: bool) -> None:
    body = b"z" * 200
    data = chunked_post("/read", chunked(body)) if chunked_body else post("/read", body)
    status, head = refused(port, data)
    assert status == 413 and b"connection: close" in head


# -- 100-continue -----------------------------------------------------------------


def test_100_continue_sent_when_the_app_reads_the_body(port: int) -> None:
    head = build_request(
        "POST", "/read", headers=[("Expect", "100-continue"), ("Content-Length", "4")]
    )
    with Conn(port) as conn:
        conn.send(head)
        assert conn.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert conn.reader.readline() == b"\r\n"
        conn.send(b"data")
        reply = conn.reply("POST")
        assert (reply.status, reply.body, reply.will_close) == (200, b"POST /read? data", False)


def test_no_100_continue_when_the_app_does_not_read_the_body(port: int) -> None:
    head = build_request(
        "POST", "/unread", headers=[("Expect", "100-continue"), ("Content-Length", "4")]
    )
    with Conn(port) as conn:
        conn.send(head)
        raw = conn.read_until_closed()  # the body was never sent: the server closes
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw
    assert b"\r\nConnection: close\r\n" in raw


# -- HTTP/1.0, framing of responses ---------------------------------------------------


def test_http10_closes_unless_asked_to_keep_alive(port: int) -> None:
    with Conn(port) as conn:
        conn.send(build_request("GET", "/a", protocol="HTTP/1.0"))
        raw = conn.read_until_closed()
    assert raw.endswith(b"GET /a? -") and b"Connection:" not in raw
    with Conn(port) as conn:
        keep = [("Connection", "Keep-Alive")]
        conn.send(build_request("GET", "/b", headers=keep, protocol="HTTP/1.0"))
        reply = conn.reply()
        assert (reply.body, reply.header("Connection")) == (b"GET /b? -", "Keep-Alive")
        conn.send(build_request("GET", "/c", protocol="HTTP/1.0"))
        assert conn.read_until_closed().endswith(b"GET /c? -")


def test_unsized_response_is_chunked_for_http11_and_closed_for_http10(port: int) -> None:
    with Conn(port) as conn:
        conn.send(build_request("GET", "/stream"))
        reply = conn.reply()
        assert (reply.body, reply.header("Transfer-Encoding")) == (b"one two", "chunked")
        conn.send(build_request("GET", "/stream", protocol="HTTP/1.0"))
        raw = conn.read_until_closed()
    assert raw.endswith(b"\r\n\r\none two") and b"Transfer-Encoding" not in raw


def test_head_and_204_carry_no_body(port: int) -> None:
    with Conn(port) as conn:
        conn.send(build_request("HEAD", "/sized") + build_request("GET", "/empty"))
        conn.send(build_request("GET", "/last"))
        head = conn.reply("HEAD")
        assert (head.body, head.header("Content-Length")) == (b"", str(len(b"HEAD /sized? -")))
        assert conn.reply().status == 204
        assert conn.reply().body == b"GET /last? -"


def test_unsized_head_response_closes(port: int) -> None:
    # As with cheroot: without a length, only the close ends a response.
    with Conn(port) as conn:
        conn.send(build_request("HEAD", "/stream"))
        raw = conn.read_until_closed()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in raw


# -- heads llhttp does not take --------------------------------------------------------


def test_method_llhttp_does_not_know_reaches_the_application(port: int) -> None:
    with Conn(port) as conn:
        conn.send(build_request("BREW", "/pot", b"tea") + build_request("GET", "/next"))
        assert conn.reply().body == b"BREW /pot? -"
        assert conn.reply().body == b"GET /next? -"


def test_del_in_a_header_value_is_served_as_before(port: int) -> None:
    # llhttp refuses DEL in a value; morello's rules pass it on (it cannot
    # change the framing), as cheroot's reader always has.
    with Conn(port) as conn:
        conn.send(build_request("GET", "/del", headers=[("X-Odd", "a\x7fb")]))
        assert conn.reply().body == b"GET /del? -"


@pytest.mark.parametrize(
    "data",
    [
        b"BREW /pot HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"BREW /pot HTTP/1.1\r\nHost: x\r\nX-Odd: \x7f\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n",
        b"GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
    ],
)
def test_heads_llhttp_refuses_keep_the_strict_rules(port: int, data: bytes) -> None:
    status, head = refused(port, data + build_request("GET", "/hidden"))
    assert status == 400 and b"connection: close" in head


# -- errors ------------------------------------------------------------------------


def test_application_oserror_is_a_500(port: int) -> None:
    status, head = refused(port, build_request("GET", "/oserror"))
    assert status == 500 and b"connection: close" in head


def test_incomplete_head_times_out_with_408(bus: Bus, lean_served: list[bytes]) -> None:  # noqa: F811
    server = make_server(bus, socket_timeout=0.5)
    bus.start()
    status, head = refused(server.bound_addr[1], b"GET / HTTP/1.1\r\nHost: x\r\n")  # type: ignore[index]
    assert status == 408 and b"connection: close" in head


# -- TLS ----------------------------------------------------------------------------


def test_tls_requests_take_the_lean_path(
    bus: Bus,  # noqa: F811
    certificate: tuple[str, str],  # noqa: F811
    lean_served: list[bytes],
) -> None:
    cert, key = certificate
    server = make_server(bus, ssl_certificate=cert, ssl_private_key=key)
    server.app = echo_app
    bus.start()
    context = ssl.create_default_context(cafile=cert)
    raw = socket.create_connection(server.bound_addr, timeout=TIMEOUT)  # type: ignore[arg-type]
    with contextlib.closing(context.wrap_socket(raw, server_hostname="localhost")) as sock:
        sock.sendall(
            post("/read", b"secret")
            + build_request("GET", "/two", headers=[("Connection", "close")])
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert b"POST /read? secret" in received and received.endswith(b"GET /two? -")
    assert len(lean_served) == 2


def tls_environ_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    keys = ("wsgi.url_scheme", "HTTPS", "SSL_PROTOCOL")
    body = " ".join(str(environ.get(key)) for key in keys).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def tls_get(server: Any, cert: str, path: str = "/") -> bytes:
    context = ssl.create_default_context(cafile=cert)
    raw = socket.create_connection(server.bound_addr, timeout=TIMEOUT)
    with contextlib.closing(context.wrap_socket(raw, server_hostname="localhost")) as sock:
        sock.sendall(build_request("GET", path, headers=[("Connection", "close")]))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_silent_tls_client_does_not_hold_up_the_others(
    bus: Bus,  # noqa: F811
    certificate: tuple[str, str],  # noqa: F811
) -> None:
    """The handshake happens as the client's bytes come, not on the polling thread
    waiting for them: clients that connect and say nothing stall nobody."""
    cert, key = certificate
    server = make_server(bus, ssl_certificate=cert, ssl_private_key=key, socket_timeout=5)
    server.app = tls_environ_app
    bus.start()
    silent = [socket.create_connection(server.bound_addr, timeout=TIMEOUT) for _ in range(3)]
    try:
        started = time.monotonic()
        received = tls_get(server, cert)
        assert time.monotonic() - started < 1.0
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        scheme, https, tls_protocol = received.rpartition(b"\r\n\r\n")[2].split()
        assert (scheme, https) == (b"https", b"on") and tls_protocol.startswith(b"TLSv1")
    finally:
        for sock in silent:
            sock.close()


def test_plain_http_on_the_tls_port_gets_a_400(
    bus: Bus,  # noqa: F811
    certificate: tuple[str, str],  # noqa: F811
) -> None:
    cert, key = certificate
    server = make_server(bus, ssl_certificate=cert, ssl_private_key=key)
    bus.start()
    status, head = refused(server.bound_addr[1], build_request("GET", "/"))  # type: ignore[index]
    assert status == 400
    assert tls_get(server, cert).startswith(b"HTTP/1.1 200 OK\r\n")  # still serving


def test_a_first_chunk_longer_than_the_content_length_is_a_500(port: int) -> None:
    """Nothing has gone out yet: the client gets a 500, not a body cut short. Once the
    head is out, the rest is cut to what it announced and the connection serves on."""
    with Conn(port) as conn:
        conn.send(build_request("GET", "/overlong"))
        assert conn.reply().status == 500
    with Conn(port) as conn:
        conn.send(build_request("GET", "/overlong-later") + build_request("GET", "/x"))
        cut = conn.reply()
        assert (cut.status, cut.body) == (200, b"12345")
        assert conn.reply().body == b"GET /x? -"
