"""WSGI middleware that serves each host name with its own application.

Graft it onto the tree to host several sites in one server::

    vhost = morello._cpwsgi.VirtualHost(
        main_app, domains={"blog.example.com": blog_app, "shop.example.com:8443": shop_app}
    )
    morello.tree.graft(vhost)

(``morello.dispatch.VirtualHost`` does the same job inside one application,
by prefixing the path instead.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class VirtualHost:
    """Call the WSGI application of the request's host, or ``default``.

    ``domains`` maps a ``Host`` header value, exactly as clients send it
    (``"example.com"``, ``"www.example.com"`` and ``"example.com:8080"`` are
    three entries), to its application. With ``use_x_forwarded_host`` (the
    default) an ``X-Forwarded-Host`` header, set by a proxy in front, wins
    over ``Host``.
    """

    def __init__(
        self,
        default: WSGIApp,
        domains: Mapping[str, WSGIApp] | None = None,
        use_x_forwarded_host: bool = True,
    ) -> None:
        self.default = default
        self.domains: Mapping[str, WSGIApp] = domains or {}
        self.use_x_forwarded_host = use_x_forwarded_host

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        host = environ.get("HTTP_HOST", "")
        if self.use_x_forwarded_host:
            host = environ.get("HTTP_X_FORWARDED_HOST", host)
        app = self.domains.get(host, self.default)
        return app(environ, start_response)
