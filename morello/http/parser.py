"""Request heads parsed by llhttp (through httptools), then held to morello's framing rules.

llhttp checks the request line and the field lines in C, strictly by
default: no obs-fold, no bare CR or LF, no control characters in values,
no whitespace before a colon, no signed, repeated or non-decimal
``Content-Length``, no ``Transfer-Encoding`` beside ``Content-Length``.
:class:`HeadParser` then applies the rules llhttp does not have
(:mod:`morello.http.framing`: one ``Host``, names with ``_`` dropped,
``Transfer-Encoding`` only in HTTP/1.1, HTTP versions 1.0 and 1.1 only,
single spaces in the request line) and decides what the connection does
with the body. A head llhttp refuses goes to cheroot's strict reader
(:class:`Unparsed`), so that refusals say what they always said.

Only the head goes through llhttp: the server reads bodies itself
(:class:`~morello.http.framing.ChunkedBody` for chunked ones), so the
chunk grammar is morello's, the same on every request path.
"""

from __future__ import annotations

import httptools

from morello.http import framing
from morello.http.target import TargetError, split_target

__all__ = ["HeadError", "HeadParser", "RequestHead", "Unparsed", "checked_head"]

BAD_REQUEST = "400 Bad Request"


class HeadError(Exception):
    """A head the server refuses: answer ``status`` (with ``message``) and close."""

    def __init__(self, status: str, message: str = "") -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class Unparsed(Exception):
    """A head llhttp refuses or reads differently from morello's rules.

    Such heads are rare and odd (a method llhttp does not know, DEL in a
    field value, HTTP/0.9, a malformed line): the connection has them
    re-read by cheroot's strict request reader, which refuses them with
    the same answer as ever, or accepts them.
    """


class RequestHead:
    """One parsed and checked request head."""

    __slots__ = (
        "chunked",
        "close",
        "expect_continue",
        "fields",
        "http11",
        "length",
        "method",
        "path",
        "protocol",
        "query",
        "scheme",
        "target",
    )

    method: bytes
    #: The request target as sent, and its parts (see :func:`split_target`).
    target: bytes
    scheme: bytes
    path: bytes
    query: bytes
    #: ``HTTP/1.0`` or ``HTTP/1.1``, as the client said.
    protocol: str
    #: Whether both ends speak HTTP/1.1 (chunked responses, persistent by default).
    http11: bool
    #: cheroot's header dict: title-cased names, repeats joined or refused.
    fields: dict[bytes, bytes]
    #: Content-Length (0 without one); ``chunked`` for a chunked body.
    length: int
    chunked: bool
    #: Whether the client asked to close the connection after this request.
    close: bool
    #: Whether the client waits for ``100 Continue`` before sending the body.
    expect_continue: bool


class HeadParser:
    """Parses the heads of one connection, reusing its llhttp parser while it can."""

    def __init__(self, server_http11: bool) -> None:
        self.server_http11 = server_http11
        self._parser: httptools.HttpRequestParser | None = None
        self._url = b""
        self._pairs: list[tuple[bytes, bytes]] = []
        self._complete = False

    # -- llhttp callbacks ------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._pairs.append((name, value))

    def on_message_complete(self) -> None:
        self._complete = True

    # -- parsing ---------------------------------------------------------------

    def parse(self, head: bytes, max_body: int) -> RequestHead:
        """Parse one complete head (blank line included).

        Raises :class:`HeadError` for a head the server refuses, and
        :class:`Unparsed` for one llhttp does not take (see there).
        ``max_body`` (0: no limit) refuses a longer Content-Length with 413.
        """
        try:
            method = self._run(head)
        except httptools.HttpParserError:
            raise Unparsed from None
        version = self._parser.get_http_version()  # type: ignore[union-attr]
        if version not in ("1.1", "1.0") or head.count(b" ", 0, head.find(b"\r\n")) != 2:
            raise Unparsed  # llhttp takes HTTP/0.9 and runs of spaces in the request line
        http11 = version == "1.1" and self.server_http11
        fields: dict[bytes, bytes] = {}
        try:
            for name, value in self._pairs:
                framing.add_field(fields, name, value.strip(b" \t"))
            framing.check_body_framing(fields, http11)
        except ValueError as exc:
            raise HeadError(BAD_REQUEST, str(exc)) from None
        return checked_head(method, self._url, "HTTP/" + version, http11, fields, max_body)

    def _run(self, head: bytes) -> bytes:
        self._url = b""
        self._pairs = []
        parser = self._parser
        if parser is None or not self._complete:
            # A parser whose message ended can take the next one; any other
            # (a body it never saw, an error, an upgrade) cannot.
            parser = self._parser = httptools.HttpRequestParser(self)
        self._complete = False
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass  # CONNECT, or Upgrade: the head is complete all the same
        return parser.get_method()


def checked_head(
    method: bytes,
    target: bytes,
    protocol: str,
    http11: bool,
    fields: dict[bytes, bytes],
    max_body: int,
) -> RequestHead:
    """A :class:`RequestHead` from a parsed request line and fields whose framing is checked.

    Raises :class:`HeadError` for a target the server refuses (400), a
    transfer coding it does not implement (501) or a body over ``max_body``
    bytes (413).
    """
    req = RequestHead()
    req.method = method
    req.target = target
    req.protocol = protocol
    req.http11 = http11
    req.fields = fields
    try:
        req.scheme, req.path, req.query = split_target(method, target)
    except TargetError as exc:
        raise HeadError(BAD_REQUEST, str(exc)) from None
    coding = fields.get(b"Transfer-Encoding")
    req.chunked = coding is not None
    if req.chunked and coding.lower() != b"chunked":  # type: ignore[union-attr]
        # check_body_framing() let through codings before the final chunked.
        raise HeadError("501 Unimplemented")
    req.length = int(fields.get(b"Content-Length") or 0)
    if max_body and req.length > max_body:
        raise HeadError(
            "413 Request Entity Too Large",
            "The entity sent with the request exceeds the maximum allowed bytes.",
        )
    # Exactly cheroot's rules (case and all), so that both paths keep the
    # same connections open.
    option = fields.get(b"Connection")
    req.close = option == b"close" if http11 else option != b"Keep-Alive"
    expect = fields.get(b"Expect")
    req.expect_continue = expect is not None and expect.lower() == b"100-continue"
    return req
