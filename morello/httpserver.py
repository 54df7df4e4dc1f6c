"""The configurable HTTP server: ``morello.server`` and the extra ``morello.servers``.

:class:`Server` holds the settings CherryPy users know from the ``server``
config namespace (``socket_host``, ``socket_port``, ``thread_pool``,
``ssl_certificate``...) and, as a bus plugin, starts a cheroot
:class:`WSGIServer` built from them when the engine starts::

    morello.server.socket_port = 9090
    morello.engine.start()

Setting :attr:`Server.listen_socket` to a socket that is already bound and
listening (or to its file descriptor) makes the server accept on that
socket instead of binding its own; this is how prefork workers share the
sockets their master opened.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import cheroot.errors
import cheroot.server
import cheroot.wsgi
from cheroot.errors import MaxSizeExceeded

from morello.http import framing
from morello.http.accepting import ConnectionManager
from morello.http.connection import LeanConnection
from morello.http.response import refusal
from morello.http.tls import DeferredHandshakeAdapter
from morello.process.servers import BindAddr, ServerAdapter, format_url
from morello.thread_pool import AdaptiveThreadPool

__all__ = ["Server", "WSGIServer", "server_namespace_handler"]

WSGIApp = Callable[..., Any]
ListenSocket = socket.socket | int


#: Control characters, which a request target may not contain (RFC 3986).
_CONTROL_CHARS = re.compile(rb"[\x00-\x1f\x7f]")


class ProxyModeRequest(cheroot.server.HTTPRequest):
    """cheroot request that accepts absolute request targets (``GET http://host/path``).

    CherryPy applications have always received those, so the framework, not
    the HTTP server, decides what to do with them. The request line, the
    headers and a chunked body must follow RFC 9112 to the letter
    (:mod:`morello.http.framing`); anything else gets a 400 and the
    connection is closed.
    """

    def __init__(self, server: cheroot.server.HTTPServer, conn: Any, **kwargs: Any) -> None:
        kwargs.setdefault("proxy_mode", True)
        super().__init__(server, conn, **kwargs)

    @property
    def header_reader(self) -> Callable[[Any, dict[bytes, bytes]], dict[bytes, bytes]]:
        """What cheroot calls to read the headers: the strict reader, then the framing check."""
        return self._read_headers

    def _read_headers(self, rfile: Any, fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
        framing.read_fields(rfile, fields)
        framing.check_body_framing(fields, self.response_protocol == "HTTP/1.1")
        return fields

    def read_request_line(self) -> bool:
        """cheroot's, plus a 400 for a method that is no token or a control character
        in the request target."""
        if not super().read_request_line():
            return False
        if not framing.is_token(self.method):
            self.simple_response("400 Bad Request", "Malformed method name")
            return False
        if _CONTROL_CHARS.search(self.uri):
            self.simple_response("400 Bad Request", "Malformed Request-URI")
            return False
        return True

    def respond(self) -> None:
        """Run the application on a body reader of the request's framing, then finish."""
        if self.chunked_read:
            self.rfile = framing.ChunkedBody(
                self.conn.rfile, self.server.max_request_body_size
            )
        else:
            # read_request_headers() refused a length over the limit already.
            length = int(self.inheaders.get(b"Content-Length", 0))
            self.rfile = cheroot.server.KnownLengthRFile(self.conn.rfile, length)
        self.server.gateway(self).respond()
        if self.ready:
            self.ensure_headers_sent()
        if self.chunked_write:
            self.conn.wfile.write(b"0\r\n\r\n")

    def simple_response(self, status: str, msg: str = "") -> None:
        """cheroot's bare response for a request the server refuses, saying ``Connection: close``.

        The connection is always closed after one: what follows on it
        cannot be trusted to start a request.
        """
        self.close_connection = True
        status = str(status)
        if status[:3] in ("413", "414"):
            super().simple_response(status, msg)  # it says Connection: close itself
            return
        try:
            self.conn.wfile.write(refusal(self.server.protocol, status, msg))
        except OSError as exc:
            if exc.args[0] not in cheroot.errors.socket_errors_to_ignore:
                raise

    def send_headers(self) -> None:
        """Drain an unread chunked body first, as cheroot does for a sized one.

        Otherwise the rest of the body is read as the next request on the
        connection. A body that cannot be drained closes the connection.
        """
        if self.chunked_read and not self.rfile.closed and int(self.status[:3]) != 413:
            try:
                while self.rfile.read(65536):
                    pass
            except (OSError, ValueError, MaxSizeExceeded):  # malformed, or too large
                self.close_connection = True
        super().send_headers()


class Connection(LeanConnection):
    """morello's connection: the lean request path (:mod:`morello.http`) where it applies,
    else cheroot's, with :class:`ProxyModeRequest` requests."""

    RequestHandlerClass = ProxyModeRequest


class WSGIServer(cheroot.wsgi.Server):
    """cheroot's WSGI server, configured from a :class:`Server`.

    Errors cheroot reports go to the server's bus log. When ``listen_socket``
    is set, :meth:`prepare` serves on a copy of that socket as it is.
    """

    ConnectionClass = Connection

    def __init__(self, server_adapter: Server, app: WSGIApp | None = None) -> None:
        self.server_adapter = server_adapter
        #: A listening socket (or its descriptor) owned by someone else, to serve on.
        self.listen_socket = server_adapter.listen_socket
        # cheroot reads both in __init__ (gateway choice, default server name).
        self.wsgi_version = server_adapter.wsgi_version
        self.version = f"morello/{_morello_version()} {cheroot.wsgi.Server.version}"
        bind_addr = server_adapter.bind_addr
        super().__init__(
            bind_addr,
            app if app is not None else _application(server_adapter),
            numthreads=server_adapter.thread_pool,
            server_name=bind_addr[0] if isinstance(bind_addr, tuple) else bind_addr,
            max=server_adapter.thread_pool_max,
            request_queue_size=server_adapter.socket_queue_size,
            timeout=server_adapter.socket_timeout,
            shutdown_timeout=server_adapter.shutdown_timeout,
            accepted_queue_size=server_adapter.accepted_queue_size,
            accepted_queue_timeout=server_adapter.accepted_queue_timeout,
            peercreds_enabled=server_adapter.peercreds,
            peercreds_resolve_enabled=server_adapter.peercreds_resolve,
        )
        # cheroot's fixed-size pool, replaced by one that follows the load.
        self.requests = AdaptiveThreadPool(
            self,
            min=self.requests.min,
            max=server_adapter.thread_pool_max,
            accepted_queue_size=server_adapter.accepted_queue_size,
            accepted_queue_timeout=server_adapter.accepted_queue_timeout,
        )
        self.protocol = server_adapter.protocol_version
        self.keep_alive_conn_limit = server_adapter.keep_alive_conn_limit
        self.nodelay = server_adapter.nodelay
        self.max_request_header_size = server_adapter.max_request_header_size or 0
        self.max_request_body_size = server_adapter.max_request_body_size or 0
        self.request_head_timeout = server_adapter.request_head_timeout or 0
        self.min_body_rate = server_adapter.min_body_rate or 0
        self.body_rate_grace = server_adapter.body_rate_grace or 0
        self.ssl_adapter = _ssl_adapter(server_adapter)
        self.stats["Enabled"] = bool(server_adapter.statistics)

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        """Send cheroot's error messages to the bus log."""
        self.server_adapter.bus.log(msg, level, traceback)

    def prepare(self) -> None:
        """Bind and listen (or adopt ``listen_socket``), then start the worker threads."""
        if self.listen_socket is None:
            super().prepare()
            if self.ready:
                # As on an adopted socket: an accept() that finds nothing returns at once.
                self.socket.setblocking(False)
                cheroots = self._connections
                self._connections = ConnectionManager(self)
                cheroots.close()  # its selector only held the listening socket
            return
        # cheroot's own prepare() always creates, binds and listen()s a socket.
        # An inherited socket needs none of that, and listen() would even
        # reset the backlog its owner chose for every process sharing it,
        # so this is the rest of cheroot's preparation without the binding.
        self.socket = self._adopt_listen_socket()
        self.bind_addr = self.resolve_real_bind_addr(self.socket)
        if self.software is None:
            self.software = f"{self.version} Server"
        self._interrupt = None
        self._connections = ConnectionManager(self)
        self.requests.start()
        self.ready = True
        self._start_time = time.time()

    def _adopt_listen_socket(self) -> socket.socket:
        """Return this server's own copy of ``listen_socket``.

        cheroot closes its socket on stop(); closing a duplicate leaves the
        owner's socket (and a UNIX socket's path) untouched, ready for the
        next server.
        """
        given = self.listen_socket
        sock = _socket_from_fd(given) if isinstance(given, int) else given.dup()
        try:
            _check_listening(sock)
        except BaseException:
            sock.close()
            raise
        # Accepted connections inherit TCP_NODELAY from the listening socket;
        # without it small keep-alive responses wait for delayed ACKs (~40 ms).
        if self.nodelay and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Several processes may wake up for one connection: the ones that
        # lose the race must get EAGAIN at once and go back to their
        # selector, not block in accept() for cheroot's one-second timeout.
        sock.setblocking(False)
        if self.ssl_adapter is not None:
            sock = self.ssl_adapter.bind(sock)
        return sock


def _socket_from_fd(fd: int) -> socket.socket:
    """A new socket object on a duplicate of ``fd``, leaving ``fd`` itself alone."""
    copy = os.dup(fd)
    try:
        return socket.socket(fileno=copy)
    except BaseException:
        os.close(copy)
        raise


def _check_listening(sock: socket.socket) -> None:
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"listen_socket must be a stream socket, not {sock!r}")
    if hasattr(socket, "SO_ACCEPTCONN") and not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        raise ValueError(f"listen_socket must already be bound and listening: {sock!r}")


