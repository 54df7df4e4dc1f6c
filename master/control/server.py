"""The control endpoint's HTTP server: one request per connection, never blocking.

It runs in the master's single-threaded selector loop. Each connection goes
through three states: *reading* the request head (at most :data:`MAX_HEAD`
bytes, no body), *writing* the response as fast as the client reads it, and
*lingering* (reading and discarding what the client still sends, so closing
does not reset the connection before the response is read). Every state has
a deadline that :meth:`OneRequestServer.expire` enforces. What a request gets
is up to a subclass's :meth:`~OneRequestServer.serve`.
"""

from __future__ import annotations

import http
import logging
import os
import re
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__package__)

#: Largest request head (request line plus headers) accepted, in bytes.
MAX_HEAD = 8192
#: Seconds a client gets to send its request (and, later, to read the response).
DEFAULT_TIMEOUT = 5.0
#: Connections served at once; more evict the oldest unfinished one.
DEFAULT_MAX_CONNECTIONS = 64
#: Seconds, after the response, to read what the client still sends before closing.
LINGER = 1.0
# After a response, closing a socket that still has unread input makes the
# kernel send a reset, which can destroy the response before the client reads
# it; discard at most this much input while lingering.
_LINGER_BYTES = 64 * 1024
# Accepts per readiness event, so a connection flood cannot starve the master.
_ACCEPT_BURST = 16

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_DIGITS = re.compile(r"[0-9]+")

_READING, _WRITING, _LINGERING = "reading", "writing", "lingering"


class HTTPError(Exception):
    """A request that gets an error response instead of reaching a route."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Request:
    """A parsed request head: header names are lower case, each with its values."""

    method: str
    path: str
    query: str
    headers: dict[str, list[str]] = field(default_factory=dict)


def parse_head(head: bytes) -> Request:
    """Parse a request head (without the blank line); raise :class:`HTTPError`."""
    lines = [line.removesuffix("\r") for line in head.decode("latin-1").split("\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
        raise HTTPError(400, f"malformed request line: {lines[0][:80]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HTTPError(505, f"{version} is not supported; use HTTP/1.1")
    if not _TARGET.fullmatch(target):
        raise HTTPError(400, "the request target must be a path starting with '/'")
    path, _, query = target.partition("?")
    request = Request(method, path, query)
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise HTTPError(400, "folded header lines are not accepted")
        name, sep, value = line.partition(":")
        value = value.strip(" \t")
        if not sep or not _TOKEN.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise HTTPError(400, f"malformed header line: {line[:80]!r}")
        request.headers.setdefault(name.lower(), []).append(value)
    _refuse_body(request)
    return request


def _refuse_body(request: Request) -> None:
    """No route takes a body (``/scale`` uses the query string), so refuse any."""
    if "transfer-encoding" in request.headers:
        raise HTTPError(413, "request bodies are not accepted")
    lengths = set(request.headers.get("content-length", []))
    if not lengths:
        return
    if len(lengths) > 1 or not all(_DIGITS.fullmatch(length) for length in lengths):
        raise HTTPError(400, "invalid Content-Length")
    # Any non-zero digit means a body; int() could choke on thousands of digits.
    if lengths.pop().strip("0"):
        raise HTTPError(413, "request bodies are not accepted; pass parameters in the query string")


def _head_end(buffer: bytes | bytearray) -> int:
    """Where the request head ends (the blank line starts), or -1 if not received yet."""
    ends = [index for blank in (b"\r\n\r\n", b"\n\n") if (index := buffer.find(blank)) >= 0]
    return min(ends, default=-1)


def response(
    status: int,
    body: str | bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A complete ``Connection: close`` response."""
    payload = body.encode() if isinstance(body, str) else body
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


# --- the server ------------------------------------------------------------


class _Connection:
    """One client connection: read one request, write one response, close."""

    def __init__(self, server: OneRequestServer, sock: socket.socket, now: float) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.state = _READING
        self.deadline = now + server.timeout
        self.inbuf = bytearray()
        self.outbuf = memoryview(b"")
        self.events = selectors.EVENT_READ
        self.discarded = 0

    def handle_event(self, sock: socket.socket, mask: int) -> None:
        """Selector callback: make what progress the socket allows, never block."""
        try:
            if self.state == _READING:
                self._read()
            elif self.state == _WRITING:
                self._flush()
            else:
                self._drain()
        except (BlockingIOError, InterruptedError):
            pass  # spurious wake-up; the selector calls again
        except OSError:
            self.server.drop(self)  # the client reset or vanished
        except Exception:  # a bug here must cost one connection, not the master
            log.exception("control endpoint: unexpected error; closing the connection")
            self.server.drop(self)

    def _read(self) -> None:
        data = self.sock.recv(4096)
        if not data:
            self.server.drop(self)
            return
        self.inbuf += data
        if self.inbuf[:1] in (b"\r", b"\n"):
            # Empty lines before the request line are allowed (RFC 9112, 2.2).
            self.inbuf = bytearray(self.inbuf.lstrip(b"\r\n"))
        end = _head_end(self.inbuf)
        if end < 0 and len(self.inbuf) <= MAX_HEAD:
            return  # wait for more; expire() ends a client that never finishes
        if end < 0 or end > MAX_HEAD:
            self._respond(response(431, f"request head larger than {MAX_HEAD} bytes\n"))
            return
        try:
            request = parse_head(bytes(self.inbuf[:end]))
        except HTTPError as error:
            self._respond(response(error.status, error.message + "\n"))
            return
        self._respond(self.server.serve(request))

    def _respond(self, data: bytes) -> None:
        self.inbuf.clear()
        self.state = _WRITING
        self.outbuf = memoryview(data)
        self.deadline = self.server.clock() + self.server.timeout
        self._flush()

    def _flush(self) -> None:
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                self._watch(selectors.EVENT_WRITE)
                return
            self.outbuf = self.outbuf[sent:]
            self.deadline = self.server.clock() + self.server.timeout
        self.sock.shutdown(socket.SHUT_WR)
        self.state = _LINGERING
        self.deadline = self.server.clock() + min(LINGER, self.server.timeout)
        self._watch(selectors.EVENT_READ)

    def _drain(self) -> None:
        data = self.sock.recv(4096)
        self.discarded += len(data)
        if not data or self.discarded > _LINGER_BYTES:
            self.server.drop(self)

    def _watch(self, events: int) -> None:
        if events != self.events:
            self.server.selector.modify(self.sock, events, self.handle_event)
            self.events = events


