"""Integration tests for the error and access logs of real requests."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wsgi_direct import call, cherrypy_tree

import morello
from morello.testing import running

STAMP = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d\]"


def build_site(cp: Any) -> Any:
    class Root:
        @cp.expose
        def index(self) -> str:
            return "hello"

        @cp.expose
        def whoami(self) -> str:
            cp.request.login = "alice"
            return "you are alice"

        @cp.expose
        def go(self) -> str:
            raise cp.HTTPRedirect("/")

        @cp.expose
        def note(self) -> str:
            cp.log("a note from the handler")
            try:
                raise KeyError("inside handler")
            except KeyError:
                cp.log("with traceback", traceback=True)
            return "noted"

        @cp.expose
        def crash(self) -> str:
            raise ZeroDivisionError("crash in handler")

        @cp.expose
        def form(self, **params: Any) -> str:
            return "posted"

    return Root()


@pytest.fixture
def log_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(error, access) files the site-wide log writes to; detached afterwards."""
    yield tmp_path / "error.log", tmp_path / "access.log"
    morello.log.error_file = morello.log.access_file = ""


def test_access_lines_in_cherrypy_format(log_files: tuple[Path, Path]) -> None:
    error_file, access_file = log_files
    global_config = {"log.error_file": str(error_file), "log.access_file": str(access_file)}
    with running({"": build_site(morello)}, global_config=global_config) as client:
        client.get("/", headers={"Referer": "http://ref.example/from", "User-Agent": "probe/1.0"})
        client.get("/missing")
        client.get("/whoami")
        client.get("/go")
        client.head("/")
        form = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": 'say "hi"'}
        client.post("/form?q=1", b"a=1", form)
        missing_size = client.get("/missing").headers["Content-Length"]
        redirect_size = client.get("/go").headers["Content-Length"]
    lines = access_file.read_text().splitlines()
    expected = [
        r'127\.0\.0\.1 - - {t} "GET / HTTP/1\.1" 200 5 "http://ref\.example/from" "probe/1\.0"',
        rf'127\.0\.0\.1 - - {{t}} "GET /missing HTTP/1\.1" 404 {missing_size} "" ""',
        r'127\.0\.0\.1 - alice {t} "GET /whoami HTTP/1\.1" 200 13 "" ""',
        rf'127\.0\.0\.1 - - {{t}} "GET /go HTTP/1\.1" 303 {redirect_size} "" ""',
        r'127\.0\.0\.1 - - {t} "HEAD / HTTP/1\.1" 200 5 "" ""',
        r'127\.0\.0\.1 - - {t} "POST /form\?q=1 HTTP/1\.1" 200 6 "" "say \\"hi\\""',
    ]
    assert len(lines) == 8
    for line, pattern in zip(lines[: len(expected)], expected, strict=True):
        assert re.fullmatch(pattern.replace("{t}", STAMP), line), line
    # Access lines are not error messages.
    assert "GET /missing" not in error_file.read_text()


def test_access_line_matches_cherrypy(tmp_path: Path) -> None:
    headers = {"Referer": "http://ref/", "User-Agent": "agent\tx"}
    morello_file, cherrypy_file = tmp_path / "morello.log", tmp_path / "cherrypy.log"
    app_config = {"/": {"log.access_file": str(morello_file)}}
    app = morello.Application(build_site(morello), "", app_config)
    try:
        for path in ("/", "/missing?x=%22y%22", "/whoami"):
            call(app, path.partition("?")[0], query=path.partition("?")[2], headers=headers)
    finally:
        app.log.access_file = ""

    import cherrypy

    with cherrypy_tree(build_site(cherrypy), {"/": {"log.access_file": str(cherrypy_file)}}):
        app = cherrypy.tree.apps[""]
        try:
            for path in ("/", "/missing?x=%22y%22", "/whoami"):
                call(cherrypy.tree, path.partition("?")[0], query=path.partition("?")[2],
                     headers=headers)  # fmt: skip
        finally:
            app.log.access_file = ""

    def normalized(path: Path) -> list[str]:
        # Drop the time; error pages differ in size on purpose (own wording).
        lines = [re.sub(STAMP, "[time]", line) for line in path.read_text().splitlines()]
        return [re.sub(r'" 404 \d+ ', '" 404 <size> ', line) for line in lines]

    assert normalized(morello_file) == normalized(cherrypy_file)
    assert len(normalized(morello_file)) == 3


