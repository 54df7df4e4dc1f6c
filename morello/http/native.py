"""The native gateway: a parsed request handed to the application without a WSGI environ.

An application (or middleware) that offers ``serve_native(request,
start_response)`` gets each request of a lean connection as a
:class:`NativeRequest`: the parsed head, the body reader and what is known
about the connection. It answers the way a WSGI application does (calling
``start_response`` and returning the body iterable), so the response side
is the same on both paths. Anything that still needs the WSGI environ
(a grafted WSGI application, ``request.wsgi_environ``) builds it with
:meth:`NativeRequest.environ`, once per request, equal to the one the WSGI
path would have passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from morello.http.environ import request_environ
from morello.http.parser import RequestHead

__all__ = ["NativeApp", "NativeRequest", "Peer", "native_server"]


class Peer:
    """What the requests of one connection share: its base environ and addresses."""

    __slots__ = ("environ", "login", "local_name", "local_port", "remote_addr", "remote_port")

    def __init__(self, environ: dict[str, Any]) -> None:
        #: The environ entries of every request (see :func:`connection_environ`).
        self.environ = environ
        self.local_name: str = environ["SERVER_NAME"]
        self.local_port = int(environ["SERVER_PORT"] or -1)
        self.remote_addr: str = environ["REMOTE_ADDR"]
        self.remote_port = int(environ["REMOTE_PORT"] or -1)
        #: The peer's user name on a Unix socket with credentials, else None.
        self.login: str | None = environ.get("REMOTE_USER") or None


class NativeRequest:
    """One request as a native application receives it.

    ``path``, ``query`` and ``method`` are the latin-1 text of the request
    target's parts, as a WSGI server would put them in the environ; a
    mount (see :meth:`mount`) splits ``path`` into ``script_name`` and
    ``path_info``.
    """

    __slots__ = ("_environ", "body", "head", "path_info", "peer", "scheme", "script_name")

    def __init__(self, peer: Peer, head: RequestHead, body: Any, scheme: str) -> None:
        self.peer = peer
        self.head = head
        #: The request body reader (``wsgi.input``).
        self.body = body
        #: ``wsgi.url_scheme``: the target's own scheme, else the connection's.
        self.scheme = head.scheme.decode("latin-1") if head.scheme else scheme
        self.script_name = ""
        self.path_info = head.path.decode("latin-1")
        self._environ: dict[str, Any] | None = None

    def mount(self, script_name: str, path_info: str) -> None:
        """Record that the application mounted at ``script_name`` serves the request."""
        self.script_name = script_name
        self.path_info = path_info
        if self._environ is not None:
            self._environ["SCRIPT_NAME"] = script_name
            self._environ["PATH_INFO"] = path_info

    def environ(self) -> dict[str, Any]:
        """The request's WSGI environ, built on the first call."""
        env = self._environ
        if env is None:
            env = request_environ(self.peer.environ, self.head, self.body, self.scheme)
            if self.script_name:
                env["SCRIPT_NAME"] = self.script_name
            env["PATH_INFO"] = self.path_info
            self._environ = env
        return env

    def header_list(self) -> list[tuple[str, str]]:
        """The request headers as the WSGI path lists them (translated from the environ).

        That is ``Remote-Addr`` first (from ``REMOTE_ADDR``), then the fields
        in order, ``Content-Type`` and ``Content-Length`` as such and other
        names upper-cased (``HTTP_USER_AGENT`` becomes ``USER-AGENT``).
        """
        names = _NAMES
        headers = [("Remote-Addr", self.peer.remote_addr)]
        for name, value in self.head.fields.items():
            text = names.get(name)
            if text is None:
                text = _header_name(name)
            headers.append((text, value.decode("latin-1")))
        return headers


#: Header names by field name, as the WSGI path turns them into text.
_NAMES: dict[bytes, str] = {b"Content-Type": "Content-Type", b"Content-Length": "Content-Length"}
_MAX_NAMES = 512


def _header_name(name: bytes) -> str:
    text = name.decode("latin-1").upper()
    if len(_NAMES) < _MAX_NAMES:  # bounded: clients choose the names
        _NAMES[name] = text
    return text


class NativeApp(Protocol):
    """What the server calls for a request when its application serves natively."""

    def __call__(self, request: NativeRequest, start_response: Callable[..., Any]) -> Any: ...


def native_server(app: Any) -> NativeApp | None:
    """``app``'s native entry point (its ``serve_native``), or None to use WSGI."""
    return getattr(app, "serve_native", None)