def _socket_address(listen_socket: ListenSocket) -> BindAddr:
    """The ``(host, port)`` or path a listening socket (or descriptor) is bound to."""
    if isinstance(listen_socket, int):
        with _socket_from_fd(listen_socket) as sock:
            return cheroot.server.HTTPServer.resolve_real_bind_addr(sock)
    return cheroot.server.HTTPServer.resolve_real_bind_addr(listen_socket)


def _application(server: Server) -> WSGIApp:
    if server.app is not None:
        return server.app
    # Imported late: morello.tree does not exist yet when this module loads.
    import morello

    return morello.tree


def _ssl_adapter(server: Server) -> Any:
    """A cheroot SSL adapter for the server's ``ssl_*`` settings, or None for plain HTTP."""
    if not (server.ssl_context or server.ssl_certificate):
        return None
    module = server.ssl_module or "builtin"
    if module == "builtin":
        adapter_class = DeferredHandshakeAdapter  # the handshake waits on nobody
    else:
        adapter_class = cheroot.server.get_ssl_adapter_class(module)
    adapter = adapter_class(
        server.ssl_certificate,
        server.ssl_private_key,
        server.ssl_certificate_chain,
        server.ssl_ciphers,
    )
    if server.ssl_context:
        # A given context replaces the one the adapter built from the files.
        adapter.context = server.ssl_context
    return adapter


