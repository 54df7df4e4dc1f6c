"""HTTP helpers that applications import: header maps, header elements,
status validation, dates and query strings.

The names follow ``cherrypy.lib.httputil`` so code written against CherryPy
keeps working.
"""

from __future__ import annotations

import email.utils
import functools
import re
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

#: code -> (reason phrase, longer message); a copy so applications may extend it.
response_codes: dict[int, tuple[str, str]] = dict(BaseHTTPRequestHandler.responses)
response_codes[500] = (
    "Internal Server Error",
    "The server hit an unexpected condition and could not complete the request.",
)
response_codes[503] = (
    "Service Unavailable",
    "The server cannot handle the request right now because it is overloaded "
    "or down for maintenance.",
)

#: Format a timestamp (default: now) as an RFC 7231 HTTP date.
HTTPDate = functools.partial(email.utils.formatdate, usegmt=True)


def urljoin(*atoms: str) -> str:
    """Join path atoms with single slashes (``'/'`` when everything is empty)."""
    url = "/".join([a for a in atoms if a])
    while "//" in url:
        url = url.replace("//", "/")
    return url or "/"


def urljoin_bytes(*atoms: bytes) -> bytes:
    """Like :func:`urljoin`, for bytes."""
    url = b"/".join(a for a in atoms if a)
    while b"//" in url:
        url = url.replace(b"//", b"/")
    return url or b"/"


def protocol_from_http(protocol: str) -> tuple[int, int]:
    """``'HTTP/1.1'`` -> ``(1, 1)``."""
    return int(protocol[5]), int(protocol[7])


def valid_status(status: Any) -> tuple[int, str, str]:
    """Return ``(code, reason, message)`` for an int or ``"code reason"`` status.

    A missing reason is filled from :data:`response_codes`; a status outside
    100-599 or a non-numeric one raises :class:`ValueError`.
    """
    if not status:
        status = 200
    code, reason = status, None
    if isinstance(status, str):
        code, _, reason = status.partition(" ")
        reason = reason.strip() or None
    try:
        code = int(code)
    except (TypeError, ValueError):
        raise ValueError(
            f"Illegal response status from server ({code!r} is non-numeric)."
        ) from None
    if code < 100 or code > 599:
        raise ValueError(f"Illegal response status from server ({code!r} is out of range).")
    default_reason, message = response_codes.get(code, ("", ""))
    return code, reason if reason is not None else default_reason, message


def get_ranges(header_value: str, content_length: int) -> list[tuple[int, int]] | None:
    """Parse a Range header into ``[(start, stop), ...]`` (stop exclusive).

    Returns ``None`` when the header is absent or not a byte range (serve the
    whole entity) and ``[]`` when no range is satisfiable (answer 416).
    """
    if not header_value:
        return None
    unit, _, spec = header_value.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    result = []
    for part in spec.split(","):
        start, sep, stop = part.strip().partition("-")
        if not sep:
            return None
        try:
            if start:
                first = int(start)
                last = int(stop) if stop else content_length - 1
                # ("first-" past the end is unsatisfiable, not invalid.)
                if first < 0 or (stop and last < first):
                    return None
                if first >= content_length:
                    continue
                result.append((first, min(last, content_length - 1) + 1))
            elif stop:
                suffix = int(stop)
                if suffix < 0:
                    return None
                if suffix == 0:
                    continue
                result.append((max(content_length - suffix, 0), content_length))
            else:
                return None
        except ValueError:
            return None
    return result


_param_split = re.compile(r";(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)")


class HeaderElement:
    """One element of a header value, such as ``text/html;level=1``."""

    def __init__(self, value: str, params: dict[str, str] | None = None) -> None:
        self.value = value
        self.params = params if params is not None else {}

    def __lt__(self, other: HeaderElement) -> bool:
        return self.value < other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeaderElement) and (self.value, self.params) == (
            other.value,
            other.params,
        )

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        params = "".join(f";{k}={v}" for k, v in self.params.items())
        return f"{self.value}{params}"

    def __bytes__(self) -> bytes:
        return str(self).encode("iso-8859-1")

    @staticmethod
    def parse(element: str) -> tuple[str, dict[str, str]]:
        """Split ``'value;k=v;k2="v2"'`` into ``('value', {'k': 'v', ...})``."""
        atoms = [a.strip() for a in _param_split.split(element) if a.strip()]
        value = atoms.pop(0) if atoms else ""
        params = {}
        for atom in atoms:
            key, _, val = atom.partition("=")
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[key.strip()] = val
        return value, params

    @classmethod
    def from_str(cls, element: str) -> HeaderElement:
        return cls(*cls.parse(element))


class AcceptElement(HeaderElement):
    """An element of an Accept* header; sorts by quality value."""

    @classmethod
    def from_str(cls, element: str) -> AcceptElement:
        qvalue = None
        media, _, rest = element.partition(";q=")
        if _:
            # Parameters after q are accept-extensions; q belongs to the element.
            qvalue = HeaderElement.from_str(rest.strip())
        value, params = cls.parse(media)
        if qvalue is not None:
            params["q"] = qvalue  # type: ignore[assignment]
        return cls(value, params)

    @property
    def qvalue(self) -> float:
        """The ``q`` parameter as a float (1.0 when absent)."""
        val = self.params.get("q", "1")
        if isinstance(val, HeaderElement):
            val = val.value
        try:
            return float(val)
        except ValueError:
            from morello.errors import HTTPError

            raise HTTPError(400, f"Malformed HTTP header: `{self}`") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AcceptElement) and (self.qvalue, str(self)) == (
            other.qvalue,
            str(other),
        )

    __hash__ = None  # type: ignore[assignment]

    def __lt__(self, other: AcceptElement) -> bool:
        if self.qvalue == other.qvalue:
            return str(self) < str(other)
        return self.qvalue < other.qvalue


