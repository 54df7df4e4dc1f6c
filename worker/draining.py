"""A cheroot server that can stop accepting on a shared socket and drain.

Every worker accepts on the same listening sockets, inherited from the
master. Stopping one worker must leave those sockets alone, so cheroot's
own ``stop()`` is unusable: it closes the socket and, to wake its accept
loop, connects to its own address; with a shared socket, that connection
lands in another worker (as a request that never comes).

:class:`DrainingWSGIServer` instead, on :meth:`~DrainingWSGIServer.stop_accepting`:

* takes its copy of the listening socket out of cheroot's selector (new
  connections queue up for the other workers), then closes that copy only;
* answers the next request on each keep-alive connection with
  ``Connection: close``;
* closes keep-alive connections that stay idle for ``idle_grace`` seconds
  (no request is in progress on them, so nothing is lost);
* counts open connections, so the worker knows when the last one is gone.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cheroot.server

from morello.http.accepting import ConnectionManager
from morello.httpserver import Connection, WSGIServer

#: cheroot's "stop now" token for its unservicable-connections thread
#: (private; without it that thread just lingers until the process exits).
_STOP_TOKEN = getattr(cheroot.server, "_STOPPING_FOR_INTERRUPT", None)


class DrainingConnectionManager(ConnectionManager):
    """morello's keep-alive selector, plus a way to stop accepting and drain.

    The accept and the "stop accepting" decision share a lock so that,
    once :meth:`stop_accepting` returns, this process accepts nothing more.
    """

    def __init__(self, server: DrainingWSGIServer, idle_grace: float) -> None:
        super().__init__(server)
        self.idle_grace = idle_grace
        #: ``time.time()`` when draining began (cheroot's clock for idleness).
        self.draining_since: float | None = None
        self._accept_lock = threading.Lock()

    def stop_accepting(self) -> None:
        """Accept no more connections on the shared socket; keep serving the open ones."""
        with self._accept_lock:
            if self.draining_since is not None:
                return
            self.draining_since = time.time()
            listener = self.server.socket
            if listener is None:
                return
            try:
                self._selector.unregister(listener.fileno())
            except (KeyError, ValueError, OSError):
                pass  # never registered, or the selector is closed already
            # Only this server's duplicate: the shared socket stays open and
            # listening in the master and the other workers.
            listener.close()

    @property
    def can_add_keepalive_connection(self) -> bool:
        """False while draining: every response then says ``Connection: close``."""
        return self.draining_since is None and super().can_add_keepalive_connection

    def _from_server_socket(self, server_socket: Any) -> Any:
        # select() may have reported the listening socket just before
        # stop_accepting(); the lock makes the check and the accept one step.
        with self._accept_lock:
            if self.draining_since is not None:
                return None
            return super()._from_server_socket(server_socket)

    def _expire(self, threshold: float) -> None:
        # Runs on the polling thread, which alone may unregister
        # connections, so closing idle ones here races with nothing.
        since = self.draining_since
        if since is not None:
            cutoff = time.time() - self.idle_grace
            if since <= cutoff:
                threshold = max(threshold, cutoff)
        super()._expire(threshold)


class CountedConnection(Connection):
    """morello's cheroot connection, counted by its server while open."""

    def __init__(self, server: DrainingWSGIServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self._counted = True
        server.connection_opened()

    def close(self) -> None:
        try:
            super().close()
        finally:
            # cheroot may close a connection twice (e.g. a forced close
            # followed by the worker thread's own); count it once.
            if self.__dict__.pop("_counted", False):
                self.server.connection_closed()


class DrainingWSGIServer(WSGIServer):
    """morello's WSGI server on an inherited socket, drainable without touching the port."""

    ConnectionClass = CountedConnection

    def __init__(self, server_adapter: Any, app: Any = None, idle_grace: float = 1.0) -> None:
        self.idle_grace = idle_grace
        self._open_connections = 0
        self._count_lock = threading.Lock()
        super().__init__(server_adapter, app)

    # -- connection accounting ----------------------------------------------

    def connection_opened(self) -> None:
        with self._count_lock:
            self._open_connections += 1

    def connection_closed(self) -> None:
        with self._count_lock:
            self._open_connections -= 1

    @property
    def open_connections(self) -> int:
        """Connections accepted and not closed yet (idle, queued or being served)."""
        return self._open_connections

    # -- life cycle -----------------------------------------------------------

    def prepare(self) -> None:
        """Adopt the listening socket as morello's server does, with a drainable selector."""
        super().prepare()
        plain = self._connections
        self._connections = DrainingConnectionManager(self, self.idle_grace)
        plain._selector.close()  # it only held the listening socket

    def stop_accepting(self) -> None:
        """Leave new connections to the other workers; finish the open ones."""
        manager = getattr(self, "_connections", None)
        if isinstance(manager, DrainingConnectionManager):
            manager.stop_accepting()

    def stop(self) -> None:
        """Stop serving, without cheroot's connect-to-self and without closing the shared socket.

        Idle connections are closed. The request threads are stopped only
        when no request is running: a stuck one would block forever, and
        the worker process exits right after this anyway.
        """
        if not self.ready:
            return
        self.stop_accepting()
        self.ready = False
        if _STOP_TOKEN is not None:
            self._unservicable_conns.put(_STOP_TOKEN)
        self._connections.stop()  # returns once the selector loop has ended
        self._connections.close()
        self.socket = None
        if self.open_connections == 0:
            self.requests.stop(self.shutdown_timeout)
