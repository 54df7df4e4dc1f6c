"""The WSGI environ of a request, built straight from its parsed head.

The keys and values are those of cheroot's WSGI 1.0 gateway, so that an
application sees no difference between the two request paths. What does
not change during a connection (addresses, server names, TLS and peer
credentials) is computed once per connection by :func:`connection_environ`.
"""

from __future__ import annotations

import sys
from typing import Any

from morello.http.parser import RequestHead

__all__ = ["connection_environ", "request_environ"]


def connection_environ(conn: Any) -> dict[str, Any]:
    """The environ entries shared by every request of the cheroot connection ``conn``."""
    server = conn.server
    env: dict[str, Any] = {
        "ACTUAL_SERVER_PROTOCOL": server.protocol,
        "REMOTE_ADDR": conn.remote_addr or "",
        "REMOTE_PORT": str(conn.remote_port or ""),
        "SCRIPT_NAME": "",
        "SERVER_NAME": server.server_name,
        "SERVER_SOFTWARE": server.software,
        "wsgi.multiprocess": False,
        "wsgi.multithread": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if isinstance(server.bind_addr, str):
        env["SERVER_PORT"] = ""
        try:
            env["X_REMOTE_PID"] = str(conn.peer_pid)
            env["X_REMOTE_UID"] = str(conn.peer_uid)
            env["X_REMOTE_GID"] = str(conn.peer_gid)
            env["X_REMOTE_USER"] = env["REMOTE_USER"] = str(conn.peer_user)
            env["X_REMOTE_GROUP"] = str(conn.peer_group)
        except RuntimeError:
            pass  # credentials disabled, or not available for this socket
    else:
        env["SERVER_PORT"] = str(server.bind_addr[1])
    if conn.ssl_env:
        env.update(conn.ssl_env)
    return env


#: Environ keys by title-cased field name (``HTTP_X_FORWARDED_FOR``...).
_KEYS: dict[bytes, str] = {b"Content-Type": "CONTENT_TYPE", b"Content-Length": "CONTENT_LENGTH"}
_MAX_KEYS = 512


def request_environ(
    base: dict[str, Any], req: RequestHead, body: Any, url_scheme: str
) -> dict[str, Any]:
    """A new environ for ``req``: ``base`` (see :func:`connection_environ`) and the request's own.

    ``body`` becomes ``wsgi.input``; ``url_scheme`` is used unless the
    request target names its own scheme.
    """
    env = base.copy()
    env["PATH_INFO"] = req.path.decode("latin-1")
    env["QUERY_STRING"] = req.query.decode("latin-1")
    env["REQUEST_METHOD"] = req.method.decode("latin-1")
    env["REQUEST_URI"] = req.target.decode("latin-1")
    env["SERVER_PROTOCOL"] = req.protocol
    env["wsgi.errors"] = sys.stderr
    env["wsgi.input"] = body
    env["wsgi.input_terminated"] = req.chunked
    env["wsgi.url_scheme"] = req.scheme.decode("latin-1") if req.scheme else url_scheme
    keys = _KEYS
    for name, value in req.fields.items():
        key = keys.get(name)
        if key is None:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if len(keys) < _MAX_KEYS:  # bounded: clients choose the names
                keys[name] = key
        env[key] = value.decode("latin-1")
    return env