_accept_like = re.compile(r"^(Accept|TE)(-|$)", re.IGNORECASE)


def header_elements(fieldname: str, fieldvalue: str | None) -> list[HeaderElement]:
    """Split a comma-separated header into sorted :class:`HeaderElement` objects.

    Accept-style headers give :class:`AcceptElement` objects, best quality first.
    """
    if not fieldvalue:
        return []
    cls = AcceptElement if _accept_like.match(fieldname) else HeaderElement
    elements = [cls.from_str(e) for e in fieldvalue.split(",") if e.strip()]
    return sorted(elements, reverse=True)


def decode_TEXT(value: str) -> str:  # noqa: N802 - CherryPy's public name
    """Decode RFC 2047 encoded-words in a header value."""
    from email.header import decode_header, make_header

    return str(make_header(decode_header(value)))


def decode_TEXT_maybe(value: str) -> str:  # noqa: N802 - CherryPy's public name
    """Decode RFC 2047 encoded-words only if the value contains any."""
    return decode_TEXT(value) if "=?" in value else value


def parse_query_string(
    query_string: str, keep_blank_values: bool = True, encoding: str = "utf-8"
) -> dict[str, str | list[str]]:
    """Parse a query string into a dict; repeated names become lists.

    ``'a=1&a=2&b'`` -> ``{'a': ['1', '2'], 'b': ''}``. An image-map query
    (``'12,34'``) gives ``{'x': 12, 'y': 34}`` as CherryPy does.
    """
    if _image_map.match(query_string):
        x, y = query_string.split(",")
        return {"x": int(x), "y": int(y)}
    params: dict[str, Any] = {}
    # CherryPy separates pairs with ';' as well as '&' (HTML 4's advice).
    for name, value in urllib.parse.parse_qsl(
        query_string.replace(";", "&"),
        keep_blank_values=keep_blank_values,
        encoding=encoding,
        errors="strict",
    ):
        if name in params:
            existing = params[name]
            if isinstance(existing, list):
                existing.append(value)
            else:
                params[name] = [existing, value]
        else:
            params[name] = value
    return params


_image_map = re.compile(r"^\d+,\d+$")


class CaseInsensitiveDict(dict):
    """A dict whose str keys are stored title-cased (``'content-type'`` ->
    ``'Content-Type'``), so lookups ignore case."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self)
        if args or kwargs:
            self.update(*args, **kwargs)

    def __getitem__(self, key: str) -> Any:
        return dict.__getitem__(self, str(key).title())

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, str(key).title(), value)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, str(key).title())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, str(key).title())

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, str(key).title(), default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        return dict.setdefault(self, str(key).title(), default)

    def pop(self, key: str, *default: Any) -> Any:
        return dict.pop(self, str(key).title(), *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            dict.__setitem__(self, str(key).title(), value)

    @classmethod
    def fromkeys(cls, seq: Iterable[str], value: Any = None) -> CaseInsensitiveDict:
        return cls((k, value) for k in seq)

    def copy(self) -> CaseInsensitiveDict:
        new = type(self)()
        dict.update(new, self)
        return new


#: Control characters, dropped from response header names and values so that
#: no value can end its header line and start another (response splitting).
CONTROL_CHARS = bytes(range(32)) + b"\x7f"


class HeaderMap(CaseInsensitiveDict):
    """Request or response headers: a case-insensitive dict of str values."""

    encodings = ("iso-8859-1",)
    #: The HTTP version of the message, as a tuple.
    protocol = (1, 1)

    def copy(self) -> HeaderMap:
        new = super().copy()
        new.protocol = self.protocol
        return new

    def elements(self, key: str) -> list[HeaderElement]:
        """The sorted :class:`HeaderElement` list for one header."""
        key = str(key).title()
        return header_elements(key, dict.get(self, key))

    def values(self, key: str) -> list[str]:  # type: ignore[override]
        """The element values of one header, best first."""
        return [e.value for e in self.elements(key)]

    def output(self) -> list[tuple[bytes, bytes]]:
        """All headers as ``(name, value)`` byte pairs, ready for the wire."""
        return list(self.encode_header_items(self.items()))

    @classmethod
    def encode_header_items(cls, items: Iterable[tuple[Any, Any]]) -> Iterable[tuple[bytes, bytes]]:
        for name, value in items:
            if not isinstance(name, (str, bytes)):
                name = str(name)
            if not isinstance(value, (str, bytes)):
                value = str(value)
            yield (
                cls.encode(name).translate(None, CONTROL_CHARS),
                cls.encode(value).translate(None, CONTROL_CHARS),
            )

    @classmethod
    def encode(cls, value: str | bytes) -> bytes:
        """Encode a header value as ISO-8859-1, or as an RFC 2047 word."""
        if isinstance(value, bytes):
            return value
        try:
            return value.encode("iso-8859-1")
        except UnicodeEncodeError:
            if cls.protocol_supports_rfc2047:
                import binascii

                word = binascii.b2a_base64(value.encode("utf-8")).strip()
                return b"=?utf-8?b?" + word + b"?="
            raise ValueError(f"Could not encode header part {value!r} as ISO-8859-1") from None

    protocol_supports_rfc2047 = True


class Host:
    """An internet address: ``ip``, ``port`` and an optional ``name``."""

    __slots__ = ("ip", "port", "name")

    def __init__(self, ip: str, port: int, name: str | None = None) -> None:
        self.ip = ip
        self.port = port
        self.name = name if name is not None else ip

    def __repr__(self) -> str:
        return f"httputil.Host({self.ip!r}, {self.port!r}, {self.name!r})"
