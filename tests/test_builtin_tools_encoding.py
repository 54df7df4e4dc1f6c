"""The gzip, json_in/json_out and expires tools over real HTTP.

Bad input (malformed JSON, wrong or missing body types, hostile
Accept-Encoding headers) must give a 4xx and leave the server answering.
"""

from __future__ import annotations

import email.utils
import gzip as gzip_module
import http.client
import json
import logging
import socket
import threading
import zlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import morello
from morello.lib import caching_headers, encoding, jsontools
from morello.testing import Client

TEXT = "Forty-two is the answer. " * 40
GZIP = {"Accept-Encoding": "gzip"}


def still_answers(client: Client) -> None:
    """The server keeps serving after a bad request."""
    assert client.get("/").status == 200


# -- gzip helpers ---------------------------------------------------------------------


def test_compress_and_decompress_round_trip() -> None:
    chunks = [b"first chunk ", b"", b"second chunk " * 100]
    compressed = b"".join(encoding.compress(iter(chunks), 9))
    assert encoding.decompress(compressed) == b"".join(chunks)
    assert gzip_module.decompress(compressed) == b"".join(chunks)


def test_compress_with_flush_makes_each_chunk_decodable_on_arrival() -> None:
    stream = encoding.compress(iter([b"one ", b"two ", b"three"]), 5, flush=True)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(next(stream)) == b"one "
    assert decoder.decompress(next(stream)) == b"two "
    assert decoder.decompress(b"".join(stream)) == b"three"


# -- gzip tool ----------------------------------------------------------------------------


class GzipRoot:
    @morello.expose
    def index(self) -> str:
        return TEXT

    @morello.expose
    def image(self) -> bytes:
        morello.response.headers["Content-Type"] = "image/png"
        return TEXT.encode()

    @morello.expose
    def svg(self) -> bytes:
        morello.response.headers["Content-Type"] = "image/svg+xml"
        return TEXT.encode()

    @morello.expose
    def precompressed(self) -> bytes:
        morello.response.headers["Content-Encoding"] = "gzip"
        return gzip_module.compress(TEXT.encode())

    @morello.expose
    def empty(self) -> str:
        return ""

    @morello.expose
    def cached(self) -> str:
        morello.request.cached = True
        return TEXT


@pytest.fixture
def gzip_client(serve: Any) -> Client:
    return serve(
        GzipRoot(),
        config={
            "/": {"tools.gzip.on": True},
            "/svg": {"tools.gzip.mime_types": ["text/*", "image/*+xml"]},
        },
    )


def test_gzip_compresses_for_clients_that_accept_it(gzip_client: Client) -> None:
    response = gzip_client.get("/", GZIP)
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert int(response.headers["Content-Length"]) == len(response.body) < len(TEXT)
    assert encoding.decompress(response.body) == TEXT.encode()


@pytest.mark.parametrize("accept_encoding", [None, "identity", "gzip;q=0", "deflate", "br"])
def test_gzip_sends_identity_when_gzip_is_not_wanted(
    gzip_client: Client, accept_encoding: str | None
) -> None:
    headers = {"Accept-Encoding": accept_encoding} if accept_encoding is not None else {}
    response = gzip_client.get("/", headers)
    assert response.status == 200
    assert "Content-Encoding" not in response.headers
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.body == TEXT.encode()


def test_gzip_star_and_quality_values(gzip_client: Client) -> None:
    assert gzip_client.get("/", {"Accept-Encoding": "*"}).headers.get("Content-Encoding") == "gzip"
    preferred = gzip_client.get("/", {"Accept-Encoding": "identity;q=0.2, x-gzip;q=0.9"})
    assert preferred.headers.get("Content-Encoding") == "gzip"
    identity_first = gzip_client.get("/", {"Accept-Encoding": "gzip;q=0.3, *"})
    assert "Content-Encoding" not in identity_first.headers


@pytest.mark.parametrize("accept_encoding", ["identity;q=0", "*;q=0", "gzip;q=0, identity;q=0"])
def test_gzip_406_when_neither_identity_nor_gzip_is_acceptable(
    gzip_client: Client, accept_encoding: str
) -> None:
    response = gzip_client.get("/", {"Accept-Encoding": accept_encoding})
    assert response.status == 406
    assert b"neither identity nor gzip" in response.body
    still_answers(gzip_client)


