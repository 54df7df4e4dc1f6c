"""The server side of an application: a request in, morello request run, WSGI out.

:class:`WSGIPipeline` is what ``Application.__call__`` runs: the configured
middleware (``wsgi.pipeline``) around :class:`AppResponse`, which builds a
:class:`~morello.http_request.Request` from the environ and returns the
response body. :meth:`WSGIPipeline.serve_native` is the native gateway: it
builds the request from the server's parsed head
(:class:`~morello.http.native.NativeRequest`) with
:class:`NativeAppResponse`, doing what the default middleware does, and
builds a WSGI environ only when something asks for one.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

from morello.errors import InternalRedirect, bare_error, format_exc
from morello.http.native import NativeRequest
from morello.http_response import text_header_list
from morello.lib.httputil import Host, urljoin
from morello.serving import serving
from morello.vhost import VirtualHost

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

# CGI variables that carry request headers under other names.
_CGI_HEADERS = {
    "HTTP_CGI_AUTHORIZATION": "Authorization",
    "CONTENT_LENGTH": "Content-Length",
    "CONTENT_TYPE": "Content-Type",
    "REMOTE_HOST": "Remote-Host",
    "REMOTE_ADDR": "Remote-Addr",
}


# environ key -> header name ('' for keys that are no header); filled lazily.
_HEADER_NAMES: dict[str, str] = {}


def _header_name(key: str) -> str:
    name = key[5:].replace("_", "-") if key[:5] == "HTTP_" else _CGI_HEADERS.get(key, "")
    if len(_HEADER_NAMES) < 1000:  # bounded: clients choose the keys
        _HEADER_NAMES[key] = name
    return name


def translate_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request headers as ``(Name, value)`` pairs from a WSGI environ."""
    names = _HEADER_NAMES
    if not names.keys() >= environ.keys():
        for key in environ.keys() - names.keys():
            _header_name(key)
        if not names.keys() >= environ.keys():  # the cache is full: slow path
            return [(_header_name(k), v) for k, v in environ.items() if _header_name(k)]
    return [(names[key], value) for key, value in environ.items() if names[key]]


class AppResponse:
    """Run one request through ``app`` and serve its response body."""

    def __init__(
        self, environ: dict[str, Any], start_response: Callable[..., Any], app: Any
    ) -> None:
        self.environ = environ
        self._respond(start_response, app)

    def _respond(self, start_response: Callable[..., Any], app: Any) -> None:
        self.app = app
        self.start_response = start_response
        try:
            self.run()
            response = serving.response
            self.body = response.body
            self.streaming = response.stream
            try:
                self.write = start_response(response.output_status, response.header_list)
            except TypeError:
                # Hooks after finalize may have added bytes pairs: decode them
                # here rather than check every response's headers.
                headers = text_header_list(response.header_list)
                self.write = start_response(response.output_status, headers)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[bytes]:
        if self.streaming:
            return self._stream()
        return iter(self.body)

    def _stream(self) -> Iterator[bytes]:
        try:
            yield from self.body
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            from morello import log

            tb = format_exc()
            log(tb, severity=40)
            # The server sends the headers with the first non-empty chunk: until
            # then the client can still get a bare 500. Afterwards start_response
            # re-raises (WSGI's rule) and the connection is cut short, so that the
            # client sees a truncated body rather than a short one.
            status, headers, body = bare_error(tb if serving.request.show_tracebacks else "")
            self.start_response(status, headers, sys.exc_info())
            yield from body

    def close(self) -> None:
        """Finish the request (on_end_request hooks) and release the thread."""
        try:
            if getattr(self, "streaming", False):
                close = getattr(self.body, "close", None)
                if close is not None:
                    close()
        finally:
            self.app.release_serving()

    def run(self) -> None:
        """Build the request from the environ and run it."""
        environ = self.environ
        env = environ.get
        local = Host("", int(env("SERVER_PORT", 80) or -1), env("SERVER_NAME", ""))
        remote = Host(
            env("REMOTE_ADDR", ""), int(env("REMOTE_PORT", -1) or -1), env("REMOTE_HOST", "")
        )
        request, _response = self.app.get_serving(
            local, remote, env("wsgi.url_scheme"), env("ACTUAL_SERVER_PROTOCOL", "HTTP/1.1")
        )
        request.login = env("LOGON_USER") or env("REMOTE_USER") or None
        request.multithread = environ["wsgi.multithread"]
        request.multiprocess = environ["wsgi.multiprocess"]
        request.wsgi_environ = environ
        request.prev = env("morello.previous_request")

        path = urljoin(env("SCRIPT_NAME", ""), env("PATH_INFO", ""))
        query_string = env("QUERY_STRING", "")
        path, query_string = self.recode_path_qs(path, query_string)
        request.run(
            environ["REQUEST_METHOD"],
            path,
            query_string,
            env("SERVER_PROTOCOL"),
            translate_headers(environ),
            environ["wsgi.input"],
        )

    def recode_path_qs(self, path: str, query_string: str) -> tuple[str, str]:
        """Re-decode path and query string with ``request.uri_encoding``.

        WSGI servers hand them over as latin-1 text; real URLs are UTF-8.
        Bytes that do not decode are left as they are.
        """
        return recode_path_qs(
            self.app,
            self.environ.get("PATH_INFO", ""),
            path,
            query_string,
            self.environ.get("wsgi.url_encoding", "ISO-8859-1"),
        )


