"""The native gateway: morello applications get the parsed request without a WSGI environ.

Each request is sent, over real sockets, to two servers running the same
tree: one hands it over natively (the server's application is the tree),
the other only speaks WSGI to it (a plain callable around the tree). The
request the application sees, ``request.wsgi_environ`` included, must be
the same on both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_support import build_request, exchange
from test_server import bus, make_server  # noqa: F401  (fixture)

import morello
from morello.application import Application, Tree
from morello.process.bus import Bus
from morello.vhost import VirtualHost

#: Values that differ between two connections or servers, whichever the path.
PER_CONNECTION = ("REMOTE_PORT", "SERVER_PORT")


def _plain(environ: dict[str, Any]) -> dict[str, Any]:
    """The environ's text, number and flag entries (not its streams)."""
    return {
        key: "<per connection>" if key in PER_CONNECTION else value
        for key, value in environ.items()
        if isinstance(value, str | int | bool | tuple)
    }


class Root:
    @morello.expose
    def default(self, *args: str, **params: Any) -> str:
        request = morello.request
        return json.dumps(
            {
                "native": request.native_request is not None,
                "method": request.method,
                "request_line": request.request_line,
                "script_name": request.script_name,
                "path_info": request.path_info,
                "query_string": request.query_string,
                "params": params,
                "args": args,
                "header_list": request.header_list,
                "headers": dict(request.headers),
                "base": request.base,
                "scheme": request.scheme,
                "protocol": list(request.protocol),
                "login": request.login,
                "local": [request.local.ip, request.local.name],
                "remote": [request.remote.ip, request.remote.name],
                "body": str(request.body.fullvalue()) if request.body else None,
                "prev": request.prev.path_info if request.prev else None,
                "environ": _plain(request.wsgi_environ),
            }
        )

    @morello.expose
    def go(self) -> None:
        raise morello.InternalRedirect("/landed", "via=go")

    @morello.expose
    def loop(self) -> None:
        raise morello.InternalRedirect("/loop")

    @morello.expose
    def lazy(self) -> str:
        before = "wsgi_environ" in vars(morello.request)
        port = morello.request.wsgi_environ["SERVER_PORT"]
        return f"{before} {'wsgi_environ' in vars(morello.request)} {port}"

    @morello.expose
    def fail(self) -> None:
        raise ValueError("in the handler")


def raw_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = json.dumps(_plain(environ)).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


class Tagger:
    """Middleware configured with ``wsgi.pipeline``: it tags responses."""

    def __init__(self, nextapp: Callable[..., Any]) -> None:
        self.nextapp = nextapp

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def tagged(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Tagged", environ["PATH_INFO"])])

        return self.nextapp(environ, tagged)


@pytest.fixture
def ports(bus: Bus) -> Iterator[tuple[int, int]]:  # noqa: F811
    """(native port, WSGI port): two servers of one tree."""
    tree = Tree()
    tree.mount(Root(), "", {"/": {"request.show_tracebacks": False}})
    tree.mount(Root(), "/app")
    tree.mount(Root(), "/tagged", {"/": {"wsgi.pipeline": [("tagger", Tagger)]}})
    tree.graft(raw_app, "/raw")
    sites = {
        "localhost": Application(Root(), None, {"/": {"response.headers.X-Site": "local"}}),
        "raw.example": raw_app,
    }
    tree.graft(VirtualHost(Application(Root(), None), sites), "/sites")
    native = make_server(bus)
    native.app = tree
    wsgi = make_server(bus)
    wsgi.app = lambda environ, start_response: tree(environ, start_response)
    bus.start()
    yield native.bound_addr[1], wsgi.bound_addr[1]  # type: ignore[index]


def both(ports: tuple[int, int], request: bytes, method: str = "GET") -> tuple[Any, Any]:
    """The replies of the native and the WSGI server to ``request``."""
    native, wsgi = (exchange(port, request, method) for port in ports)
    assert (native.status, native.reason) == (wsgi.status, wsgi.reason)
    return native, wsgi


def seen(ports: tuple[int, int], request: bytes, natively: bool = True) -> dict[str, Any]:
    """The request the handler saw on the native server, checked equal to the one WSGI gives."""
    native, wsgi = both(ports, request)
    assert native.status == 200, native.body
    on_native, on_wsgi = json.loads(native.body), json.loads(wsgi.body)
    assert (on_native.pop("native"), on_wsgi.pop("native")) == (natively, False)
    assert on_native == on_wsgi
    return on_native


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/a/b?x=1&y=%C3%A9",
        "//double//slashes/",
        "/caf%C3%A9/%FF",
        "/app",
        "/app/deeper/still?q",
        "/appendix",
    ],
)
def test_the_handler_sees_the_same_request_natively(ports: tuple[int, int], path: str) -> None:
    request = build_request(
        "GET",
        path,
        headers=[
            ("User-Agent", "native/1"),
            ("X-Many", "a"),
            ("x-many", "b"),
            ("Cookie", "k=v"),
            ("Cgi-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Latin", "caf\xe9"),
        ],
    )
    request_seen = seen(ports, request)
    assert ["USER-AGENT", "native/1"] in request_seen["header_list"]


