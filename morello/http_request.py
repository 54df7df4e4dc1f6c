"""The request object and the pipeline that turns it into a response.

:meth:`Request.run` is the heart of morello: parse headers, dispatch,
apply config namespaces (which set up tools as hooks), read the body, call
the handler and finalize the response, running hooks at each stage.
"""

from __future__ import annotations

import functools
import uuid
from http.cookies import CookieError
from typing import Any

import morello
from morello import namespaces
from morello.body import RequestBody
from morello.dispatch import Dispatcher
from morello.errors import (
    HTTPError,
    HTTPRedirect,
    InternalRedirect,
    bare_error,
    format_exc,
)
from morello.hooks import HOOK_POINTS, Hook, HookMap  # noqa: F401 - Hook: CherryPy's _cprequest.Hook
from morello.http_response import LazyCookie, Response  # noqa: F401 - CherryPy's _cprequest.Response
from morello.lib.httputil import HeaderMap, Host, decode_TEXT, parse_query_string
from morello.serving import serving


class LazyUUID4:
    """A request id that costs nothing until someone formats it."""

    __slots__ = ("_uuid",)

    def __init__(self) -> None:
        self._uuid: uuid.UUID | None = None

    @property
    def uuid4(self) -> uuid.UUID:
        if self._uuid is None:
            self._uuid = uuid.uuid4()
        return self._uuid

    def __str__(self) -> str:
        return str(self.uuid4)


@functools.lru_cache(maxsize=16)
def _protocol(name: str) -> tuple[int, int]:
    # 'HTTP/1.1' -> (1, 1); there are only a couple of distinct values.
    return int(name[5]), int(name[7])


class _LazyBody:
    """``request.body``, built on first use: most requests never touch it.

    Until the request reaches dispatch (where CherryPy builds the body) it
    reads as None.
    """

    def __get__(self, request: Any, owner: Any = None) -> Any:
        if request is None or not request.__dict__.get("_body_ready"):
            return None
        body = RequestBody(request.rfile, request.headers, request_params=request.params)
        request.__dict__["body"] = body
        return body


class _LazyEnviron:
    """``request.wsgi_environ``: for a request served natively, built on first use."""

    empty: dict[str, Any] = {}

    def __get__(self, request: Any, owner: Any = None) -> dict[str, Any]:
        native = None if request is None else request.__dict__.get("native_request")
        if native is None:
            return self.empty
        environ = native.environ()
        request.__dict__["wsgi_environ"] = environ
        return environ


def _default_error_response() -> None:
    HTTPError(500).set_response()


