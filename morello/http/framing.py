"""Strict HTTP/1.1 message framing (RFC 9112), for both request paths.

Where a request ends must be decided exactly as every proxy in front would
decide it; any leniency lets a client hide a second request in the first
one's body ("request smuggling"). So this module refuses, instead of
guessing:

* header fields that are not ``token ":" OWS value OWS`` (whitespace before
  the colon, empty or odd names, folded lines), control characters (CR, NUL,
  ...) in values, two ``Host`` or two ``Content-Length`` fields, a
  ``Content-Length`` that is not all digits;
* ``Transfer-Encoding`` together with ``Content-Length``, outside HTTP/1.1,
  or without ``chunked`` as its last (and only chunked) coding;
* chunk-size lines that are not ``1*HEXDIG [chunk-ext] CRLF``, and trailer
  fields that are not header fields. The trailer section is read with the
  last chunk (up to :data:`MAX_TRAILER` bytes), so it can never be taken
  for the connection's next request.

Header fields whose names contain ``_`` are dropped: a WSGI environ spells
``X-Forwarded-For`` and ``X_Forwarded_For`` alike, so one could override the
other (nginx and gunicorn drop them too).

Both request paths use these rules: cheroot's line reader feeds
:func:`read_fields`; the lean path, whose header lines llhttp has split and
checked already, feeds :func:`add_field`. Chunked bodies are decoded by
:class:`ChunkedBody` on either path.

Every failure is a ``ValueError`` (the server answers 400 and closes).
"""

from __future__ import annotations

import re
from typing import Any

from cheroot.errors import MaxSizeExceeded
from cheroot.server import ChunkedRFile, comma_separated_headers

__all__ = [
    "ChunkedBody",
    "add_field",
    "check_body_framing",
    "is_token",
    "parse_field_line",
    "read_fields",
]

CRLF = b"\r\n"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
#: Bytes a field value may not contain: controls other than HTAB. (DEL is
#: not allowed either, strictly, but cannot affect framing: it is passed on.)
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f]")
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
#: chunk-size [chunk-ext] (RFC 9112 7.1.1); 16 hex digits cover any 64-bit size.
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})"
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
#: Longest chunk-size line (size and extensions) read before giving up.
MAX_CHUNK_LINE = 4096
#: Largest trailer section, in bytes.
MAX_TRAILER = 16 * 1024

#: Repeating these would make the request ambiguous.
_SINGLE_FIELDS = frozenset({b"Host", b"Content-Length"})
_COMMA_FIELDS = frozenset(comma_separated_headers)


def is_token(value: bytes) -> bool:
    """Whether ``value`` is an RFC 9110 token (a method or a field name)."""
    return _TOKEN_RE.fullmatch(value) is not None


def parse_field_line(line: bytes) -> tuple[bytes, bytes]:
    """Split a CRLF-terminated field line into ``(name, value)`` or raise ValueError."""
    if not line.endswith(CRLF):
        raise ValueError("HTTP requires CRLF terminators")
    if line[:1] in (b" ", b"\t"):
        raise ValueError("Folded header lines (obs-fold) are not accepted.")
    name, colon, value = line[:-2].partition(b":")
    if not colon or not is_token(name):
        raise ValueError("Illegal header line.")
    value = value.strip(b" \t")
    if _BAD_VALUE_BYTE.search(value):
        raise ValueError(f"Illegal character in the value of header {name[:100]!r}.")
    return name, value


