"""Integration tests for configuration: merge order, updates, files, environments,
namespaces and the startup checker, over real HTTP on loopback.

Where CherryPy 18's behaviour is the specification, the same app is also run
through CherryPy in-process (its WSGI callable, no server) and compared.
"""

from __future__ import annotations

import logging
import socket
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wsgi_direct import call, cherrypy_tree

import morello
from morello.configfile import ConfigError
from morello.process.bus import ChannelFailures, states
from morello.testing import running


def dump_config(cp: Any) -> bytes:
    """The request's ``my.*`` config keys, sorted, as ``key=value`` words."""
    conf = cp.request.config
    return " ".join(f"{k}={conf[k]}" for k in sorted(conf) if k.startswith("my.")).encode()


def build_layered(cp: Any) -> tuple[Any, dict[str, Any]]:
    """An app with config at every level; each key says which level set it."""

    @cp.config(**{"my.node": "sub_cp", "my.handler": "sub_cp"})
    class Sub:
        _cp_config = {"my.node": "sub_cp", "my.deep": "sub_cp", "my.g": "sub_cp"}

        @cp.expose
        @cp.config(**{"my.handler": "page_cp", "my.node": "page_cp", "my.page": "page_cp"})
        def page(self) -> bytes:
            return dump_config(cp)

        @cp.expose
        def other(self) -> bytes:
            return dump_config(cp)

    class Root:
        _cp_config = {"my.root": "root_cp", "my.g": "root_cp", "my.slash": "root_cp"}
        sub = Sub()

        @cp.expose
        def index(self) -> bytes:
            return dump_config(cp)

    app_config = {
        "/": {"my.slash": "slash_file", "my.g": "slash_file", "my.deep": "slash_file"},
        "/sub": {"my.deep": "sub_file", "my.node": "sub_file"},
        "/sub/page": {"my.page": "page_file"},
    }
    return Root(), app_config


GLOBAL_LAYER = {"my.g": "global", "my.global": "global", "my.root": "global"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/",
            "my.deep=slash_file my.g=slash_file my.global=global my.root=root_cp "
            "my.slash=slash_file",
        ),
        (
            "/sub/other",
            "my.deep=sub_file my.g=sub_cp my.global=global my.handler=sub_cp "
            "my.node=sub_file my.root=root_cp my.slash=slash_file",
        ),
        (
            "/sub/page",
            "my.deep=sub_file my.g=sub_cp my.global=global my.handler=page_cp "
            "my.node=page_cp my.page=page_file my.root=root_cp my.slash=slash_file",
        ),
    ],
)
def test_merge_order_matches_cherrypy(path: str, expected: str) -> None:
    # global < root _cp_config < '/' section < deeper _cp_config < deeper
    # sections; a file section beats _cp_config at the same level.
    root, app_config = build_layered(morello)
    with running({"": root}, app_config, GLOBAL_LAYER) as client:
        answer = client.get(path)
    assert answer.status == 200
    assert answer.text == expected

    import cherrypy

    cp_root, cp_app_config = build_layered(cherrypy)
    with cherrypy_tree(cp_root, cp_app_config, GLOBAL_LAYER) as tree:
        assert call(tree, path).body.decode() == expected


def test_handler_config_decorator_and_class_decorator() -> None:
    @morello.config(**{"my.cls": "yes"})
    class Root:
        @morello.expose
        @morello.config(**{"my.fn": "yes"})
        def index(self) -> bytes:
            return dump_config(morello)

    # Decorating a subclass extends a copy of the inherited dict (CherryPy
    # would change the base class's dict in place).
    @morello.config(**{"my.child": "yes"})
    class Child(Root):
        pass

    assert Root.index._cp_config == {"my.fn": "yes"}
    assert Root._cp_config == {"my.cls": "yes"}
    assert Child._cp_config == {"my.cls": "yes", "my.child": "yes"}
    with running({"": Root(), "/child": Child()}) as client:
        assert client.get("/").text == "my.cls=yes my.fn=yes"
        assert client.get("/child/").text == "my.child=yes my.cls=yes my.fn=yes"


# -- config.update ----------------------------------------------------------


@pytest.fixture
def clean_config() -> Iterator[None]:
    yield
    morello.config.reset()