class Request:
    """One HTTP request: what the client sent and how morello handles it.

    Class attributes are the defaults; config keys in the ``request``
    namespace (``request.show_tracebacks``, ...) override them per request.
    """

    # Filled in by the WSGI gateway.
    prev: Request | None = None
    local = Host("127.0.0.1", 80)
    remote = Host("127.0.0.1", 1111)
    scheme = "http"
    server_protocol = "HTTP/1.1"
    base = ""
    wsgi_environ: dict[str, Any] = _LazyEnviron()  # type: ignore[assignment]
    #: The server's parsed request (:class:`~morello.http.native.NativeRequest`)
    #: when it was handed over without an environ.
    native_request: Any = None
    multithread = True
    multiprocess = False

    # Filled in by run().
    request_line = ""
    method = "GET"
    query_string = ""
    #: How the query string's %XX escapes are decoded.
    query_string_encoding = "utf8"
    protocol = (1, 1)
    params: dict[str, Any] = {}
    header_list: list[tuple[str, str]] = []
    headers = HeaderMap()
    cookie = LazyCookie()
    rfile: Any = None
    body: RequestBody | None = _LazyBody()  # type: ignore[assignment]
    script_name = ""
    path_info = "/"
    #: The authenticated user name, for the access log.
    login: str | None = None
    app: Any = None
    handler: Any = None
    toolmaps: dict[str, dict[str, Any]] = {}
    config: dict[str, Any] | None = None
    is_index: bool | None = None
    hooks = HookMap(HOOK_POINTS)
    closed = False
    stage: str | None = None
    #: Whether the path's config went through ``namespaces`` (set in ``_handle``).
    _config_applied = False
    unique_id: LazyUUID4 | None = None

    # Behaviour switches (config: request.<name>).
    process_request_body = True
    methods_with_bodies = ("POST", "PUT", "PATCH")
    dispatch = Dispatcher()
    error_response = staticmethod(_default_error_response)
    error_page: dict[Any, Any] = {}
    show_tracebacks = True
    show_mismatched_params = True
    throws: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, InternalRedirect)
    throw_errors = False

    namespaces = namespaces.NamespaceSet(
        hooks=namespaces.hooks_namespace,
        request=namespaces.request_namespace,
        response=namespaces.response_namespace,
        error_page=namespaces.error_page_namespace,
    )

    def __init__(
        self,
        local_host: Host,
        remote_host: Host,
        scheme: str = "http",
        server_protocol: str = "HTTP/1.1",
    ) -> None:
        self.local = local_host
        self.remote = remote_host
        self.scheme = scheme
        self.server_protocol = server_protocol
        self.closed = False
        self.error_page = self.error_page.copy()
        self.namespaces = self.namespaces.copy()
        self.unique_id = LazyUUID4()

    def close(self) -> None:
        """Run the ``on_end_request`` hooks (once)."""
        if not self.closed:
            self.closed = True
            self.stage = "on_end_request"
            self.hooks.run("on_end_request")
            self.stage = "close"

    def run(
        self,
        method: str,
        path: str,
        query_string: str,
        req_protocol: str,
        headers: list[tuple[str, str]],
        rfile: Any,
    ) -> Any:
        """Handle the request and return the finished response.

        ``path`` is already %XX-decoded, ``query_string`` is not. The
        response carries ``output_status``, ``header_list`` and ``body``.
        """
        response = serving.response
        self.stage = "run"
        try:
            self.method = method
            path = path or "/"
            self.query_string = query_string or ""
            self.params = {}
            self.protocol = min(_protocol(req_protocol), _protocol(self.server_protocol))
            response.headers.protocol = self.protocol
            url = f"{path}?{query_string}" if query_string else path
            self.request_line = f"{method} {url} {req_protocol}"
            self.header_list = list(headers)
            self.headers = HeaderMap()
            self.rfile = rfile
            self.handler = None
            self.script_name = self.app.script_name
            self.path_info = path[len(self.script_name) :]
            self.stage = "respond"
            self.respond(self.path_info)
        except self.throws:
            raise
        except Exception:
            if self.throw_errors:
                raise
            # The error machinery itself failed: fall back to a bare 500.
            morello.log(traceback=True, severity=40)
            body = format_exc() if self.show_tracebacks else ""
            response.output_status, response.header_list, response.body = bare_error(body)
        if self.method == "HEAD":
            response.body = []
        try:
            # The application's own log (morello.log would look it up again).
            (self.app.log if self.app is not None else morello.log).access()
        except Exception:
            morello.log.error(traceback=True)
        return response

    def respond(self, path_info: str) -> None:
        """Produce the response for ``path_info``, including error pages."""
        try:
            try:
                try:
                    self._handle(path_info)
                except (HTTPRedirect, HTTPError) as exc:
                    self._configure_error_output(path_info)
                    exc.set_response()
                    self.stage = "before_finalize (HTTPError)"
                    self.hooks.run("before_finalize")
                    serving.response.finalize()
            finally:
                self.stage = "on_end_resource"
                self.hooks.run("on_end_resource")
        except self.throws:
            raise
        except Exception:
            if self.throw_errors:
                raise
            self._configure_error_output(path_info)
            self.handle_error()

    def _configure_error_output(self, path_info: str) -> None:
        """Take ``show_tracebacks`` from config for errors raised before it was applied.

        A bad Cookie or a missing Host fails the request before dispatch, and
        the class default would show tracebacks even in production.
        """
        if self._config_applied:
            return
        key = "request.show_tracebacks"
        if self.config is not None:
            self.show_tracebacks = self.config.get(key, type(self).show_tracebacks)
            return
        show = morello.config.get(key, type(self).show_tracebacks)
        self.show_tracebacks = self.app.find_config(path_info, key, show) if self.app else show

    def _handle(self, path_info: str) -> None:
        response = serving.response
        if self.app is None:
            from morello.errors import NotFound

            raise NotFound()
        self.hooks = self.__class__.hooks.copy()
        self.toolmaps = {}

        self.stage = "process_headers"
        self.process_headers()

        self.stage = "get_resource"
        self.get_resource(path_info)

        self._body_ready = True
        self.namespaces(self.config)
        self._config_applied = True

        self.stage = "on_start_resource"
        self.hooks.run("on_start_resource")

        self.stage = "process_query_string"
        self.process_query_string()

        if self.process_request_body and self.method not in self.methods_with_bodies:
            self.process_request_body = False
        self.stage = "before_request_body"
        self.hooks.run("before_request_body")
        if self.process_request_body:
            self.body.process()

        self.stage = "before_handler"
        self.hooks.run("before_handler")
        if self.handler:
            self.stage = "handler"
            response.body = self.handler()

        self.stage = "before_finalize"
        self.hooks.run("before_finalize")
        response.finalize()

    def process_query_string(self) -> None:
        """Merge the query string's parameters into ``self.params``."""
        if not self.query_string:
            return
        try:
            params = parse_query_string(self.query_string, encoding=self.query_string_encoding)
        except UnicodeDecodeError:
            raise HTTPError(
                404,
                "The query string could not be decoded: this resource expects it "
                f"encoded as {self.query_string_encoding!r}.",
            ) from None
        self.params.update(params)

    def process_headers(self) -> None:
        """Fill ``headers`` and ``cookie`` from ``header_list``; compute ``base``."""
        headers = self.headers
        for name, value in self.header_list:
            name = name.title()
            value = value.strip()
            # RFC 2047 words are rare: only pay for decoding when one is there.
            dict.__setitem__(headers, name, decode_TEXT(value) if "=?" in value else value)
            if name == "Cookie":
                try:
                    self.cookie.load(value)
                except CookieError as exc:
                    raise HTTPError(400, str(exc)) from None
        host = dict.get(headers, "Host")
        if host is None:
            if self.protocol >= (1, 1):
                raise HTTPError(400, "HTTP/1.1 requires a 'Host' request header.")
        elif "\n" in host or "\r" in host:
            # Never let a header-splitting Host reach redirects and URLs.
            host = host.replace("\n", "").replace("\r", "")
            dict.__setitem__(headers, "Host", host)
        if not host:
            host = self.local.name or self.local.ip
        self.base = f"{self.scheme}://{host}"

    def get_resource(self, path: str) -> None:
        """Run the dispatcher configured for ``path`` (sets handler and config)."""
        dispatch = self.app.find_config(path, "request.dispatch", self.dispatch)
        dispatch(path)

    def handle_error(self) -> None:
        """Turn an unexpected exception into the error response."""
        try:
            self.hooks.run("before_error_response")
            if self.error_response:
                self.error_response()
            self.hooks.run("after_error_response")
            serving.response.finalize()
        except HTTPRedirect as redirect:
            redirect.set_response()
            serving.response.finalize()
