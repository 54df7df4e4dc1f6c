"""The control endpoint's routes, and the guards every request passes first.

A request made by a web page through a visitor's browser is refused (403):
one with an ``Origin`` header (a cross-site request), or one whose ``Host``
is not the endpoint's own address (DNS rebinding: a name of the attacker's
that resolves to 127.0.0.1); see :class:`HostCheck`. With a ``token``, every
POST must carry ``Authorization: Bearer TOKEN`` (else 401). The routes ask
the master, a :class:`ControlApp`, for what they answer.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs

from .. import status_page
from .address import PORT_DIGITS
from .server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    HTTPError,
    OneRequestServer,
    Request,
    response,
)

log = logging.getLogger(__package__)

_WORKERS = re.compile(r"[0-9]{1,6}")


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
            PORT_DIGITS.fullmatch(port) and self.port in (None, int(port))
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


_Handler = Callable[["ControlServer", Request], bytes]


class ControlServer(OneRequestServer):
    """The control endpoint, served from the master's selector loop (see the package doc).

    ``app`` may be None at first and assigned later (the socket is bound
    before privileges are dropped, the master object comes after); until
    then every route answers 503.

    ``token``, when set, is the secret every POST must present as
    ``Authorization: Bearer TOKEN`` (it may be assigned later, like ``app``).
    ``timeout``, ``max_connections`` and ``clock`` are those of
    :class:`OneRequestServer`.
    """

    #: What the log calls this server.
    name = "control endpoint"
    #: Path: (methods, handler, what it is for); the table is set below the class.
    routes: ClassVar[dict[str, tuple[tuple[str, ...], _Handler, str]]]

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
        super().__init__(sock, timeout=timeout, max_connections=max_connections, clock=clock)
        self.app = app
        self.token = token
        self.hosts = HostCheck(sock)

    def serve(self, request: Request) -> bytes:
        """The complete response to a parsed request (headers only for HEAD)."""
        answer = self._route(request)
        if request.method == "HEAD":  # response() always ends its head with CRLF CRLF
            answer = answer[: answer.index(b"\r\n\r\n") + 4]
        return answer

    def _route(self, request: Request) -> bytes:
        try:
            self._check_caller(request)
        except HTTPError as error:
            return response(error.status, error.message + "\n", headers=error.headers)
        route = self.routes.get(request.path)
        if route is None:
            return response(404, f"no such endpoint: {request.path[:80]}\n")
        methods, handler, _ = route
        allowed = methods + ("HEAD",) if "GET" in methods else methods
        if request.method not in allowed:
            message = f"{request.method} is not allowed here\n"
            return response(405, message, headers=(("Allow", ", ".join(allowed)),))
        try:
            if request.method == "POST":
                self._check_token(request)
            if self.app is None:
                return response(503, "the master is starting\n")
            return handler(self, request)
        except HTTPError as error:
            return response(error.status, error.message + "\n", headers=error.headers)
        except Exception as exc:  # the master must keep running whatever the app does
            log.exception("control endpoint: %s %s failed", request.method, request.path)
            return response(500, f"internal error: {type(exc).__name__}\n")

    def _check_caller(self, request: Request) -> None:
        """Refuse requests made by a web page in a browser (see :class:`HostCheck`)."""
        if "origin" in request.headers:
            raise HTTPError(403, "requests from web pages (with an Origin header) are not accepted")
        hosts = request.headers.get("host", [])
        if len(hosts) > 1:
            raise HTTPError(400, "more than one Host header")
        if hosts and not self.hosts.allows(hosts[0]):
            raise HTTPError(
                403,
                f"Host {hosts[0][:80]!r} is not this endpoint's address "
                f"(use {self.hosts.describe()})",
            )

    def _check_token(self, request: Request) -> None:
        if not self.token:
            return
        given = request.headers.get("authorization", [])
        expected = f"Bearer {self.token}".encode()
        # Constant time: the comparison must not tell how much of a guess was right.
        if len(given) != 1 or not hmac.compare_digest(given[0].encode("latin-1"), expected):
            raise HTTPError(
                401,
                "this endpoint needs Authorization: Bearer <master.control_token> for POST",
                (("WWW-Authenticate", 'Bearer realm="morello"'),),
            )

    def _index(self, request: Request) -> bytes:
        # Browsers ask for HTML; a client that asks for plain text only gets the list.
        accept = ",".join(request.headers.get("accept", [])).lower()
        if "text/plain" in accept and "text/html" not in accept:
            return self._list_routes(request)
        page = status_page.render(self.app.status())
        return response(200, page, content_type="text/html; charset=utf-8")

    def _list_routes(self, request: Request) -> bytes:
        lines = [f"{' '.join(methods):4} {path:22} {about}" for path, (methods, _, about) in (
            self.routes.items()
        )]  # fmt: skip
        return response(200, "morello control endpoint\n" + "\n".join(lines) + "\n")

    def _healthz(self, request: Request) -> bytes:
        return response(200, "ok") if self.app.healthy() else response(503, "unhealthy")

    def _readyz(self, request: Request) -> bytes:
        return response(200, "ready") if self.app.ready() else response(503, "not ready")

    def _status(self, request: Request) -> bytes:
        body = json.dumps(self.app.status(), default=str, indent=2) + "\n"
        return response(200, body, content_type="application/json")

    def _metrics(self, request: Request) -> bytes:
        return response(
            200, self.app.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def _scale(self, request: Request) -> bytes:
        values = parse_qs(request.query, keep_blank_values=True).get("workers", [])
        if not values:
            raise HTTPError(400, "missing the workers parameter: POST /scale?workers=N")
        if len(values) > 1:
            raise HTTPError(400, "give the workers parameter only once")
        if not _WORKERS.fullmatch(values[0]):
            raise HTTPError(
                400, f"workers must be a whole number of workers, got {values[0][:40]!r}"
            )
        workers = int(values[0])
        try:
            self.app.scale(workers)
        except ValueError as exc:
            status = 409 if isinstance(exc, Conflict) else 400
            raise HTTPError(status, f"cannot scale to {workers} workers: {exc}") from exc
        body = json.dumps({"workers": workers}) + "\n"
        return response(200, body, content_type="application/json")


ControlServer.routes = {
    "/": (("GET",), ControlServer._index, "the status page (HTML; this list for text/plain)"),
    "/routes": (("GET",), ControlServer._list_routes, "this list"),
    "/healthz": (("GET",), ControlServer._healthz, "200 while the master runs"),
    "/readyz": (("GET",), ControlServer._readyz, "200 when workers are ready to serve"),
    "/status": (("GET",), ControlServer._status, "the master and its workers (JSON)"),
    "/metrics": (("GET",), ControlServer._metrics, "Prometheus metrics"),
    "/scale": (("POST",), ControlServer._scale, "?workers=N: run N workers from now on"),
}


class ProbeServer(ControlServer):
    """The probe port: ``GET /healthz`` and ``GET /readyz`` only, for load balancers
    and orchestrators on any address.

    It can change nothing and tells only whether the master runs and is
    ready, so it needs neither a token nor the browser guards (the kubelet
    sends the pod IP as ``Host``); every other path is 404.
    """

    name = "probe port"
    routes = {path: ControlServer.routes[path] for path in ("/healthz", "/readyz")}

    def _check_caller(self, request: Request) -> None:
        """Anyone may ask: the answers are two bits that are no secret."""
