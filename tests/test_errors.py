"""Errors end to end: HTTPError, redirects, internal redirects, error pages, hooks.

Requests go over loopback through cheroot; statuses are compared with
CherryPy 18 serving the same handlers. Production behaviour is checked on a
morello subprocess so this process's global config stays untouched.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import (
    Conn,
    alive_root,
    app_and_reference,
    assert_alive,
    build_request,
    exchange,
    get,
    subprocess_server,
)

import morello
from morello.hooks import HOOK_POINTS

TEMPLATE = "<html>TEMPLATE|%(status)s|%(message)s|%(traceback)s|%(version)s</html>"
#: Entity headers that describe content an error page replaces.
STALE_HEADERS = {
    "ETag": '"v1"',
    "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
    "Expires": "Mon, 01 Jan 2035 00:00:00 GMT",
    "Location": "http://localhost/elsewhere",
    "Vary": "Accept",
    "Accept-Ranges": "bytes",
    "Age": "5",
    "Retry-After": "60",
    "Content-Location": "/original",
    "Content-MD5": "Q2hlY2sgSW50ZWdyaXR5IQ==",
    "Content-Range": "bytes 0-1/2",
    "Content-Length": "123",
}


def _template_file() -> str:
    """The error page template on disk (removed when the process ends)."""
    fd, path = tempfile.mkstemp(suffix=".html", prefix="morello-e2e-")
    with os.fdopen(fd, "w") as f:
        f.write(TEMPLATE)
    atexit.register(os.unlink, path)
    return path


def build(cp: Any) -> tuple[Any, dict[str, Any]]:
    """The app under test, for morello and for the CherryPy reference alike."""

    def failing_hook(point: str, http: bool) -> Any:
        def hook() -> None:
            if http:
                raise cp.HTTPError(403, f"hook refused at {point}")
            raise RuntimeError(f"hook failed at {point}")

        return hook

    def hooked(point: str, http: bool = False) -> Any:
        """A handler with a hook at ``point`` that raises (an HTTPError if ``http``).

        The handler fails too for the hooks that only run for errors.
        """

        def handler(self: Any) -> str:
            if point.endswith("error_response"):
                raise ValueError("handler failed")
            return "handled"

        handler._cp_config = {f"hooks.{point}": failing_hook(point, http)}
        return cp.expose(handler)

    def custom_page(**kwargs: str) -> str:
        return "CALLABLE|{status}|{message}|{tb}|{version}".format(
            tb=bool(kwargs["traceback"]), **kwargs
        )

    def broken_page(**kwargs: str) -> str:
        raise LookupError("the page itself is broken")

    def streaming_failure() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("stream broke")

    class Errors:
        @cp.expose
        def code(self, code: str) -> str:
            raise cp.HTTPError(int(code))

        @cp.expose
        def reason(self) -> str:
            raise cp.HTTPError("403 Go Away", "No entry for you.")

        @cp.expose
        def not_found(self, path: str | None = None) -> str:
            raise cp.NotFound(path)

        @cp.expose
        def handled(self, message: str = "") -> str:
            with cp.HTTPError.handle(KeyError, 404, message):
                return {}["missing"]

        @cp.expose
        def handled_other(self) -> str:
            with cp.HTTPError.handle((KeyError, IndexError), "409 Conflict"):
                return [][1]

        @cp.expose
        def crash(self) -> str:
            raise ValueError("kaboom")

        @cp.expose
        def stale(self, kind: str) -> str:
            for name, value in STALE_HEADERS.items():
                cp.response.headers[name] = value
            cp.response.headers["X-Custom"] = "kept"
            if kind == "http":
                raise cp.HTTPError(404)
            if kind == "crash":
                raise ValueError("kaboom")
            return "fresh"

        @cp.expose
        def stream_failure(self) -> Iterator[bytes]:
            return streaming_failure()

        stream_failure._cp_config = {"response.stream": True}

        @cp.expose
        def bad_body(self) -> object:
            return 42

        quiet = cp.expose(lambda self: 1 / 0)
        quiet._cp_config = {"request.show_tracebacks": False}

        thrown = cp.expose(lambda self: 1 / 0)
        thrown._cp_config = {"request.throw_errors": True}

        @cp.expose
        def thrown_http(self) -> str:
            raise cp.HTTPError(402)

        thrown_http._cp_config = {"request.throw_errors": True}

    class Redirects:
        @cp.expose
        def relative(self) -> str:
            raise cp.HTTPRedirect("target?x=1")

        @cp.expose
        def absolute(self) -> str:
            raise cp.HTTPRedirect("http://example.org/somewhere")

        @cp.expose
        def several(self, status: str = "300") -> str:
            raise cp.HTTPRedirect(["/first", "/second"], int(status))

        @cp.expose
        def status(self, code: str) -> str:
            raise cp.HTTPRedirect("/target", int(code))

        @cp.expose
        def default(self) -> str:
            raise cp.HTTPRedirect("/target")

        @cp.expose
        def not_modified(self) -> str:
            cp.response.headers["Content-Type"] = "text/plain"
            cp.response.headers["Last-Modified"] = "Mon, 01 Jan 2024 00:00:00 GMT"
            cp.response.headers["ETag"] = '"v1"'
            raise cp.HTTPRedirect("", 304)

    class Internal:
        @cp.expose
        def start(self, **params: str) -> str:
            raise cp.InternalRedirect("/internal/target?y=2")

        @cp.expose
        def relative(self, **params: str) -> str:
            raise cp.InternalRedirect("target", "z=3")

        @cp.expose
        def target(self, **params: str) -> str:
            previous = cp.request.prev
            came_from = previous.path_info if previous is not None else None
            return f"{sorted(params.items())} from {came_from} via {cp.request.method}"

        @cp.expose
        def loop(self) -> str:
            raise cp.InternalRedirect("/internal/loop")

        @cp.expose
        def ping(self) -> str:
            raise cp.InternalRedirect("/internal/pong")

        @cp.expose
        def pong(self) -> str:
            raise cp.InternalRedirect("/internal/ping")

    class Pages:
        @cp.expose
        def code(self, code: str) -> str:
            raise cp.HTTPError(int(code), "custom message")

        @cp.expose
        def crash(self) -> str:
            raise ValueError("kaboom")

    class Hooks:
        pass

    for point in HOOK_POINTS:
        setattr(Hooks, point, hooked(point))
        setattr(Hooks, f"http_{point}", hooked(point, http=True))

    class Root(alive_root(cp)):
        errors = Errors()
        redirect = Redirects()
        internal = Internal()
        pages = Pages()
        defaulted = Pages()
        broken = Pages()
        broken_callable = Pages()
        hooks = Hooks()

    template = _template_file()
    config = {
        "/pages": {"error_page.404": template, "error_page.500": custom_page},
        "/defaulted": {"error_page.default": custom_page},
        "/broken": {"error_page.404": os.path.join(os.path.dirname(template), "no", "such.html")},
        "/broken_callable": {"error_page.default": broken_page},
    }
    return Root(), config


app, reference = app_and_reference(build)


def both(app: int, reference: int, path: str, protocol: str = "HTTP/1.1") -> tuple[Any, Any]:
    request = build_request("GET", path, protocol=protocol)
    return exchange(app, request), exchange(reference, request)


# -- HTTPError ------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 410, 418, 500, 502, 503, 599])
def test_http_error_with_an_int_status(app: int, reference: int, code: int) -> None:
    ours, theirs = both(app, reference, f"/errors/code?code={code}")
    assert ours.status == code
    assert (theirs.status, theirs.reason) == (ours.status, ours.reason)
    assert str(code).encode() in ours.body
    assert ours.header("Content-Type") == "text/html;charset=utf-8"


def test_http_error_with_code_and_reason(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/errors/reason")
    assert (ours.status, ours.reason) == (403, "Go Away")
    assert (theirs.status, theirs.reason) == (403, "Go Away")
    assert b"No entry for you." in ours.body


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (200, b"status must be between 400 and 599"),
        (302, b"status must be between 400 and 599"),
        (399, b"status must be between 400 and 599"),
        (600, b"600 is out of range"),
    ],
)
def test_http_error_status_outside_400_599_is_a_server_bug(
    app: int, reference: int, code: int, why: bytes
) -> None:
    ours, theirs = both(app, reference, f"/errors/code?code={code}")
    assert (ours.status, theirs.status) == (500, 500)
    assert why in ours.body and why in theirs.body


def test_http_error_rejects_statuses_outside_400_599() -> None:
    for status in (200, 302, "399 Nope"):
        with pytest.raises(ValueError):
            morello.HTTPError(status)
    assert morello.HTTPError("451 Gone Dark").reason == "Gone Dark"


def test_not_found_names_the_path(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/errors/not_found")
    assert (ours.status, theirs.status) == (404, 404)
    assert b"The path '/errors/not_found' was not found." in ours.body
    ours = exchange(app, build_request("GET", "/errors/not_found?path=/custom/place"))
    assert b"/custom/place" in ours.body


def test_http_error_handle_turns_exceptions_into_http_errors(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/errors/handled?message=no+such+key")
    assert (ours.status, theirs.status) == (404, 404)
    assert b"no such key" in ours.body
    # Without a message, the exception's text is used.
    ours = exchange(app, build_request("GET", "/errors/handled"))
    assert ours.status == 404
    assert b"'missing'" in ours.body
    ours, theirs = both(app, reference, "/errors/handled_other")
    assert (ours.status, ours.reason) == (409, "Conflict") == (theirs.status, theirs.reason)
    assert b"list index out of range" in ours.body


# -- HTTPRedirect ---------------------------------------------------------


def test_relative_redirect_is_joined_to_the_request_url(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/redirect/relative")
    assert ours.status == 303
    assert ours.header("Location") == "http://localhost/redirect/target?x=1"
    assert theirs.header("Location") == ours.header("Location")
    assert b'href="http://localhost/redirect/target?x=1"' in ours.body


def test_absolute_redirect(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/redirect/absolute")
    assert ours.header("Location") == "http://example.org/somewhere"
    assert (ours.status, theirs.status) == (303, 303)


def test_redirect_to_several_urls(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/redirect/several")
    assert (ours.status, theirs.status) == (300, 300)
    assert ours.header("Location") == "http://localhost/first"
    assert b"http://localhost/first" in ours.body and b"http://localhost/second" in ours.body


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_statuses(app: int, reference: int, code: int) -> None:
    ours, theirs = both(app, reference, f"/redirect/status?code={code}")
    assert (ours.status, theirs.status) == (code, code)
    assert ours.header("Location") == theirs.header("Location") == "http://localhost/target"
    assert ours.header("Content-Length") == str(len(ours.body))
    assert ours.header("Content-Type") == "text/html;charset=utf-8"


@pytest.mark.parametrize(("protocol", "code"), [("HTTP/1.1", 303), ("HTTP/1.0", 302)])
def test_default_redirect_status_depends_on_the_protocol(
    app: int, reference: int, protocol: str, code: int
) -> None:
    ours, theirs = both(app, reference, "/redirect/default", protocol)
    assert (ours.status, theirs.status) == (code, code)


def test_not_modified_redirect_has_no_entity(app: int, reference: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", "/redirect/not_modified") + build_request("GET", "/"))
        ours = conn.reply()
        after = conn.reply()
    assert ours.status == 304
    assert ours.body == b""
    for name in ("Content-Type", "Content-Length", "Last-Modified"):
        assert ours.header(name) is None, name
    assert after.body == b"alive"
    theirs = exchange(reference, build_request("GET", "/redirect/not_modified"))
    assert (theirs.status, theirs.header("Content-Type")) == (304, None)


@pytest.mark.parametrize("code", [200, 299, 400, 404])
def test_invalid_redirect_status_is_a_server_bug(app: int, reference: int, code: int) -> None:
    ours, theirs = both(app, reference, f"/redirect/status?code={code}")
    assert (ours.status, theirs.status) == (500, 500)
    assert b"ValueError" in ours.body


# -- InternalRedirect -----------------------------------------------------


def test_internal_redirect_takes_params_from_the_new_query_string(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/internal/start?x=1")
    assert ours.status == 200
    assert ours.body == b"[('y', '2')] from /internal/start via GET"
    assert theirs.body == ours.body


def test_internal_redirect_relative_path_and_separate_query_string(app: int) -> None:
    reply = exchange(app, build_request("GET", "/internal/relative"))
    assert reply.body == b"[('z', '3')] from /internal/relative via GET"


def test_internal_redirect_of_a_post_becomes_a_get_without_body(app: int) -> None:
    request = build_request(
        "POST", "/internal/start", b"a=1", [("Content-Type", "application/x-www-form-urlencoded")]
    )
    # The body's params were consumed by the first request only.
    assert exchange(app, request).body == b"[('y', '2')] from /internal/start via GET"


@pytest.mark.parametrize("path", ["/internal/loop", "/internal/ping"])
def test_internal_redirect_loops_give_500(app: int, reference: int, path: str) -> None:
    ours, theirs = both(app, reference, path)
    assert (ours.status, theirs.status) == (500, 500)
    assert b"InternalRedirector visited the same URL twice" in ours.body
    assert_alive(app)


# -- error pages ----------------------------------------------------------


def test_error_page_template_file(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/pages/code?code=404")
    assert ours.status == 404
    assert ours.header("Content-Type") == "text/html;charset=utf-8"
    for reply, version in ((ours, morello.__version__), (theirs, None)):
        prefix, status, message, traceback, rest = reply.body.decode().split("|")
        assert (prefix, status, message) == ("<html>TEMPLATE", "404 Not Found", "custom message")
        # The traceback of the HTTPError itself (show_tracebacks is on).
        assert traceback.startswith("Traceback (most recent call last)")
        assert "HTTPError" in traceback
        if version:
            assert rest == f"{version}</html>"


def test_error_page_callable(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/pages/crash")
    assert ours.status == 500
    expected = (
        f"CALLABLE|500 Internal Server Error|{_default_500_message()}|True|{morello.__version__}"
    )
    assert ours.body == expected.encode()
    assert theirs.body.startswith(b"CALLABLE|500 Internal Server Error|")
    # Codes without a page of their own get the built-in one.
    ours = exchange(app, build_request("GET", "/pages/code?code=403"))
    assert ours.status == 403 and b"TEMPLATE" not in ours.body and b"CALLABLE" not in ours.body


def _default_500_message() -> str:
    import html

    return html.escape(morello.lib.httputil.response_codes[500][1], quote=False)


def test_error_page_default_serves_every_code(app: int) -> None:
    for code, reason in ((403, "Forbidden"), (404, "Not Found"), (503, "Service Unavailable")):
        reply = exchange(app, build_request("GET", f"/defaulted/code?code={code}"))
        assert reply.status == code
        assert reply.body.startswith(f"CALLABLE|{code} {reason}|custom message|".encode())


@pytest.mark.parametrize(
    ("path", "failure"),
    [
        ("/broken/code?code=404", b"FileNotFoundError"),
        ("/broken_callable/code?code=404", b"LookupError: the page itself is broken"),
    ],
)
def test_broken_custom_error_page_falls_back_with_a_note(
    app: int, reference: int, path: str, failure: bytes
) -> None:
    ours, theirs = both(app, reference, path)
    assert (ours.status, theirs.status) == (404, 404)
    assert b"custom message" in ours.body
    assert b"In addition, the custom error page failed" in ours.body
    assert failure in ours.body
    assert b"In addition, the custom error page failed" in theirs.body


# -- tracebacks -----------------------------------------------------------


def test_tracebacks_are_shown_when_on(app: int) -> None:
    reply = exchange(app, build_request("GET", "/errors/crash"))
    assert reply.status == 500
    assert b"Traceback (most recent call last)" in reply.body
    assert b"ValueError: kaboom" in reply.body


def test_tracebacks_are_hidden_when_off(app: int) -> None:
    reply = exchange(app, build_request("GET", "/errors/quiet"))
    assert reply.status == 500
    assert b"Traceback" not in reply.body
    assert b"ZeroDivisionError" not in reply.body


def test_throw_errors_lets_the_exception_reach_the_wsgi_layer(app: int, reference: int) -> None:
    ours, theirs = both(app, reference, "/errors/thrown")
    assert (ours.status, theirs.status) == (500, 500)
    # The last-resort plain-text page, not the HTML error page.
    assert ours.header("Content-Type") == "text/plain"
    assert b"ZeroDivisionError" in ours.body
    # HTTP errors are still answered normally.
    ours, theirs = both(app, reference, "/errors/thrown_http")
    assert (ours.status, theirs.status) == (402, 402)
    assert_alive(app)


@pytest.fixture(scope="module")
def production() -> Iterator[int]:
    with subprocess_server("test_errors:build", "morello", {"environment": "production"}) as port:
        yield port


def _get(path: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    return build_request("GET", path, headers=headers)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (_get("/errors/crash"), 500),
        (_get("/errors/code?code=404"), 404),
        (_get("/errors/thrown"), 500),
        (_get("/errors/bad_body"), 500),
        (_get("/internal/loop"), 500),
        (_get("/hooks/before_error_response"), 500),
        (_get("/pages/crash"), 500),
        # Refused before dispatch, where CherryPy still shows its traceback.
        (_get("/errors/crash", [("Cookie", "a,b=1")]), 400),
        (b"GET /errors/crash HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_production_never_shows_tracebacks(
    production: int, request_bytes: bytes, status: int
) -> None:
    reply = exchange(production, request_bytes)
    assert reply.status == status
    assert b"Traceback" not in reply.body
    for secret in (b"kaboom", b"ZeroDivisionError", b"hook failed", b"File &quot;", b'File "'):
        assert secret not in reply.body
    assert_alive(production)


# -- hooks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "status", "bare"),
    [
        ("on_start_resource", 500, False),
        ("before_request_body", 500, False),
        ("before_handler", 500, False),
        ("before_finalize", 500, False),
        ("on_end_resource", 500, False),
        ("on_end_request", 200, False),
        # A failure while building the error page leaves only the last resort.
        ("before_error_response", 500, True),
        ("after_error_response", 500, True),
    ],
)
def test_exceptions_in_hooks(app: int, reference: int, point: str, status: int, bare: bool) -> None:
    ours, theirs = both(app, reference, f"/hooks/{point}")
    assert (ours.status, theirs.status) == (status, status)
    if status == 200:
        # on_end_request runs after the response was sent.
        assert ours.body == b"handled"
    else:
        assert (ours.header("Content-Type") == "text/plain") is bare
        expected = (
            b"handler failed"
            if point.endswith("error_response")
            else b"hook failed at " + point.encode()
        )
        assert expected in ours.body
    assert_alive(app)


@pytest.mark.parametrize(
    ("point", "status"),
    [
        ("on_start_resource", 403),
        ("before_request_body", 403),
        ("before_handler", 403),
        # The hook runs again for the error response, fails again: a 500.
        ("before_finalize", 500),
        ("on_end_resource", 500),
        ("on_end_request", 200),
        ("before_error_response", 500),
        ("after_error_response", 500),
    ],
)
def test_http_errors_in_hooks(app: int, reference: int, point: str, status: int) -> None:
    ours, theirs = both(app, reference, f"/hooks/http_{point}")
    assert (ours.status, theirs.status) == (status, status)
    if status == 403:
        assert f"hook refused at {point}".encode() in ours.body
    assert_alive(app)


# -- streaming ------------------------------------------------------------


def test_exception_while_streaming_aborts_the_connection(app: int) -> None:
    with Conn(app) as conn:
        conn.send(build_request("GET", "/errors/stream_failure"))
        raw = conn.read_until_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Transfer-Encoding: chunked" in head
    assert body.startswith(b"7\r\npartial\r\n")
    # No terminating zero-size chunk: the client can tell the body is cut short.
    assert not body.endswith(b"0\r\n\r\n")
    assert_alive(app)


# -- stale headers --------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("http", 404), ("crash", 500)])
def test_error_responses_drop_stale_entity_headers(
    app: int, reference: int, kind: str, status: int
) -> None:
    ours, theirs = both(app, reference, f"/errors/stale?kind={kind}")
    assert (ours.status, theirs.status) == (status, status)
    for name in STALE_HEADERS:
        if name == "Content-Length":
            assert ours.header(name) == str(len(ours.body))
        else:
            assert ours.header(name) is None, name
            assert theirs.header(name) is None, name
    assert ours.header("X-Custom") == theirs.header("X-Custom") == "kept"
    fine = get(app, "/errors/stale?kind=none")
    assert fine.header("ETag") == '"v1"' and fine.body == b"fresh"