class OneRequestServer:
    """A server of one request per connection, run from the master's selector loop.

    See the module docstring; :meth:`serve` (a subclass's) answers each
    request. ``timeout`` bounds how long a client may take to send its
    request or to read the response; ``max_connections`` bounds open
    connections (the oldest unfinished one is closed to make room, or the new
    one is refused when all are busy writing); ``clock`` is the time source
    for deadlines.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.timeout = timeout
        self.max_connections = max_connections
        self.clock = clock
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[int, _Connection] = {}
        # A worker forked from the master inherits this object; only the
        # process that created it may touch the selector or the socket file.
        self._owner_pid = os.getpid()
        name = sock.getsockname() if sock.family == socket.AF_UNIX else None
        self._unix_path = name if isinstance(name, str) and name[:1] not in ("", "\0") else None

    @property
    def selector(self) -> selectors.BaseSelector:
        """The selector given to :meth:`register`."""
        if self._selector is None:
            raise RuntimeError(f"{type(self).__name__}.register(selector) was not called")
        return self._selector

    @property
    def connection_count(self) -> int:
        """Client connections currently open."""
        return len(self._connections)

    def register(self, selector: selectors.BaseSelector) -> None:
        """Watch the listening socket in ``selector``; its key's data is :meth:`handle_accept`."""
        self._selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self.handle_accept)

    def handle_accept(self, sock: socket.socket, mask: int) -> None:
        """Selector callback for the listening socket: accept waiting clients."""
        for _ in range(_ACCEPT_BURST):
            try:
                client, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: retry next loop
                log.warning("control endpoint: accept failed: %s", exc)
                return
            client.setblocking(False)
            if len(self._connections) >= self.max_connections and not self._evict():
                client.close()
                continue
            connection = _Connection(self, client, self.clock())
            self._connections[connection.fd] = connection
            self.selector.register(client, selectors.EVENT_READ, connection.handle_event)

    def _evict(self) -> bool:
        """Close the oldest connection not busy writing a response; False if none."""
        for connection in self._connections.values():
            if connection.state != _WRITING:
                self.drop(connection)
                return True
        return False

    def next_deadline(self) -> float | None:
        """The earliest time (on ``clock``) :meth:`expire` has work, or None."""
        return min((c.deadline for c in self._connections.values()), default=None)

    def expire(self, now: float | None = None) -> None:
        """Close connections past their deadline; call this from every loop iteration."""
        now = self.clock() if now is None else now
        for connection in [c for c in self._connections.values() if c.deadline <= now]:
            if connection.state == _READING:
                log.debug("control endpoint: closing a client that sent no complete request")
            self.drop(connection)

    def drop(self, connection: _Connection) -> None:
        """Close one client connection and forget it."""
        if self._connections.pop(connection.fd, None) is None:
            return
        if self._selector is not None:
            try:
                self._selector.unregister(connection.sock)
            except (KeyError, ValueError):
                pass
        connection.sock.close()

    def close(self) -> None:
        """Close every connection and the listening socket (and its UNIX path, if ours).

        In a forked worker this only closes the inherited descriptors: an
        inherited epoll selector is shared with the master, so unregistering
        there would silence the master's endpoint.
        """
        if os.getpid() != self._owner_pid:
            self._selector = None
            self._unix_path = None
        for connection in list(self._connections.values()):
            self.drop(connection)
        if self._selector is not None:
            try:
                self._selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        # Unlink before closing: a new master (USR2) waiting for the path must
        # never bind it in between and then lose its own file to our unlink.
        if self._unix_path is not None:
            try:
                os.unlink(self._unix_path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # e.g. privileges dropped since the bind: only a leftover
                log.warning("control endpoint: cannot remove %s: %s", self._unix_path, exc)
        self.sock.close()

    def serve(self, request: Request) -> bytes:
        """The complete response to a parsed request; subclasses provide it."""
        raise NotImplementedError