@pytest.mark.parametrize(
    "accept_encoding", ["gzip;q=x", "gzip;q=", "identity;q=1e", "br, gzip;q=nan?", "*;q=--1"]
)
def test_gzip_malformed_accept_encoding_is_400(gzip_client: Client, accept_encoding: str) -> None:
    response = gzip_client.get("/", {"Accept-Encoding": accept_encoding})
    assert response.status == 400
    assert b"Malformed" in response.body
    still_answers(gzip_client)


@pytest.mark.parametrize("accept_encoding", [",", " , ,", "gzip;;;", "\x7f", "gzip;q=1;q=0"])
def test_gzip_odd_accept_encoding_never_500(gzip_client: Client, accept_encoding: str) -> None:
    assert gzip_client.get("/", {"Accept-Encoding": accept_encoding}).status in (200, 400, 406)
    still_answers(gzip_client)


def test_gzip_leaves_other_types_and_encoded_bodies_alone(gzip_client: Client) -> None:
    image = gzip_client.get("/image", GZIP)
    assert "Content-Encoding" not in image.headers and image.body == TEXT.encode()
    precompressed = gzip_client.get("/precompressed", GZIP)
    assert precompressed.headers["Content-Encoding"] == "gzip"
    assert gzip_module.decompress(precompressed.body) == TEXT.encode()  # compressed once only
    empty = gzip_client.get("/empty", GZIP)
    assert "Content-Encoding" not in empty.headers and empty.body == b""
    cached = gzip_client.get("/cached", GZIP)
    assert "Content-Encoding" not in cached.headers and cached.body == TEXT.encode()
    # Even refusing identity gets the body as it is when it is encoded already.
    assert gzip_client.get("/precompressed", {"Accept-Encoding": "identity;q=0"}).status == 200


def test_gzip_mime_type_wildcards(gzip_client: Client) -> None:
    svg = gzip_client.get("/svg", GZIP)
    assert svg.headers["Content-Encoding"] == "gzip"
    assert encoding.decompress(svg.body) == TEXT.encode()


def test_gzip_as_decorator_with_level_and_single_mime_type(serve: Any) -> None:
    class Root:
        @morello.expose
        @morello.tools.gzip(compress_level=1, mime_types="application/json")
        def index(self) -> bytes:
            morello.response.headers["Content-Type"] = "application/json"
            return b'{"a": 1}' * 100

    response = serve(Root()).get("/", GZIP)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.body[8] == 4  # XFL: the fastest level
    assert encoding.decompress(response.body) == b'{"a": 1}' * 100


def test_gzip_error_pages_and_head(gzip_client: Client) -> None:
    missing = gzip_client.get("/missing", GZIP)
    assert missing.status == 404
    assert missing.headers["Content-Encoding"] == "gzip"
    assert missing.headers["Vary"] == "Accept-Encoding"
    assert b"404" in encoding.decompress(missing.body)
    head = gzip_client.head("/", GZIP)
    get = gzip_client.get("/", GZIP)
    assert head.body == b"" and head.headers["Content-Length"] == get.headers["Content-Length"]


def test_gzip_compresses_a_stream_as_it_is_produced(serve: Any) -> None:
    release = threading.Event()

    class Root:
        @morello.expose
        def index(self) -> Iterator[bytes]:
            def chunks() -> Iterator[bytes]:
                yield b"before the pause\n"
                release.wait(10)
                yield b"after the pause\n"

            return chunks()

        index._cp_config = {"response.stream": True}  # type: ignore[attr-defined]

    client = serve(Root(), config={"/": {"tools.gzip.on": True}})
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    try:
        conn.request("GET", "/", headers=GZIP)
        response = conn.getresponse()
        assert response.getheader("Content-Encoding") == "gzip"
        assert response.getheader("Transfer-Encoding") == "chunked"
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        received = b""
        while b"\n" not in received:  # the first line arrives while the handler waits
            received += decoder.decompress(response.read1(65536))
        assert received == b"before the pause\n"
        release.set()
        received += decoder.decompress(response.read())
        assert received == b"before the pause\nafter the pause\n"
    finally:
        release.set()
        conn.close()


# -- json -------------------------------------------------------------------------------