def test_error_log_file_gets_messages_and_tracebacks(log_files: tuple[Path, Path]) -> None:
    error_file, _ = log_files
    global_config = {"log.error_file": str(error_file)}
    with running({"": build_site(morello)}, global_config=global_config) as client:
        assert client.get("/note").text == "noted"
        assert client.get("/crash").status == 500
    text = error_file.read_text()
    assert re.search(STAMP + r"  a note from the handler\n", text)
    assert re.search(STAMP + r"  with traceback\nTraceback \(most recent call last\):", text)
    assert "KeyError: 'inside handler'" in text
    assert "ZeroDivisionError: crash in handler" in text
    # The engine's own messages go there too.
    assert re.search(STAMP + r" ENGINE Bus STARTED", text)


def test_log_with_traceback_outside_an_exception(log_files: tuple[Path, Path]) -> None:
    error_file, _ = log_files
    morello.log.error_file = str(error_file)
    morello.log("no exception here", "CTX", severity=logging.WARNING, traceback=True)
    morello.log("dropped", severity=logging.DEBUG)  # below the error log's INFO level
    assert re.fullmatch(STAMP + r" CTX no exception here\n", error_file.read_text())


def test_app_logs_are_separate_and_propagate_to_the_site_log(tmp_path: Path) -> None:
    site_error = tmp_path / "site-error.log"
    one_error, one_access = tmp_path / "one-error.log", tmp_path / "one-access.log"
    two_error = tmp_path / "two-error.log"
    one_config = {"log.error_file": str(one_error), "log.access_file": str(one_access)}
    one = morello.Application(build_site(morello), "/one", {"/": one_config})
    two_config = {"log.error_file": str(two_error)}
    two = morello.Application(build_site(morello), "/two", {"/": two_config})
    site_config = {"log.error_file": str(site_error)}
    try:
        with running({"/one": one, "/two": two}, global_config=site_config) as client:
            client.get("/one/note")
            client.get("/two/")
            one.log("direct to app one", "APP")
    finally:
        for app in (one, two):
            app.log.error_file = app.log.access_file = ""
        morello.log.error_file = ""
    assert "a note from the handler" in one_error.read_text()
    assert "direct to app one" in one_error.read_text()
    assert "a note from the handler" not in two_error.read_text()
    assert '"GET /one/note HTTP/1.1" 200 5' in one_access.read_text()
    assert "/two/" not in one_access.read_text()
    site = site_error.read_text()
    assert "a note from the handler" in site and "direct to app one" in site
    # Application loggers are children of the site-wide ones.
    assert one.log.error_log.parent is morello.log.error_log
    assert one.log.access_log.parent is morello.log.access_log


class Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_named_application_loggers_are_left_alone(log_files: tuple[Path, Path]) -> None:
    error_file, access_file = log_files
    mine = logging.getLogger("myapp.component")
    collecting = Collecting()
    mine.addHandler(collecting)
    mine.setLevel(logging.DEBUG)
    root_handlers = list(logging.getLogger().handlers)

    class Root:
        @morello.expose
        def index(self) -> str:
            mine.info("my own record")
            morello.log("morello record")
            return "ok"

    global_config = {"log.error_file": str(error_file), "log.access_file": str(access_file),
                     "log.screen": True}  # fmt: skip
    try:
        with running({"": Root()}, global_config=global_config) as client:
            client.get("/")
    finally:
        morello.log.screen = False
        mine.removeHandler(collecting)
    assert collecting.messages == ["my own record"]
    assert mine.level == logging.DEBUG and mine.propagate is True
    assert logging.getLogger().handlers == root_handlers
    assert "my own record" not in error_file.read_text()
    assert "morello record" in error_file.read_text()


@pytest.mark.parametrize("screen", [False, True])
def test_log_screen(screen: bool, capsys: pytest.CaptureFixture[str]) -> None:
    with running({"": build_site(morello)}, global_config={"log.screen": screen}) as client:
        client.get("/note")
    morello.log.screen = False
    out, err = capsys.readouterr()
    if screen:
        assert re.search(r'"GET /note HTTP/1\.1" 200 5', out)
        assert "a note from the handler" in err and "ENGINE Bus STARTED" in err
        assert "GET /note" not in err
    else:
        assert (out, err) == ("", "")