def recode_path_qs(
    app: Any, path_info: str, path: str, query_string: str, old: str = "ISO-8859-1"
) -> tuple[str, str]:
    """``path`` and ``query_string``, decoded from ``old`` text with ``request.uri_encoding``.

    The encoding is the one configured for ``path_info`` in ``app``.
    """
    if path.isascii() and query_string.isascii():
        return path, query_string
    new = app.find_config(path_info, "request.uri_encoding", "utf-8")
    if new.lower() == old.lower():
        return path, query_string
    try:
        return path.encode(old).decode(new), query_string.encode(old).decode(new)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path, query_string


class NativeAppResponse(AppResponse):
    """:class:`AppResponse` for a request the server hands over natively (no environ)."""

    def __init__(
        self, native: NativeRequest, start_response: Callable[..., Any], app: Any
    ) -> None:
        self.native = native
        self._respond(start_response, app)

    def run(self) -> None:
        """Build the request from the parsed head and run it (as :meth:`AppResponse.run`)."""
        native = self.native
        peer = native.peer
        head = native.head
        request, _response = self.app.get_serving(
            Host("", peer.local_port, peer.local_name),
            Host(peer.remote_addr, peer.remote_port, ""),
            native.scheme,
            peer.environ["ACTUAL_SERVER_PROTOCOL"],
        )
        request.login = peer.login
        request.multithread = peer.environ["wsgi.multithread"]
        request.multiprocess = peer.environ["wsgi.multiprocess"]
        # request.wsgi_environ is built from it if someone asks.
        request.native_request = native
        path, query_string = recode_path_qs(
            self.app,
            native.path_info,
            urljoin(native.script_name, native.path_info),
            head.query.decode("latin-1"),
        )
        request.run(
            head.method.decode("latin-1"),
            path,
            query_string,
            head.protocol,
            native.header_list(),
            native.body,
        )


class ExceptionTrapper:
    """Middleware: turn an exception escaping the application into a bare 500."""

    def __init__(
        self,
        nextapp: WSGIApp,
        throws: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit),
    ):
        self.nextapp = nextapp
        self.throws = throws

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            return self.nextapp(environ, start_response)
        except self.throws:
            raise
        except Exception:
            return trapped_error(start_response)


def trapped_error(start_response: Callable[..., Any]) -> list[bytes]:
    """Log the exception being handled and answer a bare 500 (see :class:`ExceptionTrapper`)."""
    from morello import config, log

    tb = format_exc()
    log(tb, severity=40)
    # The request is gone by now: the global setting decides.
    show = config.get("request.show_tracebacks", True)
    status, headers, body = bare_error(tb if show else "")
    start_response(status, headers)
    return body


