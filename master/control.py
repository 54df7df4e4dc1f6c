"""The master's control endpoint: a small HTTP/1.1 server inside the master's loop.

The master is single-threaded (it forks, so it runs no threads): it owns a
:class:`selectors.BaseSelector` and, for every ready key, calls
``key.data(key.fileobj, mask)``. :class:`ControlServer` fits into that loop::

    sock = control_socket("127.0.0.1:9100")           # or "unix:/run/morello.sock"
    control = ControlServer(sock, app)                # app implements ControlApp
    control.register(selector)
    while running:
        timeout = ...                                 # the master's own deadlines
        deadline = control.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        for key, mask in selector.select(timeout):
            key.data(key.fileobj, mask)
        control.expire()                              # close slow or idle clients
    control.close()

Routes: ``GET /`` (the list of routes), ``GET /healthz``, ``GET /readyz``,
``GET /status`` (JSON), ``GET /metrics`` (Prometheus text) and
``POST /scale?workers=N``; ``HEAD`` works wherever ``GET`` does. Each connection
carries exactly one request and gets ``Connection: close``. Request bodies
are refused (413), request heads are limited to :data:`MAX_HEAD` bytes
(431), and a client that has not sent a complete request within ``timeout``
seconds is disconnected. Sockets are non-blocking and responses that do not
fit in the socket buffer are written as the client reads them, so a client
can never stall the master.

The endpoint can scale the server, so :func:`control_socket` refuses
addresses other than loopback unless ``allow_remote`` is set; a UNIX socket is
created with mode 0600. A web page must not reach it through the visitor's
browser (a cross-site request, or DNS rebinding: a name of the attacker's
that resolves to 127.0.0.1), so every request that carries an ``Origin``
header, or whose ``Host`` is not the endpoint's own address, is refused
(403); see :class:`HostCheck`. With a ``token``, every POST must also carry
``Authorization: Bearer TOKEN`` (else 401).
"""

from __future__ import annotations

import errno
import hmac
import http
import ipaddress
import json
import logging
import os
import re
import selectors
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

log = logging.getLogger("morello.master.control")

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
_WORKERS = re.compile(r"[0-9]{1,6}")
_PORT = re.compile(r"[0-9]{1,5}")
_DIGITS = re.compile(r"[0-9]+")

_READING, _WRITING, _LINGERING = "reading", "writing", "lingering"


class ControlApp(Protocol):
    """What the master provides to the control endpoint."""

    def healthy(self) -> bool:
        """True while the master's loop runs (``/healthz``)."""

    def ready(self) -> bool:
        """True when enough workers are ready to serve (``/readyz``)."""

    def status(self) -> dict[str, Any]:
        """The master's status document, JSON-serialisable (``/status``)."""

    def metrics(self) -> str:
        """Prometheus text exposition (``/metrics``)."""

    def scale(self, workers: int) -> None:
        """Set the number of workers.

        Raise :class:`Conflict` (409) when the master cannot run that many in
        its state, ValueError (400) when the number is invalid; the message
        goes to the client.
        """


# --- addresses -------------------------------------------------------------


def parse_address(address: str) -> tuple[socket.AddressFamily, Any]:
    """Split a control address into a socket family and a ``bind``/``connect`` address.

    ``unix:/path`` gives ``(AF_UNIX, "/path")``; ``host:port`` and
    ``[ipv6]:port`` give ``(AF_INET or AF_INET6, (host, port))``. Raises
    ValueError with a message naming the problem.
    """
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ValueError(f"control address {address!r}: empty socket path")
        return socket.AF_UNIX, path
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(
            f"control address {address!r}: expected HOST:PORT, [IPV6]:PORT or unix:/PATH"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"control address {address!r}: write IPv6 addresses as [ADDR]:PORT")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"control address {address!r}: port must be a number from 0 to 65535")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name, resolved by bind/connect
    return family, (host, int(port_text))


def control_socket(address: str, *, allow_remote: bool = False, backlog: int = 16) -> socket.socket:
    """A listening, non-blocking socket for :class:`ControlServer` on ``address``.

    TCP addresses must be loopback (``127.0.0.1:9100``, ``[::1]:9100``,
    ``localhost:9100``) unless ``allow_remote``: anyone who can reach the
    endpoint can scale the server. A stale UNIX socket file is replaced; a
    live one (another master answers) raises ``OSError(EADDRINUSE)``.
    """
    family, where = parse_address(address)
    if family == socket.AF_UNIX:
        sock = _bind_unix(where)
    else:
        host, port = where
        if host == "localhost":
            host = "127.0.0.1"
        if not allow_remote and not _is_loopback(host):
            raise ValueError(
                f"control address {address!r} is not a loopback address; the control "
                "endpoint can scale and inspect the server, so bind it to 127.0.0.1, "
                "[::1] or a unix: socket"
            )
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere


def _bind_unix(path: str) -> socket.socket:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise ValueError(f"control socket path {path!r} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Non-blocking: a live listener with a full backlog must not hang us.
        probe.setblocking(False)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # left behind by a master that died
        except BlockingIOError:
            raise OSError(errno.EADDRINUSE, f"another process listens on {path!r}") from None
        else:
            raise OSError(errno.EADDRINUSE, f"another process listens on {path!r}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # umask rather than chmod after bind, so the socket is never reachable by
    # others even briefly; the master is single-threaded, so this is safe.
    previous_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(previous_umask)
    return sock


# --- HTTP ------------------------------------------------------------------


class _HTTPError(Exception):
    """A request that gets an error response instead of reaching a route."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Conflict(ValueError):
    """A valid request the master cannot honour in its current state (409)."""


class HostCheck:
    """Which ``Host`` headers name this endpoint (the defence against DNS rebinding).

    TCP: the bound IP literal or ``localhost``, with or without the bound
    port (any IP literal when bound to a wildcard address: a rebinding
    attack needs a host *name*). UNIX socket: ``localhost`` (what
    ``morello ctl`` and curl send), with any port. A request without
    ``Host`` is accepted: browsers always send one.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self.port: int | None = None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = sock.getsockname()[:2]
            self.ip, self.port = ipaddress.ip_address(host), port

    def allows(self, value: str) -> bool:
        """Whether the ``Host`` header ``value`` names this endpoint."""
        value = value.lower()
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
            if rest and port is None:
                return False
        else:
            host, sep, port_text = value.partition(":")
            port = port_text if sep else None
        if port is not None and not (
            _PORT.fullmatch(port) and self.port in (None, int(port))
        ):
            return False
        if host == "localhost":
            return True
        if self.ip is None:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False  # a name: it may be the attacker's, resolving to us
        return ip == self.ip or self.ip.is_unspecified

    def describe(self) -> str:
        """The accepted forms, for the 403 message."""
        if self.ip is None:
            return "localhost"
        literal = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{literal}:{self.port} or localhost:{self.port}"


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, list[str]] = field(default_factory=dict)


def _parse_head(head: bytes) -> _Request:
    """Parse a request head (without the blank line); raise :class:`_HTTPError`."""
    lines = [line.removesuffix("\r") for line in head.decode("latin-1").split("\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
        raise _HTTPError(400, f"malformed request line: {lines[0][:80]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _HTTPError(505, f"{version} is not supported; use HTTP/1.1")
    if not _TARGET.fullmatch(target):
        raise _HTTPError(400, "the request target must be a path starting with '/'")
    path, _, query = target.partition("?")
    request = _Request(method, path, query)
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise _HTTPError(400, "folded header lines are not accepted")
        name, sep, value = line.partition(":")
        value = value.strip(" \t")
        if not sep or not _TOKEN.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise _HTTPError(400, f"malformed header line: {line[:80]!r}")
        request.headers.setdefault(name.lower(), []).append(value)
    _refuse_body(request)
    return request


def _refuse_body(request: _Request) -> None:
    """No route takes a body (``/scale`` uses the query string), so refuse any."""
    if "transfer-encoding" in request.headers:
        raise _HTTPError(413, "request bodies are not accepted")
    lengths = set(request.headers.get("content-length", []))
    if not lengths:
        return
    if len(lengths) > 1 or not all(_DIGITS.fullmatch(length) for length in lengths):
        raise _HTTPError(400, "invalid Content-Length")
    # Any non-zero digit means a body; int() could choke on thousands of digits.
    if lengths.pop().strip("0"):
        raise _HTTPError(
            413, "request bodies are not accepted; pass parameters in the query string"
        )


def _head_end(buffer: bytes | bytearray) -> int:
    """Where the request head ends (the blank line starts), or -1 if not received yet."""
    ends = [index for blank in (b"\r\n\r\n", b"\n\n") if (index := buffer.find(blank)) >= 0]
    return min(ends, default=-1)


def _response(
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

    def __init__(self, server: ControlServer, sock: socket.socket, now: float) -> None:
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
            self._respond(_response(431, f"request head larger than {MAX_HEAD} bytes\n"))
            return
        try:
            request = _parse_head(bytes(self.inbuf[:end]))
        except _HTTPError as error:
            self._respond(_response(error.status, error.message + "\n"))
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


_Handler = Callable[["ControlServer", _Request], bytes]


class ControlServer:
    """The control endpoint, served from the master's selector loop (see module doc).

    ``app`` may be None at first and assigned later (the socket is bound
    before privileges are dropped, the master object comes after); until
    then every route answers 503.

    ``token``, when set, is the secret every POST must present as
    ``Authorization: Bearer TOKEN`` (it may be assigned later, like ``app``).
    ``timeout`` bounds how long a client may take to send its request or to
    read the response; ``max_connections`` bounds open connections (the
    oldest unfinished one is closed to make room, or the new one is refused
    when all are busy writing); ``clock`` is the time source for deadlines.
    """

    def __init__(
        self,
        sock: socket.socket,
        app: ControlApp | None,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.app = app
        self.token = token
        self.hosts = HostCheck(sock)
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
            raise RuntimeError("ControlServer.register(selector) was not called")
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

    # --- routes ----------------------------------------------------------

    def serve(self, request: _Request) -> bytes:
        """The complete response to a parsed request (headers only for HEAD)."""
        response = self._route(request)
        if request.method == "HEAD":  # _response always ends its head with CRLF CRLF
            response = response[: response.index(b"\r\n\r\n") + 4]
        return response

    def _route(self, request: _Request) -> bytes:
        try:
            self._check_caller(request)
        except _HTTPError as error:
            return _response(error.status, error.message + "\n", headers=error.headers)
        route = _ROUTES.get(request.path)
        if route is None:
            return _response(404, f"no such endpoint: {request.path[:80]}\n")
        methods, handler, _ = route
        allowed = methods + ("HEAD",) if "GET" in methods else methods
        if request.method not in allowed:
            message = f"{request.method} is not allowed here\n"
            return _response(405, message, headers=(("Allow", ", ".join(allowed)),))
        try:
            if request.method == "POST":
                self._check_token(request)
            if self.app is None:
                return _response(503, "the master is starting\n")
            return handler(self, request)
        except _HTTPError as error:
            return _response(error.status, error.message + "\n", headers=error.headers)
        except Exception as exc:  # the master must keep running whatever the app does
            log.exception("control endpoint: %s %s failed", request.method, request.path)
            return _response(500, f"internal error: {type(exc).__name__}\n")

    def _check_caller(self, request: _Request) -> None:
        """Refuse requests made by a web page in a browser (see :class:`HostCheck`)."""
        if "origin" in request.headers:
            raise _HTTPError(
                403, "requests from web pages (with an Origin header) are not accepted"
            )
        hosts = request.headers.get("host", [])
        if len(hosts) > 1:
            raise _HTTPError(400, "more than one Host header")
        if hosts and not self.hosts.allows(hosts[0]):
            raise _HTTPError(
                403,
                f"Host {hosts[0][:80]!r} is not this endpoint's address "
                f"(use {self.hosts.describe()})",
            )

    def _check_token(self, request: _Request) -> None:
        if not self.token:
            return
        given = request.headers.get("authorization", [])
        expected = f"Bearer {self.token}".encode()
        # Constant time: the comparison must not tell how much of a guess was right.
        if len(given) != 1 or not hmac.compare_digest(given[0].encode("latin-1"), expected):
            raise _HTTPError(
                401,
                "this endpoint needs Authorization: Bearer <master.control_token> for POST",
                (("WWW-Authenticate", 'Bearer realm="morello"'),),
            )

    def _index(self, request: _Request) -> bytes:
        lines = [f"{' '.join(methods):4} {path:22} {about}" for path, (methods, _, about) in (
            _ROUTES.items()
        )]  # fmt: skip
        return _response(200, "morello control endpoint\n" + "\n".join(lines) + "\n")

    def _healthz(self, request: _Request) -> bytes:
        return _response(200, "ok") if self.app.healthy() else _response(503, "unhealthy")

    def _readyz(self, request: _Request) -> bytes:
        return _response(200, "ready") if self.app.ready() else _response(503, "not ready")

    def _status(self, request: _Request) -> bytes:
        body = json.dumps(self.app.status(), default=str, indent=2) + "\n"
        return _response(200, body, content_type="application/json")

    def _metrics(self, request: _Request) -> bytes:
        return _response(
            200, self.app.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def _scale(self, request: _Request) -> bytes:
        values = parse_qs(request.query, keep_blank_values=True).get("workers", [])
        if not values:
            raise _HTTPError(400, "missing the workers parameter: POST /scale?workers=N")
        if len(values) > 1:
            raise _HTTPError(400, "give the workers parameter only once")
        if not _WORKERS.fullmatch(values[0]):
            raise _HTTPError(
                400, f"workers must be a whole number of workers, got {values[0][:40]!r}"
            )
        workers = int(values[0])
        try:
            self.app.scale(workers)
        except ValueError as exc:
            status = 409 if isinstance(exc, Conflict) else 400
            raise _HTTPError(status, f"cannot scale to {workers} workers: {exc}") from exc
        body = json.dumps({"workers": workers}) + "\n"
        return _response(200, body, content_type="application/json")


#: Path: (methods, handler, what it is for, as ``GET /`` lists it).
_ROUTES: dict[str, tuple[tuple[str, ...], _Handler, str]] = {
    "/": (("GET",), ControlServer._index, "this list"),
    "/healthz": (("GET",), ControlServer._healthz, "200 while the master runs"),
    "/readyz": (("GET",), ControlServer._readyz, "200 when workers are ready to serve"),
    "/status": (("GET",), ControlServer._status, "the master and its workers (JSON)"),
    "/metrics": (("GET",), ControlServer._metrics, "Prometheus metrics"),
    "/scale": (("POST",), ControlServer._scale, "?workers=N: run N workers from now on"),
}