class JsonRoot:
    @morello.expose
    def index(self) -> str:
        return "ok"

    @morello.expose
    @morello.tools.json_in()
    @morello.tools.json_out()
    def echo(self) -> Any:
        return {"got": morello.request.json}

    @morello.expose
    @morello.tools.json_out()
    def out(self) -> Any:
        return {"text": "\u00e9", "items": [1, 2.5, None, True]}

    @morello.expose
    @morello.tools.json_out(content_type=None)
    def untyped(self) -> Any:
        return [1]

    @morello.expose
    @morello.tools.json_in(force=False, content_type="application/vnd.x+json")
    def lenient(self, **params: Any) -> str:
        return repr((getattr(morello.request, "json", None), params))


def test_json_out_serializes_and_sets_content_type(serve: Any) -> None:
    client = serve(JsonRoot())
    response = client.get("/out")
    assert response.headers["Content-Type"] == "application/json"
    assert response.body == b'{"text": "\\u00e9", "items": [1, 2.5, null, true]}'
    untyped = client.get("/untyped")
    assert untyped.headers["Content-Type"] == "text/html;charset=utf-8" and untyped.body == b"[1]"


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/javascript", "application/json; charset=utf-8"]
)
def test_json_in_parses_into_request_json(serve: Any, content_type: str) -> None:
    response = serve(JsonRoot()).post(
        "/echo", '{"a": [1, "caf\u00e9"]}', {"Content-Type": content_type}
    )
    assert response.status == 200
    assert json.loads(response.body) == {"got": {"a": [1, "caf\u00e9"]}}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe{}",
        b'{"a": 1,}',
        b"[" * 100_000,
        b'{"a": ' * 50_000,
        b"\x00",
    ],
)
def test_json_in_malformed_bodies_are_400(serve: Any, body: bytes) -> None:
    client = serve(JsonRoot())
    response = client.post("/echo", body, {"Content-Type": "application/json"})
    assert response.status == 400
    assert b"not valid JSON" in response.body
    still_answers(client)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "x"],
)
def test_json_in_refuses_other_types_with_415(serve: Any, content_type: str) -> None:
    client = serve(JsonRoot())
    response = client.post("/echo", "a=1", {"Content-Type": content_type})
    assert response.status == 415
    assert b"application/json, text/javascript" in response.body
    still_answers(client)


def test_json_in_without_content_type_or_length(serve: Any) -> None:
    client = serve(JsonRoot())
    assert client.post("/echo", "[]", {}).status == 415
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
    )
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        sock.sendall(request)
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 411 ")
    still_answers(client)


