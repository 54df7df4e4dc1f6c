"""Warm-up: GET requests a new worker runs through its own application before it is ready.

``master.warmup = ["/", "/api/health"]`` makes every new worker call its
WSGI application in-process (no socket, no other client involved) with a
GET request per path, once the engine has started and before its servers
accept connections. The first answer that is not 2xx, or that raises,
makes the worker fail to boot with that reason, so a rolling restart to
code that cannot answer its own health check is aborted while the old
workers keep serving. The requests carry ``Host`` set to the first bind
address and ``User-Agent: morello-warmup``; they are not counted in the
worker's request statistics.
"""

from __future__ import annotations

import io
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from .app_loading import BootError

#: Most warm-up requests a worker may be given: each delays every worker's start.
MAX_WARMUP_REQUESTS = 20
#: Longest warm-up path accepted.
MAX_PATH_LENGTH = 2000
USER_AGENT = "morello-warmup"


def check_paths(paths: Sequence[str]) -> None:
    """Raise ValueError, in one line, unless ``paths`` is a list of warm-up paths."""
    if len(paths) > MAX_WARMUP_REQUESTS:
        raise ValueError(f"warmup: at most {MAX_WARMUP_REQUESTS} paths, not {len(paths)}")
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"warmup: each path must start with '/', like '/health', not {path!r}")
        if len(path) > MAX_PATH_LENGTH or not path.isprintable() or " " in path:
            raise ValueError(
                f"warmup: {path[:80]!r} is not a request path (no spaces or control "
                f"characters, at most {MAX_PATH_LENGTH} characters)"
            )


def address_of(sock: socket.socket) -> tuple[str, str]:
    """``(host, port)`` of a request that came in on ``sock`` (a UNIX socket: localhost)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = sock.getsockname()[:2]
        return host, str(port)
    return "localhost", ""


def environ(path: str, host: str, port: str, scheme: str = "http") -> dict[str, Any]:
    """The WSGI environ of ``GET path`` (``path`` may hold a query string) sent to
    ``host:port``."""
    path_only, _, query = path.partition("?")
    host_header = f"[{host}]" if ":" in host else host
    if port:
        host_header += f":{port}"
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        # As a server passes it: percent-decoded bytes, as latin-1 text.
        "PATH_INFO": unquote_to_bytes(path_only).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": path,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "HTTP_HOST": host_header,
        "HTTP_USER_AGENT": USER_AGENT,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def answer(app: Callable[..., Any], env: dict[str, Any]) -> int:
    """Call ``app`` with ``env``, read its whole body; return the status code."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = app(env, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    if not statuses:
        raise RuntimeError("the application did not call start_response")
    return int(statuses[-1].split(" ", 1)[0])


def warm_up(app: Callable[..., Any], paths: Sequence[str], sock: socket.socket,
            scheme: str = "http") -> None:  # fmt: skip
    """GET each of ``paths`` from ``app`` as if it came in on ``sock``; raise
    :class:`BootError` at the first answer that is not 2xx."""
    if not paths:
        return
    host, port = address_of(sock)
    for path in paths:
        try:
            status = answer(app, environ(path, host, port, scheme))
        except Exception as exc:
            raise BootError(
                f"warm-up GET {path} raised {type(exc).__name__}: {exc}", show_traceback=True
            ) from exc
        if not 200 <= status < 300:
            raise BootError(f"warm-up GET {path} answered {status}")
