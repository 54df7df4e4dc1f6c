"""The response object: status, headers, cookies and body."""

from __future__ import annotations

import time
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any

import morello
from morello.errors import HTTPError
from morello.lib import file_generator
from morello.lib.httputil import CONTROL_CHARS, HeaderMap, HTTPDate, valid_status

_STR_BODY_ERROR = "Page handlers MUST return bytes. Use tools.encode if you wish to return unicode."


def prepare_iter(value: Any) -> Any:
    """Normalise a handler's return value into an iterable of chunks."""
    if isinstance(value, (str, bytes)):
        return [value] if value else []
    if value is None:
        return []
    if hasattr(value, "read"):
        return file_generator(value)
    return value


class ResponseBody:
    """Descriptor for ``Response.body``: bytes, lists, iterables and files."""

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return obj._body

    def __set__(self, obj: Any, value: Any) -> None:
        if type(value) is list:
            for chunk in value:
                if isinstance(chunk, str):
                    raise ValueError(_STR_BODY_ERROR)
            obj._body = value
            return
        if isinstance(value, str):
            raise ValueError(_STR_BODY_ERROR)
        obj._body = prepare_iter(value)


class LazyCookie:
    """A ``cookie`` attribute created on first use (most requests have none)."""

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        cookie = obj.__dict__["cookie"] = SimpleCookie()
        return cookie


class _DateCache:
    """The ``Date`` header value, formatted at most once per second."""

    second = -1
    value = ""

    @classmethod
    def get(cls, now: float) -> str:
        second = int(now)
        if second != cls.second:
            cls.value, cls.second = HTTPDate(now), second
        return cls.value


class Response:
    """The response being built for the current request."""

    status: Any = ""
    #: ``(name, value)`` pairs, valid after :meth:`finalize`.
    header_list: list[tuple[str, str]] | None = []
    headers = HeaderMap()
    cookie = LazyCookie()
    body = ResponseBody()
    #: When the response was started (seconds since the epoch).
    time: float | None = None
    #: Send the body as it is produced (no Content-Length, chunked on HTTP/1.1).
    stream = False
    #: The final status line (str), valid after :meth:`finalize`.
    output_status: str | None = None
    #: The ``Server`` header of every response.
    server_header = f"morello/{morello.__version__}"

    def __init__(self) -> None:
        self.status = None
        self.header_list = None
        self._body: Any = []
        self.time = now = time.time()
        self.headers = headers = HeaderMap()
        dict.__setitem__(headers, "Content-Type", "text/html")
        dict.__setitem__(headers, "Server", self.server_header)
        dict.__setitem__(headers, "Date", _DateCache.get(now))

    def collapse_body(self) -> bytes:
        """Join the body into one bytes object (and keep it as the body)."""
        body = b"".join(self.body)
        self.body = body
        return body

    def _flush_body(self) -> None:
        # Run generator bodies to the end so their side effects happen.
        for _ in self.body:
            pass

    def finalize(self) -> None:
        """Fix the status line, Content-Length and the header list."""
        status = self.status
        if status is None or status == 200:
            code, self.status = 200, "200 OK"  # the common case, without parsing
        else:
            try:
                code, reason, _ = valid_status(status)
            except ValueError as exc:
                raise HTTPError(500, exc.args[0]) from None
            self.status = f"{code} {reason}"
        self.output_status = self.status
        headers = self.headers

        if self.stream:
            if dict.get(headers, "Content-Length") is None:
                dict.pop(headers, "Content-Length", None)
        elif code < 200 or code in (204, 205, 304):
            # These statuses never carry a body.
            dict.pop(headers, "Content-Length", None)
            self._flush_body()
            self.body = b""
        elif dict.get(headers, "Content-Length") is None:
            body = b"".join(self._body)
            self._body = [body]
            dict.__setitem__(headers, "Content-Length", len(body))

        # Bytes values go out as the latin-1 text they are, not as their repr.
        self.header_list = header_list = [
            (
                name,
                value
                if type(value) is str
                else value.decode("iso-8859-1")
                if type(value) is bytes
                else str(value),
            )
            for name, value in headers.items()
        ]
        for name, value in header_list:
            # (isprintable() is False for control characters.)
            if not (value.isascii() and value.isprintable() and name.isprintable()):
                self.header_list = _encode_header_values(header_list)
                break
        cookie = self.__dict__.get("cookie")  # None if nobody asked for one
        if cookie:
            for _name, morsel in sorted(cookie.items()):
                cookie = morsel.OutputString().translate(_DROP_CONTROL_CHARS)
                self.header_list.append(("Set-Cookie", cookie))


_DROP_CONTROL_CHARS = dict.fromkeys(CONTROL_CHARS)


def _encode_header_values(header_list: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    # WSGI wants latin-1 strings; other text goes out as an RFC 2047 word, and
    # control characters are dropped.
    return [
        (name.decode("iso-8859-1"), value.decode("iso-8859-1"))
        for name, value in HeaderMap.encode_header_items(header_list)
    ]


def text_header_list(header_list: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """``header_list`` with bytes names and values decoded from latin-1.

    Hooks that run after :meth:`Response.finalize` may append pairs of bytes
    (the form CherryPy's ``header_list`` holds); anything else is refused.
    """
    pairs = []
    for name, value in header_list:
        if isinstance(name, bytes):
            name = name.decode("iso-8859-1")
        if isinstance(value, bytes):
            value = value.decode("iso-8859-1")
        if not isinstance(name, str):
            raise TypeError(f"response.header_list holds the name {name!r}: not text or bytes.")
        if not isinstance(value, str):
            raise TypeError(f"response.header_list holds the value {value!r}: not text or bytes.")
        pairs.append((name, value))
    return pairs
