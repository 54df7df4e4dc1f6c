"""The built-in tools of ``morello.lib.cptools`` over real HTTP: allow,
response_headers, referer, redirect, err_redirect, accept, autovary,
ignore_headers, flatten, proxy, etags and params.

(gzip, json_in/json_out and expires: ``test_builtin_tools_encoding.py``.)
Bad input gives a 4xx (or is ignored) and leaves the server answering.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import morello
from morello.lib import cptools
from morello.testing import Client


def still_answers(client: Client) -> None:
    """The server keeps serving after a bad request."""
    assert client.get("/").status == 200


# -- allow, response_headers, referer -------------------------------------------------


class Guarded:
    @morello.expose
    def index(self) -> str:
        return "index"

    @morello.expose
    @morello.tools.allow(methods=["post", "Get"])
    def form(self) -> str:
        return morello.request.method

    @morello.expose
    @morello.tools.allow()
    def readonly(self) -> str:
        return "read"

    @morello.expose
    @morello.tools.allow(methods="DELETE")
    def gone(self) -> str:
        return "deleted"

    @morello.expose
    def broken(self) -> str:
        raise ValueError("broken page")

    @morello.expose
    @morello.tools.referer(pattern=r"https://ours\.example/")
    def ours(self) -> str:
        return "welcome"

    @morello.expose
    @morello.tools.referer(pattern="(a+)+$", accept=False, accept_missing=True, error=418)
    def pickier(self) -> str:
        return "fine"


def test_allow(serve: Any) -> None:
    client = serve(Guarded())
    form = client.post("/form", "")
    assert form.status == 200 and form.body == b"POST"
    assert form.headers["Allow"] == "POST, GET, HEAD"
    assert client.head("/form").status == 200
    refused = client.request("PUT", "/form", b"")
    assert refused.status == 405 and refused.headers["Allow"] == "POST, GET, HEAD"
    assert client.get("/readonly").headers["Allow"] == "GET, HEAD"
    assert client.post("/readonly", "").status == 405
    gone = client.get("/gone")
    assert gone.status == 405 and gone.headers["Allow"] == "DELETE"
    assert client.request("DELETE", "/gone").body == b"deleted"


def test_response_headers_also_on_error_pages(serve: Any) -> None:
    headers = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
    config = {
        "/": {"tools.response_headers.on": True, "tools.response_headers.headers": headers},
        "/form": {"tools.response_headers.headers": [("X-Listed", "yes")]},
    }
    client = serve(Guarded(), config=config)
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/form").headers["X-Listed"] == "yes"
    for path in ("/broken", "/nowhere"):
        error = client.get(path)
        assert error.status in (404, 500) and error.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    "path, referer, status",
    [
        ("/ours", "https://ours.example/page", 200),
        ("/ours", "https://ours.example.evil/", 403),
        ("/ours", None, 403),
        ("/ours", "\x7f\u00e9\u00ff", 403),
        ("/pickier", None, 200),
        ("/pickier", "b", 200),
        ("/pickier", "aaa", 418),
    ],
)
def test_referer(serve: Any, path: str, referer: str | None, status: int) -> None:
    client = serve(Guarded())
    headers = {"Referer": referer} if referer is not None else {}
    response = client.get(path, headers)
    assert response.status == status
    if status == 403:
        assert b"Forbidden Referer header." in response.body
    still_answers(client)


# -- redirect, err_redirect ----------------------------------------------------------------


class Redirecting:
    @morello.expose
    def index(self) -> str:
        return "index"

    @morello.expose
    def target(self, **params: Any) -> str:
        return f"target via {morello.request.path_info} {sorted(params.items())}"

    @morello.expose
    def old(self) -> str:
        return "never"

    @morello.expose
    def moved(self) -> str:
        return "never"

    @morello.expose
    def crash(self) -> str:
        raise RuntimeError("crash")


def test_redirect_and_err_redirect(serve: Any) -> None:
    config = {
        "/old": {"tools.redirect.on": True, "tools.redirect.url": "/target"},
        "/moved": {
            "tools.redirect.on": True,
            "tools.redirect.url": "/target",
            "tools.redirect.internal": False,
        },
        "/crash": {"tools.err_redirect.on": True, "tools.err_redirect.url": "/target"},
    }
    client = serve(Redirecting(), config=config)
    internal = client.get("/old?a=1")
    # (An internal redirect without a query string drops the original one.)
    assert internal.status == 200 and internal.body == b"target via /target []"
    external = client.get("/moved")
    assert external.status == 303
    assert external.headers["Location"] == f"{client.base}/target"
    crashed = client.get("/crash")
    assert crashed.status == 200 and crashed.body.startswith(b"target via /target")


# -- accept, autovary, ignore_headers, flatten ---------------------------------------------


class Negotiating:
    @morello.expose
    def index(self) -> str:
        return "index"

    @morello.expose
    @morello.tools.accept(media=["text/html", "application/json"])
    def page(self) -> str:
        return "page"

    @morello.expose
    def chosen(self) -> str:
        return cptools.accept(["text/plain", "Application/XML", "text/html"]) or "none"

    @morello.expose
    @morello.tools.autovary()
    def varied(self) -> str:
        headers = morello.request.headers
        seen = [headers.get("X-Theme"), "Accept-Language" in headers, headers.values("Accept")]
        return repr(seen)

    @morello.expose
    @morello.tools.autovary(ignore=["X-Theme"])
    def ignored(self) -> bytes:
        morello.response.headers["Content-Type"] = "application/octet-stream"
        morello.response.headers["Vary"] = "Cookie"
        return repr(morello.request.headers.get("X-Theme")).encode()

    @morello.expose
    @morello.tools.autovary()
    def untouched(self) -> bytes:
        morello.response.headers["Content-Type"] = "application/octet-stream"
        return b"looked at nothing"

    @morello.expose
    @morello.tools.ignore_headers(headers="X-Secret")
    def ignoring(self) -> str:
        headers = morello.request.headers
        return repr([headers.get("X-Secret"), headers.get("Range")])

    @morello.expose
    @morello.tools.flatten()
    def nested(self) -> Iterator[Any]:
        def level(n: int) -> Iterator[Any]:
            yield f"[{n}".encode()
            if n:
                yield level(n - 1)
                yield iter([b"-", (b"t" for _ in range(2))])
            yield b"]"

        return level(2)


@pytest.mark.parametrize(
    "accept, status, chosen",
    [
        (None, 200, b"text/plain"),
        ("text/html", 200, b"text/html"),
        ("application/*", 200, b"Application/XML"),
        ("application/xml", 200, b"Application/XML"),
        ("text/html;q=0.5, application/xml;q=0.9", 200, b"Application/XML"),
        ("*/*;q=0.1, text/html", 200, b"text/html"),
        ("*/*", 200, b"text/plain"),
        ("image/png", 406, None),
        ("text/plain;q=0", 406, None),
        ("text/html;q=x", 400, None),
        ("text/html;q=x, text/plain", 400, None),
    ],
)
def test_accept(serve: Any, accept: str | None, status: int, chosen: bytes | None) -> None:
    client = serve(Negotiating())
    headers = {"Accept": accept} if accept is not None else {}
    response = client.get("/chosen", headers)
    assert response.status == status
    if chosen is not None:
        assert response.body == chosen
    still_answers(client)


def test_accept_tool_406_names_the_media_types(serve: Any) -> None:
    client = serve(Negotiating())
    assert client.get("/page", {"Accept": "application/json"}).status == 200
    refused = client.get("/page", {"Accept": "image/*"})
    assert refused.status == 406
    assert b"image/*" in refused.body and b"text/html, application/json" in refused.body


def test_accept_without_media_returns_none() -> None:
    assert cptools.accept() is None and cptools.accept([]) is None


def test_autovary_names_the_headers_looked_at(serve: Any) -> None:
    client = serve(Negotiating())
    varied = client.get("/varied", {"X-Theme": "dark"})
    assert varied.body == b"['dark', False, []]"
    # Accept-Charset: looked up by the encode tool to pick the charset.
    assert varied.headers["Vary"] == "Accept, Accept-Charset, Accept-Language, X-Theme"
    ignored = client.get("/ignored", {"X-Theme": "dark"})
    assert ignored.headers["Vary"] == "Cookie"
    assert "Vary" not in client.get("/untouched").headers


def test_autovary_with_a_request_body(serve: Any) -> None:
    class Root:
        @morello.expose
        @morello.tools.autovary()
        def index(self, **params: Any) -> bytes:
            morello.response.headers["Content-Type"] = "application/octet-stream"
            return repr(params).encode()

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = serve(Root()).post("/", "a=1", form)
    assert response.body == b"{'a': '1'}"
    assert "Vary" not in response.headers


def test_monitored_header_map_records_keyed_access_only() -> None:
    headers = cptools.MonitoredHeaderMap({"Host": "x", "Accept": "a/b"})
    assert headers.accessed_headers == set()
    assert dict(headers.items()) == {"Host": "x", "Accept": "a/b"}
    headers.get("user-agent")
    assert "accept" in headers
    headers.elements("If-None-Match")
    headers["X-New"] = "1"
    assert headers.pop("x-new") == "1"
    assert headers.accessed_headers == {"User-Agent", "Accept", "If-None-Match", "X-New"}


def test_ignore_headers(serve: Any) -> None:
    client = serve(Negotiating(), config={"/": {"tools.ignore_headers.on": True}})
    response = client.get("/", {"Range": "bytes=0-1"})
    assert response.status == 200
    # The handler's own list replaces the default ("Range") there.
    ignoring = client.get("/ignoring", {"X-Secret": "s", "Range": "bytes=0-1"})
    assert ignoring.body == b"[None, 'bytes=0-1']"


def test_flatten_nested_generators(serve: Any) -> None:
    response = serve(Negotiating()).get("/nested")
    assert response.body == b"[2[1[0]-tt]-tt]"


# -- proxy -------------------------------------------------------------------------------


class Proxied:
    @morello.expose
    def index(self) -> str:
        request = morello.request
        return f"{request.base} {request.remote.ip} {morello.url('/page')}"

    @morello.expose
    def away(self) -> str:
        raise morello.HTTPRedirect("/there")


@pytest.fixture
def proxied(serve: Any) -> Client:
    return serve(Proxied(), config={"/": {"tools.proxy.on": True}})


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, "http://127.0.0.1:{port} 127.0.0.1 http://127.0.0.1:{port}/page"),
        (
            {"X-Forwarded-Host": "www.example.org", "X-Forwarded-Proto": "https"},
            "https://www.example.org 127.0.0.1 https://www.example.org/page",
        ),
        (
            {"X-Forwarded-Host": "[2001:db8::2]:8443, inner", "X-Forwarded-For": " 2001:db8::1 "},
            "http://[2001:db8::2]:8443 2001:db8::1 http://[2001:db8::2]:8443/page",
        ),
        (
            {"X-Forwarded-For": "198.51.100.7, 10.0.0.2", "X-Forwarded-Proto": "HTTPS, http"},
            "https://127.0.0.1:{port} 198.51.100.7 https://127.0.0.1:{port}/page",
        ),
    ],
)
def test_proxy_rebuilds_base_and_remote(
    proxied: Client, headers: dict[str, str], expected: str
) -> None:
    response = proxied.get("/", headers)
    assert response.text == expected.format(port=proxied.port)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "evil.example/phish?<script>"},
        {"X-Forwarded-Host": "user:pw@evil.example"},
        {"X-Forwarded-Host": "two words"},
        {"X-Forwarded-Host": "host:99999999"},
        {"X-Forwarded-Host": "\u00e9vil.example"},
        {"X-Forwarded-Proto": "javascript"},
        {"X-Forwarded-Proto": "https://evil.example"},
        {"X-Forwarded-Proto": ""},
        {"X-Forwarded-For": "<script>alert(1)</script>"},
        {"X-Forwarded-For": "unknown"},
        {"X-Forwarded-For": "1.2.3.4:80"},
        {"X-Forwarded-For": ",,,"},
        {"X-Forwarded-For": "999.1.1.1"},
    ],
)
def test_proxy_ignores_garbage(proxied: Client, headers: dict[str, str]) -> None:
    response = proxied.get("/", headers)
    assert response.status == 200
    port = proxied.port
    assert response.text == f"http://127.0.0.1:{port} 127.0.0.1 http://127.0.0.1:{port}/page"
    assert proxied.get("/away", headers).headers["Location"] == f"http://127.0.0.1:{port}/there"


def test_proxy_settings(serve: Any) -> None:
    config = {
        "/": {
            "tools.proxy.on": True,
            "tools.proxy.base": "https://public.example/app",
            "tools.proxy.local": "",
            "tools.proxy.remote": "X-Real-Ip",
            "tools.proxy.scheme": "X-Forwarded-Ssl",
        },
        "/away": {"tools.proxy.base": None, "tools.proxy.local": "Origin"},
    }
    client = serve(Proxied(), config=config)
    headers = {"X-Forwarded-Host": "ignored.example", "X-Real-Ip": "192.0.2.1"}
    response = client.get("/", headers)
    assert response.text == "https://public.example/app 192.0.2.1 https://public.example/app/page"
    away = client.get("/away", {"Origin": "https://origin.example:444"})
    assert away.headers["Location"] == "https://origin.example:444/there"
    ssl = client.get("/away", {"X-Forwarded-Ssl": "on", "Origin": "origin.example"})
    assert ssl.headers["Location"] == "https://origin.example/there"


# -- etags ---------------------------------------------------------------------------------


class Tagged:
    @morello.expose
    def index(self) -> str:
        return "content"

    @morello.expose
    def fixed(self) -> str:
        morello.response.headers["ETag"] = '"v2"'
        return "fixed"

    @morello.expose
    def teapot(self) -> str:
        morello.response.status = 418
        return "no tag for me"


CONTENT_TAG = '"' + hashlib.md5(b"content").hexdigest() + '"'


@pytest.fixture
def tagged(serve: Any) -> Client:
    config = {"/": {"tools.etags.on": True, "tools.etags.autotags": True}}
    return serve(Tagged(), config=config)


def test_etags_autotags_and_conditions(tagged: Client) -> None:
    response = tagged.get("/")
    assert response.headers["ETag"] == CONTENT_TAG
    assert tagged.get("/fixed").headers["ETag"] == '"v2"'
    assert "ETag" not in tagged.get("/teapot").headers

    not_modified = tagged.get("/", {"If-None-Match": f'"other", {CONTENT_TAG}'})
    assert not_modified.status == 304 and not_modified.body == b""
    assert tagged.get("/", {"If-None-Match": "*"}).status == 304
    assert tagged.post("/", "", {"If-None-Match": CONTENT_TAG}).status == 412
    assert tagged.get("/", {"If-Match": CONTENT_TAG}).status == 200
    assert tagged.get("/", {"If-Match": "*"}).status == 200
    failed = tagged.get("/fixed", {"If-Match": '"v1"'})
    assert failed.status == 412 and b"If-Match" in failed.body
    # If-Match only applies to 2xx answers.
    assert tagged.get("/teapot", {"If-Match": '"v1"'}).status == 418


@pytest.mark.parametrize(
    "value", ['"unterminated', "W/", ";;;", '"a";q=x', "\x7f\u00e9", "*, *", '""']
)
def test_etags_malformed_conditions_are_no_match(tagged: Client, value: str) -> None:
    assert tagged.get("/", {"If-None-Match": value}).status == 200
    assert tagged.get("/", {"If-Match": value}).status == 412
    still_answers(tagged)


def test_etags_conditions_without_elements_are_ignored(tagged: Client) -> None:
    assert tagged.get("/", {"If-None-Match": ",,,"}).status == 200
    assert tagged.get("/", {"If-Match": ", ,"}).status == 200


def test_etags_off_without_autotags(serve: Any) -> None:
    client = serve(Tagged(), config={"/": {"tools.etags.on": True}})
    assert "ETag" not in client.get("/").headers
    assert client.get("/fixed", {"If-None-Match": '"v2"'}).status == 304


# -- params --------------------------------------------------------------------------------


class Typed:
    @morello.expose
    def index(self) -> str:
        return "index"

    @morello.expose
    def add(self, a: int, b: int = 0) -> str:
        return repr(a + b)

    @morello.expose
    def maybe(self, n: Optional[int] = None, m: float | None = None) -> str:  # noqa: UP045
        return repr((n, m))

    @morello.expose
    def mixed(self, tags: list, note: str, count: int = 1) -> str:
        return repr((tags, note, count))

    @morello.expose
    def unresolved(self, x: NotDefinedAnywhere, y: int = 0) -> str:  # noqa: F821
        return repr((x, y))


def test_params_converts_from_annotations(serve: Any) -> None:
    client = serve(Typed(), config={"/": {"tools.params.on": True}})
    assert client.get("/add?a=2&b=40").body == b"42"
    assert client.get("/maybe?n=7&m=0.5").body == b"(7, 0.5)"
    assert client.get("/maybe").body == b"(None, None)"
    assert client.get("/mixed?tags=a&tags=b&note=hi&count=3").body == b"(['a', 'b'], 'hi', 3)"
    assert client.get("/add?a=1&return=x").status == 404  # unknown argument, not a conversion
    # Annotations that do not resolve are left alone (this module's are strings).
    assert client.get("/unresolved?x=1&y=2").body == b"('1', '2')"


@pytest.mark.parametrize("query", ["a=x", "a=1.5", "a=", "a=1&b=zz", "a=1&a=2", "a=%00"])
def test_params_bad_values_are_400(serve: Any, query: str) -> None:
    client = serve(Typed(), config={"/": {"tools.params.on": True}})
    response = client.get(f"/add?{query}")
    assert response.status == 400
    still_answers(client)


def strict_bool(value: str) -> bool:
    if value not in ("yes", "no"):
        raise KeyError(value)
    return value == "yes"


def test_params_error_settings_and_missing_pages(serve: Any) -> None:
    class Root(Typed):
        @morello.expose
        def strict(self, flag: strict_bool) -> str:  # type: ignore[valid-type]
            return repr(flag)

    config = {
        "/": {"tools.params.on": True},
        "/strict": {"tools.params.exception": KeyError, "tools.params.error": 422},
    }
    client = serve(Root(), config=config)
    assert client.get("/strict?flag=yes").body == b"True"
    assert client.get("/strict?flag=maybe").status == 422
    assert client.get("/nothing?a=1").status == 404


def test_params_converters_from_any_callable() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, n: int) -> None:
            """A handler object (unhashable: its converters are not cached)."""

    assert cptools._converters(Unhashable()) == {"n": int}
    assert cptools._converters(int) == {}  # no signature to read


def test_params_converter_bugs_stay_500(serve: Any) -> None:
    def broken(value: str) -> int:
        raise TypeError("a bug in the converter")

    class Root:
        @morello.expose
        def index(self, n: Any) -> str:
            return "never"

    # (This module's annotations are strings, which cannot name a local function.)
    Root.index.__annotations__["n"] = broken
    client = serve(Root(), config={"/": {"tools.params.on": True}})
    assert client.get("/?n=1").status == 500
    assert client.get("/?n=1&n=2").status == 400  # a repeated parameter is the client's doing


# -- debug logging -----------------------------------------------------------------------


@pytest.fixture
def error_log() -> Iterator[list[str]]:
    """Messages reaching the site-wide error log (app logs propagate there)."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("morello.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_debug_switches_log_the_tools_decisions(serve: Any, error_log: list[str]) -> None:
    class Root(Negotiating, Redirecting):
        @morello.expose
        def index(self) -> str:
            return "index"

    tool_args: dict[str, dict[str, Any]] = {
        "allow": {},
        "proxy": {},
        "etags": {},
        "flatten": {},
        "ignore_headers": {},
        "referer": {"pattern": "http://ok/", "accept_missing": True},
        "accept": {"media": "text/html"},
        "autovary": {"ignore": "X-Nothing"},
        "response_headers": {"headers": [("X-A", "1")]},
    }
    config = {
        "/": {
            f"tools.{name}.{key}": value
            for name, args in tool_args.items()
            for key, value in {"on": True, "debug": True, **args}.items()
        },
        "/old": {
            "tools.redirect.on": True,
            "tools.redirect.url": "/",
            "tools.redirect.debug": True,
        },
    }
    client = serve(Root(), config=config)
    headers = {"Referer": "http://ok/x", "Range": "bytes=1-2", "X-Forwarded-Host": "h.example"}
    response = client.get("/", headers)
    assert response.status == 200 and response.headers["X-A"] == "1"
    assert client.get("/", {"Accept": "text/*"}).status == 200
    assert client.get("/old").status == 200
    logged = "\n".join(error_log)
    for name in [*tool_args, "redirect"]:
        assert f"TOOLS.{name.upper()}" in logged, name