def test_a_body_and_its_headers(ports: tuple[int, int]) -> None:
    body = b"name=value&other=%E2%82%AC"
    request = build_request(
        "POST", "/form", body, headers=[("Content-Type", "application/x-www-form-urlencoded")]
    )
    request_seen = seen(ports, request)
    assert request_seen["params"] == {"name": "value", "other": "\u20ac"}


def test_http10_without_host(ports: tuple[int, int]) -> None:
    seen(ports, b"GET /old?x HTTP/1.0\r\n\r\n")


def test_an_absolute_target_names_its_scheme(ports: tuple[int, int]) -> None:
    assert seen(ports, build_request("GET", "https://example.org/abs"))["scheme"] == "https"


def test_internal_redirects_and_their_loops(ports: tuple[int, int]) -> None:
    # The redirected request is served through the WSGI pipeline.
    landed = seen(ports, build_request("GET", "/go"), natively=False)
    assert (landed["path_info"], landed["prev"]) == ("/landed", "/go")
    native, wsgi = both(ports, build_request("GET", "/loop"))
    assert native.status == 500
    # The trapped error's traceback (global config) differs; its message does not.
    assert native.body.splitlines()[-1] == wsgi.body.splitlines()[-1]
    assert b"visited the same URL twice" in native.body


def test_errors_and_missing_mounts(ports: tuple[int, int]) -> None:
    native, wsgi = both(ports, build_request("GET", "/fail"))
    assert native.status == 500
    assert native.body == wsgi.body
    native, wsgi = both(ports, build_request("HEAD", "/fail"), "HEAD")
    assert (native.status, native.body) == (500, b"")


def test_a_configured_pipeline_and_a_grafted_app_get_an_environ(ports: tuple[int, int]) -> None:
    native, wsgi = both(ports, build_request("GET", "/tagged/x"))
    assert native.header("X-Tagged") == wsgi.header("X-Tagged") == "/x"
    native, wsgi = both(ports, build_request("GET", "/raw/y?z", headers=[("X-A", "1")]))
    assert json.loads(native.body)["PATH_INFO"] == "/y"


def test_the_environ_is_built_only_when_asked_for(ports: tuple[int, int]) -> None:
    native, wsgi = (exchange(port, build_request("GET", "/lazy")) for port in ports)
    port = str(ports[0])
    assert native.body.decode() == f"False True {port}"
    assert wsgi.body.decode() == f"True True {ports[1]}"


@pytest.mark.parametrize(
    "forwarded_host, site",
    [(None, "local"), ("localhost", "local"), ("elsewhere.example", None)],
)
def test_a_grafted_virtual_host_passes_requests_on_natively(
    ports: tuple[int, int], forwarded_host: str | None, site: str | None
) -> None:
    headers = [("X-Forwarded-Host", forwarded_host)] if forwarded_host else []
    request = build_request("GET", "/sites/page?x=1", headers=headers)
    request_seen = seen(ports, request)
    assert (request_seen["script_name"], request_seen["path_info"]) == ("/sites", "/page")
    native, wsgi = both(ports, request)
    assert native.header("X-Site") == wsgi.header("X-Site") == site


def test_a_virtual_host_gives_a_plain_wsgi_app_the_environ(ports: tuple[int, int]) -> None:
    request = build_request("GET", "/sites/y", headers=[("X-Forwarded-Host", "raw.example")])
    native, wsgi = both(ports, request)
    assert json.loads(native.body)["PATH_INFO"] == "/y"
    assert json.loads(native.body)["HTTP_X_FORWARDED_HOST"] == "raw.example"
