"""Responses end to end: body types, streaming, HEAD, cookies, status and keep-alive.

Each request goes over loopback through cheroot; where CherryPy 18 defines
the framing or the headers, the same handler served by CherryPy is the
reference.
"""

from __future__ import annotations

import email.utils
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import (
    Conn,
    alive_root,
    app_and_reference,
    assert_alive,
    build_request,
    chunked,
    exchange,
    get,
)

import morello

STREAMED = [b"first,", b"second,", b"third"]


def build(cp: Any) -> tuple[Any, dict[str, Any]]:
    """The app under test, for morello and for the CherryPy reference alike."""

    def chunks() -> Iterator[bytes]:
        yield from STREAMED

    def with_status(status: Any) -> Any:
        def handler(self: Any) -> str:
            cp.response.status = status
            return "custom status"

        return cp.expose(handler)

    class Root(alive_root(cp)):
        @cp.expose
        def text(self) -> str:
            return "héllo"

        @cp.expose
        def raw_bytes(self) -> bytes:
            cp.response.headers["Content-Type"] = "application/octet-stream"
            return b"\x00\x01\xff"

        @cp.expose
        def html_bytes(self) -> bytes:
            return b"<p>bytes</p>"

        @cp.expose
        def text_list(self) -> list[Any]:
            return ["a", "é", b"c"]

        @cp.expose
        def streamed(self) -> Iterator[bytes]:
            return chunks()

        streamed._cp_config = {"response.stream": True}

        @cp.expose
        def generated(self) -> Iterator[bytes]:
            return chunks()

        @cp.expose
        def generated_text(self) -> Iterator[str]:
            yield "gén"
            yield "érated"

        @cp.expose
        def file_body(self) -> io.BytesIO:
            cp.response.headers["Content-Type"] = "text/plain"
            return io.BytesIO(b"line 1\nline 2\n" * 1000)

        @cp.expose
        def nothing(self) -> None:
            return None

        @cp.expose
        def cookies(self) -> str:
            cookie = cp.response.cookie
            cookie["flavour"] = "chocolate"
            cookie["flavour"]["path"] = "/shop"
            cookie["flavour"]["max-age"] = 3600
            cookie["flavour"]["httponly"] = True
            cookie["flavour"]["secure"] = True
            cookie["flavour"]["samesite"] = "Lax"
            cookie["plain"] = "1"
            return "cookies set"

        @cp.expose
        def injected(self, value: str) -> str:
            cp.response.headers["X-Echo"] = value
            cp.response.cookie["c"] = "v"
            cp.response.cookie["c"]["path"] = value
            return "injected"

        @cp.expose
        def unicode_header(self) -> str:
            cp.response.headers["X-Name"] = "café ☕"
            return "unicode"

        @cp.expose
        def bytes_header(self) -> str:
            cp.response.headers["X-Bytes"] = b"given as bytes"
            return "bytes header"

        def append_pairs() -> None:
            # After finalize, as CherryPy apps do: pairs of bytes.
            cp.serving.response.header_list.extend(
                [(b"WWW-Authenticate", b"Negotiate"), (b"WWW-Authenticate", b'Basic realm="x"')]
            )

        @cp.expose
        def appended_pairs(self) -> str:
            return "appended"

        appended_pairs._cp_config = {"hooks.on_end_resource": append_pairs}

        @cp.expose
        def ignore_body(self) -> str:
            return "ignored"

        ignore_body._cp_config = {"request.process_request_body": False}

        @cp.expose
        def read_cookies(self) -> str:
            jar = cp.request.cookie
            return ",".join(f"{name}={jar[name].value}" for name in sorted(jar))

        status_int = with_status(201)
        status_reason = with_status("299 Very Custom")
        status_code_str = with_status("202")
        status_invalid = with_status("abc")
        status_out_of_range = with_status(600)

        @cp.expose
        def no_content(self) -> str:
            cp.response.status = 204
            return "dropped"

        @cp.expose
        def not_modified(self) -> str:
            cp.response.status = 304
            return "dropped"

        @cp.expose
        def counter(self, n: str = "0") -> str:
            return f"request {n}"

    return Root(), {}


app, reference = app_and_reference(build)


def both(app: int, reference: int, path: str, method: str = "GET") -> tuple[Any, Any]:
    request = build_request(method, path)
    return exchange(app, request, method), exchange(reference, request, method)


# -- body types -----------------------------------------------------------


