"""Request bodies: reading, size limits and form decoding.

``request.body`` is a :class:`RequestBody`. Its :meth:`~Entity.process`
method looks up a processor for the Content-Type in ``body.processors``
(the full media type first, then the major type such as ``'multipart'``)
and calls it with the entity; without a match, ``default_proc`` runs, which
leaves the body unread for the handler. Form fields from urlencoded and
``multipart/form-data`` bodies end up in ``body.params`` and are merged into
the request parameters; each multipart part is a :class:`Part`.

The names and behaviour follow ``cherrypy._cpreqbody``, so custom processors
written for CherryPy keep working.
"""

from __future__ import annotations

import io
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import IO, Any

from morello import multipart
from morello.body_stream import BodyBudget, SizedReader
from morello.errors import HTTPError
from morello.lib.httputil import HeaderElement, HeaderMap
from morello.multipart import MultipartError

Processor = Callable[["Entity"], Any]


def _add_param(params: dict[str, Any], name: str, value: Any) -> None:
    """Store ``value`` under ``name``, turning repeated names into lists."""
    if name not in params:
        params[name] = value
        return
    existing = params[name]
    if not isinstance(existing, list):
        params[name] = existing = [existing]
    # A name repeated in the body arrives here as a list; keep the result flat.
    if isinstance(value, list):
        existing.extend(value)
    else:
        existing.append(value)


def _decode_failure(charsets: list[str]) -> HTTPError:
    return HTTPError(
        400,
        "The request entity could not be decoded. "
        f"The following charsets were attempted: {charsets!r}",
    )


# ------------------------------------------------------------------ processors


def _unquote_plus(raw: bytes) -> bytes:
    return urllib.parse.unquote_to_bytes(raw.replace(b"+", b" "))


# A non-empty field of a urlencoded body; found one at a time so that a body
# of a million fields is refused before it costs a million objects.
_URLENCODED_FIELD = re.compile(rb"[^&;]+")


def process_urlencoded(entity: Entity) -> None:
    """Read an ``application/x-www-form-urlencoded`` body into ``entity.params``.

    Fields are separated by ``&`` or ``;``. The whole body is decoded with
    the first of ``entity.attempt_charsets`` that fits (stored as
    ``entity.charset``); if none does, the request fails with 400. More
    fields than ``max_fields`` give 413.
    """
    body = entity.fp.read()
    budget = entity.body_budget()
    fields = []
    for match in _URLENCODED_FIELD.finditer(body):
        budget.add_field()
        name, _, value = match.group().partition(b"=")
        fields.append((_unquote_plus(name), _unquote_plus(value)))
    for charset in entity.attempt_charsets:
        try:
            decoded = [(name.decode(charset), value.decode(charset)) for name, value in fields]
        except (UnicodeDecodeError, LookupError):
            continue
        entity.charset = charset
        break
    else:
        raise _decode_failure(entity.attempt_charsets)
    for name, value in decoded:
        _add_param(entity.params, name, value)


def process_multipart(entity: Entity) -> None:
    """Read every part of a multipart body into ``entity.parts``.

    The preamble and the epilogue are dropped. A missing or invalid boundary
    parameter, malformed part headers, or a body that ends before its closing
    delimiter fail the request with 400. (CherryPy answers 500 to some of
    these; they are client errors.) A body containing no delimiter at all has
    no parts, as in CherryPy. More parts than ``max_parts`` give 413.
    """
    with HTTPError.handle(MultipartError, 400):
        boundary = multipart.dash_boundary(entity.content_type.params.get("boundary", ""))
        reader = entity._stream()
        if multipart.read_to_delimiter(reader, boundary, None) is not False:
            return
    budget = entity.body_budget()
    # Each part reads up to the delimiter after it; the closing one ends the stream.
    while not reader.done:
        budget.add_part()
        part = entity.part_class.from_fp(reader, boundary)
        part.budget = budget
        entity.parts.append(part)
        part.process()


def process_multipart_form_data(entity: Entity) -> None:
    """Read a ``multipart/form-data`` body into ``entity.params``.

    A named part with a filename (a file upload) is stored as the
    :class:`Part` itself, so handlers get its ``file``, ``filename`` and
    ``content_type``; other named parts are stored as their decoded text.
    Parts without a name stay in ``entity.parts``.
    """
    process_multipart(entity)
    unnamed = []
    for part in entity.parts:
        if part.name is None:
            unnamed.append(part)
        else:
            value = part if part.filename is not None else part.fullvalue()
            _add_param(entity.params, part.name, value)
    entity.parts = unnamed


