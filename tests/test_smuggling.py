"""Request smuggling: requests whose framing is ambiguous, sent as raw bytes.

Every case hides a second request (``GET /hidden``) where a server with a
lenient parser, or a proxy in front of it, would find one. Each must get a
400 (501 for a transfer coding the server does not implement) with
``Connection: close``, the server must really close the connection, the
hidden request must never reach the application, and the server must go on
serving. The corpus runs against a real ``morello serve`` master with two
workers and against the one-process server.

Header names with underscores are dropped, so that they cannot stand in for
the dashed ones in the WSGI environ (checked through ``tools.proxy``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import TESTS_DIR, Conn, assert_alive, status_of, subprocess_server
from prefork_support import running_master
from smuggling_app import HITS_ENV

import morello

HIDDEN = b"GET /hidden HTTP/1.1\r\nHost: localhost\r\n\r\n"
FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"


def post(headers: bytes, body: bytes, protocol: bytes = b"HTTP/1.1") -> bytes:
    """A form POST to /echo with ``headers`` (each CRLF-terminated), then ``body``."""
    return b"POST /echo " + protocol + b"\r\nHost: localhost\r\n" + FORM + headers + b"\r\n" + body


def chunked_post(body: bytes, headers: bytes = b"") -> bytes:
    return post(headers + b"Transfer-Encoding: chunked\r\n", body)


def get_with(headers: bytes, line: bytes = b"GET /echo HTTP/1.1") -> bytes:
    """A GET whose header section is exactly ``headers`` (the Host header included)."""
    return line + b"\r\n" + headers + b"\r\n"


HOST = b"Host: localhost\r\n"

#: name -> (request bytes, the hidden request following them, expected status)
REFUSED = {
    # -- body framing
    "content-length-and-chunked": post(
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"
    ),
    "chunked-and-content-length": post(
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"
    ),
    "space-before-colon": post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    "folded-transfer-encoding": post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
    "chunked-twice": chunked_post(b"0\r\n\r\n", b"Transfer-Encoding: chunked\r\n"),
    "chunked-not-last": post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
    "only-gzip": post(b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"),
    "empty-transfer-encoding": post(b"Transfer-Encoding: \r\n", b""),
    "http10-keep-alive-chunked": post(
        b"Connection: Keep-Alive\r\nTransfer-Encoding: chunked\r\n", b"", b"HTTP/1.0"
    ),
    "two-content-lengths": post(b"Content-Length: 0\r\nContent-Length: 0\r\n", b""),
    "signed-content-length": post(b"Content-Length: +0\r\n", b""),
    "negative-content-length": post(b"Content-Length: -1\r\n", b""),
    "hex-content-length": post(b"Content-Length: 0x0\r\n", b""),
    # -- chunk sizes and extensions
    "chunk-size-negative": chunked_post(b"-1\r\n\r\n"),
    "chunk-size-0x": chunked_post(b"0x5\r\na=123\r\n0\r\n\r\n"),
    "chunk-size-plus": chunked_post(b"+5\r\na=123\r\n0\r\n\r\n"),
    "chunk-size-underscore": chunked_post(b"0_5\r\na=123\r\n0\r\n\r\n"),
    "chunk-size-spaces": chunked_post(b" 5 \r\na=123\r\n0\r\n\r\n"),
    "chunk-size-too-long": chunked_post(b"0" * 20 + b"5\r\na=123\r\n0\r\n\r\n"),
    "chunk-size-bare-lf": chunked_post(b"5\na=123\r\n0\r\n\r\n"),
    "chunk-size-empty": chunked_post(b"\r\na=123\r\n0\r\n\r\n"),
    "chunk-ext-without-name": chunked_post(b"5;=x\r\na=123\r\n0\r\n\r\n"),
    "chunk-ext-bare-cr": chunked_post(b"5;a=b\rc\r\na=123\r\n0\r\n\r\n"),
    "chunk-data-too-long": chunked_post(b"1\r\na=123\r\n0\r\n\r\n"),
    # -- trailers
    "trailer-request-line": chunked_post(b"0\r\n" + HIDDEN),
    "trailer-folded": chunked_post(b"0\r\nX-A: b\r\n c\r\n\r\n"),
    "trailer-bare-cr": chunked_post(b"0\r\nX-A: b\rc\r\n\r\n"),
    # -- header grammar
    "folded-first-header": get_with(b" X-Folded: a\r\n" + HOST),
    "bare-cr-in-value": get_with(HOST + b"X-Evil: a\rb\r\n"),
    "nul-in-value": get_with(HOST + b"X-Evil: a\x00b\r\n"),
    "control-char-in-value": get_with(HOST + b"X-Evil: a\x01b\r\n"),
    "space-in-name": get_with(HOST + b"X Evil: a\r\n"),
    "empty-name": get_with(HOST + b": a\r\n"),
    "tab-before-colon": get_with(HOST + b"X-Evil\t: a\r\n"),
    "no-colon": get_with(HOST + b"X-Evil a\r\n"),
    "bare-lf-line-end": get_with(HOST + b"X-Evil: a\n"),
    "two-hosts": get_with(HOST + b"Host: evil.example\r\n"),
    "method-not-a-token": get_with(HOST, b"G@T /echo HTTP/1.1"),
    "method-with-brace": get_with(HOST, b"GET{} /echo HTTP/1.1"),
}

#: Refused with 501: the coding is not implemented (chunked is still last).
NOT_IMPLEMENTED = {
    "gzip-then-chunked": post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
}


@dataclass
class Target:
    """A running server under test."""

    port: int
    hits_path: Path

    def hits(self) -> int:
        """How many times ``/hidden`` was served."""
        return self.hits_path.read_text().count("hit\n") if self.hits_path.exists() else 0


@pytest.fixture(scope="module", params=["morello-serve", "one-process"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp(request.param)
    hits = directory / "hits.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HITS_ENV, str(hits))  # both servers run in child processes
        if request.param == "morello-serve":
            shutil.copy(Path(TESTS_DIR) / "smuggling_app.py", directory)
            with running_master(directory, app="smuggling_app:root") as master:
                yield Target(master.port, hits)
        else:
            with subprocess_server("smuggling_app:build", "morello") as port:
                yield Target(port, hits)


def refused_and_closed(target: Target, data: bytes) -> bytes:
    """Send ``data`` then the hidden request; return all bytes up to the server's close."""
    with Conn(target.port) as conn:
        conn.send(data + HIDDEN)
        # Without a half-close: the server must close on its own (the read
        # times out, failing the test, if it keeps the connection open).
        return conn.read_until_closed()


