"""Run an HTTP server under the control of a :class:`~morello.process.bus.Bus`.

A :class:`ServerAdapter` is a bus plugin: once subscribed, ``bus.start()``
starts its HTTP server in a background thread and ``bus.stop()`` stops it;
``bus.graceful()`` leaves it alone, so a graceful reload of the application
never closes the listening socket. Several adapters can share one bus, for
example to serve on two ports::

    ServerAdapter(bus, WSGIServer(("0.0.0.0", 80), app), ("0.0.0.0", 80)).subscribe()
    ServerAdapter(bus, WSGIServer(("::1", 8443), app), ("::1", 8443)).subscribe()
    bus.start()

The HTTP server can be any object with ``start()``, ``stop()`` and a
``ready`` flag; a cheroot server (with ``prepare()`` and ``serve()``) gets
its socket bound in the calling thread so that bind errors reach the caller.

The port helpers :func:`check_port`, :func:`wait_for_free_port` and
:func:`wait_for_occupied_port` probe a TCP port by connecting to it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = [
    "ServerAdapter",
    "Timeouts",
    "check_port",
    "client_host",
    "format_url",
    "wait_for_free_port",
    "wait_for_occupied_port",
]

BindAddr = tuple[str, int] | str | None

# How often the port helpers and ServerAdapter.wait() look again.
_POLL_INTERVAL = 0.02

# How long stop() waits for the server thread to end once the server stopped.
_THREAD_JOIN_TIMEOUT = 10.0


class Timeouts:
    """Default seconds to wait for a port to become occupied or free."""

    occupied: float = 5
    free: float = 1


def client_host(server_host: str) -> str:
    """Return the host a client should connect to to reach ``server_host``.

    The wildcard addresses are not connectable everywhere, so they map to
    the loopback address of the same family.
    """
    if server_host == "0.0.0.0":
        return "127.0.0.1"
    if server_host in ("::", "::0", "::0.0.0.0"):
        return "::1"
    return server_host


def _port_answers(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    host = client_host(host)
    for family, socktype, proto, _name, addr in socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM
    ):
        with socket.socket(family, socktype, proto) as probe:
            probe.settimeout(timeout)
            try:
                probe.connect(addr)
            except OSError:
                continue
            return True
    return False


def check_port(host: str, port: int, timeout: float = 1.0) -> None:
    """Raise :class:`OSError` if something already listens on ``host:port``."""
    if not host:
        raise ValueError("Host values of '' or None are not allowed.")
    if _port_answers(host, port, timeout):
        raise OSError(f"Port {port} is in use on {host!r}; another server is listening there.")


def wait_for_free_port(host: str, port: int, timeout: float | None = None) -> None:
    """Wait until nothing listens on ``host:port`` any more.

    Raises :class:`OSError` if the port is still taken after ``timeout``
    seconds (default :attr:`Timeouts.free`).
    """
    if not host:
        raise ValueError("Host values of '' or None are not allowed.")
    deadline = time.monotonic() + (Timeouts.free if timeout is None else timeout)
    while _port_answers(host, port, timeout=_POLL_INTERVAL * 5):
        if time.monotonic() >= deadline:
            raise OSError(f"Port {port} not free on {host!r}")
        time.sleep(_POLL_INTERVAL)


def wait_for_occupied_port(host: str, port: int, timeout: float | None = None) -> None:
    """Wait until something accepts connections on ``host:port``.

    Raises :class:`OSError` if nothing does after ``timeout`` seconds
    (default :attr:`Timeouts.occupied`).
    """
    if not host:
        raise ValueError("Host values of '' or None are not allowed.")
    deadline = time.monotonic() + (Timeouts.occupied if timeout is None else timeout)
    while not _port_answers(host, port, timeout=_POLL_INTERVAL * 25):
        if time.monotonic() >= deadline:
            raise OSError(f"Port {port} not bound on {host!r}")
        time.sleep(_POLL_INTERVAL)


def _socket_activated() -> bool:
    # systemd socket activation: the listening socket belongs to systemd.
    return bool(os.environ.get("LISTEN_PID"))


def format_url(scheme: str, host: str, port: int) -> str:
    """Return ``scheme://host[:port]``, leaving out the scheme's default port."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port == default_port else f"{scheme}://{host}:{port}"