def _process_multipart_into_params(entity: Entity) -> None:
    """The top-level processor for other multipart types, as in CherryPy:
    every part goes to ``entity.params``, unnamed ones under ``'parts'``."""
    process_multipart(entity)
    for part in entity.parts:
        value = part if part.filename is not None else part.fullvalue()
        _add_param(entity.params, part.name if part.name is not None else "parts", value)


# -------------------------------------------------------------------- entities


def _decode_ext_value(value: str) -> str | None:
    """Decode an RFC 5987 ``charset'language'percent-encoded`` value."""
    charset, sep1, rest = value.strip('"').partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not (sep1 and sep2):
        return None
    try:
        return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


class Entity:
    """An HTTP request body or one part of a multipart body.

    ``headers`` are the request headers for the body, the part headers for a
    part. The Content-Type, Content-Length and Content-Disposition headers
    are parsed into :attr:`content_type`, :attr:`length`, :attr:`name` and
    :attr:`filename`; :meth:`process` then parses the content.
    """

    #: Charsets tried, in order, to decode text; a ``charset`` parameter on
    #: the Content-Type is tried first. Browsers often send UTF-8 without
    #: saying so, hence the default.
    attempt_charsets: list[str] = ["utf-8"]
    #: The charset that decoded the content, once a processor succeeded.
    charset: str | None = None
    #: Media type used when the headers have no Content-Type.
    default_content_type = "application/x-www-form-urlencoded"
    #: Media type (or major type) -> function that parses the entity.
    processors: dict[str, Processor] = {
        "application/x-www-form-urlencoded": process_urlencoded,
        "multipart/form-data": process_multipart_form_data,
        "multipart": process_multipart,
    }
    #: Class of the parts of a multipart entity.
    part_class: type[Part]
    #: Size of the reads from the underlying stream.
    bufsize = 8 * 1024
    #: Largest body accepted, in bytes (None: no limit); more gives 413.
    maxbytes: int | None = None
    #: Most multipart parts in the body, nested ones included (None: no
    #: limit); more gives 413. Each part may hold a temporary file.
    max_parts: int | None = 1000
    #: Most urlencoded form fields in the body (None: no limit); more gives 413.
    max_fields: int | None = 10_000
    #: Bytes of content stored "as a file" (uploads, large parts) that the
    #: body keeps in memory; past them, such content goes to temporary files.
    memory_budget: int = 1024 * 1024
    #: The body's :class:`BodyBudget`, shared with its parts; see :meth:`body_budget`.
    budget: BodyBudget | None = None
    #: The content stored in a temporary file, when it was stored that way.
    file: IO[bytes] | None = None
    #: The content as bytes, when it was stored in memory.
    value: bytes | None = None

    def __init__(
        self,
        fp: Any,
        headers: HeaderMap,
        params: dict[str, Any] | None = None,
        parts: list[Part] | None = None,
    ) -> None:
        # A copy, so a tool can change the processors of one request only.
        self.processors = dict(self.processors)
        self.fp = fp
        self.headers = headers if isinstance(headers, HeaderMap) else HeaderMap(headers)
        self.params: dict[str, Any] = {} if params is None else params
        self.parts: list[Part] = [] if parts is None else parts

        content_type = (dict.get(self.headers, "Content-Type") or "").strip()
        # Most requests have no body: skip the parser for the default type.
        self.content_type = (
            HeaderElement.from_str(content_type)
            if content_type
            else HeaderElement(self.default_content_type, {})
        )
        # Media types are case-insensitive; processors are keyed in lower case.
        self.content_type.value = self.content_type.value.lower()
        declared = self.content_type.params.get("charset")
        if declared:
            self.attempt_charsets = [declared] + [c for c in self.attempt_charsets if c != declared]
        else:
            self.attempt_charsets = list(self.attempt_charsets)

        self.length: int | None = None
        headers = self.headers
        declared_length = dict.get(headers, "Content-Length")
        if declared_length and "chunked" not in dict.get(headers, "Transfer-Encoding", "").lower():
            try:
                length = int(declared_length)
            except ValueError:
                pass
            else:
                self.length = length if length >= 0 else None

        self.name: str | None = None
        self.filename: str | None = None
        disposition = dict.get(headers, "Content-Disposition")
        if disposition:
            _, raw_params = HeaderElement.parse(disposition)
            disp_params = {key.lower(): value for key, value in raw_params.items()}
            self.name = disp_params.get("name")
            self.filename = disp_params.get("filename")
            if "filename*" in disp_params:
                # RFC 6266: the extended form wins when the client sends both.
                self.filename = _decode_ext_value(disp_params["filename*"]) or self.filename

    @property
    def type(self) -> HeaderElement:
        """Alias of :attr:`content_type`."""
        return self.content_type

    @type.setter
    def type(self, value: HeaderElement) -> None:
        self.content_type = value

    def _stream(self) -> SizedReader:
        """The body stream as a :class:`SizedReader`, wrapping ``fp`` on first use."""
        if not isinstance(self.fp, SizedReader):
            self.fp = SizedReader(
                self.fp,
                self.length,
                self.maxbytes,
                bufsize=self.bufsize,
                has_trailers="Trailer" in self.headers,
            )
        return self.fp

    def read(self, size: int | None = None, fp_out: IO[bytes] | None = None) -> bytes | None:
        """Read up to ``size`` bytes (all by default) of the body.

        With ``fp_out``, the bytes are written to it and None is returned.
        """
        return self._stream().read(size, fp_out)

    def readline(self, size: int | None = None) -> bytes:
        """Read one line of the body (at most ``size`` bytes)."""
        return self._stream().readline(size)

    def readlines(self, sizehint: int | None = None) -> list[bytes]:
        """Read lines until the end of the body or about ``sizehint`` bytes."""
        return self._stream().readlines(sizehint)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def read_into_file(self, fp_out: IO[bytes] | None = None) -> IO[bytes]:
        """Copy the rest of the body into ``fp_out`` (default :meth:`make_file`)."""
        if fp_out is None:
            fp_out = self.make_file()
        self.read(fp_out=fp_out)
        self.body_budget().settle(fp_out)
        return fp_out

    def body_budget(self) -> BodyBudget:
        """The limits this entity's parsing counts against (made on first use).

        A body makes one from its ``max_parts``, ``max_fields`` and
        ``memory_budget``; its parts share it.
        """
        if self.budget is None:
            self.budget = BodyBudget(self.max_parts, self.max_fields, self.memory_budget)
        return self.budget

    def make_file(self) -> IO[bytes]:
        """Return the file that large content is stored in.

        A temporary file, kept in memory while the request's
        ``memory_budget`` lasts. Override to store uploads elsewhere.
        """
        return self.body_budget().new_file()

    def fullvalue(self) -> str:
        """The content decoded to text, whether it is in memory or in a file."""
        if self.file is not None:
            self.file.seek(0)
            raw = self.file.read()
            self.file.seek(0)
        elif self.value is not None:
            raw = self.value
        else:
            # Nobody stored the content (an unprocessed body): read what is left.
            raw = self.read()
        return self.decode_entity(raw)

    def decode_entity(self, value: bytes) -> str:
        """Decode ``value`` with the first of :attr:`attempt_charsets` that fits.

        Sets :attr:`charset`; raises a 400 :class:`HTTPError` when none fits.
        """
        for charset in self.attempt_charsets:
            try:
                text = value.decode(charset)
            except (UnicodeDecodeError, LookupError):
                continue
            self.charset = charset
            return text
        raise _decode_failure(self.attempt_charsets)

    def _find_processor(self) -> Processor | None:
        media_type = self.content_type.value
        proc = self.processors.get(media_type)
        if proc is None:
            proc = self.processors.get(media_type.split("/", 1)[0])
        return proc

    def process(self) -> None:
        """Parse the content with the processor for its media type."""
        proc = self._find_processor()
        if proc is None:
            self.default_proc()
        else:
            proc(self)

    def default_proc(self) -> None:
        """Called when no processor matches; leaves the body for the handler."""


