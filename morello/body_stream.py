"""Reading the request stream: byte counting, size limits and framing errors.

:class:`SizedReader` wraps the WSGI input (cheroot's ``KnownLengthRFile`` or
``ChunkedRFile``) for :class:`~morello.body.RequestBody`: it stops at the
declared length, enforces ``maxbytes`` (413) and turns the server's framing
errors into HTTP errors. :class:`BodyBudget` bounds what parsing one body
may cost: parts, form fields, and memory before content goes to disk.
"""

from __future__ import annotations

import io
import tempfile
from typing import IO, Any

from cheroot.errors import MaxSizeExceeded

from morello import multipart
from morello.errors import HTTPError


def _stream_error(exc: BaseException) -> HTTPError | None:
    """The HTTP error for a failure of the server's body stream, else None."""
    if isinstance(exc, MaxSizeExceeded):
        return HTTPError(413, f"Maximum request length: {exc.args[1]!r}")
    # cheroot's chunked reader raises a bare OSError when a chunk would
    # overflow max_request_body_size (CherryPy lets that become a 500).
    if isinstance(exc, OSError) and exc.args == ("Request Entity Too Large",):
        return HTTPError(413, "The request body exceeds the server's maximum size.")
    # cheroot signals broken chunked framing with ValueError: the client's fault.
    if isinstance(exc, ValueError):
        return HTTPError(400, f"Malformed request body: {exc}")
    # The client stopped sending, or sent below the server's minimum rate.
    if isinstance(exc, TimeoutError):
        return HTTPError(408, "The request body did not arrive in time.")
    return None


def _counted(count: int, limit: int | None, what: str, key: str) -> int:
    """``count`` plus one; a 413 :class:`HTTPError` naming ``request.body.KEY`` past ``limit``."""
    count += 1
    if limit is not None and count > limit:
        raise HTTPError(
            413, f"The request body has more than {limit} {what} (request.body.{key})."
        )
    return count


class BodyBudget:
    """What parsing one request body may cost; shared by the body and all its parts.

    More than ``max_parts`` multipart parts (nested ones included) or
    ``max_fields`` urlencoded fields give a 413 (None: no limit). Content
    stored as a file stays in memory until ``memory`` bytes are used up:
    temporary files (one descriptor each) are only opened past that.
    """

    def __init__(self, max_parts: int | None, max_fields: int | None, memory: int) -> None:
        self.max_parts = max_parts
        self.max_fields = max_fields
        #: Bytes of file content that may still be kept in memory.
        self.memory_left = memory
        self.parts = 0
        self.fields = 0
        # Spooled files made by new_file() -> their in-memory size limit.
        self._spooled: dict[int, int] = {}

    def add_part(self) -> None:
        """Count one more part; a 413 :class:`HTTPError` past ``max_parts``."""
        self.parts = _counted(self.parts, self.max_parts, "parts", "max_parts")

    def add_field(self) -> None:
        """Count one more form field; a 413 :class:`HTTPError` past ``max_fields``."""
        self.fields = _counted(self.fields, self.max_fields, "form fields", "max_fields")

    def new_file(self) -> IO[bytes]:
        """A file for content: in memory while the budget lasts, then on disk.

        Call :meth:`settle` once the content is written.
        """
        if self.memory_left <= 0:
            return tempfile.TemporaryFile()
        # Not closed here: the caller keeps the file as the content.
        spooled = tempfile.SpooledTemporaryFile(max_size=self.memory_left)  # noqa: SIM115
        self._spooled[id(spooled)] = self.memory_left
        return spooled

    def settle(self, fp: IO[bytes]) -> None:
        """Charge the budget with what ``fp`` (from :meth:`new_file`) keeps in memory."""
        limit = self._spooled.pop(id(fp), None)
        if limit is None:
            return
        # A spooled file moves to disk as soon as it grows past its limit.
        size = fp.tell()
        if size <= limit:
            self.memory_left -= size