def test_update_flat_dict_kwargs_and_global_section(clean_config: None) -> None:
    morello.config.update({"my.a": 1})
    morello.config.update(**{"my.b": 2})
    # A dict with a 'global' section uses only that section.
    morello.config.update({"global": {"my.c": 3}, "/": {"my.d": 4}})
    morello.config["my.e"] = 5
    assert {k: v for k, v in morello.config.items() if k.startswith("my.")} == {
        "my.a": 1, "my.b": 2, "my.c": 3, "my.e": 5,
    }  # fmt: skip
    morello.config.reset()
    assert not any(k.startswith("my.") for k in morello.config)
    # reset() keeps the tools that are on by default.
    assert morello.config["tools.encode.on"] is True
    assert morello.config["tools.trailing_slash.on"] is True


def test_update_applies_namespaces_immediately(clean_config: None) -> None:
    old = morello.server.socket_queue_size
    try:
        morello.config.update({"server.socket_queue_size": 17})
        assert morello.server.socket_queue_size == 17
        morello.config["server.socket_queue_size"] = 18
        assert morello.server.socket_queue_size == 18
    finally:
        morello.server.socket_queue_size = old


class Greeter:
    @morello.expose
    def index(self) -> str:
        return "root:" + str(morello.request.config.get("my.value"))


class Resource:
    exposed = True

    def GET(self) -> str:  # noqa: N802 - HTTP verb
        return "GET resource"

    def POST(self) -> str:  # noqa: N802 - HTTP verb
        return "POST resource"


def test_ini_file_for_global_and_app_config(tmp_path: Path, clean_config: None) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text(
        textwrap.dedent(
            """\
            [global]
            my.global = 6 * 7
            server.thread_pool = 3

            [/]
            my.value = "from file"
            response.headers.X-Site = "ini"

            [/api]
            request.dispatch = morello.dispatch.MethodDispatcher()
            """
        )
    )
    morello.config.update(str(conf))
    assert morello.config["my.global"] == 42
    assert morello.server.thread_pool == 3
    root = Greeter()
    root.api = Resource()
    with running({"": root}, str(conf)) as client:  # type: ignore[arg-type]
        page = client.get("/")
        get = client.get("/api")
        post = client.post("/api", b"")
        put = client.request("PUT", "/api", b"")
    assert (page.status, page.text, page.headers["X-Site"]) == (200, "root:from file", "ini")
    assert (get.status, get.text) == (200, "GET resource")
    assert (post.status, post.text) == (200, "POST resource")
    assert put.status == 405
    assert put.headers["Allow"] == "GET, HEAD, POST"
    morello.server.thread_pool = 10


def test_update_from_an_open_file(tmp_path: Path, clean_config: None) -> None:
    conf = tmp_path / "open.conf"
    conf.write_text("[global]\nmy.opened = [1, 'two']\n")
    with conf.open() as file:
        morello.config.update(file)
    assert morello.config["my.opened"] == [1, "two"]


def test_config_files_are_watched_by_autoreload(tmp_path: Path, clean_config: None) -> None:
    # As in CherryPy: editing a config file restarts an autoreloading process.
    site, app = tmp_path / "site.conf", tmp_path / "app.conf"
    site.write_text("[global]\nmy.x = 1\n")
    app.write_text("[/]\nmy.y = 2\n")
    files = morello.engine.autoreload.files
    try:
        morello.config.update(str(site))
        morello.tree.mount(Greeter(), "/watched", str(app))
        assert str(site) in files
        assert str(app) in files
    finally:
        files.discard(str(site))
        files.discard(str(app))
        morello.tree.apps.pop("/watched", None)


# -- environments -------------------------------------------------------------


def test_environment_presets_match_cherrypy() -> None:
    from cherrypy import _cpconfig

    assert morello.config.environments == _cpconfig.environments


class Failing:
    @morello.expose
    def boom(self) -> str:
        raise ValueError("secret detail")

    @morello.expose
    def needs(self, a: str) -> str:
        return a