class Part(Entity):
    """One part of a multipart entity.

    After :meth:`process`, a part with a filename has its content in
    :attr:`file` (a temporary file positioned at 0). Other parts keep it as
    bytes in :attr:`value` unless it exceeds :attr:`maxrambytes`, in which
    case it is in :attr:`file` too; :meth:`fullvalue` gives the text either way.
    Such files stay in memory until the request body's ``memory_budget`` is
    used up (calling ``fileno()`` on one moves it to disk).
    """

    # RFC 2046 makes US-ASCII the default charset of a part.
    attempt_charsets = ["us-ascii", "utf-8"]
    #: RFC 2046: a part without a Content-Type is text/plain.
    default_content_type = "text/plain"
    #: Content larger than this many bytes is moved to a temporary file.
    maxrambytes = 1000

    def __init__(self, fp: Any, headers: HeaderMap, boundary: bytes) -> None:
        super().__init__(fp, headers)
        #: The dash-boundary (``b'--' + boundary``) that ends this part.
        self.boundary = boundary
        self.file = None
        self.value = None

    @classmethod
    def from_fp(cls, fp: Any, boundary: bytes) -> Part:
        """Read a part's headers from ``fp`` and return the part (content unread)."""
        return cls(fp, cls.read_headers(fp), boundary)

    @classmethod
    def read_headers(cls, fp: Any) -> HeaderMap:
        """Read a part's header block; malformed headers give a 400 error."""
        with HTTPError.handle(MultipartError, 400):
            return multipart.read_headers(fp)

    def read_lines_to_boundary(self, fp_out: IO[bytes] | None = None) -> bytes | IO[bytes]:
        """Read the content up to the next delimiter.

        Returns the bytes, or, when ``fp_out`` is given or the content
        exceeds :attr:`maxrambytes`, the file holding them, positioned at 0.
        A body that ends before the delimiter gives a 400 error.
        """
        spool = _Spool(self, fp_out)
        with HTTPError.handle(MultipartError, 400):
            if multipart.read_to_delimiter(self._stream(), self.boundary, spool.write) is None:
                raise MultipartError("The multipart body ends before its closing boundary.")
        if spool.out is not None:
            self.body_budget().settle(spool.out)
        return spool.result()

    def read_into_file(self, fp_out: IO[bytes] | None = None) -> IO[bytes]:
        """Read the content into ``fp_out`` (default :meth:`make_file`)."""
        if fp_out is None:
            fp_out = self.make_file()
        self.read_lines_to_boundary(fp_out=fp_out)
        return fp_out

    def process(self) -> None:
        """Read the content, parsing it with a processor if one matches.

        A part with a filename is an upload and is always stored as is, even
        when its type has a processor (an uploaded ``.mhtml`` file is
        ``multipart/related``).
        """
        proc = self._find_processor()
        if proc is None or self.filename is not None:
            self.default_proc()
            return
        # Processors read ``fp`` to its end, so they get a stream holding only
        # this part; the raw content stays available for fullvalue().
        content = self.read_lines_to_boundary()
        if isinstance(content, bytes):
            self.value = content
            self.fp = SizedReader(io.BytesIO(content), len(content), None)
        else:
            self.file = content
            self.fp = SizedReader(content, None, None)
        proc(self)
        if self.file is not None:
            self.file.seek(0)

    def default_proc(self) -> None:
        """Store the content in :attr:`file` or :attr:`value`."""
        if self.filename is not None:
            self.file = self.read_into_file()
            return
        content = self.read_lines_to_boundary()
        if isinstance(content, bytes):
            self.value = content
        else:
            self.file = content