class SizedReader:
    """The body stream: counts bytes, stops at ``length`` and enforces ``maxbytes``.

    ``fp`` needs only ``read(size)`` (cheroot's ``wsgi.input`` qualifies);
    lines are found in this reader's own buffer. Reading past ``maxbytes``,
    or hitting the server's ``max_request_body_size``, raises a 413
    :class:`HTTPError`. At the end of a chunked body announcing a
    ``Trailer``, the trailer headers are read into :attr:`trailers`.
    """

    def __init__(
        self,
        fp: Any,
        length: int | None,
        maxbytes: int | None,
        bufsize: int = io.DEFAULT_BUFFER_SIZE,
        has_trailers: bool = False,
    ) -> None:
        self.fp = fp
        self.length = length
        self.maxbytes = maxbytes
        self.bufsize = bufsize
        self.has_trailers = has_trailers
        #: Bytes read from ``fp`` but not yet consumed. Parsers search it in
        #: place, so it is only ever modified, never replaced.
        self.buffer = bytearray()
        #: Bytes consumed by callers so far.
        self.bytes_read = 0
        #: True once the end of the body was reached.
        self.done = False
        self.trailers: dict[bytes, bytes] = {}
        self._received = 0

    def fill(self, size: int, short_ok: bool = False) -> bool:
        """Append up to ``size`` more bytes of the body to :attr:`buffer`.

        Returns False, and marks the reader done, at the end of the body. A
        body ending before its Content-Length gives a 400 error, unless
        ``short_ok`` (the bytes still missing are not needed).
        """
        if self.done:
            return False
        if self.maxbytes and self.length is not None and self.length > self.maxbytes:
            # Fail before reading anything when the client announced too much.
            raise HTTPError(413, f"The request body is larger than {self.maxbytes} bytes.")
        if self.length is not None:
            size = min(size, self.length - self._received)
        data = b""
        if size > 0:
            try:
                data = self.fp.read(size)
            except Exception as exc:
                error = _stream_error(exc)
                if error is None:
                    raise
                raise error from exc
        if not data:
            if size > 0 and self.length is not None and not short_ok:
                # The client stopped early: a truncated body must not pass for a whole one.
                raise HTTPError(
                    400, f"The request body ended after {self._received} of {self.length} bytes."
                )
            self.finish()
            return False
        self._received += len(data)
        if self.maxbytes and self._received > self.maxbytes:
            raise HTTPError(413, f"The request body is larger than {self.maxbytes} bytes.")
        self.buffer += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        self.discard(size)
        return data

    def discard(self, size: int) -> None:
        """Consume ``size`` bytes from the front of the buffer."""
        # Deleting a bytearray's head is cheap: CPython moves a start offset.
        del self.buffer[:size]
        self.bytes_read += size

    def unread(self, data: bytes) -> None:
        """Push ``data`` back in front of the unconsumed bytes."""
        self.buffer[:0] = data
        self.bytes_read -= len(data)

    def drain(self) -> None:
        """Consume and drop the rest of the body (which may end short)."""
        self.discard(len(self.buffer))
        while self.fill(multipart.CHUNK_SIZE, short_ok=True):
            self.discard(len(self.buffer))

    def read(self, size: int | None = None, fp_out: IO[bytes] | None = None) -> bytes | None:
        """Read up to ``size`` bytes (all by default).

        With ``fp_out``, the bytes are written to it and None is returned.
        """
        if size is not None and size < 0:
            size = None
        chunks = []
        while size is None or size > 0:
            if not self.buffer:
                want = self.bufsize if size is None else min(size, self.bufsize)
                if not self.fill(want):
                    break
            data = self._take(len(self.buffer) if size is None else min(size, len(self.buffer)))
            if size is not None:
                size -= len(data)
            if fp_out is None:
                chunks.append(data)
            else:
                fp_out.write(data)
        return b"".join(chunks) if fp_out is None else None

    def readline(self, size: int | None = None) -> bytes:
        """Read one line, including its ``\\n`` (at most ``size`` bytes)."""
        if size is not None and size < 0:
            size = None
        searched = 0
        while True:
            limit = len(self.buffer) if size is None else min(size, len(self.buffer))
            newline = self.buffer.find(b"\n", searched, limit)
            if newline >= 0:
                return self._take(newline + 1)
            if size is not None and len(self.buffer) >= size:
                return self._take(size)
            searched = len(self.buffer)
            if not self.fill(self.bufsize):
                return self._take(limit)

    def readlines(self, sizehint: int | None = None) -> list[bytes]:
        """Read lines until the end, or until about ``sizehint`` bytes were read."""
        lines = []
        seen = 0
        while line := self.readline():
            lines.append(line)
            seen += len(line)
            if sizehint and seen >= sizehint:
                break
        return lines

    def finish(self) -> None:
        """Mark the body as fully read and collect any trailer headers."""
        if self.done:
            return
        self.done = True
        if self.has_trailers and hasattr(self.fp, "read_trailer_lines"):
            try:
                self._read_trailers()
            except Exception as exc:
                error = _stream_error(exc)
                if error is None:
                    raise
                raise error from exc

    def _read_trailers(self) -> None:
        name = None
        for line in self.fp.read_trailer_lines():
            if line[:1] in (b" ", b"\t") and name is not None:
                self.trailers[name] += b" " + line.strip()
                continue
            raw_name, sep, value = line.partition(b":")
            if not sep:
                raise HTTPError(400, f"Malformed trailer line: {line!r}")
            name = raw_name.strip().title()
            existing = self.trailers.get(name)
            self.trailers[name] = existing + b", " + value.strip() if existing else value.strip()