def assert_refused(target: Target, data: bytes, status: int) -> None:
    before = target.hits()
    raw = refused_and_closed(target, data)
    head = raw.partition(b"\r\n\r\n")[0].lower()
    assert status_of(raw) == status, raw
    assert b"\r\nconnection: close" in head, raw
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    assert target.hits() == before
    assert_alive(target.port)


@pytest.mark.parametrize("name", REFUSED)
def test_ambiguous_request_is_refused_and_closed(target: Target, name: str) -> None:
    assert_refused(target, REFUSED[name], 400)


@pytest.mark.parametrize("name", NOT_IMPLEMENTED)
def test_unknown_transfer_coding_is_refused_and_closed(target: Target, name: str) -> None:
    assert_refused(target, NOT_IMPLEMENTED[name], 501)


#: Well-formed chunked bodies -> the field ``a`` they carry. Each is answered,
#: and the connection stays usable.
ACCEPTED = {
    b"5\r\na=123\r\n0\r\n\r\n": "123",
    b"2\r\na=\r\nA\r\n1234567890\r\n0\r\n\r\n": "1234567890",
    b'5 ; name ; n="q \\" v"\t;x=y\r\na=123\r\n0;last\r\n\r\n': "123",
    b"5\r\na=123\r\n0\r\nGET: /hidden HTTP/1.1\r\n\r\n": "123",
    b"5\r\na=123\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n": "123",
}


@pytest.mark.parametrize("body", ACCEPTED)
def test_chunked_body_and_trailers_end_where_they_should(target: Target, body: bytes) -> None:
    # Trailer fields are read and dropped: never taken for the next request.
    before = target.hits()
    with Conn(target.port) as conn:
        conn.send(chunked_post(body))
        reply = conn.reply("POST")
        assert (reply.status, reply.body) == (200, repr([("a", ACCEPTED[body])]).encode())
        assert not reply.will_close
        conn.send(get_with(HOST + b"Connection: close\r\n", b"GET / HTTP/1.1"))
        assert conn.reply().body == b"alive"
    assert target.hits() == before


# -- header names with underscores --------------------------------------------


class ProxiedRoot:
    @morello.expose
    def index(self) -> str:
        return f"{morello.request.base} {morello.request.remote.ip}"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "X-Forwarded-For": "198.51.100.7",
                "X-Forwarded-Host": "www.example.org",
                "X_Forwarded_For": "6.6.6.6",
                "X_Forwarded_Host": "evil.example",
            },
            "http://www.example.org 198.51.100.7",
        ),
        (
            {"X_Forwarded_For": "6.6.6.6", "X_Forwarded_Host": "evil.example"},
            "http://127.0.0.1:{port} 127.0.0.1",
        ),
    ],
)
def test_underscore_headers_cannot_spoof_forwarded_ones(
    serve: Any, headers: dict[str, str], expected: str
) -> None:
    # A WSGI environ spells X_Forwarded_For and X-Forwarded-For alike: the
    # underscore one, sent last, would win. Such headers are dropped.
    client = serve(ProxiedRoot(), config={"/": {"tools.proxy.on": True}})
    assert client.get("/", headers).text == expected.format(port=client.port)
