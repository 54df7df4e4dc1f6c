"""Call a WSGI application in-process with a hand-made environ (no server).

Used to drive morello's ``Application`` directly and to ask CherryPy 18 how it
answers the same request without starting its engine or a socket.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class WSGIReply:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def environ(
    path: str,
    query: str = "",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    script_name: str = "",
) -> dict[str, Any]:
    """A minimal WSGI 1.0 environ for a request from 127.0.0.1 to 127.0.0.1:8080."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": script_name, "PATH_INFO": path,
        "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555",
        "HTTP_HOST": "127.0.0.1:8080", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }  # fmt: skip
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = value
    return env


def call(app: Callable[..., Any], path: str, **kwargs: Any) -> WSGIReply:
    """Run one request through ``app`` and collect the whole answer."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None

    result = app(environ(path, **kwargs), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return WSGIReply(started[0], list(started[1]), body)


@contextlib.contextmanager
def cherrypy_tree(
    root: Any,
    app_config: dict[str, Any] | None = None,
    global_config: dict[str, Any] | None = None,
    script_name: str = "",
) -> Iterator[Any]:
    """Mount ``root`` on CherryPy 18's tree (global config applied); yield the tree.

    The engine is never started; config and tree are reset afterwards.
    """
    import cherrypy

    base = {"environment": "test_suite", "log.screen": False}
    cherrypy.config.update({**base, **(global_config or {})})
    try:
        cherrypy.tree.mount(root, script_name, app_config)
        yield cherrypy.tree
    finally:
        cherrypy.tree.apps.clear()
        cherrypy.config.reset()