Entity.part_class = Part


class _Spool:
    """Collect content in memory, moving it to the part's file past maxrambytes."""

    def __init__(self, part: Part, fp_out: IO[bytes] | None) -> None:
        self.part = part
        self.out = fp_out
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.out is not None:
            self.out.write(data)
            return
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.part.maxrambytes:
            self.out = self.part.make_file()
            self.out.writelines(self.chunks)
            self.chunks = []

    def result(self) -> bytes | IO[bytes]:
        if self.out is None:
            return b"".join(self.chunks)
        self.out.seek(0)
        return self.out


class RequestBody(Entity):
    """The body of the HTTP request, as ``request.body``.

    ``request_params`` is the request's parameter dict; form fields parsed
    from the body are merged into it (a name already there becomes a list).
    """

    #: No Content-Type means the body is not parsed at all: guessing the
    #: type of an unlabelled body would be an error at best.
    default_content_type = ""

    def __init__(
        self,
        fp: Any,
        headers: HeaderMap,
        params: dict[str, Any] | None = None,
        request_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(fp, headers, params)
        # HTTP/1.1 (RFC 2616 3.7.1) makes ISO-8859-1 the default for text/*.
        if self.content_type.value[:5] == "text/" and not any(
            c.lower() in ("iso-8859-1", "latin-1") for c in self.attempt_charsets
        ):
            self.attempt_charsets.append("ISO-8859-1")
        # Other multipart types put their parts in params too, as in CherryPy.
        self.processors["multipart"] = _process_multipart_into_params
        self.request_params: dict[str, Any] = {} if request_params is None else request_params

    def process(self) -> None:
        """Parse the body and merge its fields into ``request_params``.

        A request without Content-Length or Transfer-Encoding cannot carry a
        body, so this raises 411 (Length Required) as CherryPy does. The
        request decides whether to call this at all (only for methods in
        ``request.methods_with_bodies``, when ``process_request_body`` is on).
        """
        if "Content-Length" not in self.headers and "Transfer-Encoding" not in self.headers:
            raise HTTPError(411)
        self._stream()
        super().process()
        for name, value in self.params.items():
            _add_param(self.request_params, name, value)