def test_str_is_encoded_by_the_encode_tool(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/text")
    assert ours.status == 200
    assert ours.body == "héllo".encode()
    assert ours.header("Content-Type") == "text/html;charset=utf-8"
    assert ours.header("Content-Length") == str(len("héllo".encode()))
    assert (theirs.body, theirs.header("Content-Type")) == (ours.body, ours.header("Content-Type"))


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/raw_bytes", b"\x00\x01\xff", "application/octet-stream"),
        ("/html_bytes", b"<p>bytes</p>", "text/html;charset=utf-8"),
        ("/text_list", "aéc".encode(), "text/html;charset=utf-8"),
        ("/generated", b"".join(STREAMED), "text/html;charset=utf-8"),
        ("/generated_text", "générated".encode(), "text/html;charset=utf-8"),
        ("/file_body", b"line 1\nline 2\n" * 1000, "text/plain;charset=utf-8"),
        ("/nothing", b"", "text/html;charset=utf-8"),
    ],
)
def test_buffered_bodies_get_a_content_length(
    app: int, reference: int, path: str, body: bytes, content_type: str
) -> None:
    ours, theirs = both(app, reference, path)
    assert ours.status == 200
    assert ours.body == body
    assert ours.header("Content-Length") == str(len(body))
    assert ours.header("Transfer-Encoding") is None
    assert ours.header("Content-Type") == content_type
    assert (theirs.status, theirs.body) == (ours.status, ours.body)
    assert theirs.header("Content-Type") == ours.header("Content-Type")
    assert theirs.header("Content-Length") == ours.header("Content-Length")


def test_streamed_generator_is_chunked_on_http11(app: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", "/streamed", headers=[("Connection", "close")]))
        raw = conn.read_until_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert body == b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in STREAMED) + b"0\r\n\r\n"