@pytest.mark.parametrize(
    ("environment", "verbose"),
    [("production", False), ("staging", False), ("embedded", False), ("test_suite", True)],
)
def test_environment_effects_over_http(environment: str, verbose: bool) -> None:
    with running({"": Failing()}, global_config={"environment": environment}) as client:
        boom = client.get("/boom")
        missing = client.get("/needs")
        extra = client.get("/needs?a=1&b=2")
        # The preset is in the global config for everyone to see.
        assert morello.config["request.show_tracebacks"] is verbose
        assert morello.config["checker.on"] is False
        assert morello.checker.on is False
        assert morello.config["engine.autoreload.on"] is False
        assert morello.engine.autoreload.start not in morello.engine.listeners["start"]
    assert boom.status == 500
    assert (b"secret detail" in boom.body) is verbose
    assert (b"Traceback" in boom.body) is verbose
    assert missing.status == 404
    assert (b"Missing parameters: a" in missing.body) is verbose
    assert extra.status == 404
    assert (b"Unexpected query string parameters: b" in extra.body) is verbose


@pytest.mark.parametrize(
    ("global_config", "headers_logged"),
    [({"environment": "production"}, False), ({"tools.log_headers.on": True}, True)],
)
def test_production_keeps_request_headers_out_of_the_error_log(
    global_config: dict[str, Any], headers_logged: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    records: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logging.getLogger("morello.error").addHandler(handler)
    try:
        with running({"": Failing()}, global_config=global_config) as client:
            assert morello.log.screen is False
            client.get("/boom", headers={"X-Probe": "visible-only-with-log-headers"})
    finally:
        logging.getLogger("morello.error").removeHandler(handler)
    joined = "\n".join(records)
    assert "ValueError: secret detail" in joined  # log_tracebacks stays on
    assert ("Request Headers:" in joined) is headers_logged
    assert ("visible-only-with-log-headers" in joined) is headers_logged
    assert "secret detail" not in capsys.readouterr().err


def test_unknown_environment_is_a_clear_error(clean_config: None) -> None:
    with pytest.raises(ValueError, match=r"Unknown environment 'prod'.*production"):
        morello.config.update({"environment": "prod"})


def test_unknown_environment_in_a_file_names_it(tmp_path: Path, clean_config: None) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text('[global]\nenvironment = "devel"\n')
    with pytest.raises(ValueError, match="'devel'"):
        morello.config.update(str(conf))


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"server.socket_port": 70000}, ValueError, "between 0 and 65535"),
        ({"server.socket_port": "http"}, ValueError, "http"),
        ({"server.socket_host": ""}, ValueError, "0.0.0.0"),
        ({"engine.no_such_plugin.on": True}, AttributeError, "no_such_plugin"),
    ],
)
def test_bad_values_fail_at_update(
    config: dict[str, Any], error: type[Exception], match: str, clean_config: None
) -> None:
    port, host = morello.server.socket_port, morello.server.socket_host
    try:
        with pytest.raises(error, match=match):
            morello.config.update(config)
    finally:
        morello.server.socket_port, morello.server.socket_host = port, host


def test_bad_config_file_value_names_file_section_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text("[/]\ntools.encode.on = Tru e\n")
    with pytest.raises(ConfigError, match=r"broken\.conf.*tools\.encode\.on"):
        morello.tree.mount(Greeter(), "/broken", str(conf))
    assert "/broken" not in morello.tree.apps


def test_app_config_without_sections_is_refused() -> None:
    with pytest.raises(ValueError, match="section headers"):
        morello.tree.mount(Greeter(), "/flat", {"tools.encode.on": True})
    assert "/flat" not in morello.tree.apps


# -- namespaces ---------------------------------------------------------------


class Echo:
    @morello.expose
    def index(self, **params: Any) -> str:
        return repr(sorted(params.items()))

    @morello.expose
    def boom(self) -> str:
        raise ValueError("traceback marker")

    @morello.expose
    def stream(self) -> Any:
        yield b"one,"
        yield b"two"

    @morello.expose
    def page(self) -> str:
        return "page"


def test_request_namespace_per_path() -> None:
    app_config = {
        "/": {"request.show_tracebacks": True},
        "/boom": {"request.show_tracebacks": False},
        "/index": {"request.process_request_body": False},
    }
    with running({"": Echo()}, app_config) as client:
        quiet = client.get("/boom")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        unread = client.post("/index?q=1", b"a=1", form)
    with running({"": Echo()}) as client:
        loud = client.get("/boom")
        read = client.post("/index?q=1", b"a=1", form)
    assert quiet.status == 500 and b"traceback marker" not in quiet.body
    assert loud.status == 500 and b"traceback marker" in loud.body
    assert unread.text == "[('q', '1')]"
    assert read.text == "[('a', '1'), ('q', '1')]"


