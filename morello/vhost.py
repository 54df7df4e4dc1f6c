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

from morello.http.native import NativeRequest, native_server


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
        default: Callable[..., Any],
        domains: Mapping[str, Callable[..., Any]] | None = None,
        use_x_forwarded_host: bool = True,
    ) -> None:
        self.default = default
        self.domains: Mapping[str, Callable[..., Any]] = domains or {}
        self.use_x_forwarded_host = use_x_forwarded_host

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        host = environ.get("HTTP_HOST", "")
        if self.use_x_forwarded_host:
            host = environ.get("HTTP_X_FORWARDED_HOST", host)
        app = self.domains.get(host, self.default)
        return app(environ, start_response)

    def serve_native(self, native: NativeRequest, start_response: Callable[..., Any]) -> Any:
        """Pass a request the server hands over natively on to the host's application.

        morello applications get it natively too; other WSGI applications get
        its environ.
        """
        fields = native.head.fields
        host = fields.get(b"Host", b"")
        if self.use_x_forwarded_host:
            host = fields.get(b"X-Forwarded-Host", host)
        app = self.domains.get(host.decode("latin-1"), self.default)
        serve = native_server(app)
        if serve is None:
            return app(native.environ(), start_response)
        return serve(native, start_response)