def test_streamed_generator_keeps_the_connection_on_http11(app: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", "/streamed"))
        first = conn.reply()
        conn.send(build_request("GET", "/counter?n=2"))
        second = conn.reply()
    assert first.body == b"".join(STREAMED)
    assert (second.status, second.body) == (200, b"request 2")


def test_streamed_generator_on_http10_ends_by_closing(app: int, reference: int) -> None:
    request = build_request("GET", "/streamed", protocol="HTTP/1.0")
    for port in (app, reference):
        with Conn(port) as conn:
            conn.send(request)
            raw = conn.read_until_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split(b" ")[1] == b"200"
        assert b"Content-Length" not in head
        assert b"Transfer-Encoding" not in head
        assert body == b"".join(STREAMED)


# -- HEAD -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/text", "/generated", "/file_body"])
def test_head_has_the_get_headers_and_no_body(app: int, reference: int, path: str) -> None:
    get_reply = exchange(app, build_request("GET", path))
    with Conn(app) as conn:
        # A second request on the same connection proves no body bytes followed.
        conn.send(build_request("HEAD", path) + build_request("GET", "/counter?n=9"))
        head_reply = conn.reply("HEAD")
        after = conn.reply()
    assert head_reply.status == 200
    assert head_reply.body == b""
    assert head_reply.header("Content-Length") == get_reply.header("Content-Length")
    assert head_reply.header("Content-Type") == get_reply.header("Content-Type")
    assert after.body == b"request 9"
    theirs = exchange(reference, build_request("HEAD", path), "HEAD")
    assert theirs.header("Content-Length") == head_reply.header("Content-Length")


# -- cookies --------------------------------------------------------------


def test_response_cookies_become_set_cookie_headers(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/cookies")
    cookies = ours.headers.get_all("Set-Cookie")
    assert sorted(cookies) == [
        "flavour=chocolate; HttpOnly; Max-Age=3600; Path=/shop; SameSite=Lax; Secure",
        "plain=1",
    ]
    assert sorted(theirs.headers.get_all("Set-Cookie")) == sorted(cookies)


def test_request_cookies_are_parsed(app: int) -> None:
    request = build_request("GET", "/read_cookies", headers=[("Cookie", 'a=1; b="two words"; c=3')])
    assert exchange(app, request).body == b"a=1,b=two words,c=3"


def test_malformed_cookie_header_gives_400(app: int, reference: int) -> None:
    request = build_request("GET", "/read_cookies", headers=[("Cookie", "a,b=1")])
    ours, theirs = exchange(app, request), exchange(reference, request)
    assert (ours.status, theirs.status) == (400, 400)
    assert b"Illegal key" in ours.body
    assert_alive(app)


def test_control_characters_cannot_split_response_headers(app: int, reference: int) -> None:
    request = build_request("GET", "/injected?value=a%0D%0AX-Evil:%201%00")
    ours, theirs = exchange(app, request), exchange(reference, request)
    assert ours.status == 200
    assert ours.header("X-Evil") is None
    assert ours.header("X-Echo") == theirs.header("X-Echo") == "aX-Evil: 1"
    # CherryPy lets a cookie attribute through as it is, starting a header of its own.
    assert ours.headers.get_all("Set-Cookie") == ["c=v; Path=aX-Evil: 1"]
    assert theirs.header("X-Evil") is not None


def test_non_latin1_header_values_become_rfc2047_words(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/unicode_header")
    assert ours.header("X-Name") == "=?utf-8?b?Y2Fmw6kg4piV?="
    assert theirs.header("X-Name") == ours.header("X-Name")


def test_bytes_header_values_go_out_as_text(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/bytes_header")
    assert ours.status == 200
    assert ours.header("X-Bytes") == theirs.header("X-Bytes") == "given as bytes"


def test_bytes_pairs_added_to_header_list_after_finalize(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/appended_pairs")
    assert ours.status == 200
    assert ours.body == b"appended"
    assert ours.headers.get_all("WWW-Authenticate") == theirs.headers.get_all("WWW-Authenticate")
    assert ours.headers.get_all("WWW-Authenticate") == ["Negotiate", 'Basic realm="x"']


# -- standard headers -----------------------------------------------------


def test_date_and_server_headers(app: int) -> None:
    before = time.time()
    reply = get(app, "/text")
    date = email.utils.parsedate_to_datetime(reply.header("Date"))
    assert reply.header("Date").endswith(" GMT")
    assert before - 2 <= date.timestamp() <= time.time() + 1
    assert reply.header("Server") == f"morello/{morello.__version__}"
    assert len(reply.headers.get_all("Server")) == 1
    # Error responses carry them too.
    missing = get(app, "/nowhere")
    assert missing.status == 404
    assert missing.header("Date") and missing.header("Server") == reply.header("Server")


# -- status ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/status_int", 201, "Created"),
        ("/status_reason", 299, "Very Custom"),
        ("/status_code_str", 202, "Accepted"),
        ("/status_invalid", 500, "Internal Server Error"),
        ("/status_out_of_range", 500, "Internal Server Error"),
    ],
)
def test_manual_status(app: int, reference: int, path: str, status: int, reason: str) -> None:
    ours, theirs = both(app, reference, path)
    assert (ours.status, ours.reason) == (status, reason)
    assert (theirs.status, theirs.reason) == (status, reason)
    if status == 500:
        assert b"custom status" not in ours.body


@pytest.mark.parametrize(("path", "status"), [("/no_content", 204), ("/not_modified", 304)])
def test_bodiless_statuses_send_no_body(app: int, path: str, status: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", path) + build_request("GET", "/counter?n=5"))
        reply = conn.reply()
        after = conn.reply()
    assert reply.status == status
    assert reply.body == b""
    assert reply.header("Content-Length") is None
    # The next response starts right where the headers ended.
    assert after.body == b"request 5"


# -- connections ----------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(app: int) -> None:
    with Conn(app) as conn:
        replies = []
        for n in range(5):
            conn.send(build_request("GET", f"/counter?n={n}"))
            replies.append(conn.reply())
        # Pipelined: two requests in one write.
        conn.send(build_request("GET", "/counter?n=5") + build_request("GET", "/counter?n=6"))
        replies += [conn.reply(), conn.reply()]
    assert [r.body for r in replies] == [f"request {n}".encode() for n in range(7)]
    assert not any(r.will_close for r in replies)


def test_http10_closes_unless_keep_alive_is_asked_for(app: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", "/counter?n=1", protocol="HTTP/1.0"))
        reply = conn.reply()
        assert reply.body == b"request 1"
        # cheroot's status line says HTTP/1.1 but no Connection header: it just closes.
        assert reply.header("Connection") is None
        assert conn.read_until_closed() == b""
    with Conn(app) as conn:
        request = build_request(
            "GET", "/counter?n=2", headers=[("Connection", "Keep-Alive")], protocol="HTTP/1.0"
        )
        conn.send(request)
        reply = conn.reply()
        assert reply.header("Connection") == "Keep-Alive"
        conn.send(
            build_request(
                "GET", "/counter?n=3", headers=[("Connection", "Keep-Alive")], protocol="HTTP/1.0"
            )
        )
        assert conn.reply().body == b"request 3"


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        ("Content-Length", b"GET /counter?n=666 HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        # cheroot drains neither this nor its trailing CRLF itself; CherryPy
        # then reads the rest of the body as the next request (400).
        ("chunked", chunked(b"GET /counter?n=666 HTTP/1.1\r\n", b"Host: localhost\r\n\r\n")),
    ],
)
def test_unread_request_body_never_becomes_the_next_request(
    app: int, framing: str, body: bytes
) -> None:
    headers = [("Content-Type", "text/plain")]
    if framing == "chunked":
        request = build_request(
            "POST", "/ignore_body", body, headers + [("Transfer-Encoding", "chunked")], length=False
        )
    else:
        request = build_request("POST", "/ignore_body", body, headers)
    with Conn(app) as conn:
        conn.send(request + build_request("GET", "/counter?n=2"))
        first, second = conn.reply(), conn.reply()
    assert (first.status, first.body) == (200, b"ignored")
    assert (second.status, second.body) == (200, b"request 2")


def test_unread_malformed_chunked_body_closes_the_connection(app: int) -> None:
    body = b"zz\r\nGET /counter?n=666 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    headers = [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")]
    with Conn(app) as conn:
        conn.send(build_request("POST", "/ignore_body", body, headers, length=False))
        reply = conn.reply()
        rest = conn.read_until_closed()
    assert (reply.status, reply.body, reply.header("Connection")) == (200, b"ignored", "close")
    assert rest == b""


def test_connection_close_is_honoured(app: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", "/counter?n=1", headers=[("Connection", "close")]))
        reply = conn.reply()
        assert reply.will_close and reply.body == b"request 1"
        assert conn.read_until_closed() == b""