def test_json_in_without_force_keeps_the_other_processors(serve: Any) -> None:
    client = serve(JsonRoot())
    form = client.post("/lenient", "a=1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert form.body == b"(None, {'a': '1'})"
    vendor = client.post("/lenient", "[3]", {"Content-Type": "application/vnd.x+json"})
    assert vendor.body == b"([3], {})"


def test_json_custom_processor_and_handler(serve: Any) -> None:
    def processor(entity: Any) -> None:
        morello.request.json = {"raw": entity.read().decode()}

    def handler(*args: Any, **kwargs: Any) -> bytes:
        value = morello.request._json_inner_handler(*args, **kwargs)
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    class Root:
        @morello.expose
        def index(self) -> Any:
            return {"b": 1, "a": getattr(morello.request, "json", None)}

    config = {
        "/": {
            "tools.json_in.on": True,
            "tools.json_in.processor": processor,
            "tools.json_out.on": True,
            "tools.json_out.handler": handler,
        }
    }
    client = serve(Root(), config=config)
    response = client.post("/", "not json at all", {"Content-Type": "application/json"})
    assert response.body == b'{"a":{"raw":"not json at all"},"b":1}'
    assert jsontools.json_handler is not handler


def test_json_out_leaves_requests_answered_by_another_tool(serve: Any) -> None:
    def answered() -> None:
        morello.response.body = b"from a tool"
        morello.request.handler = None

    answered.priority = 10  # type: ignore[attr-defined]  # before json_out (30)

    class Root:
        @morello.expose
        @morello.tools.json_out()
        def index(self) -> Any:
            return {"never": "called"}

    client = serve(Root(), config={"/": {"hooks.before_handler": answered}})
    response = client.get("/")
    assert response.body == b"from a tool"
    assert response.headers["Content-Type"] == "text/html"


def test_json_out_with_unserializable_value_is_500(serve: Any) -> None:
    class Root:
        @morello.expose
        @morello.tools.json_out()
        def index(self) -> Any:
            return {1, 2}

    client = serve(Root())
    response = client.get("/")
    assert response.status == 500 and b"not JSON serializable" in response.body


def test_json_and_gzip_together(serve: Any) -> None:
    config = {"/": {"tools.gzip.on": True, "tools.gzip.mime_types": ["application/json"]}}
    response = serve(JsonRoot(), config=config).get("/out", GZIP)
    assert response.headers["Content-Encoding"] == "gzip"
    assert json.loads(encoding.decompress(response.body))["text"] == "\u00e9"


# -- expires ----------------------------------------------------------------------------


class ExpiringRoot:
    @morello.expose
    def index(self) -> str:
        return "plain"

    @morello.expose
    def validated(self) -> str:
        morello.response.headers["ETag"] = '"x"'
        morello.response.headers["Cache-Control"] = "private"
        return "with an ETag"


def expires_at(response: Any) -> float:
    return email.utils.parsedate_to_datetime(response.headers["Expires"]).timestamp()


def test_expires_only_touches_cacheable_responses_unless_forced(serve: Any) -> None:
    client = serve(ExpiringRoot(), config={"/": {"tools.expires.on": True}})
    plain = client.get("/")
    assert not {"Expires", "Pragma", "Cache-Control"} & set(plain.headers)
    validated = client.get("/validated")
    assert validated.headers["Expires"] == caching_headers.LONG_AGO
    assert validated.headers["Pragma"] == "no-cache"
    assert validated.headers["Cache-Control"] == "private"  # kept: not forced


def test_expires_in_the_future_and_forced(serve: Any) -> None:
    config = {
        "/": {"tools.expires.on": True, "tools.expires.secs": 3600, "tools.expires.force": True},
        "/validated": {"tools.expires.secs": 0},
    }
    client = serve(ExpiringRoot(), config=config)
    response = client.get("/")
    date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert 3599 <= expires_at(response) - date <= 3601
    assert "Pragma" not in response.headers
    forced = client.get("/validated")
    assert forced.headers["Cache-Control"] == "no-cache, must-revalidate"
    assert forced.headers["Expires"] == caching_headers.LONG_AGO


def test_expires_takes_a_timedelta(serve: Any) -> None:
    class Root:
        @morello.expose
        @morello.tools.expires(secs=timedelta(days=1, seconds=5), force=True)
        def index(self) -> str:
            return "tomorrow"

    response = serve(Root()).get("/")
    date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert 86404 <= expires_at(response) - date <= 86406


def test_debug_switches_log_the_tools_decisions(serve: Any) -> None:
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("morello.error")
    logger.addHandler(handler)

    class Root(GzipRoot, JsonRoot):
        @morello.expose
        def css(self) -> bytes:
            morello.response.headers["Content-Type"] = "text/css"
            morello.response.headers["ETag"] = '"css"'
            return TEXT.encode()

    config = {
        "/": {
            "tools.gzip.on": True,
            "tools.gzip.mime_types": ["text/*"],
            "tools.gzip.debug": True,
            "tools.expires.on": True,
            "tools.expires.debug": True,
            "tools.json_in.debug": True,
            "tools.json_out.debug": True,
        }
    }
    try:
        client = serve(Root(), config=config)
        css = client.get("/css", GZIP)
        assert encoding.decompress(css.body) == TEXT.encode()
        assert client.get("/image", GZIP).status == 200
        assert client.get("/empty", GZIP).status == 200
        assert client.get("/precompressed", GZIP).status == 200
        assert client.get("/", {"Accept-Encoding": "identity;q=0"}).status == 406
        assert client.post("/echo", "[]", {"Content-Type": "application/json"}).status == 200
    finally:
        logger.removeHandler(handler)
    logged = "\n".join(records)
    assert "TOOLS.GZIP" in logged and "Gzipping" in logged and "Neither gzip" in logged
    assert "TOOLS.EXPIRES" in logged and "TOOLS.JSON" in logged
