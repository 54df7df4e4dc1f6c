"""Dispatchers besides the object tree: virtual hosts, XML-RPC and Routes.

Each is a callable taking ``path_info`` that sets ``request.handler`` and
``request.config``, so any of them can be set as ``request.dispatch`` in
config. :class:`VirtualHost` and :class:`XMLRPCDispatcher` rewrite the path
and hand it to another dispatcher; :class:`RoutesDispatcher` matches it
against the routes of the optional ``routes`` package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import morello
from morello.dispatch import Dispatcher, LateParamPageHandler
from morello.errors import HTTPRedirect, NotFound
from morello.lib.httputil import urljoin
from morello.lib.xmlrpcutil import patched_path
from morello.metrics.handlers import dispatched
from morello.serving import serving

PathDispatcher = Callable[[str], Any]

_STATICDIR_SECTION = "tools.staticdir.section"


class VirtualHost:
    """Serve several sites from one application, chosen by the ``Host`` header.

    ``domains`` maps a ``Host`` value (with its port, when the client sends
    one) to a path prefix of the application; the prefix is put before
    ``path_info`` and the result handed to ``next_dispatcher``. Hosts not in
    ``domains`` get the path unchanged. Host names contain dots, so they are
    passed with ``**``::

        [/]
        request.dispatch = morello.dispatch.VirtualHost(**{"blog.example.com": "/blog"})

    With ``use_x_forwarded_host`` (the default) an ``X-Forwarded-Host``
    header, as set by reverse proxies, is used instead of ``Host``.
    """

    def __init__(
        self,
        next_dispatcher: PathDispatcher | None = None,
        use_x_forwarded_host: bool = True,
        **domains: str,
    ) -> None:
        self.next_dispatcher = Dispatcher() if next_dispatcher is None else next_dispatcher
        self.use_x_forwarded_host = use_x_forwarded_host
        self.domains = domains

    def __call__(self, path_info: str) -> Any:
        """Dispatch ``path_info`` under the prefix of the requested host."""
        request = serving.request
        headers = request.headers
        host = headers.get("Host", "")
        if self.use_x_forwarded_host:
            host = headers.get("X-Forwarded-Host", host)
        prefix = self.domains.get(host, "")
        if prefix:
            path_info = urljoin(prefix, path_info)
        result = self.next_dispatcher(path_info)
        # staticdir maps URLs below its section to files; the client's URLs
        # lack the prefix, so the section must too.
        section = request.config.get(_STATICDIR_SECTION) if request.config else None
        if section:
            request.config[_STATICDIR_SECTION] = section[len(prefix) :]
        return result


class XMLRPCDispatcher:
    """Prepare the path of an XML-RPC call for ``next_dispatcher``.

    Strips the conventional ``/RPC2`` prefix and adds the trailing slash the
    method name in the body would follow (see
    :func:`morello.lib.xmlrpcutil.patched_path`), so that the path leads to an
    :class:`~morello.xmlrpc.XMLRPCController`.
    """

    def __init__(self, next_dispatcher: PathDispatcher | None = None) -> None:
        self.next_dispatcher = Dispatcher() if next_dispatcher is None else next_dispatcher

    def __call__(self, path_info: str) -> Any:
        """Dispatch the XML-RPC form of ``path_info``."""
        return self.next_dispatcher(patched_path(path_info))


def _import_routes() -> Any:
    try:
        import routes
    except ImportError as exc:
        raise ImportError(
            "RoutesDispatcher needs the 'routes' package: pip install 'morello[routes]'"
        ) from exc
    return routes


class RoutesDispatcher:
    """Match ``path_info`` against Routes-style URL patterns.

    ``connect(name, route, controller, **kwargs)`` adds a route; a match
    names the controller and, usually, its ``action`` (the method to call).
    The route's other variables become request parameters, and so do
    ``controller`` and ``action`` when ``full_result`` is true. Controllers
    may be objects or classes (instantiated for each request); any attribute
    of a controller can be an action except dunder names. The keyword
    arguments go to ``routes.Mapper``.
    """

    def __init__(self, full_result: bool = False, **mapper_options: Any) -> None:
        routes = _import_routes()
        self._request_config = routes.request_config
        self.full_result = full_result
        self.controllers: dict[str, Any] = {}
        self.mapper = routes.Mapper(**mapper_options)
        # Routes matches a ``{controller}`` variable against the known names.
        self.mapper.controller_scan = self.controllers.keys

    def connect(self, name: str, route: str, controller: Any, **kwargs: Any) -> None:
        """Route the URLs matching ``route`` to ``controller``, registered as ``name``."""
        self.controllers[name] = controller
        self.mapper.connect(name, route, controller=name, **kwargs)

    def redirect(self, url: str) -> None:
        """Redirect the client to ``url`` (Routes' ``redirect_to`` calls this)."""
        raise HTTPRedirect(url)

    def __call__(self, path_info: str) -> None:
        """Set ``request.handler`` and ``request.config`` for ``path_info``."""
        handler = self.find_handler(path_info)
        serving.request.handler = LateParamPageHandler(handler) if handler else NotFound()

    def find_handler(self, path_info: str) -> Any:
        """The handler ``path_info`` routes to, or None; sets request config and params."""
        match = self._match(path_info)
        request = serving.request
        params = dict(match or ())
        if not self.full_result:
            params.pop("controller", None)
            params.pop("action", None)
        request.params.update(params)

        app = request.app
        config = morello.config.copy()
        section = ""

        def merge(conf: dict[str, Any] | None) -> None:
            if conf:
                config.update(conf)
                if "tools.staticdir.dir" in conf:
                    config[_STATICDIR_SECTION] = section or "/"

        merge(getattr(app.root, "_cp_config", None))
        merge(app.config.get("/"))
        # The sections of the path's directories come before the controller's
        # config; the section of the full path comes after, so it wins.
        *directories, last = [atom for atom in path_info.split("/") if atom] or [""]
        for atom in directories:
            section += "/" + atom
            merge(app.config.get(section))

        handler = route = None
        if match:
            name = match.get("controller")
            controller = self.controllers.get(name, name)
            if isinstance(controller, type):
                controller = controller()
            merge(getattr(controller, "_cp_config", None))
            action = match.get("action")
            # The handler as the metrics name it: the route's controller and action.
            route = f"/{name}/{action}" if action else f"/{name}"
            if action is None:
                handler = controller
            # An {action} taken from the URL must not reach Python internals.
            elif not action.startswith("__"):
                handler = getattr(controller, action, None)
                merge(getattr(handler, "_cp_config", None))

        if last:
            section += "/" + last
            merge(app.config.get(section))
        request.config = config
        dispatched(request.script_name, route if handler is not None else None)
        return handler

    def _match(self, path_info: str) -> dict[str, Any] | None:
        """Match the path, telling Routes about the request (for ``url_for``)."""
        request = serving.request
        routes_config = self._request_config()
        routes_config.mapper = self.mapper
        if request.wsgi_environ:
            routes_config.environ = request.wsgi_environ
        routes_config.host = request.headers.get("Host")
        routes_config.protocol = request.scheme
        routes_config.redirect = self.redirect
        match = self.mapper.match(path_info, request.wsgi_environ or None)
        routes_config.mapper_dict = match
        return match
