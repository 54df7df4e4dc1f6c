"""The ``encode``, ``decode`` and ``gzip`` tools: text in handlers, bytes
(compressed if the client wants) on the wire."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import morello
from morello.errors import HTTPError
from morello.http_response import prepare_iter
from morello.lib import set_vary_header
from morello.lib.httputil import AcceptElement
from morello.serving import serving


def decode(
    encoding: str | list[str] | None = None, default_encoding: str | list[str] = "utf-8"
) -> None:
    """Set the charsets tried when decoding request body text.

    ``encoding`` replaces the list; ``default_encoding`` is appended to it.
    """
    body = serving.request.body
    if encoding is not None:
        body.attempt_charsets = encoding if isinstance(encoding, list) else [encoding]
    elif default_encoding:
        extra = default_encoding if isinstance(default_encoding, list) else [default_encoding]
        body.attempt_charsets = body.attempt_charsets + extra


class ResponseEncoder:
    """Wrap the page handler so that str output is encoded.

    The charset comes from ``encoding`` if set, else from the client's
    Accept-Charset (``default_encoding`` when it sends none); the chosen
    charset is added to a ``text/*`` Content-Type. A charset the client does
    not accept gives 406.
    """

    default_encoding = "utf-8"
    failmsg = "Response body could not be encoded with %r."
    encoding: str | None = None
    errors = "strict"
    text_only = True
    add_charset = True
    debug = False

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.attempted_charsets: set[str] = set()
        self.body: Any = None
        request = serving.request
        self.oldhandler: Callable[..., Any] | None = request.handler
        if request.handler is not None:
            request.handler = self

    def encode_stream(self, encoding: str) -> bool:
        """Encode a streamed body lazily, chunk by chunk."""
        if encoding in self.attempted_charsets:
            return False
        self.attempted_charsets.add(encoding)
        errors = self.errors

        def encoded(body: Any) -> Iterator[bytes]:
            for chunk in body:
                yield chunk.encode(encoding, errors) if isinstance(chunk, str) else chunk

        self.body = encoded(self.body)
        return True

    def encode_string(self, encoding: str) -> bool:
        """Encode a buffered body now; False if the charset cannot do it."""
        if encoding in self.attempted_charsets:
            return False
        self.attempted_charsets.add(encoding)
        try:
            self.body = [
                chunk.encode(encoding, self.errors) if isinstance(chunk, str) else chunk
                for chunk in self.body
            ]
        except (LookupError, UnicodeError):
            return False
        return True

    def find_acceptable_charset(self) -> str:
        """Encode the body with the best charset the client accepts; return it."""
        request = serving.request
        response = serving.response
        if response.stream:
            encoder = self.encode_stream
        else:
            encoder = self.encode_string
            response.headers.pop("Content-Length", None)

        accepted = request.headers.elements("Accept-Charset")
        names = [element.value.lower() for element in accepted]
        if self.encoding is not None:
            encoding = self.encoding.lower()
            if (not names or "*" in names or encoding in names) and encoder(encoding):
                return encoding
        elif not accepted:
            if encoder(self.default_encoding):
                return self.default_encoding
            raise HTTPError(500, self.failmsg % self.default_encoding)
        else:
            for element in accepted:
                if element.qvalue > 0:
                    candidate = self.default_encoding if element.value == "*" else element.value
                    if encoder(candidate):
                        return candidate
            # ISO-8859-1 is acceptable unless the client excluded it explicitly.
            if "*" not in names and "iso-8859-1" not in names and encoder("iso-8859-1"):
                return "iso-8859-1"

        sent = request.headers.get("Accept-Charset")
        if sent is None:
            message = "Your client did not send an Accept-Charset header."
        else:
            message = f"Your client sent this Accept-Charset header: {sent}."
        tried = ", ".join(sorted(self.attempted_charsets))
        raise HTTPError(406, f"{message} We tried these charsets: {tried}.")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        response = serving.response
        self.body = prepare_iter(self.oldhandler(*args, **kwargs))
        content_type = dict.get(response.headers, "Content-Type")
        if not content_type or not self.add_charset:
            return self.body
        # Fast path for the overwhelmingly common case: default text/html,
        # no charset negotiation, a buffered body.
        if (
            content_type == "text/html"
            and self.encoding is None
            and not response.stream
            # (`in`, not dict.__contains__, so that tools.autovary sees the lookup)
            and "Accept-Charset" not in serving.request.headers
            and self.default_encoding == "utf-8"
            and type(self.body) is list
        ):
            try:
                self.body = [
                    c.encode("utf-8", self.errors) if isinstance(c, str) else c for c in self.body
                ]
            except UnicodeError:
                raise HTTPError(500, self.failmsg % "utf-8") from None
            dict.pop(response.headers, "Content-Length", None)
            dict.__setitem__(response.headers, "Content-Type", "text/html;charset=utf-8")
            return self.body
        element = response.headers.elements("Content-Type")[0]
        if self.text_only and not element.value.lower().startswith("text/"):
            return self.body
        element.params["charset"] = self.find_acceptable_charset()
        response.headers["Content-Type"] = str(element)
        return self.body


# -- gzip ----------------------------------------------------------------------

#: zlib's window bits for a gzip container (header and CRC trailer) around deflate.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_CODINGS = ("gzip", "x-gzip")


def compress(body: Iterable[bytes], compress_level: int, flush: bool = False) -> Iterator[bytes]:
    """Gzip the chunks of ``body`` lazily, one compressed chunk at a time.

    With ``flush``, each input chunk is flushed through (``Z_SYNC_FLUSH``)
    so that a client can decode it as soon as it arrives; streamed responses
    need that, buffered ones compress better without it.
    """
    compressor = zlib.compressobj(compress_level, zlib.DEFLATED, _GZIP_WBITS)
    for chunk in body:
        data = compressor.compress(chunk)
        if flush:
            data += compressor.flush(zlib.Z_SYNC_FLUSH)
        if data:
            yield data
    yield compressor.flush()


def decompress(body: bytes) -> bytes:
    """The bytes inside a gzip stream (the inverse of :func:`compress`)."""
    return zlib.decompress(body, _GZIP_WBITS)


def _negotiate_coding(accepted: Sequence[AcceptElement]) -> str | None:
    """``'gzip'`` or ``'identity'`` for an ``Accept-Encoding``; None if neither is acceptable.

    ``accepted`` is sorted best first. The first acceptable choice wins, an
    explicit ``identity`` before ``gzip`` at equal quality as in CherryPy;
    ``*`` stands for whichever of the two is not listed. Identity stays
    acceptable unless the client excludes it (``identity;q=0`` or ``*;q=0``),
    so without the header the body goes uncompressed.
    """
    listed = {element.value.lower() for element in accepted}
    gzip_listed = not listed.isdisjoint(_GZIP_CODINGS)
    for element in accepted:
        if element.qvalue <= 0:
            continue
        coding = element.value.lower()
        if coding == "identity":
            return "identity"
        if coding in _GZIP_CODINGS or (coding == "*" and not gzip_listed):
            return "gzip"
        if coding == "*" and "identity" not in listed:
            return "identity"
    if "identity" in listed or "*" in listed:
        return None
    return "identity"


def _media_type_in(content_type: str, patterns: Iterable[str]) -> bool:
    """Whether ``content_type`` matches one of ``patterns``.

    A pattern is ``type/subtype``, ``type/*`` or ``type/*+suffix``
    (``application/*+xml`` matches ``application/atom+xml``).
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    major, _, minor = media_type.partition("/")
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern == media_type:
            return True
        pattern_major, _, pattern_minor = pattern.partition("/")
        if not minor or pattern_major != major:
            continue
        if pattern_minor == "*":
            return True
        suffix = pattern_minor[2:] if pattern_minor.startswith("*+") else None
        if suffix and "+" in minor and minor.rpartition("+")[2] == suffix:
            return True
    return False


def gzip(
    compress_level: int = 5,
    mime_types: Sequence[str] = ("text/html", "text/plain"),
    debug: bool = False,
) -> None:
    """Gzip the response body if the client accepts it and the type is in ``mime_types``.

    ``mime_types`` entries may be ``type/subtype``, ``type/*`` or
    ``type/*+suffix``. ``Vary: Accept-Encoding`` is always added. Empty
    bodies, cached bodies (stored compressed already) and bodies that have a
    ``Content-Encoding`` already are left alone. A client that accepts
    neither gzip nor identity gets 406; a malformed ``Accept-Encoding`` 400.
    """
    request = serving.request
    response = serving.response
    set_vary_header(response, "Accept-Encoding")
    headers = response.headers
    if not response.body or getattr(request, "cached", False):
        if debug:
            morello.log("Nothing to compress (empty or cached body)", "TOOLS.GZIP")
        return
    if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        if debug:
            morello.log("The body is encoded already", "TOOLS.GZIP")
        return
    try:
        coding = _negotiate_coding(request.headers.elements("Accept-Encoding"))
    except HTTPError as error:
        # Raising would run this hook again for the error page, fail again and
        # end in a 500: answer the 400 directly instead (like the 406 below).
        error.set_response()
        return
    if coding is None:
        if debug:
            sent = request.headers.get("Accept-Encoding")
            morello.log(f"Neither gzip nor identity in {sent!r}", "TOOLS.GZIP")
        message = "Your client accepts neither identity nor gzip content coding."
        HTTPError(406, message).set_response()
        return
    if isinstance(mime_types, str):
        mime_types = [mime_types]
    content_type = headers.get("Content-Type", "")
    if coding != "gzip" or not _media_type_in(content_type, mime_types):
        if debug:
            morello.log(f"Not compressing ({coding}, {content_type!r})", "TOOLS.GZIP")
        return
    if debug:
        morello.log("Gzipping", "TOOLS.GZIP")
    headers["Content-Encoding"] = "gzip"
    response.body = compress(response.body, compress_level, flush=response.stream)
    headers.pop("Content-Length", None)