def _morello_version() -> str:
    return getattr(sys.modules.get("morello"), "__version__", "dev")


class _NonNegative:
    """A number setting that is 0 (or None: off) or more; anything else is refused at once."""

    def __init__(self, default: float) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, server: Any, owner: type | None = None) -> Any:
        return self.default if server is None else server.__dict__.get(self.name, self.default)

    def __set__(self, server: Any, value: Any) -> None:
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"server.{self.name} must be a number, 0 or more, not {value!r}")
        server.__dict__[self.name] = value


class Server(ServerAdapter):
    """The configurable HTTP server adapter (CherryPy's ``cherrypy.server``).

    Set attributes, usually through the ``server`` config namespace, then
    start the bus; the cheroot server is built from them at start time.
    ``app`` is the WSGI application to serve (default: ``morello.tree``)
    and ``bus`` the engine (default: ``morello.engine``).
    """

    _socket_port: int | None = 8080
    _socket_host: str | None = "127.0.0.1"

    #: A UNIX socket path to listen on instead of ``socket_host``/``socket_port``.
    socket_file: str | None = None
    #: The backlog passed to ``listen()``.
    socket_queue_size: int = 5
    #: Seconds an accepted connection may stay silent.
    socket_timeout: float = 10
    #: How many connections handed to the pool from outside a poll (TLS
    #: records already decrypted, connections off the lean path) may wait
    #: for a thread (-1: no limit). Requests a poll finds are queued for the
    #: threads regardless: while every thread is busy nobody polls, so new
    #: work waits in the kernel's listen queue, where other workers take it.
    accepted_queue_size: int = -1
    #: Seconds to wait for room in that queue before answering 503.
    accepted_queue_timeout: float = 10
    #: Seconds to wait for worker threads to finish when stopping.
    shutdown_timeout: float = 5
    #: Most keep-alive connections kept open between requests; past it a
    #: response says ``Connection: close`` (None: no limit). An idle
    #: connection costs a socket and a buffer, not a thread, so this is far
    #: above cheroot's 10, which made busy clients reconnect.
    keep_alive_conn_limit: int | None = 1000
    #: The HTTP version written in response status lines.
    protocol_version: str = "HTTP/1.1"
    #: Number of worker threads started, and kept however idle.
    thread_pool: int = 10
    #: Most worker threads the pool grows to while requests wait for one and
    #: the CPU has room (-1: none beyond ``thread_pool``).
    thread_pool_max: int = -1
    #: Largest request line plus headers, in bytes (0 or None: no limit).
    max_request_header_size: int = 500 * 1024
    #: Largest request body, in bytes (0 or None: no limit).
    max_request_body_size: int = 100 * 1024 * 1024
    #: Seconds a request head may take to arrive, from its first byte, however
    #: the client trickles it; then 408 (0 or None: no limit).
    request_head_timeout = _NonNegative(10)
    #: Bytes a second a request body must average once ``body_rate_grace``
    #: seconds of waiting for it are used up; slower gets 408 (0 or None: no minimum).
    min_body_rate = _NonNegative(500)
    #: Seconds of waiting on a request body allowed before ``min_body_rate`` applies.
    body_rate_grace = _NonNegative(10)
    #: A ready-made HTTP server object (or the dotted name of a factory taking
    #: this Server) to use instead of building a :class:`WSGIServer`.
    instance: Any = None
    #: An :class:`ssl.SSLContext` to use instead of one built from the files below.
    ssl_context: Any = None
    #: Path of the PEM certificate; setting it (with the key) enables HTTPS.
    ssl_certificate: str | None = None
    #: Path of the intermediate certificates (CA chain).
    ssl_certificate_chain: str | None = None
    #: Path of the PEM private key.
    ssl_private_key: str | None = None
    #: OpenSSL cipher list.
    ssl_ciphers: str | None = None
    #: Name of the cheroot SSL adapter (``cheroot.server.ssl_adapters``).
    ssl_module: str = "builtin"
    #: Whether cheroot gathers statistics.
    statistics: bool = False
    #: Whether TCP_NODELAY is set on the listening socket.
    nodelay: bool = True
    #: The WSGI gateway version (``cheroot.wsgi.wsgi_gateways`` key).
    wsgi_version: tuple[Any, int] = (1, 0)
    #: Whether UNIX socket peer credentials go into the WSGI environ.
    peercreds: bool = False
    #: Whether those credentials are resolved to user and group names.
    peercreds_resolve: bool = False
    #: Whether the client address should be resolved to a host name
    #: (kept for configuration compatibility; the server itself does not).
    reverse_dns: bool = False
    #: A listening socket (or descriptor) to serve on instead of binding one.
    #: It is used as is and never closed or unlinked by this server.
    listen_socket: ListenSocket | None = None
    #: The WSGI application; None means ``morello.tree``.
    app: WSGIApp | None = None

    def __init__(self, bus: Any = None, app: WSGIApp | None = None) -> None:
        # Re-assigning bind_addr through its setter keeps the class defaults.
        super().__init__(bus, httpserver=None, bind_addr=self.bind_addr)
        if app is not None:
            self.app = app

    @property
    def bus(self) -> Any:
        """The bus this server follows; ``morello.engine`` unless one was given."""
        if self._bus is None:
            import morello

            self._bus = morello.engine
        return self._bus

    @bus.setter
    def bus(self, value: Any) -> None:
        self._bus = value

    @property
    def socket_host(self) -> str | None:
        """The host name or IP address to listen on.

        '0.0.0.0' means every IPv4 interface and '::' every IPv6 (and,
        where supported, IPv4) interface. The empty string is refused: its
        meaning differs between platforms.
        """
        return self._socket_host

    @socket_host.setter
    def socket_host(self, value: str | None) -> None:
        if value == "":
            raise ValueError(
                "socket_host may not be the empty string: use '0.0.0.0' to listen on "
                "every IPv4 interface or '::' for every IPv6 interface."
            )
        self._socket_host = value

    @property
    def socket_port(self) -> int | None:
        """The TCP port to listen on; 0 lets the system pick a free one."""
        return self._socket_port

    @socket_port.setter
    def socket_port(self, value: int | str | None) -> None:
        if value is not None:
            port = int(value)
            if not 0 <= port <= 65535:
                raise ValueError(f"socket_port must be between 0 and 65535, not {value!r}")
            value = port
        self._socket_port = value

    @property
    def bind_addr(self) -> BindAddr:
        """``(socket_host, socket_port)``, or ``socket_file`` if set.

        With a :attr:`listen_socket`, the address that socket is bound to.
        """
        if self.listen_socket is not None:
            # Remembered per socket: a draining worker closes its inherited
            # socket but still names its address when it stops.
            known = self.__dict__.get("_listen_address")
            if known is None or known[0] is not self.listen_socket:
                known = self._listen_address = (
                    self.listen_socket,
                    _socket_address(self.listen_socket),
                )
            return known[1]
        if self.socket_file:
            return self.socket_file
        if self.socket_host is None and self.socket_port is None:
            return None
        return (self.socket_host, self.socket_port)  # type: ignore[return-value]

    @bind_addr.setter
    def bind_addr(self, value: BindAddr) -> None:
        if value is None:
            self.socket_file = self.socket_host = self.socket_port = None
        elif isinstance(value, (str, bytes)):
            self.socket_file = value if isinstance(value, str) else os.fsdecode(value)
            self.socket_host = self.socket_port = None
        else:
            try:
                host, port = value
            except (TypeError, ValueError):
                raise ValueError(
                    "bind_addr must be a (host, port) tuple for TCP or a string "
                    f"(the path of a UNIX socket), not {value!r}"
                ) from None
            self.socket_host, self.socket_port = host, port
            self.socket_file = None

    def httpserver_from_self(self, httpserver: Any = None) -> tuple[Any, BindAddr]:
        """Return ``(httpserver, bind_addr)``, building the HTTP server from these settings.

        ``httpserver`` (or :attr:`instance`) is used when given; a string
        names a factory that is called with this Server.
        """
        if httpserver is None:
            httpserver = self.instance
        if httpserver is None:
            httpserver = WSGIServer(self)
        elif isinstance(httpserver, str):
            from morello.configfile import resolve_name

            httpserver = resolve_name(httpserver)(self)
        return httpserver, self.bind_addr

    def start(self) -> None:
        """Build the HTTP server if needed, then start it."""
        if not self.httpserver:
            self.httpserver, _ = self.httpserver_from_self()
        super().start()

    start.priority = 75  # type: ignore[attr-defined]

    def base(self) -> str:
        """The server's base URL, ``scheme://host[:port]``, or its socket file.

        A wildcard host is replaced by this machine's host name; port 0 by
        the port actually bound, once known.
        """
        addr = self.bound_addr
        if not isinstance(addr, tuple):
            return addr or ""
        host, port = addr
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        scheme = "https" if self.ssl_certificate else "http"
        return format_url(scheme, host, port)


def server_namespace_handler(key: str, value: Any) -> None:
    """Apply a ``server.*`` config entry.

    ``server.socket_port`` sets ``morello.server.socket_port``;
    ``server.<name>.<attribute>`` configures the extra server
    ``morello.servers[name]``, creating it (subscribed to the engine) on
    first use. ``server.<name>.on = False`` unsubscribes it.
    """
    import morello

    name, _, attribute = key.partition(".")
    if not attribute:
        setattr(morello.server, key, value)
        return
    servers = morello.servers
    server = servers.get(name)
    if server is None:
        server = servers[name] = Server()
        server.subscribe()
    if attribute == "on":
        if value:
            server.subscribe()
        else:
            server.unsubscribe()
    else:
        setattr(server, attribute, value)