def test_response_namespace_headers_and_stream() -> None:
    app_config = {
        "/": {"response.headers.X-Frame-Options": "DENY"},
        "/stream": {"response.stream": True, "response.headers.X-Frame-Options": "SAMEORIGIN"},
    }
    with running({"": Echo()}, app_config) as client:
        page = client.get("/")
        streamed = client.get("/stream")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Content-Length"] == str(len(page.body))
    assert streamed.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert streamed.body == b"one,two"
    assert "Content-Length" not in streamed.headers
    assert streamed.headers["Transfer-Encoding"] == "chunked"


def test_error_page_namespace_template_and_callable(tmp_path: Path) -> None:
    template = tmp_path / "404.html"
    template.write_text("custom 404: %(status)s / %(message)s")

    def default_page(status: str, message: str, traceback: str, version: str) -> str:
        return f"default page for {status}"

    app_config = {"/": {"error_page.404": str(template), "error_page.default": default_page}}
    with running({"": Echo()}, app_config) as client:
        missing = client.get("/nowhere")
        boom = client.get("/boom")
    assert missing.status == 404
    assert missing.text == "custom 404: 404 Not Found / The path '/nowhere' was not found."
    assert boom.status == 500
    assert boom.text == "default page for 500 Internal Server Error"


def mark_hook() -> None:
    """Named by its dotted name in config: tags the response."""
    morello.response.headers["X-Hook"] = "dotted"


def test_hooks_namespace_callable_and_dotted_names(tmp_path: Path) -> None:
    seen: list[str] = []

    def record() -> None:
        seen.append(morello.request.path_info)

    conf = tmp_path / "hooks.conf"
    conf.write_text(f"[/page]\nhooks.before_finalize = {__name__}.mark_hook\n")
    app = morello.Application(Echo(), "", {
        "/": {"hooks.on_start_resource": record},
        # A string in a dict config is resolved as a dotted name too.
        "/stream": {"hooks.before_finalize.tag": f"{__name__}.mark_hook"},
    })  # fmt: skip
    app.merge(str(conf))
    with running({"": app}) as client:
        plain = client.get("/")
        from_file = client.get("/page")
        from_string = client.get("/stream")
    assert seen == ["/", "/page", "/stream"]
    assert [plain.status, from_file.status, from_string.status] == [200, 200, 200]
    assert "X-Hook" not in plain.headers
    assert from_file.headers["X-Hook"] == from_string.headers["X-Hook"] == "dotted"


def test_log_namespace_in_app_config_goes_to_app_log(tmp_path: Path) -> None:
    app_errors = tmp_path / "app-error.log"
    app_access = tmp_path / "app-access.log"

    class Logs:
        @morello.expose
        def index(self) -> str:
            morello.log("written from the app")
            return "ok"

    log_config = {"log.error_file": str(app_errors), "log.access_file": str(app_access)}
    app = morello.Application(Logs(), "/logs", {"/": log_config})
    try:
        assert app.log.error_file == str(app_errors)
        assert morello.log.error_file == ""  # the site-wide log is untouched
        with running({"/logs": app}) as client:
            assert client.get("/logs/").text == "ok"
    finally:
        app.log.error_file = app.log.access_file = ""
    assert "written from the app" in app_errors.read_text()
    assert '"GET /logs/ HTTP/1.1" 200 2' in app_access.read_text()


