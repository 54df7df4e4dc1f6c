"""Integration tests for hooks, the Tool API, toolboxes and the default tools,
over real HTTP on loopback (CherryPy 18 run in-process where it is the reference).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wsgi_direct import call, cherrypy_tree

import morello
from morello.hooks import Hook
from morello.testing import running


@pytest.fixture
def trail() -> list[str]:
    """What the hooks and tools of one test did, in order."""
    return []


class Page:
    @morello.expose
    def index(self) -> str:
        return "index"

    @morello.expose
    def page(self, **params: Any) -> str:
        return "page"


@pytest.fixture
def error_records() -> Iterator[list[str]]:
    """Formatted records reaching the site-wide error log (app logs propagate there)."""
    records: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("morello.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# -- hooks ----------------------------------------------------------------------


def recorder(
    trail: list[str], name: str, raises: BaseException | None = None
) -> Callable[[], None]:
    def hook() -> None:
        trail.append(name)
        if raises is not None:
            raise raises

    hook.__name__ = name
    return hook


def test_hooks_run_by_priority_then_attach_order(trail: list[str]) -> None:
    late = recorder(trail, "late")
    late.priority = 90  # type: ignore[attr-defined]

    def attach_more() -> None:
        # Hooks attached while the request runs join the later points.
        morello.request.hooks.attach("before_finalize", recorder(trail, "attached"), priority=5)

    app_config = {
        "/": {
            "hooks.before_handler.a": recorder(trail, "default-a"),
            "hooks.before_handler.b": Hook(recorder(trail, "first"), priority=10),
            "hooks.before_handler.c": late,
            "hooks.before_handler.d": recorder(trail, "default-d"),
            "hooks.on_start_resource": attach_more,
            "hooks.before_finalize": recorder(trail, "finalize"),
        }
    }
    with running({"": Page()}, app_config) as client:
        assert client.get("/").status == 200
    assert trail == ["first", "default-a", "default-d", "late", "attached", "finalize"]


def test_failsafe_hooks_still_run_and_the_latest_error_wins(
    trail: list[str], error_records: list[str]
) -> None:
    safe = Hook(recorder(trail, "failsafe-1"), failsafe=True, priority=30)
    safe_raising = Hook(
        recorder(trail, "failsafe-2", morello.HTTPError(409, "from the failsafe hook")),
        failsafe=True,
        priority=40,
    )
    app_config = {
        "/": {
            "hooks.before_handler.a": Hook(recorder(trail, "ok"), priority=10),
            "hooks.before_handler.b": Hook(
                recorder(trail, "boom", ValueError("hook broke")), priority=20
            ),
            "hooks.before_handler.c": Hook(recorder(trail, "skipped"), priority=25),
            "hooks.before_handler.d": safe,
        },
        "/page": {"hooks.before_handler.e": safe_raising},
    }
    with running({"": Page()}, app_config) as client:
        index = client.get("/")
        first_trail = trail[:]
        trail.clear()
        page = client.get("/page")
    assert first_trail == ["ok", "boom", "failsafe-1"]
    assert index.status == 500 and b"hook broke" in index.body
    # The unexpected error was logged as it happened.
    assert any("ValueError: hook broke" in r for r in error_records)
    assert trail == ["ok", "boom", "failsafe-1", "failsafe-2"]
    assert page.status == 409 and b"from the failsafe hook" in page.body


def test_end_hooks_run_after_a_handler_error(trail: list[str]) -> None:
    class Broken:
        @morello.expose
        def index(self) -> str:
            raise morello.HTTPError(418)

    app_config = {"/": {"hooks.on_end_resource": recorder(trail, "end"),
                        "hooks.on_end_request": recorder(trail, "closed")}}  # fmt: skip
    with running({"": Broken()}, app_config) as client:
        assert client.get("/").status == 418
    assert trail == ["end", "closed"]


def build_hook_points(
    cp: Any, trail: list[str], ended: threading.Semaphore | None = None
) -> tuple[Any, dict[str, Any]]:
    """A hook recording its point at every hook point, and handlers ending in every way.

    ``ended`` is released whenever on_end_request ran (after the response went out).
    """

    class Root:
        @cp.expose
        def index(self) -> str:
            trail.append("handler")
            return "ok"

        @cp.expose
        def boom(self) -> str:
            trail.append("handler")
            raise ValueError("unexpected")

        @cp.expose
        def missing(self) -> str:
            trail.append("handler")
            raise cp.NotFound()

        @cp.expose
        def redirect(self) -> str:
            trail.append("handler")
            raise cp.HTTPRedirect("/")

        @cp.expose
        def internal(self) -> str:
            trail.append("handler")
            raise cp.InternalRedirect("/")

    def record(point: str) -> Callable[[], None]:
        def hook() -> None:
            trail.append(point)
            if ended is not None and point == "on_end_request":
                ended.release()

        return hook

    return Root(), {"/": {f"hooks.{point}": record(point) for point in HOOK_POINTS}}


HOOK_POINTS = (
    "on_start_resource", "before_request_body", "before_handler", "before_finalize",
    "on_end_resource", "on_end_request", "before_error_response", "after_error_response",
)  # fmt: skip


def test_hook_points_run_in_cherrypys_order() -> None:
    paths = ["/", "/boom", "/missing", "/redirect", "/internal"]
    trail: list[str] = []
    ended = threading.Semaphore(0)
    root, app_config = build_hook_points(morello, trail, ended)
    trails = []
    with running({"": root}, app_config) as client:
        for path in paths:
            status = client.get(path).status
            # on_end_request runs once the response went out (twice for the
            # internal redirect: once per request).
            for _ in range(2 if path == "/internal" else 1):
                assert ended.acquire(timeout=10)
            trails.append((status, trail[:]))
            trail.clear()
    assert trails[0] == (200, ["on_start_resource", "before_request_body", "before_handler",
                               "handler", "before_finalize", "on_end_resource",
                               "on_end_request"])  # fmt: skip

    import cherrypy

    references = []
    cp_trail: list[str] = []
    cp_root, cp_config = build_hook_points(cherrypy, cp_trail)
    with cherrypy_tree(cp_root, cp_config) as tree:
        for path in paths:
            references.append((call(tree, path).code, cp_trail[:]))
            cp_trail.clear()
    assert trails == references


# -- Tool, Toolbox ------------------------------------------------------------------


@pytest.fixture
def toolbox() -> Iterator[morello.Toolbox]:
    """Remove the tools a test adds to ``morello.tools``."""
    before = set(vars(morello.tools))
    yield morello.tools
    for name in set(vars(morello.tools)) - before:
        delattr(morello.tools, name)


def test_tool_from_config_with_args_and_as_decorator(toolbox: morello.Toolbox) -> None:
    def stamp(value: str = "default", header: str = "X-Stamp") -> None:
        """Add a header to the response."""
        morello.response.headers[header] = value

    toolbox.stamp = morello.Tool("before_finalize", stamp)
    assert toolbox.stamp._name == "stamp"
    # The callable's arguments become attributes (for help() and completion).
    assert (toolbox.stamp.value, toolbox.stamp.header) == (None, None)
    assert toolbox.stamp.__doc__ == "Add a header to the response."

    @toolbox.stamp(value="class-wide")
    class Stamped:
        @morello.expose
        def index(self) -> str:
            return "stamped"

    class Root:
        stamped = Stamped()

        @morello.expose
        @toolbox.stamp(value="decorated")
        def deco(self) -> str:
            return "deco"

        @morello.expose
        def plain(self) -> str:
            return "plain"

    app_config = {"/plain": {"tools.stamp.on": True, "tools.stamp.value": "from config",
                             "tools.stamp.header": "X-Other"}}  # fmt: skip
    with running({"": Root()}, app_config) as client:
        deco = client.get("/deco")
        plain = client.get("/plain")
        stamped = client.get("/stamped/")
    assert stamped.headers["X-Stamp"] == "class-wide"
    assert deco.headers["X-Stamp"] == "decorated"
    assert plain.headers["X-Other"] == "from config"
    assert "X-Stamp" not in plain.headers


def test_tool_priority_from_config_and_callable(toolbox: morello.Toolbox, trail: list[str]) -> None:
    toolbox.first = morello.Tool("before_handler", recorder(trail, "first"), priority=10)
    toolbox.second = morello.Tool("before_handler", recorder(trail, "second"), priority=20)
    on = {"tools.first.on": True, "tools.second.on": True}
    with running({"": Page()}, {"/": on, "/page": {"tools.first.priority": 30}}) as client:
        client.get("/")
        default_order = trail[:]
        trail.clear()
        client.get("/page")
    assert default_order == ["first", "second"]
    assert trail == ["second", "first"]


def test_any_object_with_a_setup_method_serves_as_a_tool(toolbox: morello.Toolbox) -> None:
    class Labeller:
        """Not a Tool: only ``_setup``, which attaches a hook with its config."""

        def _setup(self) -> None:
            conf = morello.request.toolmaps["tools"]["labeller"]
            label = conf.get("label", "none")
            morello.request.hooks.attach(
                "before_finalize", lambda: morello.response.headers.update({"X-Label": label})
            )

    toolbox.labeller = Labeller()
    config = {"/page": {"tools.labeller.on": True, "tools.labeller.label": "from config"}}
    with running({"": Page()}, config) as client:
        first = client.get("/page")
        second = client.get("/page")
        plain = client.get("/")
    assert first.status == second.status == 200
    assert first.headers["X-Label"] == second.headers["X-Label"] == "from config"
    assert "X-Label" not in plain.headers


def test_tool_refuses_positional_args_and_on() -> None:
    with pytest.raises(TypeError, match="'encode' Tool does not accept positional arguments"):
        morello.tools.encode("utf-8")
    with pytest.raises(AttributeError, match="decorators"):
        _ = morello.tools.encode.on
    with pytest.raises(AttributeError, match="config"):
        morello.tools.encode.on = True


def test_toolbox_register_and_custom_toolbox_in_app(trail: list[str]) -> None:
    box = morello.Toolbox("mytools")

    @box.register("before_finalize", priority=10)
    def footer(text: str = "") -> None:
        trail.append(f"footer:{text}")
        morello.response.headers["X-Footer"] = text

    assert footer.__name__ == "footer"  # register returns the function itself
    assert isinstance(box.footer, morello.Tool) and box.footer.namespace == "mytools"

    @box.register("before_handler", name="renamed")
    def anything() -> None:
        trail.append("renamed")

    class Root:
        @morello.expose
        @box.footer(text="deco")
        def index(self) -> str:
            return "index"

        @morello.expose
        def other(self) -> str:
            return "other"

    app = morello.Application(Root(), "", {"/other": {"mytools.footer.on": True,
                                                    "mytools.footer.text": "conf",
                                                    "mytools.renamed.on": True}})  # fmt: skip
    app.toolboxes["mytools"] = box
    with running({"": app}) as client:
        index = client.get("/")
        other = client.get("/other")
    assert index.headers["X-Footer"] == "deco"
    assert other.headers["X-Footer"] == "conf"
    assert trail == ["footer:deco", "renamed", "footer:conf"]


def test_handler_tool_answers_instead_of_the_handler(toolbox: morello.Toolbox) -> None:
    def canned(answer: str = "", only: str = "") -> bool:
        if only and morello.request.path_info != only:
            return False
        morello.response.body = answer.encode()
        return True

    toolbox.canned = morello.HandlerTool(canned)

    class Root:
        served = toolbox.canned.handler(answer="from handler()")
        refusing = toolbox.canned.handler(answer="x", only="/elsewhere")

        @morello.expose
        def index(self) -> str:
            return "the real handler"

        @morello.expose
        def decorated(self) -> str:
            return "the real handler"

    Root.decorated = toolbox.canned(answer="short-circuited")(Root.decorated)
    with running({"": Root()}, {"/decorated": {"tools.canned.only": "/decorated"}}) as client:
        assert client.get("/served").text == "from handler()"
        assert client.get("/refusing").status == 404
        assert client.get("/decorated").text == "short-circuited"
        assert client.get("/").text == "the real handler"


def test_handler_wrapper_tool(toolbox: morello.Toolbox) -> None:
    def shout(next_handler: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        return next_handler(*args, **kwargs).upper() + "!"

    toolbox.shout = morello.HandlerWrapperTool(shout)

    class Root:
        @morello.expose
        def echo(self, *words: str, sep: str = " ") -> str:
            return sep.join(words)

    with running({"": Root()}, {"/": {"tools.shout.on": True}}) as client:
        answer = client.get("/echo/a/b?sep=-")
    assert (answer.status, answer.text) == (200, "A-B!")


def test_error_tool_replaces_the_error_response(toolbox: morello.Toolbox) -> None:
    def plain_error(note: str = "") -> None:
        morello.response.status = 503
        morello.response.headers["Content-Type"] = "text/plain"
        morello.response.body = f"custom error ({note})".encode()

    toolbox.plain_error = morello.ErrorTool(plain_error)
    app_config = {"/": {"tools.plain_error.on": True, "tools.plain_error.note": "configured"}}
    with running({"": Failing()}, app_config) as client:
        boom = client.get("/")
        missing = client.get("/nowhere")
    assert (boom.status, boom.text) == (503, "custom error (configured)")
    assert boom.headers["Content-Type"] == "text/plain"
    # HTTPErrors have their own pages: the error tool is for unexpected errors.
    assert missing.status == 404


class Failing:
    @morello.expose
    def index(self) -> str:
        raise RuntimeError("handler failure")


def test_log_hooks_lists_the_request_hooks(error_records: list[str]) -> None:
    with running({"": Page()}, {"/": {"tools.log_hooks.on": True}}) as client:
        client.get("/page?x=1")
    logged = next(r for r in error_records if "Request Hooks for" in r)
    assert f"Request Hooks for {client.base}/page" in logged
    for point in ("on_start_resource:", "before_handler:", "on_end_request:"):
        assert point in logged
    before_handler = logged.split("before_handler:")[1].split("before_finalize:")[0]
    # trailing_slash (60) runs before encode (70).
    assert before_handler.index("trailing_slash") < before_handler.index("ResponseEncoder")
    assert "log_hooks" in logged.split("on_end_request:")[1]


# -- the default tools --------------------------------------------------------------


def build_text(cp: Any) -> Any:
    class Root:
        @cp.expose
        def euro(self) -> str:
            return "price: 5\u20ac"

        @cp.expose
        def accent(self) -> str:
            return "caf\u00e9"

        @cp.expose
        def json(self) -> str:
            cp.response.headers["Content-Type"] = "application/json"
            return '"caf\u00e9"'

        @cp.expose
        def form(self, name: str = "") -> str:
            return f"name={name!r}"

    return Root()


UTF8_HTML, LATIN1_HTML = "text/html;charset=utf-8", "text/html;charset=iso-8859-1"
ENCODE_CASES = [
    # (path, Accept-Charset, outcome): see encode_outcome().
    ("/accent", None, (200, UTF8_HTML, "caf\u00e9".encode())),
    ("/accent", "iso-8859-1", (200, LATIN1_HTML, b"caf\xe9")),
    ("/accent", "ascii, utf-8;q=0.5", (200, UTF8_HTML, "caf\u00e9".encode())),
    # ISO-8859-1 is acceptable unless the client excludes it.
    ("/accent", "ascii", (200, LATIN1_HTML, b"caf\xe9")),
    ("/euro", "ascii", (406, "We tried these charsets: ascii, iso-8859-1.")),
    ("/accent", "ascii, iso-8859-1;q=0", (406, "We tried these charsets: ascii.")),
    ("/euro", "*", (200, UTF8_HTML, "price: 5\u20ac".encode())),
    # Only text/* is encoded (text_only): a str JSON body is a handler bug.
    ("/json", "iso-8859-1", (500,)),
]
TRIED = re.compile(r"We tried these charsets: [\w, -]*\.")


def encode_outcome(status: int, content_type: str | None, body: bytes) -> tuple[Any, ...]:
    """(status, Content-Type, body) for 200, (status, charsets tried) for 406, else (status,)."""
    if status == 200:
        return (status, content_type, body)
    if status == 406:
        found = TRIED.search(body.decode())
        return (status, found and found.group())
    return (status,)


def test_encode_negotiates_accept_charset_like_cherrypy() -> None:
    expected = [outcome for _, _, outcome in ENCODE_CASES]
    answers = []
    with running({"": build_text(morello)}) as client:
        for path, accept, _ in ENCODE_CASES:
            answer = client.get(path, headers={"Accept-Charset": accept} if accept else {})
            answers.append(encode_outcome(answer.status, answer.headers.get("Content-Type"),
                                          answer.body))  # fmt: skip
            if answer.status == 406:
                assert f"Your client sent this Accept-Charset header: {accept}." in answer.text
    assert answers == expected

    import cherrypy

    references = []
    with cherrypy_tree(build_text(cherrypy)) as tree:
        for path, accept, _ in ENCODE_CASES:
            reply = call(tree, path, headers={"Accept-Charset": accept} if accept else {})
            references.append(encode_outcome(reply.code, reply.header("Content-Type"), reply.body))
    assert references == expected


ENCODE_CONFIG_CASES = [
    # (tools.encode config, path, request headers, outcome): see encode_outcome().
    ({"tools.encode.encoding": "utf-16"}, "/accent", {},
     (200, "text/html;charset=utf-16", "caf\u00e9".encode("utf-16"))),
    ({"tools.encode.encoding": "ascii", "tools.encode.errors": "replace"}, "/accent", {},
     (200, "text/html;charset=ascii", b"caf?")),
    ({"tools.encode.encoding": "iso-8859-1"}, "/accent", {"Accept-Charset": "utf-8"},
     (406, "We tried these charsets: .")),
    ({"tools.encode.default_encoding": "iso-8859-1"}, "/accent", {},
     (200, LATIN1_HTML, b"caf\xe9")),
    ({"tools.encode.text_only": False}, "/json", {},
     (200, "application/json;charset=utf-8", '"caf\u00e9"'.encode())),
    ({"response.headers.Content-Type": "text/plain"}, "/accent", {},
     (200, "text/plain;charset=utf-8", "caf\u00e9".encode())),
    # Without encoding, a str body is a handler bug.
    ({"tools.encode.add_charset": False}, "/accent", {}, (500,)),
    ({"tools.encode.on": False}, "/accent", {}, (500,)),
]  # fmt: skip


def test_encode_options_like_cherrypy() -> None:
    apps = {
        f"/{i}": morello.Application(build_text(morello), f"/{i}", {"/": conf})
        for i, (conf, *_) in enumerate(ENCODE_CONFIG_CASES)
    }
    with running(apps) as client:
        answers = [client.get(f"/{i}{path}", headers=headers)
                   for i, (_, path, headers, _) in enumerate(ENCODE_CONFIG_CASES)]  # fmt: skip
    outcomes = [encode_outcome(a.status, a.headers.get("Content-Type"), a.body) for a in answers]
    assert outcomes == [outcome for *_, outcome in ENCODE_CONFIG_CASES]

    import cherrypy

    for conf, path, headers, outcome in ENCODE_CONFIG_CASES:
        with cherrypy_tree(build_text(cherrypy), {"/": conf}) as tree:
            reply = call(tree, path, headers=headers)
        assert encode_outcome(reply.code, reply.header("Content-Type"), reply.body) == outcome


DECODE_CASES = [
    # (section config, status, body)
    ({}, 400, None),
    ({"tools.decode.on": True, "tools.decode.default_encoding": "iso-8859-1"}, 200,
     "name='caf\u00e9'"),
    ({"tools.decode.on": True, "tools.decode.encoding": "iso-8859-1"}, 200, "name='caf\u00e9'"),
]  # fmt: skip


def test_decode_sets_the_charsets_tried_for_the_body() -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # One application per case, each mounted at /<case number> with its config.
    apps = {
        f"/{i}": morello.Application(build_text(morello), f"/{i}", {"/": conf})
        for i, (conf, _, _) in enumerate(DECODE_CASES)
    }
    with running(apps) as client:
        answers = [client.post(f"/{i}/form", b"name=caf%E9", form) for i in range(len(apps))]
    expected = [(status, text) for _, status, text in DECODE_CASES]
    assert [(a.status, a.text if a.status == 200 else None) for a in answers] == expected

    import cherrypy

    for conf, status, _ in DECODE_CASES:
        with cherrypy_tree(build_text(cherrypy), {"/": conf}) as tree:
            reference = call(tree, "/form", method="POST", body=b"name=caf%E9", headers=form)
        assert reference.code == status


def build_slash_tree(cp: Any) -> Any:
    class Sub:
        @cp.expose
        def index(self) -> str:
            return "sub index"

        @cp.expose
        def leaf(self) -> str:
            return "leaf"

    class Root:
        sub = Sub()

    return Root()


TRAILING_SLASH_CASES = [
    # (section config, path, status, Location)
    ({}, "/sub?a=1", 301, "/sub/?a=1"),
    ({}, "/sub/", 200, None),
    ({}, "/sub/leaf/", 200, None),
    ({"tools.trailing_slash.missing": False}, "/sub", 200, None),
    ({"tools.trailing_slash.extra": True}, "/sub/leaf/?b=2", 301, "/sub/leaf?b=2"),
    ({"tools.trailing_slash.extra": True, "tools.trailing_slash.status": 307},
     "/sub/leaf/", 307, "/sub/leaf"),
    ({"tools.trailing_slash.status": 302}, "/sub", 302, "/sub/"),
    ({"tools.trailing_slash.on": False}, "/sub", 200, None),
]  # fmt: skip


def test_trailing_slash() -> None:
    # One application per case, each mounted at /<case number> with its config.
    apps = {
        f"/{i}": morello.Application(build_slash_tree(morello), f"/{i}", {"/": conf})
        for i, (conf, *_) in enumerate(TRAILING_SLASH_CASES)
    }
    with running(apps) as client:
        answers = [client.get(f"/{i}{case[1]}") for i, case in enumerate(TRAILING_SLASH_CASES)]
    expected = [
        (status, location and f"{client.base}/{i}{location}")
        for i, (_, _, status, location) in enumerate(TRAILING_SLASH_CASES)
    ]
    assert [(a.status, a.headers.get("Location")) for a in answers] == expected

    import cherrypy

    for conf, path, status, location in TRAILING_SLASH_CASES:
        with cherrypy_tree(build_slash_tree(cherrypy), {"/": conf}) as tree:
            path, _, query = path.partition("?")
            reply = call(tree, path, query=query)
        assert (reply.code, reply.header("Location")) == (
            status,
            location and f"http://127.0.0.1:8080{location}",
        )


def test_log_tracebacks_and_log_headers_write_the_error_log(tmp_path: Path) -> None:
    error_file = tmp_path / "error.log"
    global_config = {"log.error_file": str(error_file), "tools.log_headers.on": True}
    try:
        with running({"": Failing()}, global_config=global_config) as client:
            client.get("/", headers={"X-Marker": "header-marker"})
    finally:
        morello.log.error_file = ""
    text = error_file.read_text()
    assert "RuntimeError: handler failure" in text
    assert "Traceback (most recent call last)" in text
    assert "Request Headers:" in text
    assert "header-marker" in text


def test_log_tracebacks_off_keeps_the_traceback_out(tmp_path: Path) -> None:
    error_file = tmp_path / "error.log"
    global_config = {"log.error_file": str(error_file), "tools.log_tracebacks.on": False}
    try:
        with running({"": Failing()}, global_config=global_config) as client:
            assert client.get("/").status == 500
    finally:
        morello.log.error_file = ""
    assert "handler failure" not in error_file.read_text()
