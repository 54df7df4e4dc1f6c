"""The worker's HTTP servers and engine, set up on the master's sockets.

Each inherited socket gets a :class:`morello.httpserver.Server` (the first
one is ``morello.server`` itself, so ``server.*`` config and code that
looks at ``morello.server`` keep working) whose HTTP server is a
:class:`~morello.worker.draining.DrainingWSGIServer` adopting that socket.
They start and stop with ``morello.engine`` like in a single process, so
the application's engine plugins and ``engine.subscribe('start', ...)``
hooks run in every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import morello
from morello.httpserver import Server

from .draining import DrainingWSGIServer
from .options import WorkerOptions

#: ``Server`` settings the extra sockets' servers take from ``morello.server``
#: (where the ``server.*`` config put them).
_SHARED_SETTINGS = (
    "socket_timeout",
    "accepted_queue_size",
    "accepted_queue_timeout",
    "shutdown_timeout",
    "protocol_version",
    "max_request_header_size",
    "max_request_body_size",
    "request_head_timeout",
    "min_body_rate",
    "body_rate_grace",
    "ssl_context",
    "ssl_certificate",
    "ssl_certificate_chain",
    "ssl_private_key",
    "ssl_ciphers",
    "ssl_module",
    "statistics",
    "nodelay",
    "wsgi_version",
    "peercreds",
    "peercreds_resolve",
)


def build_servers(
    options: WorkerOptions, app: Callable[..., Any], log: Callable[[str], None]
) -> list[Server]:
    """One :class:`Server` per inherited socket, serving ``app``; :func:`start_servers`
    starts them."""
    primary = morello.server
    servers = []
    for index, sock in enumerate(options.sockets):
        server = primary if index == 0 else Server()
        if index:
            for name in _SHARED_SETTINGS:
                setattr(server, name, getattr(primary, name))
        for name, value in options.server_settings.items():
            setattr(server, name, value)
        server.listen_socket = sock
        server.thread_pool = options.min_threads
        server.thread_pool_max = options.threads
        server.app = app
        server.httpserver = DrainingWSGIServer(server, app, idle_grace=options.idle_grace)
        # Not with the engine: start_servers() starts them once the app passed its warm-up.
        server.unsubscribe()
        servers.append(server)
    # Servers configured as server.<name>.* would bind their own address in
    # every worker (and fail in all but one): only the master binds.
    for name, extra in morello.servers.items():
        if extra not in servers:
            extra.unsubscribe()
            log(f"Ignoring server {name!r}: workers serve on the master's sockets only.")
    return servers


def start_servers(servers: list[Server]) -> None:
    """Start accepting on every server, and stop them with the engine from now on."""
    for server in servers:
        server.subscribe()
        server.start()


def thread_count(servers: list[Server]) -> int:
    """Request threads the servers run right now (their pools grow and shrink)."""
    return sum(server.httpserver.requests.size for server in servers)


def prepare_engine() -> None:
    """Turn off the engine plugins that belong to the master, not to a worker.

    The autoreloader would re-exec the worker (the master restarts workers
    instead), and the engine's signal handlers would replace the worker's.
    """
    engine = morello.engine
    engine.autoreload.unsubscribe()
    engine.signal_handler.unsubscribe()
