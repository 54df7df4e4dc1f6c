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

Routes: ``GET /`` (the status page, HTML; the list of routes for a client
that accepts only ``text/plain``), ``GET /routes`` (that list), ``GET /healthz``, ``GET /readyz``,
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

:class:`ProbeServer` is the same server with two routes, ``/healthz`` and
``/readyz``: it can change nothing, so it may listen on any address (the
master's ``health_bind``, for a kubelet or a load balancer).

The package is split by concept: :mod:`.address` (control addresses and the
listening socket), :mod:`.server` (the non-blocking one-request HTTP server)
and :mod:`.routes` (the routes and the guards in front of them).
"""

from .address import control_socket, parse_address
from .routes import Conflict, ControlApp, ControlServer, HostCheck, ProbeServer
from .server import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, LINGER, MAX_HEAD

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "LINGER",
    "MAX_HEAD",
    "Conflict",
    "ControlApp",
    "ControlServer",
    "HostCheck",
    "ProbeServer",
    "control_socket",
    "parse_address",
]