class InternalRedirector:
    """Middleware: restart the request at a new path on :class:`InternalRedirect`.

    The new request is a GET without a body. A loop back to a URL already
    visited is an error unless ``recursive`` is set.
    """

    def __init__(self, nextapp: WSGIApp, recursive: bool = False) -> None:
        self.nextapp = nextapp
        self.recursive = recursive

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._serve(environ, start_response, [])

    def follow(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        redirect: InternalRedirect,
    ) -> Any:
        """Serve ``redirect``, raised by the request of ``environ`` served some other way."""
        visited: list[str] = []
        return self._serve(self._redirected(environ, redirect, visited), start_response, visited)

    def _serve(
        self, environ: dict[str, Any], start_response: Callable[..., Any], visited: list[str]
    ) -> Any:
        while True:
            try:
                return self.nextapp(environ, start_response)
            except InternalRedirect as redirect:
                environ = self._redirected(environ, redirect, visited)

    def _redirected(
        self, environ: dict[str, Any], redirect: InternalRedirect, visited: list[str]
    ) -> dict[str, Any]:
        """The environ of the request ``redirect`` asks for (``visited`` notes the old URL)."""
        environ = environ.copy()
        script_name = environ.get("SCRIPT_NAME", "")
        old_uri = script_name + environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            old_uri += "?" + environ["QUERY_STRING"]
        visited.append(old_uri)
        if not self.recursive:
            new_uri = script_name + redirect.path
            if redirect.query_string:
                new_uri += "?" + redirect.query_string
            if new_uri in visited:
                redirect.request.close()
                raise RuntimeError(
                    f"InternalRedirector visited the same URL twice: {new_uri!r}"
                ) from None
        environ["REQUEST_METHOD"] = "GET"
        environ["PATH_INFO"] = redirect.path
        environ["QUERY_STRING"] = redirect.query_string
        environ["wsgi.input"] = io.BytesIO()
        environ["CONTENT_LENGTH"] = "0"
        environ["morello.previous_request"] = redirect.request
        return environ


class WSGIPipeline:
    """An application's WSGI callable: middleware around :class:`AppResponse`.

    Config: ``wsgi.pipeline = [(name, middleware_factory), ...]`` appends to
    the middleware list (innermost last); ``wsgi.<name>.<arg>`` passes keyword
    arguments to one; ``wsgi.response_class`` replaces :class:`AppResponse`.
    """

    pipeline: list[tuple[str, Callable[..., WSGIApp]]] = [
        ("ExceptionTrapper", ExceptionTrapper),
        ("InternalRedirector", InternalRedirector),
    ]
    head: WSGIApp | None = None
    response_class: type[AppResponse] = AppResponse
    #: The redirector :meth:`serve_native` follows redirects with, when the
    #: pipeline is the default one (None: it serves through the WSGI pipeline).
    native_redirector: InternalRedirector | None = None

    def __init__(
        self, app: Any, pipeline: list[tuple[str, Callable[..., WSGIApp]]] | None = None
    ) -> None:
        self.app = app
        self.pipeline = list(self.pipeline)
        if pipeline:
            self.pipeline.extend(pipeline)
        self.config: dict[str, dict[str, Any]] = {}

    def tail(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> AppResponse:
        return self.response_class(environ, start_response, self.app)

    def namespace_handler(self, key: str, value: Any) -> None:
        """The ``wsgi`` config namespace."""
        if key == "pipeline":
            # Added to the defaults, as in CherryPy; merging the same config
            # again must not stack the middleware twice.
            self.pipeline.extend(entry for entry in value if entry not in self.pipeline)
        elif key == "response_class":
            self.response_class = value
        else:
            name, arg = key.split(".", 1)
            self.config.setdefault(name, {})[arg] = value
        self.head = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        head = self.head
        if head is None:
            head = self._build()
        return head(environ, start_response)

    def _build(self) -> WSGIApp:
        """Chain the middleware (on the first request, once the config is known)."""
        head = self.tail
        for name, factory in reversed(self.pipeline):
            head = factory(head, **self.config.get(name, {}))
        default = (
            self.pipeline == WSGIPipeline.pipeline
            and not self.config
            and self.response_class is AppResponse
        )
        self.native_redirector = InternalRedirector(self.tail) if default else None
        self.head = head
        return head

    def serve_native(self, native: NativeRequest, start_response: Callable[..., Any]) -> Any:
        """Serve a request the server hands over natively.

        With the default middleware, this does what it does (trap errors,
        follow internal redirects) around :class:`NativeAppResponse`; a
        configured pipeline gets the request's WSGI environ instead.
        """
        if self.head is None:
            self._build()
        redirector = self.native_redirector
        if redirector is None:
            return self(native.environ(), start_response)
        try:
            try:
                return NativeAppResponse(native, start_response, self.app)
            except InternalRedirect as redirect:
                return redirector.follow(native.environ(), start_response, redirect)
        except Exception:
            return trapped_error(start_response)


#: CherryPy's name for :class:`WSGIPipeline`.
CPWSGIApp = WSGIPipeline

__all__ = [
    "AppResponse", "CPWSGIApp", "ExceptionTrapper", "InternalRedirector", "NativeAppResponse",
    "VirtualHost", "WSGIPipeline", "recode_path_qs", "translate_headers", "trapped_error",
]  # fmt: skip