def read_fields(rfile: Any, fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Read a header section from ``rfile`` into ``fields`` (cheroot's header dict)."""
    while True:
        line = rfile.readline()
        if not line:
            raise ValueError("Illegal end of headers.")
        if line == CRLF:
            return fields
        add_field(fields, *parse_field_line(line))


def add_field(fields: dict[bytes, bytes], name: bytes, value: bytes) -> None:
    """Add one well-formed field (a token name, a value without OWS around it) to ``fields``.

    Names are title-cased as cheroot expects; repeated fields of cheroot's
    comma-separated kind are joined, other repeats keep the last value.
    Names with ``_`` are dropped; a second ``Host`` or ``Content-Length``,
    or a ``Content-Length`` that is not all digits, raises ValueError.
    """
    if b"_" in name:
        return
    name = _titled(name)
    if name in fields:
        if name in _SINGLE_FIELDS:
            raise ValueError(f"Multiple {name.decode()} headers.")
        if name in _COMMA_FIELDS and fields[name]:
            value = fields[name] + b", " + value
    if name == b"Content-Length" and not value.isdigit():
        raise ValueError("Malformed Content-Length Header.")
    fields[name] = value


#: Title-cased field names by name as received; most requests repeat a few.
_TITLES: dict[bytes, bytes] = {}
_MAX_TITLES = 512


def _titled(name: bytes) -> bytes:
    title = _TITLES.get(name)
    if title is None:
        title = name.title()
        if len(_TITLES) < _MAX_TITLES:  # bounded: clients choose the names
            _TITLES[name] = title
    return title


def check_body_framing(fields: dict[bytes, bytes], http11: bool) -> None:
    """Raise ValueError unless the request's body length is unambiguous.

    ``http11`` says whether both ends speak HTTP/1.1, without which
    ``Transfer-Encoding`` means nothing. Codings other than ``chunked``
    before the final ``chunked`` pass here; the server answers 501 to those.
    """
    te = fields.get(b"Transfer-Encoding")
    if te is None:
        return
    if not http11:
        raise ValueError("Transfer-Encoding is only allowed in HTTP/1.1.")
    if b"Content-Length" in fields:
        raise ValueError("A request may not have both Content-Length and Transfer-Encoding.")
    codings = [c.strip(b" \t").lower() for c in te.split(b",")]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise ValueError("Transfer-Encoding must end with chunked, applied once.")


class ChunkedBody(ChunkedRFile):
    """cheroot's chunked body reader, with the chunk grammar enforced.

    The trailer section is read as soon as the last chunk is: its fields are
    kept for :meth:`read_trailer_lines` and never reach the connection's
    next request. The first framing error sticks: later reads raise it
    again, so nothing after a broken chunk is ever taken for data.
    """

    def __init__(self, rfile: Any, maxlen: int, bufsize: int = 8192) -> None:
        super().__init__(rfile, maxlen, bufsize)
        self.trailer_lines: list[bytes] = []
        self._failure: Exception | None = None

    def _fetch(self) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            self._fetch_chunk()
        except (ValueError, MaxSizeExceeded) as exc:
            self._failure = exc
            raise

    def _fetch_chunk(self) -> None:
        if self.closed:
            return
        size = self._read_size()
        if size == 0:
            self._read_trailers()
            self.closed = True
            return
        if self.maxlen and self.bytes_read + size > self.maxlen:
            raise MaxSizeExceeded("Request Entity Too Large", self.maxlen)
        chunk = self.rfile.read(size)
        self.bytes_read += len(chunk)
        self.buffer += chunk
        if self.rfile.read(2) != CRLF:
            raise ValueError("Bad chunked transfer coding: a chunk does not end with CRLF.")

    def _read_line(self, limit: int) -> bytes:
        line = self.rfile.readline(limit + 1)
        self.bytes_read += len(line)
        if self.maxlen and self.bytes_read > self.maxlen:
            raise MaxSizeExceeded("Request Entity Too Large", self.maxlen)
        if len(line) > limit:
            raise ValueError("Bad chunked transfer coding: line too long.")
        if not line.endswith(CRLF):
            raise ValueError("Bad chunked transfer coding: the body ends early.")
        return line

    def _read_size(self) -> int:
        line = self._read_line(MAX_CHUNK_LINE)
        match = _CHUNK_LINE.fullmatch(line, 0, len(line) - 2)
        if match is None:
            raise ValueError(f"Bad chunked transfer size: {line[:40]!r}")
        return int(match.group(1), 16)

    def _read_trailers(self) -> None:
        room = MAX_TRAILER
        while (line := self._read_line(room)) != CRLF:
            parse_field_line(line)
            self.trailer_lines.append(line)
            room -= len(line)

    def read_trailer_lines(self) -> Any:
        """Yield the trailer field lines (CRLF-terminated) once the body is read."""
        if not self.closed:
            raise ValueError("Cannot read trailers until the request body has been read.")
        yield from self.trailer_lines