class Tagger:
    """WSGI middleware configured by ``wsgi.tagger.tag``; records what it saw."""

    seen: list[str] = []

    def __init__(self, nextapp: Callable[..., Any], tag: str = "none") -> None:
        self.nextapp = nextapp
        self.tag = tag

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.seen.append(environ["PATH_INFO"])

        def tagged(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Tag", self.tag)], exc_info)

        return self.nextapp(environ, tagged)


def build_redirecting(cp: Any) -> Any:
    class Root:
        @cp.expose
        def index(self) -> str:
            raise cp.InternalRedirect("/target")

        @cp.expose
        def target(self) -> str:
            return "redirected"

    return Root()


def test_wsgi_pipeline_adds_middleware_inside_the_default_ones() -> None:
    # CherryPy appends wsgi.pipeline to ExceptionTrapper/InternalRedirector,
    # so an internal redirect runs the user's middleware once more.
    app_config = {"/": {"wsgi.pipeline": [("tagger", Tagger)], "wsgi.tagger.tag": "abc"}}
    Tagger.seen = []
    with running({"": build_redirecting(morello)}, app_config) as client:
        answer = client.get("/")
    assert (answer.status, answer.text, answer.headers["X-Tag"]) == (200, "redirected", "abc")
    morello_seen, Tagger.seen = Tagger.seen, []

    import cherrypy

    with cherrypy_tree(build_redirecting(cherrypy), app_config) as tree:
        reference = call(tree, "/")
    assert (reference.code, reference.body) == (200, b"redirected")
    assert reference.header("X-Tag") == "abc"
    assert morello_seen == Tagger.seen == ["/", "/target"]


def test_wsgi_response_class() -> None:
    from morello.gateway import AppResponse

    paths: list[str] = []

    class Recording(AppResponse):
        def run(self) -> None:
            paths.append(self.environ["PATH_INFO"])
            super().run()

    with running({"": Greeter()}, {"/": {"wsgi.response_class": Recording}}) as client:
        answer = client.get("/")
    assert (answer.status, answer.text, paths) == (200, "root:None", ["/"])


def test_engine_namespace(clean_config: None) -> None:
    autoreload = morello.engine.autoreload
    old_frequency = autoreload.frequency
    try:
        morello.config.update({"engine.autoreload.on": True, "engine.autoreload.frequency": 7})
        assert autoreload.start in morello.engine.listeners["start"]
        assert autoreload.frequency == 7
        morello.config.update({"engine.autoreload.on": False})
        assert autoreload.start not in morello.engine.listeners["start"]

        # engine.SIGHUP / SIGTERM subscribe a listener; other keys set attributes.
        received: list[str] = []

        def on_hup() -> None:
            received.append("hup")

        morello.config.update({"engine.SIGHUP": on_hup, "engine.my_setting": "x"})
        morello.engine.publish("SIGHUP")
        assert received == ["hup"]
        assert morello.engine.my_setting == "x"
    finally:
        autoreload.frequency = old_frequency
        morello.engine.unsubscribe("SIGHUP", on_hup)
        vars(morello.engine).pop("my_setting", None)


def test_server_namespace_configures_the_listening_server() -> None:
    with running({"": Greeter()}, global_config={"server.thread_pool": 2}) as client:
        assert morello.server.httpserver.requests.min == 2
        assert client.get("/").status == 200
    morello.server.thread_pool = 10


def test_tree_namespace_grafts_applications(clean_config: None) -> None:
    other = morello.Application(Greeter(), "/other", {"/": {"my.value": "grafted"}})

    def wsgi_hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain wsgi at " + environ["SCRIPT_NAME"].encode()]

    global_config = {"tree.other": other, "tree.more": {"/plain": wsgi_hello}}
    with running({"": Greeter()}, global_config=global_config) as client:
        assert client.get("/other/").text == "root:grafted"
        assert client.get("/plain/x").text == "plain wsgi at /plain"
        assert client.get("/").text == "root:None"


# -- the checker ----------------------------------------------------------------


@pytest.fixture
def checker_on() -> Iterator[None]:
    yield
    morello.checker.on = False


def start_with_checker(root: Any, app_config: Any, script_name: str = "") -> list[str]:
    """Start the engine with the checker on; return its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with running({script_name: root}, app_config, {"checker.on": True}):
            pass
    return [str(w.message) for w in caught]


def test_checker_warns_about_unknown_namespaces_and_bad_sections(checker_on: None) -> None:
    app_config = {
        "/": {"tool.encode.on": True, "tools.encode.on": True, "tools.encoder.on": True},
        "static": {"tools.encode.on": True},
        "/app/page": {"request.show_tracebacks": False},
        "/app": {"request.show_tracebacks": False},
    }
    messages = start_with_checker(Greeter(), app_config, "/app")
    assert any("'tool'" in m and "tool.encode.on" in m for m in messages)
    assert any("'static'" in m and "'/'" in m for m in messages)
    assert any("'/app/page'" in m and "script name" in m for m in messages)
    assert any("'/app'" in m and "script name" in m for m in messages)
    assert any("'tools.encoder.on' names no tool" in m for m in messages)
    assert not any("'tools.encode.on'" in m for m in messages)
    assert len(messages) == 5


def test_checker_warns_about_site_wide_keys_in_app_config(checker_on: None) -> None:
    # server.*, engine.*, tree.* and checker.* do nothing in app config.
    app_config = {"/": {"server.socket_port": 9999, "engine.autoreload.on": False}}
    messages = start_with_checker(Greeter(), app_config)
    assert any("server.socket_port" in m and "global" in m for m in messages)
    assert any("engine.autoreload.on" in m for m in messages)


def test_checker_warns_about_values_of_the_wrong_type(checker_on: None) -> None:
    app_config = {"/": {"request.show_tracebacks": "no", "response.stream": 1,
                        "request.methods_with_bodies": ("POST",)}}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The bad thread_pool makes cheroot fail; the warning said why first.
        with (
            pytest.raises(ChannelFailures),
            running({"": Greeter()}, app_config, {"checker.on": True, "server.thread_pool": "ten"}),
        ):
            pass
    morello.tree.apps.clear()
    morello.config.reset()
    morello.server.thread_pool = 10
    morello.server.httpserver = None
    messages = [str(w.message) for w in caught]
    assert any("'server.thread_pool' in section 'global' is of type 'str'" in m
               and "expected type 'int'" in m for m in messages)  # fmt: skip
    assert any("'request.show_tracebacks' in section '/' is of type 'str'" in m for m in messages)
    assert any("'response.stream' in section '/' is of type 'int'" in m for m in messages)
    assert not any("methods_with_bodies" in m for m in messages)


def test_port_in_use_is_a_clear_startup_error(clean_config: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        morello.tree.mount(Greeter(), "")
        try:
            morello.config.update({"environment": "test_suite", "log.screen": False,
                                   "server.socket_port": port})  # fmt: skip
            with pytest.raises(ChannelFailures, match=f"Port {port} not free"):
                morello.engine.start()
            assert morello.engine.state is states.EXITING
        finally:
            morello.tree.apps.clear()
            morello.server.httpserver = None


def test_checker_is_quiet_for_quickstart_style_config(checker_on: None) -> None:
    # quickstart passes one config both to config.update and tree.mount; its
    # [global] section is not a mistake (CherryPy's checker accepts it).
    app_config = {"global": {"my.flag": True}, "/": {"tools.encode.on": True}}
    assert start_with_checker(Greeter(), app_config) == []


@pytest.mark.parametrize(
    "app_config",
    [
        {"global": {"my.flag": True}, "/": {"tools.encode.on": True}},
        {"/": {"server.socket_port": 9999, "engine.autoreload.on": False, "tools.encode.on": True}},
        {"/": {"request.show_tracebacks": "no", "response.stream": 1, "tools.encoder.on": True,
               "tools.encode.on": False}},
    ],
)  # fmt: skip
def test_checker_flags_the_same_keys_as_cherrypy(
    app_config: dict[str, Any], checker_on: None
) -> None:
    keys = {key for section in app_config.values() for key in section}

    def flagged(messages: list[str]) -> set[str]:
        return {key for key in keys if any(repr(key) in m or f"{key} =" in m for m in messages)}

    morello_flagged = flagged(start_with_checker(Greeter(), app_config, "/app"))

    import cherrypy

    with (
        cherrypy_tree(Greeter(), app_config, script_name="/app"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        cherrypy.checker.on = True
        try:
            cherrypy.checker()
        finally:
            cherrypy.checker.on = False
            # Its static-path check leaves the app on the placeholder request.
            cherrypy.serving.request.app = None
    assert morello_flagged == flagged([str(w.message) for w in caught])


def test_checker_off_by_config(checker_on: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with running({"/x": Greeter()}, {"/x/y": {"bogus.key": 1}}, {"checker.on": False}):
            pass
    assert caught == []