class ServerAdapter:
    """Bus plugin that starts, stops and restarts one HTTP server.

    ``bind_addr`` is where the server listens: a ``(host, port)`` tuple, a
    UNIX socket path, or None when unknown; it is used to describe the
    server and, for TCP, to wait for the port to be free before starting
    and after stopping. Those waits are skipped when the server was handed
    a listening socket it does not own (its ``listen_socket`` attribute).
    """

    def __init__(self, bus: Any, httpserver: Any = None, bind_addr: BindAddr = None) -> None:
        self.bus = bus
        self.httpserver = httpserver
        self.bind_addr = bind_addr
        #: The exception that ended (or prevented) serving, if any.
        self.interrupt: BaseException | None = None
        #: Whether the server is serving.
        self.running = False
        self._thread: threading.Thread | None = None
        # Guards the handover between start() and the server thread.
        self._state_lock = threading.Lock()
        # Whether start() bound the socket itself (cheroot's prepare()).
        self._prepared = False
        # The port actually bound, for servers asked to listen on port 0.
        self._listening_port: int | None = None

    def subscribe(self) -> None:
        """Start and stop the server along with the bus."""
        self.bus.subscribe("start", self.start)
        self.bus.subscribe("stop", self.stop)

    def unsubscribe(self) -> None:
        """Detach the server from the bus."""
        self.bus.unsubscribe("start", self.start)
        self.bus.unsubscribe("stop", self.stop)

    # -- properties --------------------------------------------------------

    @property
    def owns_socket(self) -> bool:
        """Whether the server binds its own socket (rather than using a handed-over one)."""
        return getattr(self.httpserver, "listen_socket", None) is None and not _socket_activated()

    @property
    def bound_addr(self) -> BindAddr:
        """``bind_addr`` with the port actually bound when port 0 was asked for."""
        addr = self.bind_addr
        if not isinstance(addr, tuple):
            return addr
        host, port = addr
        if port == 0:
            port = self._current_port() or 0
        return host, port

    def _current_port(self) -> int | None:
        sock = getattr(self.httpserver, "socket", None)
        if sock is not None:
            try:
                return sock.getsockname()[1]
            except (OSError, IndexError, TypeError):
                pass
        return self._listening_port

    @property
    def description(self) -> str:
        """Where this server listens, for log messages."""
        addr = self.bind_addr
        if addr is None:
            return "unknown interface (dynamic?)"
        if isinstance(addr, tuple):
            if not self.httpserver:
                return ""
            host, port = self.bound_addr  # type: ignore[misc]
            scheme = "https" if getattr(self.httpserver, "ssl_adapter", None) else "http"
            return format_url(scheme, host, port)
        return f"socket file: {addr}"

    # -- life cycle --------------------------------------------------------

    def start(self) -> None:
        """Start the HTTP server in a new thread and wait until it accepts connections.

        An error while binding or starting is raised here, in the caller.
        """
        if self.running:
            self.bus.log(f"Already serving on {self.description}")
            return
        if not self.httpserver:
            raise ValueError("No HTTP server has been created.")
        self.interrupt = None

        addr = self.bind_addr
        if isinstance(addr, tuple) and addr[1] and self.owns_socket:
            # A previous instance (e.g. before a re-exec) may still be letting go.
            wait_for_free_port(*addr, timeout=Timeouts.free)

        server = self.httpserver
        if isinstance(addr, tuple) and addr[1] == 0 and hasattr(server, "bind_addr"):
            # cheroot remembers the port it got; a restart asks for a fresh one,
            # since that port cannot be rebound while old connections linger.
            server.bind_addr = addr
        self._prepared = callable(getattr(server, "prepare", None)) and callable(
            getattr(server, "serve", None)
        )
        if self._prepared:
            # Bind and listen right here so errors reach the caller, not the thread.
            server.prepare()
            target = server.serve
        else:
            target = getattr(server, "safe_start", None) or server.start

        # Serving happens in a thread so the main thread stays free for
        # signals and KeyboardInterrupt.
        thread = threading.Thread(target=self._serve, args=(target,))
        thread.name = f"HTTPServer {thread.name}"
        self._thread = thread
        thread.start()

        try:
            self.wait()
            with self._state_lock:
                if self.interrupt is not None:
                    raise self.interrupt
                self.running = True
        except BaseException:
            self._abandon()
            raise
        self._listening_port = self._current_port()
        self.bus.log(f"Serving on {self.description}")

    start.priority = 75  # type: ignore[attr-defined]  # after daemonizing (65)

    def _abandon(self) -> None:
        """Release whatever a failed start() left running."""
        try:
            self.httpserver.stop()
        except Exception as exc:
            self.bus.log(f"Error stopping HTTP server after a failed start: {exc!r}", level=30)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_THREAD_JOIN_TIMEOUT)

    def _serve(self, target: Any) -> None:
        """Body of the server thread: serve until stopped, exit the bus on a crash."""
        try:
            target()
        except BaseException as exc:  # whatever ends serving must reach the bus
            with self._state_lock:
                self.interrupt = exc
                serving = self.running
            if not serving:
                return  # still starting: start() re-raises it in its caller
            if isinstance(exc, KeyboardInterrupt):
                self.bus.log("<Ctrl-C> hit: shutting down HTTP server")
            elif isinstance(exc, SystemExit):
                self.bus.log("SystemExit raised: shutting down HTTP server")
            else:
                self.bus.log("Error in HTTP server: shutting down", level=40, traceback=True)
            self.bus.exit()

    def wait(self) -> None:
        """Block until the HTTP server is ready to receive requests.

        Re-raises the error that made the server thread end early.
        """
        thread = self._thread
        while not getattr(self.httpserver, "ready", False):
            if self.interrupt is not None:
                raise self.interrupt
            if thread is not None and not thread.is_alive():
                raise self.interrupt or RuntimeError(
                    f"HTTP server {self.httpserver} stopped before it was ready"
                )
            if thread is not None:
                thread.join(_POLL_INTERVAL)
            else:
                time.sleep(_POLL_INTERVAL)

        # A server we prepared ourselves has returned from listen(): its port
        # is taken by definition, and a handed-over socket is listening by
        # contract. Only an opaque server's "ready" flag is worth double-checking.
        addr = self.bind_addr
        if self._prepared or not isinstance(addr, tuple) or not self.owns_socket:
            return
        host, port = self.bound_addr  # type: ignore[misc]
        with _safe_wait(host, port):
            wait_for_occupied_port(host, port, timeout=Timeouts.occupied)

    def stop(self) -> None:
        """Stop the HTTP server; for a TCP port we bound, wait until it is free again."""
        if not self.running:
            self.bus.log(f"HTTP Server {self.httpserver} already shut down")
            return
        addr = self.bound_addr
        # Blocks until cheroot's accept loop and worker threads are done.
        self.httpserver.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_THREAD_JOIN_TIMEOUT)
        self.running = False
        self._listening_port = None
        if isinstance(addr, tuple) and addr[1] and self.owns_socket:
            wait_for_free_port(*addr, timeout=Timeouts.free)
        self.bus.log(f"HTTP Server {self.httpserver} shut down")

    stop.priority = 25  # type: ignore[attr-defined]

    def restart(self) -> None:
        """Stop, then start the HTTP server."""
        self.stop()
        self.start()


@contextlib.contextmanager
def _safe_wait(host: str, port: int) -> Iterator[None]:
    """Turn a failed wait for a wildcard-bound port into a warning.

    Bound to a wildcard address without a usable loopback, the server may
    well be listening: we just cannot tell by connecting. Any other address
    lets the error through.
    """
    try:
        yield
    except OSError:
        if client_host(host) == host:
            raise
        warnings.warn(f"Unable to verify that the server is bound on {port!r}", stacklevel=3)
