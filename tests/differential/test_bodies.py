"""Handler return values, streaming, HEAD and Accept-Charset negotiation."""

import pytest

APP = "bodies"

PAGES = [
    "/text",
    "/raw",
    "/empty_text",
    "/none",
    "/text_list",
    "/bytes_list",
    "/mixed_list",
    "/generator",
    "/text_tuple",
    "/file_like",
    "/content_type",
    "/headers",
    "/length_set",
    "/stream/",
    "/stream/bytes_chunks",
    "/stream/with_length",
    "/stream/text",
    "/stream/listed",
    "/stream/empty",
]


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])
def test_bodies(compare, path, protocol):
    compare("GET", path, protocol=protocol)


@pytest.mark.parametrize("path", PAGES)
def test_head(compare, path):
    reply = compare("HEAD", path)
    assert reply.body == b""


def test_number_is_an_error(compare):
    assert compare("GET", "/number").status == 500
    assert compare("HEAD", "/number", framework_written=True).status == 500


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])
def test_stream_failing_before_first_chunk(compare, protocol):
    # Nothing was sent yet: the client still gets the bare 500.
    assert compare("GET", "/stream/fails_first", protocol=protocol).status == 500


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])
def test_stream_failing_after_first_chunk(compare, protocol):
    # Headers and a chunk are out: the connection is cut short (which an
    # HTTP/1.0 client, reading up to the close, cannot tell from the end).
    reply = compare("GET", "/stream/fails_later", protocol=protocol)
    truncated = "IncompleteRead" if protocol == "HTTP/1.1" else None
    assert (reply.status, reply.error) == (200, truncated)


def test_server_survives_failed_streams(compare):
    assert compare("GET", "/stream/").status == 200


def test_streaming_is_chunked(compare):
    reply = compare("GET", "/stream/")
    assert reply.header("Transfer-Encoding") == "chunked"
    assert reply.body == b"chunk 0\nchunk 1\nchunk 2\n"


CHARSET_PAGES = [
    "/charsets/",
    "/charsets/latin",
    "/charsets/forced",
    "/charsets/utf16",
    "/charsets/plain",
    "/charsets/json",
    "/charsets/charset_given",
    "/charsets/no_charset",
    "/charsets/any_type",
    "/charsets/replaced",
    "/stream/text",
]


@pytest.mark.parametrize("path", CHARSET_PAGES)
@pytest.mark.parametrize(
    "accept",
    [
        None,
        "utf-8",
        "iso-8859-1",
        "ISO-8859-1;q=1, utf-8;q=0.5",
        "utf-8;q=0, iso-8859-1;q=0.5",
        "ascii",
        "ascii, *;q=0.1",
        "*",
        "*;q=0",
        "utf-16, utf-8",
        "unknown-charset",
        "iso-8859-1;q=0",
        "",
    ],
)
def test_accept_charset(compare, path, accept):
    compare("GET", path, {"Accept-Charset": accept})


def test_not_acceptable(compare):
    reply = compare("GET", "/charsets/", {"Accept-Charset": "ascii"})
    assert reply.status == 406


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Custom": "a", "x-custom": "b"},
        {"Content-Type": "text/plain", "Accept": "text/*;q=0.5, */*"},
        {"Cookie": "a=1; b=2"},
        {"Referer": "http://www.example.com/caf\u00e9"},
        {"X-Folded": "one\r\n two"},
    ],
)
def test_request_headers(compare, headers):
    assert compare("GET", "/echo_headers?x=1", headers).status == 200


def test_request_body(compare):
    assert compare("POST", "/echo_body", {"Content-Type": "text/plain"}, "some body").status == 200


def test_chunked_request_body(compare):
    body = "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    headers = {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}
    assert compare("POST", "/echo_body", headers, body).body == b"Wikipedia"
