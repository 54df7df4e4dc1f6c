"""The streaming core of the multipart parser.

These functions work on a :class:`morello.body.SizedReader`: they search the
reader's ``buffer`` (a bytearray) with ``bytes.find``, pull more of the body
with ``fill()`` and drop what they have used with ``discard()``. At most about
one :data:`CHUNK_SIZE` of the body is held in memory at a time, whatever the
size of the parts. The entity classes built on top live in :mod:`morello.body`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from morello.lib.httputil import HeaderMap

if TYPE_CHECKING:
    from morello.body import SizedReader

#: How much of the body to pull per step while looking for a delimiter.
CHUNK_SIZE = 64 * 1024

#: Longest part header line accepted; a bound for bodies without line breaks.
MAX_HEADER_LINE = 64 * 1024

# Longest boundary accepted. RFC 2046 says 70; like CherryPy, we are lenient.
MAX_BOUNDARY = 201

# Transport padding allowed between a delimiter and its line break.
_PADDING = re.compile(rb"[ \t\r\x0b\x0c]*")


class MultipartError(ValueError):
    """The multipart body or its Content-Type is malformed."""


def dash_boundary(boundary: str) -> bytes:
    """Validate a ``boundary`` Content-Type parameter and return ``b'--' + boundary``."""
    boundary = boundary.strip('"')
    if not boundary:
        raise MultipartError("The multipart Content-Type has no boundary parameter.")
    if (
        len(boundary) > MAX_BOUNDARY
        or not (boundary.isascii() and boundary.isprintable())
        or boundary.endswith(" ")
    ):
        raise MultipartError(f"Invalid multipart boundary: {boundary!r}")
    return b"--" + boundary.encode("ascii")


def read_headers(fp: Any) -> HeaderMap:
    """Read one part's header block (up to and including the blank line) from
    ``fp``, which needs ``readline(size)``.

    Header values are decoded as ISO-8859-1; repeated headers are joined
    with ``', '`` and folded continuation lines with a space.
    """
    headers = HeaderMap()
    name = None
    while True:
        line = fp.readline(MAX_HEADER_LINE)
        if line == b"\r\n":
            return headers
        if not line.endswith(b"\r\n"):
            if len(line) >= MAX_HEADER_LINE:
                raise MultipartError("A multipart part header line is too long.")
            if not line.endswith(b"\n"):
                raise MultipartError("The multipart body ends inside the headers of a part.")
            raise MultipartError(f"Multipart part header lines must end with CRLF: {line!r}")
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if name is None:
                raise MultipartError(f"Malformed multipart part header line: {line!r}")
            headers[name] = f"{headers[name]} {text.strip()}"
            continue
        name, sep, value = text.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise MultipartError(f"Malformed multipart part header line: {line!r}")
        existing = headers.get(name)
        headers[name] = f"{existing}, {value}" if existing else value


# What follows a "\n--boundary" match decides whether it is a delimiter.
_MORE, _NOT_DELIMITER, _NEXT_PART, _CLOSE = range(4)


def _classify(buf: bytearray, start: int, eof: bool) -> tuple[int, int]:
    """Classify the bytes after ``--boundary`` at ``buf[start:]``.

    Returns ``(kind, end)``, ``end`` being the offset just past the delimiter
    line. A delimiter line is ``--boundary`` or ``--boundary--``, then optional
    padding, then a line break (or the end of the body).
    """
    size = len(buf)
    if size - start < 2 and not eof:
        return _MORE, 0
    closing = buf.startswith(b"--", start)
    end = _PADDING.match(buf, start + 2 if closing else start).end()
    kind = _CLOSE if closing else _NEXT_PART
    if end < size:
        if buf[end] == 0x0A:
            return kind, end + 1
        return _NOT_DELIMITER, 0
    return (kind, end) if eof else (_MORE, 0)


def read_to_delimiter(
    reader: SizedReader, boundary: bytes, write: Callable[[bytes], object] | None
) -> bool | None:
    """Stream the bytes before the next delimiter line to ``write``.

    ``boundary`` is the dash-boundary (``b'--' + boundary``) and the reader
    must be at the start of a line. The line break before the delimiter
    belongs to it, not to the data. The delimiter line is consumed; returns
    ``False`` when it opens another part and ``True`` when it closes the body
    (the epilogue after it is read and dropped). Returns ``None`` when the
    body ends before any delimiter; ``write`` may be ``None`` to drop the data.
    """
    marker = b"\n" + boundary
    buf = reader.buffer
    # Put back the line break that ended the previous line so that a delimiter
    # right at the start matches the same b"\n--boundary" pattern as any other.
    reader.unread(b"\r\n")
    skip = 2  # leading bytes of buf that are this synthetic line break
    pos = 0
    eof = False
    while True:
        idx = buf.find(marker, pos)
        if idx < 0:
            if eof:
                reader.discard(len(buf))
                return None
            # Everything before a possible partial marker (and the CR that may
            # precede it) is data.
            keep = len(buf) - len(marker)
            if keep > skip:
                if write is not None:
                    write(bytes(buf[skip:keep]))
                reader.discard(keep)
                skip = 0
            pos = max(0, len(buf) - len(marker) + 1)
            eof = not reader.fill(CHUNK_SIZE)
            continue
        kind, end = _classify(buf, idx + len(marker), eof)
        if kind == _MORE:
            pos = idx
            eof = not reader.fill(CHUNK_SIZE)
            continue
        if kind == _NOT_DELIMITER:
            pos = idx + 1
            continue
        stop = idx - 1 if idx > 0 and buf[idx - 1] == 0x0D else idx
        if write is not None and stop > skip:
            write(bytes(buf[skip:stop]))
        reader.discard(end)
        if kind == _CLOSE:
            reader.drain()
            return True
        if eof:
            # "--boundary" as the last bytes: a part was announced but never sent.
            raise MultipartError("The multipart body ends right after a boundary.")
        return False
