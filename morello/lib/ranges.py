"""Range requests (RFC 7233) for bodies read from files.

:func:`requested_ranges` decides which byte ranges of an entity the current
request gets (or a 416); :func:`send_ranges` makes the response a 206 with
one range as it is or several as ``multipart/byteranges``. The static-file
functions in :mod:`morello.lib.static` use both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from morello.errors import HTTPError
from morello.lib import file_generator_limited
from morello.lib.httputil import get_ranges
from morello.serving import serving

#: Bytes read from a file per body chunk. 256 KiB served a 1 MB file fastest
#: on loopback (64 KiB: a third slower; 1 MiB: no faster, more memory).
CHUNK_SIZE = 256 * 1024
#: More ranges than this in one request are ignored (Apache's default limit).
MAX_RANGES = 200

Range = tuple[int, int]  # (start, stop): stop exclusive, like a slice


def requested_ranges(length: int) -> list[Range] | None:
    """The byte ranges of a ``length``-byte entity the current request asks for.

    ``None`` means "send the whole entity": no or a malformed ``Range``
    header, an ``If-Range`` naming another version, or ranges that would
    cost more than the entity itself (more than :data:`MAX_RANGES`, or
    overlapping ones adding up to more than ``length`` bytes). When no range
    is satisfiable this raises a 416 saying ``Content-Range: bytes */length``.
    """
    header = serving.request.headers.get("Range")
    if not header or not _if_range_holds():
        return None
    ranges = get_ranges(header, length)
    if ranges is None:
        return None
    if not ranges:
        serving.response.headers["Content-Range"] = f"bytes */{length}"
        raise HTTPError(416, "None of the requested byte ranges starts inside the content.")
    if len(ranges) > MAX_RANGES or sum(stop - start for start, stop in ranges) > length:
        return None
    return ranges


def _if_range_holds() -> bool:
    """Whether ``If-Range`` (if any) names the version being served.

    It must equal ``Last-Modified`` or a strong ``ETag`` of the response;
    otherwise the client's partial copy is stale and gets the whole entity.
    """
    if_range = serving.request.headers.get("If-Range")
    if if_range is None:
        return True
    headers = serving.response.headers
    etag = headers.get("ETag")
    strong_etag = etag if etag and not etag.startswith("W/") else None
    return if_range in (headers.get("Last-Modified"), strong_etag)


def send_ranges(fileobj: BinaryIO, offset: int, length: int, ranges: list[Range]) -> None:
    """Make the response a 206 with ``ranges`` of an entity stored in ``fileobj``.

    The entity is the ``length`` bytes at ``offset`` in ``fileobj``, which is
    read with ``seek()`` and closed at the end of the body. One range goes
    out as it is with a ``Content-Range``; several as ``multipart/byteranges``,
    each part typed like the entity (the response's ``Content-Type``).
    """
    response = serving.response
    headers = response.headers
    response.status = 206
    if len(ranges) == 1:
        start, stop = ranges[0]
        headers["Content-Range"] = _content_range(start, stop, length)
        headers["Content-Length"] = stop - start
        response.body = _read_pieces(fileobj, offset, ranges)
        return
    boundary = uuid.uuid4().hex
    part_type = headers.get("Content-Type")
    # CherryPy's layout byte for byte (clients may compare): an empty line
    # first, and "Content-type" and "Content-range" spelled so.
    type_line = f"Content-type: {part_type}\r\n" if part_type else ""
    pieces: list[bytes | Range] = [b"\r\n"]
    for start, stop in ranges:
        part_head = (
            f"--{boundary}\r\n{type_line}"
            f"Content-range: {_content_range(start, stop, length)}\r\n\r\n"
        )
        pieces += [part_head.encode("ascii", "replace"), (start, stop), b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode("ascii"))
    headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    # Known up front, so the parts stream instead of being joined in memory.
    headers["Content-Length"] = sum(
        len(piece) if isinstance(piece, bytes) else piece[1] - piece[0] for piece in pieces
    )
    response.body = _read_pieces(fileobj, offset, pieces)


def _content_range(start: int, stop: int, length: int) -> str:
    return f"bytes {start}-{stop - 1}/{length}"


def _read_pieces(
    fileobj: BinaryIO, offset: int, pieces: Iterable[bytes | Range]
) -> Iterator[bytes]:
    """Yield bytes pieces as they are and ``(start, stop)`` pieces read from the file."""
    try:
        for piece in pieces:
            if isinstance(piece, bytes):
                yield piece
            else:
                start, stop = piece
                fileobj.seek(offset + start)
                yield from file_generator_limited(fileobj, stop - start, CHUNK_SIZE)
    finally:
        fileobj.close()
