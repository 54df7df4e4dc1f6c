"""Integration tests for the application layer: exposing and dispatching handlers,
the tree of applications, Applications as WSGI callables, ``url()``,
``thread_data`` and the request/response proxies.

Dispatch and ``url()`` are compared with CherryPy 18, run in-process through
its WSGI callable, on the same app and requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e_support import get_concurrently
from wsgi_direct import call, cherrypy_tree

import morello
from morello.testing import running


def build_dispatch(cp: Any) -> Any:
    """An object tree exercising every way the default dispatcher finds handlers."""

    class Band:
        def __init__(self, band: str) -> None:
            self.band = band

        @cp.expose
        def index(self) -> str:
            return f"band {self.band}"

        @cp.expose
        def albums(self, *names: str) -> str:
            return f"albums of {self.band}: {list(names)}"

    class Bands:
        # popargs with a callable handler: it gets the popped values and
        # returns the next node.
        _cp_dispatch = cp.popargs("band", handler=Band)

    class Track:
        @cp.expose
        def index(self, artist: str = "", track: str = "") -> str:
            return f"track {track} of {artist}"

    class Artists:
        # popargs with a non-callable handler: the values become parameters.
        _cp_dispatch = cp.popargs("artist", "track", handler=Track())

    @cp.popargs("year", "month")
    class Archive:
        @cp.expose
        def index(self, year: str | None = None, month: str | None = None) -> str:
            return f"archive {year}/{month}"

        @cp.expose
        def feed(self, year: str | None = None, month: str | None = None) -> str:
            return f"feed {year}/{month}"

    class Users:
        def _cp_dispatch(self, vpath: list[str]) -> Any:
            if vpath[0].isdigit():
                cp.request.params["user_id"] = vpath.pop(0)
                return self.profile
            return None

        @cp.expose
        def profile(self, user_id: str = "", tab: str = "main") -> str:
            return f"user {user_id} tab {tab}"

    class Sub:
        @cp.expose
        def index(self) -> str:
            return "sub index"

        @cp.expose
        def default(self, *rest: str) -> str:
            return f"sub default {list(rest)}"

    class Callable:
        exposed = True

        def __call__(self, *args: str) -> str:
            return f"called {list(args)}"

    class Root:
        bands = Bands()
        artists = Artists()
        archive = Archive()
        users = Users()
        sub = Sub()
        callme = Callable()

        @cp.expose
        def index(self) -> str:
            return "root index"

        @cp.expose()
        def called_expose(self) -> str:
            return "called_expose"

        @cp.expose(alias="alt")
        def aliased(self) -> str:
            return "aliased"

        @cp.expose(["first.alias", "second"])
        def many(self) -> str:
            return "many"

        @cp.expose(alias=["third"])
        def listed(self) -> str:
            return "listed"

        def legacy(self) -> str:
            return "legacy"

        legacy.exposed = True  # type: ignore[attr-defined]

        def hidden(self) -> str:
            return "hidden"

        @cp.expose
        def my_page(self) -> str:
            return "my_page"

        @cp.expose
        def args(self, *parts: str, **params: Any) -> str:
            return f"args {list(parts)} {sorted(params.items())}"

        @cp.expose
        def multi(self, x: Any = None, y: Any = None) -> str:
            return f"x={x!r} y={y!r}"

        @cp.expose
        def fixed(self, a: str) -> str:
            return f"a={a}"

    return Root()


DISPATCH_CASES = [
    ("/", 200, "root index"),
    ("/called_expose", 200, "called_expose"),
    ("/aliased", 200, "aliased"),
    ("/alt", 200, "aliased"),
    ("/first.alias", 200, "many"),
    ("/second", 200, "many"),
    ("/third", 200, "listed"),
    ("/legacy", 200, "legacy"),
    ("/hidden", 404, None),
    ("/my-page", 200, "my_page"),
    ("/my.page", 200, "my_page"),
    ("/args/a/b?x=1", 200, "args ['a', 'b'] [('x', '1')]"),
    ("/args", 200, "args [] []"),
    ("/multi?x=1&x=2&y=3", 200, "x=['1', '2'] y='3'"),
    ("/fixed/1", 200, "a=1"),
    ("/fixed/1/2", 404, None),
    ("/fixed", 404, None),
    ("/sub/", 200, "sub index"),
    ("/sub/deeper/path", 200, "sub default ['deeper', 'path']"),
    ("/callme", 200, "called []"),
    ("/callme/x/y", 200, "called ['x', 'y']"),
    ("/bands/nirvana/", 200, "band nirvana"),
    ("/bands/nirvana/albums/nevermind/bleach", 200, "albums of nirvana: ['nevermind', 'bleach']"),
    ("/artists/nirvana/lithium/", 200, "track lithium of nirvana"),
    ("/archive/", 200, "archive None/None"),
    ("/archive/2024/", 200, "archive 2024/None"),
    ("/archive/2024/05/", 200, "archive 2024/05"),
    ("/archive/2024/05/feed", 200, "feed 2024/05"),
    ("/users/42?tab=posts", 200, "user 42 tab posts"),
    ("/users/bob", 404, None),
    ("/nowhere", 404, None),
]


def test_dispatch_matches_cherrypy() -> None:
    with running({"": build_dispatch(morello)}) as client:
        answers = [client.get(path) for path, _, _ in DISPATCH_CASES]
    got = [(a.status, a.text if a.status == 200 else None) for a in answers]
    assert got == [(status, body) for _, status, body in DISPATCH_CASES]

    import cherrypy

    with cherrypy_tree(build_dispatch(cherrypy)) as tree:
        references = []
        for path, _, _ in DISPATCH_CASES:
            path, _, query = path.partition("?")
            reply = call(tree, path, query=query)
            references.append((reply.code, reply.body.decode() if reply.code == 200 else None))
    assert references == got


# -- the tree ---------------------------------------------------------------------


class WhereAmI:
    @morello.expose
    def index(self, *rest: str) -> str:
        request = morello.request
        return f"{request.script_name}|{request.path_info}|{morello.tree.script_name()}"

    default = index


def wsgi_hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"foreign {environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()]


def test_several_apps_and_a_grafted_wsgi_app() -> None:
    with running({"": WhereAmI(), "/a": WhereAmI(), "/a/b": WhereAmI()}) as client:
        morello.tree.graft(wsgi_hello, "/foreign/")
        assert set(morello.tree.apps) == {"", "/a", "/a/b", "/foreign"}
        assert morello.tree.script_name("/a/b/c") == "/a/b"
        assert morello.tree.script_name("/a/bc") == "/a"
        assert morello.tree.script_name("/elsewhere") == ""
        assert isinstance(morello.tree.apps["/a"], morello.Application)
        assert client.get("/").text == "|/|"
        assert client.get("/x/y").text == "|/x/y|"
        assert client.get("/a").headers["Location"] == client.base + "/a/"
        assert client.get("/a/").text == "/a|/|/a"
        assert client.get("/a/bc").text == "/a|/bc|/a"
        assert client.get("/a/b/c").text == "/a/b|/c|/a/b"
        assert client.get("/foreign/deep/er").text == "foreign /foreign|/deep/er"


def test_mount_rules() -> None:
    app = morello.Application(WhereAmI(), "/fixed")
    try:
        with pytest.raises(TypeError, match="script_name"):
            morello.tree.mount(WhereAmI(), None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="different script name"):
            morello.tree.mount(app, "/other")
        assert morello.tree.mount(app) is app
        assert morello.tree.apps["/fixed"] is app
        mounted = morello.tree.mount(WhereAmI(), "/slash/")
        assert mounted.script_name == "/slash" and "/slash" in morello.tree.apps
    finally:
        morello.tree.apps.clear()


def test_without_a_matching_app_the_tree_answers_404() -> None:
    with running({"/only": WhereAmI()}) as client:
        assert client.get("/other").status == 404
        assert client.get("/only/here").text == "/only|/here|/only"


# -- Application as a WSGI callable ------------------------------------------------


def build_introspect(cp: Any) -> Any:
    """A handler that reports what the request and response proxies say."""

    class Root:
        @cp.expose
        def index(self, *args: str, **params: Any) -> str:
            rq, rs = cp.request, cp.response
            report = {
                "method": rq.method,
                "path_info": rq.path_info,
                "script_name": rq.script_name,
                "query_string": rq.query_string,
                "base": rq.base,
                "scheme": rq.scheme,
                "local": [rq.local.ip, rq.local.port, rq.local.name],
                "remote": [rq.remote.ip, rq.remote.port, rq.remote.name],
                "protocol": list(rq.protocol),
                "request_line": rq.request_line,
                "content_type": rq.headers["content-type"],
                "header_in": "X-CUSTOM" in rq.headers,
                "header_get": rq.headers.get("x-custom"),
                "cookie": rq.cookie["flavour"].value,
                "params": rq.params,
                "args": list(args),
                "app_is_mounted": rq.app is cp.tree.apps.get(rq.script_name),
                "config": rq.config.get("my.key"),
                "handler": type(rq.handler).__name__,
                "is_index": rq.is_index,
                "login": rq.login,
                "status_before": rs.status,
                "time_is_float": isinstance(rs.time, float),
                "url": cp.url(),
                "url_qs": cp.url(qs=rq.query_string),
            }
            rs.headers["X-Mixed-Case"] = "yes"
            cp.response.cookie["served"] = "1"
            return json.dumps(report)

    return Root()


INTROSPECT_REQUEST = {
    "path": "/index/extra",
    "query": "a=1&a=2&b=3",
    "method": "POST",
    "headers": {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Custom": "custom value",
        "Cookie": "flavour=chocolate",
    },
    "body": b"c=4",
}


def test_application_called_directly_matches_cherrypy() -> None:
    app = morello.Application(build_introspect(morello), "/app", {"/": {"my.key": "mine"}})
    morello.tree.apps["/app"] = app
    try:
        reply = call(app, script_name="/app", **INTROSPECT_REQUEST)  # type: ignore[arg-type]
    finally:
        morello.tree.apps.clear()
    assert reply.code == 200, reply.body
    report = json.loads(reply.body)
    assert report == {
        "method": "POST",
        "path_info": "/index/extra",
        "script_name": "/app",
        "query_string": "a=1&a=2&b=3",
        "base": "http://127.0.0.1:8080",
        "scheme": "http",
        "local": ["", 8080, "127.0.0.1"],
        "remote": ["127.0.0.1", 5555, ""],
        "protocol": [1, 1],
        "request_line": "POST /app/index/extra?a=1&a=2&b=3 HTTP/1.1",
        "content_type": "application/x-www-form-urlencoded",
        "header_in": True,
        "header_get": "custom value",
        "cookie": "chocolate",
        "params": {"a": ["1", "2"], "b": "3", "c": "4"},
        "args": ["extra"],
        "app_is_mounted": True,
        "config": "mine",
        "handler": "ResponseEncoder",  # the encode tool wraps the page handler
        "is_index": False,
        "login": None,
        "status_before": None,
        "time_is_float": True,
        "url": "http://127.0.0.1:8080/app/index/extra",
        "url_qs": "http://127.0.0.1:8080/app/index/extra?a=1&a=2&b=3",
    }
    assert reply.header("X-Mixed-Case") == "yes"
    assert reply.header("Set-Cookie") == "served=1"

    import cherrypy

    with cherrypy_tree(build_introspect(cherrypy), {"/": {"my.key": "mine"}}, script_name="/app"):
        reference = call(cherrypy.tree, script_name="/app", **INTROSPECT_REQUEST)  # type: ignore[arg-type]
    assert json.loads(reference.body) == report


def test_application_without_script_name_follows_the_environ() -> None:
    app = morello.Application(build_introspect(morello), None)
    headers = {"Cookie": "flavour=mint", "Content-Type": "text/plain"}
    reply = call(app, "/", script_name="/hosted/here", headers=headers)
    report = json.loads(reply.body)
    assert report["script_name"] == "/hosted/here"
    assert report["url"] == "http://127.0.0.1:8080/hosted/here/"
    assert report["is_index"] is True


def test_request_proxies_over_http() -> None:
    started = time.time()

    class Root:
        @morello.expose
        def index(self) -> str:
            rq = morello.request
            return json.dumps({
                "remote_ip": rq.remote.ip, "local_port": rq.local.port,
                "base": rq.base, "time": morello.response.time,
                "server_protocol": rq.server_protocol,
            })  # fmt: skip

    with running({"": Root()}) as client:
        report = json.loads(client.get("/").body)
    assert report["remote_ip"] == "127.0.0.1"
    assert report["local_port"] == client.port
    assert report["base"] == client.base
    assert report["server_protocol"] == "HTTP/1.1"
    assert started <= report["time"] <= time.time()


def test_proxies_outside_a_request() -> None:
    assert morello.request.app is None
    assert morello.request.method == "GET"
    assert morello.response.status is None or morello.response.status == ""
    thread_results: list[Any] = []

    def other_thread() -> None:
        thread_results.append(morello.request.app)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert thread_results == [None]


# -- url() ----------------------------------------------------------------------------


def build_urls(cp: Any) -> Any:
    class Page:
        @cp.expose
        def index(self) -> str:
            return json.dumps(url_forms(cp))

        @cp.expose
        def leaf(self, *args: str) -> str:
            return json.dumps(url_forms(cp))

    class Root:
        page = Page()

    return Root()


def url_forms(cp: Any) -> list[str]:
    url = cp.url
    return [
        url(),
        url(""),
        url("sibling"),
        url("../up"),
        url("./here/./x/../y"),
        url("/absolute"),
        url("/a", qs="x=1"),
        url("/a", qs={"k": "v w"}),
        url("/a", qs=[("k", "1"), ("k", "2")]),
        url("/a", script_name="/other"),
        url("/a", base="https://example.org"),
        url("/page/leaf/x", relative=True),
        url("/elsewhere", relative=True),
        url("/page/", relative=True),
        url("/a", relative="server"),
        url("rel", relative="server"),
    ]


URL_PAGES = [
    "/app/page/", "/app/page/index", "/app/page/leaf", "/app/page/leaf/", "/app/page/leaf/v",
]  # fmt: skip


def test_url_inside_a_request_matches_cherrypy() -> None:
    host = {"Host": "127.0.0.1:8080"}
    with running({"/app": build_urls(morello)}) as client:
        answers = [client.get(path, headers=host) for path in URL_PAGES]
    assert [a.status for a in answers] == [200] * len(URL_PAGES)
    forms = [json.loads(a.body) for a in answers]

    import cherrypy

    with cherrypy_tree(build_urls(cherrypy), script_name="/app"):
        references = [json.loads(call(cherrypy.tree, path).body) for path in URL_PAGES]
    assert forms == references
    assert forms[2][:5] == [
        "http://127.0.0.1:8080/app/page/leaf",
        "http://127.0.0.1:8080/app/page/leaf",
        "http://127.0.0.1:8080/app/page/sibling",
        "http://127.0.0.1:8080/app/up",
        "http://127.0.0.1:8080/app/page/here/y",
    ]


def test_url_relative_by_app_setting() -> None:
    app = morello.Application(build_urls(morello), "/app")
    app.relative_urls = True
    with running({"/app": app}) as client:
        forms = json.loads(client.get("/app/page/leaf").body)
    assert forms[2] == "sibling"
    assert forms[5] == "../absolute"


def test_url_outside_a_request() -> None:
    server = morello.server
    old = (server.socket_host, server.socket_port)
    try:
        server.socket_host, server.socket_port = "127.0.0.1", 8080
        assert morello.url("/x") == "http://127.0.0.1:8080/x"
        assert morello.url("/x", script_name="/app") == "http://127.0.0.1:8080/app/x"
        assert morello.url("y", script_name="/app/") == "http://127.0.0.1:8080/app/y"
        assert morello.url("/x", qs={"a": 1}) == "http://127.0.0.1:8080/x?a=1"
        assert morello.url("/x/../z", base="http://h") == "http://h/z"
        assert morello.url("/x", relative="server") == "/x"
        server.socket_port = 80
        assert morello.url("/x") == "http://127.0.0.1/x"

        import cherrypy

        saved = (cherrypy.server.socket_host, cherrypy.server.socket_port)
        cherrypy.server.socket_host, cherrypy.server.socket_port = "127.0.0.1", 80
        try:
            for args, kwargs in [(("/x",), {}), (("y",), {"script_name": "/app/"}),
                                 (("/x",), {"qs": {"a": 1}})]:  # fmt: skip
                assert morello.url(*args, **kwargs) == cherrypy.url(*args, **kwargs)
        finally:
            cherrypy.server.socket_host, cherrypy.server.socket_port = saved
    finally:
        server.socket_host, server.socket_port = old


# -- thread_data --------------------------------------------------------------------


def test_thread_data_is_per_thread() -> None:
    both_inside = threading.Barrier(2, timeout=10)

    class Root:
        @morello.expose
        def index(self) -> str:
            data = morello.thread_data
            data.hits = getattr(data, "hits", 0) + 1
            if data.hits == 1:
                both_inside.wait()  # two requests at once: two worker threads
            return f"{threading.get_ident()} {data.hits}"

    with running({"": Root()}, global_config={"server.thread_pool": 2}) as client:
        results = get_concurrently(client, "/")
        later = [client.get("/").text for _ in range(4)]
    first = dict(line.split() for line in results)
    assert sorted(first.values()) == ["1", "1"] and len(first) == 2
    counts = dict(first)
    for line in later:
        ident, hits = line.split()
        counts[ident] = str(int(counts[ident]) + 1)
        assert hits == counts[ident]
    morello.server.thread_pool = 10

    morello.thread_data.value = "main"
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(hasattr(morello.thread_data, "value")))
    thread.start()
    thread.join(10)
    assert seen == [False]
    del morello.thread_data.value
