"""The dispatchers besides the object tree, over real HTTP on loopback.

VirtualHost, XMLRPCDispatcher with XMLRPCController (driven by the standard
library's XML-RPC client), RoutesDispatcher (skipped without the ``routes``
package) and the MethodDispatcher, each also set up from a config file. One
server runs for the module, with each setup mounted at its own script name.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import morello
from morello import _cptools
from morello.configfile import parse_value
from morello.dispatch import MethodDispatcher, RoutesDispatcher, VirtualHost, XMLRPCDispatcher
from morello.lib import xmlrpcutil
from morello.testing import Client, running

HAVE_ROUTES = importlib.util.find_spec("routes") is not None
needs_routes = pytest.mark.skipif(not HAVE_ROUTES, reason="the routes package is not installed")
XML = {"Content-Type": "text/xml"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- the applications ----------------------------------------------------------------------


class Section:
    def __init__(self, name: str) -> None:
        self.name = name

    @morello.expose
    def index(self) -> str:
        return f"{self.name} index"

    @morello.expose
    def page(self, *args: str) -> str:
        request = morello.request
        section = request.config.get("tools.staticdir.section")
        return f"{self.name} page {args!r} {request.path_info} section={section}"


class Sites(Section):
    def __init__(self) -> None:
        super().__init__("root")
        self.blog = Section("blog")
        self.shop = Section("shop")


class Versioned:
    exposed = True

    def __init__(self, name: str) -> None:
        self.name = name

    def GET(self) -> str:  # noqa: N802 - HTTP verb
        return f"api {self.name}"


class Arithmetic:
    @morello.expose
    def add(self, a: int, b: int) -> int:
        return a + b

    def hidden(self) -> str:
        return "not exposed"


class Service(_cptools.XMLRPCController):
    math = Arithmetic()

    @morello.expose
    def echo(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    @morello.expose
    def nothing(self) -> None:
        return None

    @morello.expose
    def fail(self) -> None:
        raise ValueError("broken on purpose")

    @morello.expose
    def give_fault(self) -> xmlrpc.client.Fault:
        return xmlrpc.client.Fault(42, "returned")

    @morello.expose
    def text(self) -> str:
        return "caf\u00e9 \u2603"

    @morello.expose
    def missing_page(self) -> None:
        raise morello.NotFound()


class RPCRoot(Service):
    def __init__(self) -> None:
        self.nullable = Service()
        self.latin = Service()


class RawCall:
    @morello.expose
    def index(self) -> str:
        return repr(xmlrpcutil.process_body())


class Blog:
    _cp_config = {"my.level": "controller"}

    def index(self) -> str:
        return "blog index"

    def show(self, year: str, slug: str = "untitled", **routing: str) -> str:
        level = morello.request.config.get("my.level")
        return f"post {year}/{slug} level={level} params={sorted(morello.request.params)}"

    show._cp_config = {"my.level": "handler"}  # type: ignore[attr-defined]

    def create(self, title: str) -> str:
        morello.response.status = 201
        return f"created {title}"

    def moved(self) -> None:
        import routes

        routes.redirect_to("/blog")

    def link(self) -> str:
        import routes

        return routes.url_for("post", year="2024", slug="hi")


class Counter:
    """A controller class: one instance per request, called as the handler."""

    def __call__(self, item: str) -> str:
        return f"item {item}"


def blog_routes(**options: Any) -> RoutesDispatcher:
    dispatcher = RoutesDispatcher(**options)
    blog = Blog()
    dispatcher.connect("blog", "/blog", controller=blog, action="index")
    dispatcher.connect("moved", "/blog/moved", controller=blog, action="moved")
    dispatcher.connect("link", "/blog/link", controller=blog, action="link")
    dispatcher.connect(
        "post", "/blog/{year}/{slug}", controller=blog, action="show", requirements={"year": r"\d+"}
    )
    dispatcher.connect(
        "create", "/posts", controller=blog, action="create", conditions={"method": ["POST"]}
    )
    dispatcher.connect("items", "/items/{item}", controller=Counter)
    dispatcher.connect("broken", "/broken", controller=blog, action="nope")
    dispatcher.connect("any", "/any/{action}", controller=blog)
    return dispatcher


@morello.popargs("item_id")
class Items:
    exposed = True

    def GET(self, item_id: str | None = None, **filters: str) -> str:  # noqa: N802
        return f"GET {item_id} {sorted(filters.items())}"

    GET._cp_config = {"response.headers.X-Verb": "get"}  # type: ignore[attr-defined]

    def POST(self, name: str = "anonymous") -> str:  # noqa: N802
        morello.response.status = 201
        return f"POST {name}"

    @morello.config(**{"response.headers.X-Verb": "put"})
    def PUT(self, item_id: str, name: str | None = None) -> str:  # noqa: N802
        return f"PUT {item_id} {name}"

    def DELETE(self, item_id: str) -> None:  # noqa: N802
        morello.response.status = 204


class HeadOnly:
    exposed = True

    def HEAD(self) -> str:  # noqa: N802
        morello.response.headers["X-Head"] = "own"
        return ""


class Shelf:
    """Not a resource itself; only its ``items`` are."""

    def __init__(self) -> None:
        self.items = Items()


class Api:
    exposed = True

    def __init__(self) -> None:
        self.items = Items()
        self.head = HeadOnly()

    def GET(self) -> str:  # noqa: N802
        return "api"


DOMAINS = {"blog.example.com": "/blog", "shop.example.com:8080": "/shop"}

CONFIG_FILES = {
    "vhost.conf": """\
        [/]
        request.dispatch = morello.dispatch.VirtualHost(**{"blog.example.com": "/blog", "shop.example.com:8080": "/shop"})
        """,  # noqa: E501 - one config line
    "rpc.conf": """\
        [/]
        request.dispatch = morello.dispatch.XMLRPCDispatcher()
        tools.xmlrpc.allow_none = True
        """,
    "rest.conf": """\
        [/]
        request.dispatch = morello.dispatch.MethodDispatcher()
        """,
    "routes.conf": """\
        [/]
        request.dispatch = morello.dispatch.RoutesDispatcher(full_result=False)
        """,
}


def mount_all(conf_dir: Path) -> None:
    files = {}
    for name, text in CONFIG_FILES.items():
        files[name] = conf_dir / name
        files[name].write_text(textwrap.dedent(text))
    mount = morello.tree.mount

    mount(
        Sites(),
        "/vhost",
        {
            "/": {"request.dispatch": VirtualHost(**DOMAINS)},
            "/blog/page": {"tools.staticdir.dir": "files"},
        },
    )
    mount(
        Sites(),
        "/direct",
        {"/": {"request.dispatch": VirtualHost(use_x_forwarded_host=False, **DOMAINS)}},
    )
    chained = Versioned("v1")
    chained.v2 = Versioned("v2")  # type: ignore[attr-defined]
    chain = VirtualHost(MethodDispatcher(), **{"api.example.com": "/v2"})
    mount(chained, "/chain", {"/": {"request.dispatch": chain}})
    mount(Sites(), "/vhost-file", str(files["vhost.conf"]))

    mount(
        RPCRoot(),
        "/rpc",
        {
            "/": {"request.dispatch": XMLRPCDispatcher()},
            "/nullable": {"tools.xmlrpc.allow_none": True},
            "/latin": {"tools.xmlrpc.encoding": "iso-8859-1"},
        },
    )
    mount(RPCRoot(), "/rpc-file", str(files["rpc.conf"]))
    mount(RawCall(), "/raw")

    mount(Api(), "/api", {"/": {"request.dispatch": MethodDispatcher()}})
    mount(Items(), "/items", {"/": {"request.dispatch": MethodDispatcher()}})
    mount(Api(), "/api-file", str(files["rest.conf"]))
    mount(Shelf(), "/shelf", {"/": {"request.dispatch": MethodDispatcher()}})

    if HAVE_ROUTES:
        mount(None, "/routes", {"/": {"request.dispatch": blog_routes()}})
        mount(None, "/routes-full", {"/": {"request.dispatch": blog_routes(full_result=True)}})
        order = {
            "/": {"request.dispatch": blog_routes()},
            "/blog": {"my.level": "section /blog"},  # before the controller's config
            "/blog/7/news": {"my.level": "section of the full path"},  # after the handler's
        }
        mount(None, "/routes-order", order)
        from_file = mount(None, "/routes-file", str(files["routes.conf"]))
        from_file.config["/"]["request.dispatch"].connect(
            "blog", "/blog", controller=Blog(), action="index"
        )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    mount_all(tmp_path_factory.mktemp("dispatchers"))
    with running({}) as client:
        yield client


def proxy(client: Client, path: str, **kwargs: Any) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(client.base + path, **kwargs)


# -- VirtualHost -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, body",
    [
        ("blog.example.com", "blog index"),
        ("shop.example.com:8080", "shop index"),
        ("shop.example.com", "root index"),  # the port is part of the name
        ("BLOG.example.com", "root index"),  # an exact match, as in CherryPy
        ("elsewhere.example.org", "root index"),
        ("", "root index"),
    ],
)
@pytest.mark.parametrize("app", ["/vhost", "/vhost-file"])
def test_virtual_host_picks_the_prefix_by_host(
    client: Client, app: str, host: str, body: str
) -> None:
    reply = client.get(app + "/", headers={"Host": host})
    assert (reply.status, reply.text) == (200, body)


def test_virtual_host_keeps_the_client_path(client: Client) -> None:
    reply = client.get("/vhost/page/a/b", headers={"Host": "blog.example.com"})
    assert reply.text == "blog page ('a', 'b') /page/a/b section=/page"
    # The prefixed path is reachable directly too, as in CherryPy.
    assert client.get("/vhost/blog/page", headers={"Host": "x"}).text.startswith("blog page ()")


def test_virtual_host_trailing_slash_redirect_uses_the_client_path(client: Client) -> None:
    reply = client.get("/vhost/blog", headers={"Host": "elsewhere.example"})
    assert reply.status == 301
    assert reply.headers["Location"] == "http://elsewhere.example/vhost/blog/"


def test_virtual_host_x_forwarded_host(client: Client) -> None:
    headers = {"Host": "blog.example.com", "X-Forwarded-Host": "shop.example.com:8080"}
    assert client.get("/vhost/", headers=headers).text == "shop index"
    assert client.get("/direct/", headers=headers).text == "blog index"


def test_virtual_host_hands_over_to_the_next_dispatcher(client: Client) -> None:
    api = {"Host": "api.example.com"}
    assert client.get("/chain/", headers=api).text == "api v2"
    assert client.get("/chain/", headers={"Host": "other.example.com"}).text == "api v1"
    put = client.request("PUT", "/chain/", b"", headers=api)
    assert (put.status, put.headers["Allow"]) == (405, "GET, HEAD")


def test_virtual_host_staticdir_section_loses_the_prefix(client: Client) -> None:
    by_host = client.get("/vhost/page", headers={"Host": "blog.example.com"})
    assert by_host.text.endswith("section=/page")
    direct = client.get("/vhost/blog/page", headers={"Host": "x"})
    assert direct.text.endswith("section=/blog/page")


@pytest.mark.parametrize(
    "host",
    [
        "blog.example.com:notaport",
        "blog.example.com\x7f",
        "\xe9t\xe9.example.com",
        "x" * 4000,
        "[::1",
        "/blog",
        "blog.example.com/../shop",
        "blog.example.com, shop.example.com:8080",
    ],
)
def test_virtual_host_garbage_host_gets_the_default_site(client: Client, host: str) -> None:
    reply = client.get("/vhost/", headers=[("Host", host)])
    assert (reply.status, reply.text) == (200, "root index")
    assert client.get("/vhost/", headers={"Host": "blog.example.com"}).text == "blog index"


def test_virtual_host_config_value() -> None:
    text = 'morello.dispatch.VirtualHost(use_x_forwarded_host=False, **{"www.example.com": "/www"})'
    dispatch = parse_value(text)
    assert isinstance(dispatch, VirtualHost)
    assert (dispatch.domains, dispatch.use_x_forwarded_host) == ({"www.example.com": "/www"}, False)
    assert type(dispatch.next_dispatcher) is morello.dispatch.Dispatcher


# -- XML-RPC ------------------------------------------------------------------------------


def test_xmlrpc_calls_with_the_standard_client(client: Client) -> None:
    service = proxy(client, "/rpc/")
    assert service.math.add(2, 3) == 5
    assert service.echo(1, "two", [3], {"four": 4.0}) == [[1, "two", [3], {"four": 4.0}], {}]
    assert proxy(client, "/rpc/RPC2/").echo("via RPC2") == [["via RPC2"], {}]
    assert proxy(client, "/rpc/nullable/", allow_none=True).nothing() is None
    assert proxy(client, "/rpc-file/RPC2/", allow_none=True).nothing() is None


def test_xmlrpc_path_segments_and_query_become_arguments(client: Client) -> None:
    assert proxy(client, "/rpc/a/b/?flag=1").echo(3) == [["a", "b", 3], {"flag": "1"}]


@pytest.mark.parametrize(
    "call, fault",
    [
        (lambda s: s.fail(), "broken on purpose"),
        (lambda s: s.nothing(), "cannot marshal None unless allow_none is enabled"),
        (lambda s: s.math.add(1), "missing 1 required positional argument: 'b'"),
        (lambda s: s.math.hidden(), "The XML-RPC method 'math.hidden' does not exist."),
        (lambda s: s.nowhere.at.all(), "The XML-RPC method 'nowhere.at.all' does not exist."),
        (lambda s: s.__getattr__("__init__")(), "The XML-RPC method '__init__' does not"),
    ],
)
def test_xmlrpc_failures_are_faults(client: Client, call: Any, fault: str) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(proxy(client, "/rpc/"))
    assert info.value.faultCode == 1 and fault in info.value.faultString
    assert proxy(client, "/rpc/").math.add(1, 1) == 2


def test_xmlrpc_returned_fault_keeps_its_code(client: Client) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        proxy(client, "/rpc/").give_fault()
    assert (info.value.faultCode, info.value.faultString) == (42, "returned")


def test_xmlrpc_http_errors_stay_http_errors(client: Client) -> None:
    assert client.post("/rpc/", xmlrpc.client.dumps((), "missing_page"), XML).status == 404


def test_xmlrpc_answer_headers_and_encoding(client: Client) -> None:
    reply = client.post("/rpc/", xmlrpc.client.dumps((), "text"), XML)
    assert reply.status == 200 and reply.headers["Content-Type"] == "text/xml;charset=utf-8"
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert xmlrpc.client.loads(reply.body)[0] == ("caf\u00e9 \u2603",)
    latin = client.post("/rpc/latin/", xmlrpc.client.dumps((), "text"), XML)
    assert latin.body.startswith(b"<?xml version='1.0' encoding='iso-8859-1'?>")
    assert b"caf\xe9 &#9731;" in latin.body
    assert int(latin.headers["Content-Length"]) == len(latin.body)
    assert xmlrpc.client.loads(latin.body)[0] == ("caf\u00e9 \u2603",)


@pytest.mark.parametrize(
    "method, body",
    [
        ("POST", b""),
        ("POST", b"<methodCall><methodName>echo"),
        ("POST", b"<methodCall></methodCall>"),
        ("POST", b"\xff\xfe\x00garbage"),
        ("POST", xmlrpc.client.dumps((1,), methodresponse=True).encode()),
        ("POST", b"<methodCall>" * 5000),
        ("GET", None),
        ("DELETE", None),
    ],
)
def test_xmlrpc_malformed_calls_are_faults(client: Client, method: str, body: bytes | None) -> None:
    reply = client.request(method, "/rpc/", body, XML if body is not None else {})
    assert reply.status == 200 and reply.headers["Content-Type"] == "text/xml"
    with pytest.raises(xmlrpc.client.Fault, match="not an XML-RPC call") as info:
        xmlrpc.client.loads(reply.body)
    assert info.value.faultCode == 1
    assert proxy(client, "/rpc/").math.add(1, 2) == 3


def test_xmlrpc_badly_typed_value_is_a_fault(client: Client) -> None:
    body = (
        b"<methodCall><methodName>echo</methodName><params><param><value><int>x</int>"
        b"</value></param></params></methodCall>"
    )
    reply = client.post("/rpc/", body, XML)
    with pytest.raises(xmlrpc.client.Fault, match="invalid literal"):
        xmlrpc.client.loads(reply.body)


def test_xmlrpc_call_without_content_type(client: Client) -> None:
    reply = client.post("/rpc/", xmlrpc.client.dumps((1,), "echo"))
    assert xmlrpc.client.loads(reply.body)[0] == ([[1], {}],)


def test_xmlrpc_form_body_leaves_no_call(client: Client) -> None:
    # A form Content-Type makes the body a form: no XML-RPC call is left.
    reply = client.post("/rpc/", xmlrpc.client.dumps((), "echo"), FORM)
    with pytest.raises(xmlrpc.client.Fault, match="not an XML-RPC call"):
        xmlrpc.client.loads(reply.body)


def test_xmlrpc_names() -> None:
    assert morello.tools.xmlrpc.callable is xmlrpcutil.on_error
    assert isinstance(morello.tools.xmlrpc, morello.ErrorTool)
    assert morello._cptools.XMLRPCController is _cptools.XMLRPCController
    assert Service._cp_config == {"tools.xmlrpc.on": True}
    assert type(parse_value("morello.dispatch.XMLRPCDispatcher()")) is XMLRPCDispatcher


@pytest.mark.parametrize(
    "path, patched",
    [("/", "/"), ("", "/"), ("/a", "/a/"), ("/RPC2", "/"), ("/RPC2/x", "/x/"), ("/rpc2", "/rpc2/")],
)
def test_patched_path(path: str, patched: str) -> None:
    assert xmlrpcutil.patched_path(path) == patched


def test_process_body_result(client: Client) -> None:
    good = client.post("/raw/", xmlrpc.client.dumps((1, "a"), "m.n"), XML)
    assert good.text == "((1, 'a'), 'm.n')"
    assert client.post("/raw/", b"junk", XML).text == repr(xmlrpcutil.MALFORMED_CALL)


# -- RoutesDispatcher -----------------------------------------------------------------------


@needs_routes
@pytest.mark.parametrize(
    "method, path, status, text",
    [
        ("GET", "/routes/blog", 200, "blog index"),
        ("GET", "/routes/blog/7/news", 200, "post 7/news level=handler params=['slug', 'year']"),
        ("GET", "/routes/blog/x/news", 404, None),  # the requirement fails
        ("POST", "/routes/posts", 201, "created T"),
        ("GET", "/routes/posts", 404, None),  # only POST
        ("GET", "/routes/items/hat", 200, "item hat"),
        ("GET", "/routes/broken", 404, None),  # the action does not exist
        ("GET", "/routes/any/index", 200, "blog index"),
        ("GET", "/routes/any/__init__", 404, None),
        ("GET", "/routes/any/__class__", 404, None),
        ("GET", "/routes/nowhere", 404, None),
        ("GET", "/routes/", 404, None),
        ("GET", "/routes/blog/link", 200, "/routes/blog/2024/hi"),
        ("GET", "/routes-file/blog", 200, "blog index"),
        (
            "GET",
            "/routes-full/blog/7/news",
            200,
            "post 7/news level=handler params=['action', 'controller', 'slug', 'year']",
        ),
        ("GET", "/routes-order/blog/7/other", 200, "level=handler"),
        ("GET", "/routes-order/blog/7/news", 200, "level=section of the full path"),
    ],
)
def test_routes_dispatcher(
    client: Client, method: str, path: str, status: int, text: str | None
) -> None:
    reply = client.request(method, path, b"title=T" if method == "POST" else None, FORM)
    assert reply.status == status
    if text is not None:
        assert text in reply.text


@needs_routes
def test_routes_redirect(client: Client) -> None:
    moved = client.get("/routes/blog/moved")
    assert moved.status == 303 and moved.headers["Location"].endswith("/routes/blog")


def test_routes_dispatcher_without_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "routes", None)
    with pytest.raises(ImportError, match=r"morello\[routes\]"):
        RoutesDispatcher()


# -- MethodDispatcher -----------------------------------------------------------------------


@pytest.mark.parametrize("app", ["/api", "/api-file"])
def test_method_dispatcher_verbs(client: Client, app: str) -> None:
    assert client.get(app + "/items").text == "GET None []"
    assert client.get(app + "/items/7?colour=red").text == "GET 7 [('colour', 'red')]"
    post = client.post(app + "/items", b"name=Ann", FORM)
    assert (post.status, post.text) == (201, "POST Ann")
    put = client.request("PUT", app + "/items/5", b"name=Bob", FORM)
    assert (put.status, put.text) == (200, "PUT 5 Bob")
    delete = client.request("DELETE", app + "/items/5")
    assert (delete.status, delete.body) == (204, b"")
    assert client.request("DELETE", app + "/items").status == 404  # item_id is missing


def test_method_dispatcher_allow_header(client: Client) -> None:
    assert client.get("/api/items").headers["Allow"] == "DELETE, GET, HEAD, POST, PUT"
    assert client.get("/api/").headers["Allow"] == "GET, HEAD"
    assert client.head("/api/head").headers["Allow"] == "HEAD"


def test_method_dispatcher_head_falls_back_to_get(client: Client) -> None:
    reply = client.head("/api/items/3")
    assert (reply.status, reply.body, reply.headers["X-Verb"]) == (200, b"", "get")
    assert client.head("/api/head").headers["X-Head"] == "own"


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("PATCH", "/api/items", "DELETE, GET, HEAD, POST, PUT"),
        ("OPTIONS", "/api/items", "DELETE, GET, HEAD, POST, PUT"),
        ("FOO", "/api/items/1", "DELETE, GET, HEAD, POST, PUT"),
        ("GET", "/api/head", "HEAD"),
        ("POST", "/api/", "GET, HEAD"),
    ],
)
def test_method_dispatcher_unknown_method_is_405(
    client: Client, method: str, path: str, allow: str
) -> None:
    reply = client.request(method, path, b"")
    assert (reply.status, reply.headers["Allow"]) == (405, allow)
    assert client.get("/api/items").status == 200


def test_method_dispatcher_method_config(client: Client) -> None:
    assert client.get("/api/items").headers["X-Verb"] == "get"
    assert client.request("PUT", "/api/items/1", b"", FORM).headers["X-Verb"] == "put"
    assert "X-Verb" not in client.post("/api/items", b"", FORM).headers


def test_method_dispatcher_popargs_at_the_root(client: Client) -> None:
    assert client.get("/items/9").text == "GET 9 []"
    # Leftover segments GET does not take: 404, with the resource's Allow.
    extra = client.get("/items/1/2/3")
    assert (extra.status, extra.headers["Allow"]) == (404, "DELETE, GET, HEAD, POST, PUT")


def test_method_dispatcher_not_found(client: Client) -> None:
    reply = client.get("/shelf/nothing")
    assert reply.status == 404 and "Allow" not in reply.headers
    assert client.get("/shelf/items/4").text == "GET 4 []"
