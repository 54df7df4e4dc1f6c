"""Writing a response: the WSGI ``start_response``/``write`` pair, and refusals.

The head is sent together with the first body chunk in one ``sendall``
(so a small response is one write). The framing follows cheroot's rules:
a body without ``Content-Length`` is chunked when both ends speak HTTP/1.1,
or else ends with the connection; 1xx, 204, 205 and 304 responses, and
responses to HEAD, carry no body; ``Connection: close`` is said whenever
the connection will close, ``Connection: Keep-Alive`` to an HTTP/1.0
client that keeps it. ``Date`` and ``Server`` are added unless the
application set them.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BodyLongerThanDeclared", "Response", "http_date", "refusal"]

_BODILESS = frozenset({204, 205, 304})

_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value for now (computed once a second)."""
    global _date_cache
    now = int(time.time())
    second, value = _date_cache
    if second != now:
        value = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, value)
    return value


def refusal(protocol: str, status: str, message: str | bytes = "") -> bytes:
    """A complete plain-text response to a request the server refuses, saying it closes."""
    body = message.encode("ISO-8859-1", "replace") if isinstance(message, str) else message
    return (
        f"{protocol} {status}\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\n"
    ).encode("ISO-8859-1") + body


class BodyLongerThanDeclared(ValueError):
    """The application's first body chunk is longer than its ``Content-Length``."""

    def __init__(self, length: int, declared: int) -> None:
        super().__init__(
            f"The application's response body ({length} bytes or more) is longer than its "
            f"Content-Length ({declared})."
        )


class Response:
    """The response to one request on a lean connection.

    ``close`` starts as what the request asked for; once the head is sent
    it says whether the connection must close after this response.
    """

    __slots__ = (
        "chunked",
        "close",
        "head_sent",
        "headers",
        "keep_alive_ok",
        "no_body",
        "remaining",
        "send",
        "server",
        "status",
        "before_head",
        "http11",
    )

    def __init__(
        self,
        send: Callable[[bytes], Any],
        server: Any,
        http11: bool,
        head_only: bool,
        close: bool,
        before_head: Callable[[Response], None],
    ) -> None:
        self.send = send
        self.server = server
        self.http11 = http11
        self.no_body = head_only
        self.close = close
        #: Called just before the head goes out (to settle the request body).
        self.before_head = before_head
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        #: Body bytes still owed under the application's Content-Length.
        self.remaining: int | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """The WSGI ``start_response`` callable."""
        if self.status is not None and not exc_info:
            raise RuntimeError("WSGI start_response called a second time with no exc_info.")
        if self.head_sent and exc_info:
            raise exc_info[1].with_traceback(exc_info[2])
        if not isinstance(status, str):
            raise TypeError("WSGI response status is not of type str.")
        for name, value in headers:
            if not isinstance(name, str):
                raise TypeError(f"WSGI response header key {name!r} is not of type str.")
            if not isinstance(value, str):
                raise TypeError(f"WSGI response header value {value!r} is not of type str.")
        if exc_info and self.status is not None:
            # As cheroot does: the error's headers join those already given.
            self.headers.extend(headers)
        else:
            self.headers = list(headers)
        self.status = status
        return self.write

    def write(self, chunk: bytes) -> None:
        """The WSGI ``write`` callable; also sends each chunk of the application's iterable."""
        if self.status is None:
            raise RuntimeError("WSGI write called before start_response.")
        head = b"" if self.head_sent else self._head()
        if self.remaining is not None:
            if head and len(chunk) > self.remaining:
                # Nothing has gone out: the client can still get a 500 for it.
                self.head_sent = False
                raise BodyLongerThanDeclared(len(chunk), self.remaining)
            chunk = chunk[: self.remaining]  # never more than announced
            self.remaining -= len(chunk)
        if self.no_body:
            chunk = b""
        elif self.chunked and chunk:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if head or chunk:
            self.send(head + chunk)

    def finish(self) -> None:
        """Send what is left: the head if no body chunk went out, the last chunk if chunked."""
        if not self.head_sent:
            self.send(self._head() + (b"0\r\n\r\n" if self.chunked else b""))
        elif self.chunked:
            self.send(b"0\r\n\r\n")
        if self.remaining:
            # The application sent less than its Content-Length: the client
            # would wait for the rest, or take the next response for it.
            self.close = True

    def _head(self) -> bytes:
        self.head_sent = True
        status = self.status or "500 Internal Server Error"
        code = int(status[:3])
        headers = self.headers
        length = connection = None
        has_date = has_server = False
        for name, value in headers:  # one pass: the names that change the framing
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower == "connection":
                connection = value
            elif lower == "date":
                has_date = True
            elif lower == "server":
                has_server = True
        if code < 200 or code in _BODILESS:
            self.no_body = True
        if code == 413:
            self.close = True  # the rest of the request cannot be trusted
        elif length is None and not (code < 200 or code in _BODILESS):
            if self.http11 and not self.no_body:
                self.chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                self.close = True  # only the close can tell where the body ends
        if length is not None and not self.no_body:
            self.remaining = int(length)
        if connection is not None and "close" in connection.lower():
            self.close = True
        if not self.close and not self.server.can_add_keepalive_connection:
            self.close = True
        self.before_head(self)
        if connection is None:
            if self.http11:
                if self.close:
                    headers.append(("Connection", "close"))
            elif not self.close:
                headers.append(("Connection", "Keep-Alive"))
                headers.append(("Keep-Alive", f"timeout={self.server.timeout}"))
        if not has_date:
            headers.append(("Date", http_date()))
        if not has_server:
            headers.append(("Server", self.server.server_name))
        lines = [f"{name}: {value}\r\n" for name, value in headers]
        return f"{self.server.protocol} {status}\r\n{''.join(lines)}\r\n".encode("ISO-8859-1")
