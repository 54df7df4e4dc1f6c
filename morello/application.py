"""Applications and the tree they are mounted on.

An :class:`Application` is a root object plus its config, and a WSGI
callable. The :class:`Tree` (``morello.tree``) maps script names to
applications (or foreign WSGI apps) and is the WSGI app the HTTP server runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import morello
from morello import configuration
from morello.gateway import WSGIPipeline
from morello.http.native import NativeRequest, native_server
from morello.http_request import Request
from morello.http_response import Response
from morello.lib.httputil import Host, urljoin
from morello.namespaces import NamespaceSet
from morello.serving import serving


class Application:
    """A root object mounted at ``script_name`` with its own config and log.

    ``script_name=None`` means the mount point is taken from each request's
    WSGI ``SCRIPT_NAME`` (for hosting under another WSGI server).
    """

    root: Any = None
    config: dict[str, dict[str, Any]] = {}
    namespaces = NamespaceSet()
    toolboxes: dict[str, Any] = {}
    log: Any = None
    wsgiapp: WSGIPipeline | None = None
    request_class = Request
    response_class = Response
    #: Make ``morello.url()`` return relative URLs by default.
    relative_urls: bool | str = False

    def __init__(self, root: Any, script_name: str | None = "", config: Any = None) -> None:
        from morello import log as global_log
        from morello.logs import LogManager
        from morello.toolbox import default_toolbox

        self.log = LogManager(id(self), global_log.logger_root)
        self.root = root
        self.script_name = script_name
        self.wsgiapp = WSGIPipeline(self)
        self.toolboxes = {"tools": default_toolbox, **type(self).toolboxes}
        self.namespaces = self.namespaces.copy()
        self.namespaces["log"] = lambda key, value: setattr(self.log, key, value)
        self.namespaces["wsgi"] = self.wsgiapp.namespace_handler
        self.config = self.__class__.config.copy()
        if config:
            self.merge(config)

    def __repr__(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}({self.root!r}, {self.script_name!r})"

    @property
    def script_name(self) -> str:
        """The mount point ('' for the root), without a trailing slash."""
        if self._script_name is not None:
            return self._script_name
        return serving.request.wsgi_environ["SCRIPT_NAME"].rstrip("/")

    @script_name.setter
    def script_name(self, value: str | None) -> None:
        self._script_name = value.rstrip("/") if value else value

    def merge(self, config: Any) -> None:
        """Merge sectioned config into this application's config."""
        configuration.merge(self.config, config)
        # Application-level namespaces (log, wsgi) take effect now.
        self.namespaces(self.config.get("/", {}))

    def find_config(self, path: str, key: str, default: Any = None) -> Any:
        """The value of ``key`` in the config section nearest to ``path``."""
        trail = path or "/"
        while trail:
            section = self.config.get(trail)
            if section and key in section:
                return section[key]
            slash = trail.rfind("/")
            if slash == -1:
                break
            trail = "/" if slash == 0 and trail != "/" else trail[:slash]
        return default

    def get_serving(
        self, local: Host, remote: Host, scheme: str, server_protocol: str
    ) -> tuple[Any, Any]:
        """Create the request and response for this thread and make them current."""
        request = self.request_class(local, remote, scheme, server_protocol)
        request.app = self
        request.namespaces.update(self.toolboxes)
        response = self.response_class()
        serving.load(request, response)
        publish = morello.engine.publish
        publish("acquire_thread")
        publish("before_request")
        return request, response

    def release_serving(self) -> None:
        """Close the current request and forget it."""
        request = serving.request
        morello.engine.publish("after_request")
        try:
            request.close()
        except Exception:
            morello.log(traceback=True, severity=40)
        serving.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.wsgiapp(environ, start_response)

    def serve_native(self, native: NativeRequest, start_response: Callable[..., Any]) -> Any:
        """Serve a request the server hands over without a WSGI environ (the native gateway)."""
        wsgiapp = self.wsgiapp
        if type(self).__call__ is not Application.__call__ or not isinstance(
            wsgiapp, WSGIPipeline
        ):
            return self(native.environ(), start_response)  # replaced: only WSGI is known
        return wsgiapp.serve_native(native, start_response)


class Tree:
    """Script name -> application; the WSGI app the HTTP server serves."""

    def __init__(self) -> None:
        self.apps: dict[str, Any] = {}

    def mount(self, root: Any, script_name: str = "", config: Any = None) -> Application:
        """Mount ``root`` (an object or an :class:`Application`) at ``script_name``."""
        if script_name is None:
            raise TypeError(
                "The 'script_name' argument may not be None. Application objects may, "
                "however, possess a script_name of None (in order to inherit it from "
                "the WSGI environ). Pass an empty string to mount at the root."
            )
        script_name = script_name.rstrip("/")
        if isinstance(root, Application):
            app = root
            if script_name not in ("", app.script_name):
                raise ValueError(
                    "Cannot specify a different script name and pass an Application "
                    "instance to mount"
                )
            script_name = app.script_name
        else:
            app = Application(root, script_name)
        if config:
            app.merge(config)
        self.apps[script_name] = app
        return app

    def graft(self, wsgi_callable: Callable[..., Any], script_name: str = "") -> None:
        """Mount any WSGI callable at ``script_name``."""
        self.apps[script_name.rstrip("/")] = wsgi_callable

    def script_name(self, path: str | None = None) -> str | None:
        """The mount point that serves ``path`` (default: the current request)."""
        if path is None:
            request = serving.request
            path = urljoin(request.script_name, request.path_info)
        while True:
            if path in self.apps:
                return path
            if path == "":
                return None
            path = path[: path.rfind("/")]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        outer_script_name = environ.get("SCRIPT_NAME", "")
        path_info = environ.get("PATH_INFO", "")
        path = urljoin(outer_script_name, path_info)
        script_name = self.script_name(path)
        if script_name is None:
            start_response("404 Not Found", [])
            return []
        app = self.apps[script_name]
        inner_path_info = path[len(script_name.rstrip("/")) :]
        if script_name != outer_script_name or inner_path_info != path_info:
            # The environ belongs to the server: change a copy.
            environ = environ.copy()
            environ["SCRIPT_NAME"] = script_name
            environ["PATH_INFO"] = inner_path_info
        return app(environ, start_response)

    def serve_native(self, native: NativeRequest, start_response: Callable[..., Any]) -> Any:
        """Serve a request the server hands over without a WSGI environ.

        Applications offering ``serve_native`` get it as it is; grafted WSGI
        callables get its environ.
        """
        if type(self).__call__ is not Tree.__call__:
            return self(native.environ(), start_response)
        path = urljoin(native.path_info)  # the server's SCRIPT_NAME is ''
        script_name = self.script_name(path)
        if script_name is None:
            start_response("404 Not Found", [])
            return []
        app = self.apps[script_name]
        native.mount(script_name, path[len(script_name.rstrip("/")) :])
        serve = native_server(app)
        if serve is None:
            return app(native.environ(), start_response)
        return serve(native, start_response)
