"""Tests for morello.logs: handlers, access lines, delegation to app logs."""

from __future__ import annotations

import contextlib
import datetime
import io
import itertools
import logging
import os
import re
import sys
from types import SimpleNamespace

import pytest

from morello import logs
from morello.logs import GlobalLogManager, LogManager, WSGIErrorHandler, decline_access
from morello.serving import serving

STAMP = r"\[\d\d/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d\]"

_roots = itertools.count()


class Headers(dict):
    """Stands in for the case-insensitive header map (keys title-cased)."""


class FakeRequest:
    def __init__(self, **attrs: object) -> None:
        self.remote = SimpleNamespace(ip="10.0.0.1", name=None)
        self.login = None
        self.request_line = "GET /index?x=1 HTTP/1.1"
        self.headers = Headers(
            {"Referer": "http://example.com/", "User-Agent": "curl/8.0", "Host": "example.com"}
        )
        self.unique_id = "c0ffee"
        self.app = None
        self.wsgi_environ: dict = {}
        self.__dict__.update(attrs)


class FakeResponse:
    def __init__(self, status: str | None = "200 OK", length: str | None = "1234") -> None:
        self.output_status = status
        self.headers = Headers({} if length is None else {"Content-Length": length})


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


def _detach(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture
def root_name():
    """A fresh logger root; its handlers are removed afterwards."""
    name = f"morello-test-{next(_roots)}"
    yield name
    for logger_name in list(logging.Logger.manager.loggerDict):
        if logger_name == name or logger_name.startswith(name + "."):
            _detach(logging.getLogger(logger_name))


@pytest.fixture
def manager(root_name: str) -> LogManager:
    return LogManager(logger_root=root_name)


@pytest.fixture
def current(monkeypatch):
    """Install a fake request/response pair as the one being served."""

    def install(request=None, response=None):
        request = request or FakeRequest()
        response = response or FakeResponse()
        monkeypatch.setattr(serving, "request", request)
        monkeypatch.setattr(serving, "response", response)
        return request, response

    return install


@contextlib.contextmanager
def unheard_root():
    """A logger root whose records reach no handler at all.

    pytest hooks its capture handlers onto the root logger and onto every
    non-propagating logger when a test phase starts, so this must be entered
    inside the test body, and it restores propagation before teardown.
    """
    name = f"morello-quiet-{next(_roots)}"
    top = logging.getLogger(name)
    top.propagate = False
    try:
        yield name
    finally:
        top.propagate = True
        for logger_name in list(logging.Logger.manager.loggerDict):
            if logger_name == name or logger_name.startswith(name + "."):
                _detach(logging.getLogger(logger_name))


def capture(logger: logging.Logger) -> ListHandler:
    handler = ListHandler()
    logger.addHandler(handler)
    return handler


# --------------------------------------------------------------- loggers


def test_logger_names_and_levels(root_name: str) -> None:
    site = LogManager(logger_root=root_name)
    app = LogManager(appid=1234, logger_root=root_name)
    assert site.error_log.name == f"{root_name}.error"
    assert site.access_log.name == f"{root_name}.access"
    assert app.error_log.name == f"{root_name}.error.1234"
    assert app.access_log.name == f"{root_name}.access.1234"
    assert app.error_log.parent is site.error_log
    for log in (site.error_log, site.access_log, app.error_log, app.access_log):
        assert log.level == logging.INFO
        assert log.propagate


def test_default_logger_root() -> None:
    log = LogManager()
    assert (log.error_log.name, log.access_log.name) == ("morello.error", "morello.access")
    assert log.appid is None and log.logger_root == "morello"


def test_app_log_bubbles_up_to_site_handlers(root_name: str) -> None:
    site = LogManager(logger_root=root_name)
    app = LogManager(appid=7, logger_root=root_name)
    seen = capture(site.error_log)
    app.error("from the app", "APP")
    assert len(seen.records) == 1
    assert seen.records[0].name == f"{root_name}.error.7"


def test_named_application_logger_is_independent(manager: LogManager) -> None:
    mine = logging.getLogger(f"{manager.logger_root}-myapp")
    mine.propagate = False
    mine_seen = capture(mine)
    error_seen = capture(manager.error_log)
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    try:
        manager.screen = True
        manager.error("framework message")
        mine.warning("app message")
        assert mine_seen.messages == ["app message"]
        assert [m.endswith("framework message") for m in error_seen.messages] == [True]
        assert (root.level, list(root.handlers)) == root_state
    finally:
        manager.screen = False
        _detach(mine)


def test_no_last_resort_output_without_handlers(capsys) -> None:
    with unheard_root() as name:
        manager = LogManager(logger_root=name)
        assert logging.lastResort is not None
        manager.error("nobody listens", severity=logging.ERROR)
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------- error log


def test_error_line_shape(manager: LogManager) -> None:
    seen = capture(manager.error_log)
    manager.error("Bus STARTING", "ENGINE")
    manager("called directly")
    (first, second) = seen.messages
    assert re.fullmatch(STAMP + " ENGINE Bus STARTING", first)
    # Empty context keeps its slot, as in CherryPy.
    assert re.fullmatch(STAMP + "  called directly", second)
    assert seen.records[0].levelno == logging.INFO


def test_severity(manager: LogManager) -> None:
    seen = capture(manager.error_log)
    manager.error("careful", severity=logging.WARNING)
    manager.error("too chatty", severity=logging.DEBUG)
    assert [r.levelno for r in seen.records] == [logging.WARNING]
    manager.error_log.setLevel(logging.DEBUG)
    manager.error("now shown", severity=logging.DEBUG)
    assert [r.levelno for r in seen.records] == [logging.WARNING, logging.DEBUG]


def test_traceback_is_appended(manager: LogManager) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    manager.error_log.addHandler(handler)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        manager.error("it broke", "HTTP", severity=logging.ERROR, traceback=True)
    manager.error("no exception here", traceback=True)
    text = stream.getvalue()
    assert "HTTP it broke\nTraceback (most recent call last):" in text
    assert "ZeroDivisionError: division by zero" in text
    last = text.rstrip("\n").splitlines()[-1]
    assert last.endswith("no exception here")
    assert "NoneType" not in text


def test_time_format(manager: LogManager) -> None:
    assert re.fullmatch(STAMP, manager.time())


def test_time_matches_cherrypy(manager: LogManager) -> None:
    cplogging = pytest.importorskip("cherrypy._cplogging")
    reference = cplogging.LogManager(logger_root=manager.logger_root + "-cp")
    for _ in range(5):  # retry if the second ticks over in between
        ours, theirs = manager.time(), reference.time()
        if ours == theirs:
            break
    assert ours == theirs


# -------------------------------------------------------------- handlers


def test_screen_on_and_off(manager: LogManager, current, capsys) -> None:
    current()
    assert manager.screen is False
    manager.screen = True
    manager.screen = True  # idempotent
    assert manager.screen is True
    manager.error("to stderr", "CTX")
    manager.access()
    out, err = capsys.readouterr()
    assert re.fullmatch(STAMP + " CTX to stderr\n", err)
    assert out.startswith("10.0.0.1 - - [") and out.endswith('"curl/8.0"\n')
    assert out.count("\n") == 1

    manager.screen = False
    assert manager.screen is False
    manager.error("silent")
    manager.access()
    assert capsys.readouterr() == ("", "")


def test_error_file_on_and_off(manager: LogManager, tmp_path) -> None:
    path = tmp_path / "error.log"
    manager.error_file = str(path)
    manager.error_file = str(path)  # same file: handler kept, not duplicated
    assert manager.error_file == str(path)
    assert len(manager.error_log.handlers) == 2  # ours and the NullHandler
    manager.error("one", "CTX")

    other = tmp_path / "other.log"
    manager.error_file = other
    manager.error("two")
    assert manager.error_file == str(other)
    manager.error_file = ""
    manager.error("three")
    assert manager.error_file == ""
    assert re.fullmatch(STAMP + " CTX one\n", path.read_text())
    assert re.fullmatch(STAMP + "  two\n", other.read_text())


def test_access_file_on_and_off(manager: LogManager, current, tmp_path) -> None:
    current()
    path = tmp_path / "access.log"
    manager.access_file = str(path)
    assert manager.access_file == str(path)
    manager.access()
    manager.access_file = None
    manager.access()
    assert manager.access_file == ""
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("10.0.0.1 - - [")
    assert manager.error_file == ""


def test_reopen_files(manager: LogManager, current, tmp_path) -> None:
    current()
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    manager.error_file = str(error_path)
    manager.access_file = str(access_path)
    manager.error("before")
    manager.access()
    os.rename(error_path, tmp_path / "error.log.1")
    os.rename(access_path, tmp_path / "access.log.1")
    manager.error("still old file")  # the handler keeps writing to the moved file
    manager.reopen_files()
    manager.error("after")
    manager.access()

    old_errors = (tmp_path / "error.log.1").read_text()
    assert "before" in old_errors and "still old file" in old_errors
    assert "after" not in old_errors
    assert error_path.read_text().endswith("  after\n")
    assert len((tmp_path / "access.log.1").read_text().splitlines()) == 1
    assert len(access_path.read_text().splitlines()) == 1


def test_reopen_files_skips_delayed_handlers(manager: LogManager, tmp_path) -> None:
    handler = logging.FileHandler(tmp_path / "delayed.log", delay=True)
    manager.error_log.addHandler(handler)
    manager.reopen_files()
    assert handler.stream is None
    assert not (tmp_path / "delayed.log").exists()


def test_wsgi_errors_handler(manager: LogManager, current) -> None:
    errors = io.StringIO()
    current(FakeRequest(wsgi_environ={"wsgi.errors": errors}))
    manager.wsgi = True
    manager.wsgi = True
    assert manager.wsgi is True
    assert sum(isinstance(h, WSGIErrorHandler) for h in manager.error_log.handlers) == 1
    manager.error("to the gateway", "CTX")
    assert re.fullmatch(STAMP + " CTX to the gateway\n", errors.getvalue())

    current(FakeRequest(wsgi_environ={}))
    manager.error("no stream, no problem")
    manager.wsgi = False
    assert manager.wsgi is False
    current(FakeRequest(wsgi_environ={"wsgi.errors": errors}))
    manager.error("not written")
    assert errors.getvalue().count("\n") == 1


# ------------------------------------------------------------ access log


def access_lines(manager: LogManager) -> list[str]:
    """Access lines written for the request installed by ``current``."""
    seen = capture(manager.access_log)
    manager.access()
    manager.access_log.removeHandler(seen)
    return seen.messages


def test_access_line_default_format(manager: LogManager, current) -> None:
    current()
    (line,) = access_lines(manager)
    assert re.fullmatch(
        r"10\.0\.0\.1 - - " + STAMP + r' "GET /index\?x=1 HTTP/1\.1" 200 1234 '
        r'"http://example\.com/" "curl/8\.0"',
        line,
    )


def test_access_line_fallbacks(manager: LogManager, current) -> None:
    request = FakeRequest(login="alice", headers=Headers())
    request.remote.name = "client.example.com"
    current(request, FakeResponse(status=None, length=None))
    manager.access_log_format = '{h} {l} {u} "{r}" {s} {b} "{f}" "{a}" {o}'
    (line,) = access_lines(manager)
    assert line == 'client.example.com - alice "GET /index?x=1 HTTP/1.1" - - "" "" -'


def test_access_extra_atoms(manager: LogManager, current) -> None:
    manager.access_log_format = "{o} {i} {z} {s:>5}"
    current(FakeRequest(unique_id="uid-42"), FakeResponse("404 Not Found"))
    (line,) = access_lines(manager)
    host, uid, stamp, status = line.split(" ", 3)
    assert (host, uid, status) == ("example.com", "uid-42", "  404")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp)


def test_utc_time_atom_is_lazy_rfc3339_utc_time(
    manager: LogManager, current, monkeypatch
) -> None:
    """``{z}`` formats ``logs.LazyRfc3339UtcTime()``, looked up when the line is written."""
    stamp = str(logs.LazyRfc3339UtcTime())
    assert stamp.endswith("Z")
    moment = datetime.datetime.fromisoformat(stamp[:-1])
    utc_now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs(utc_now - moment) < datetime.timedelta(seconds=60)

    class Fixed(datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # a whole second: no fraction is written
            return datetime.datetime(2020, 1, 1, 9, 23, 45, tzinfo=datetime.timezone(
                datetime.timedelta(hours=8))).astimezone(tz)

    monkeypatch.setattr(datetime, "datetime", Fixed)
    assert str(logs.LazyRfc3339UtcTime()) == "2020-01-01T01:23:45Z"
    monkeypatch.undo()

    monkeypatch.setattr(logs, "LazyRfc3339UtcTime", lambda: "stamp-from-patch")
    manager.access_log_format = "{z}"
    current()
    assert access_lines(manager) == ["stamp-from-patch"]


def test_access_escaping(manager: LogManager, current) -> None:
    request = FakeRequest(
        request_line='GET /a"b\\c\nd\te\x01\x7f\u00e9 HTTP/1.1',
        headers=Headers({"User-Agent": 'evil "agent"\r\n\x08\x0b', "Referer": "it's"}),
    )
    current(request)
    manager.access_log_format = '"{r}" "{a}" "{f}"'
    (line,) = access_lines(manager)
    assert line == (
        r'"GET /a\"b\c\nd\te\x01\x7f\xc3\xa9 HTTP/1.1" "evil \"agent\"\r\n\x08\x0b" "it'
        + "'s"
        + '"'
    )
    assert "\n" not in line and "\r" not in line


def test_access_escaping_matches_cherrypy(manager: LogManager, current, monkeypatch) -> None:
    """Byte for byte as CherryPy escapes them, backslashes and control bytes included."""
    cherrypy = pytest.importorskip("cherrypy")
    from cherrypy import _cplogging

    fmt = '{h} {l} {u} "{r}" {s} {b} "{f}" "{a}" {o} {i}'
    request = FakeRequest(
        request_line='GET /q"uote\ttab\nnl\x01\x7f\u00e9\\x41\x08\x0b HTTP/1.1',
        headers=Headers({"User-Agent": 'a "quoted" agent', "Referer": "it's", "Host": "h"}),
        login="bob",
    )
    current(request, FakeResponse("201 Created"))
    manager.access_log_format = fmt
    (ours,) = access_lines(manager)

    reference = _cplogging.LogManager(logger_root=manager.logger_root + "-cp")
    reference.access_log_format = fmt
    seen = capture(reference.access_log)
    monkeypatch.setattr(cherrypy.serving, "request", request)
    monkeypatch.setattr(cherrypy.serving, "response", FakeResponse("201 Created"))
    cherrypy.serving.response.output_status = b"201 Created"  # CherryPy's is bytes
    try:
        reference.access()
    finally:
        _detach(reference.access_log)
        _detach(reference.error_log)
    assert seen.messages == [ours]


def test_access_format_change_is_picked_up(manager: LogManager, current) -> None:
    current()
    manager.access_log_format = "{s}"
    assert access_lines(manager) == ["200"]
    manager.access_log_format = "{b}"
    assert access_lines(manager) == ["1234"]


def test_access_bad_format_goes_to_error_log(manager: LogManager, current) -> None:
    current()
    errors = capture(manager.error_log)
    manager.access_log_format = "{h} {nope}"
    assert access_lines(manager) == []
    (record,) = errors.records
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_access_skipped_without_handlers(current, monkeypatch) -> None:
    current()
    calls = []
    monkeypatch.setattr(
        LogManager, "_format_access", lambda self, rq, rs: calls.append(1) or "line"
    )
    with unheard_root() as name:
        site = LogManager(logger_root=name)
        app = LogManager(appid=5, logger_root=name)
        site.access()
        app.access()
        assert calls == []

        # A handler anywhere up the chain counts.
        top_seen = capture(logging.getLogger(name))
        app.access()
        assert calls == [1]
        assert top_seen.messages == ["line"]

        # With INFO disabled nothing is formatted either.
        app.access_log.setLevel(logging.WARNING)
        app.access()
        assert calls == [1]


def test_access_skipped_when_the_only_handler_declines_access_lines(current, monkeypatch) -> None:
    # morello serve's error log hangs on the logger root and filters access
    # records out: without an access log, no line may be formatted for it.
    current()
    calls = []
    monkeypatch.setattr(
        LogManager, "_format_access", lambda self, rq, rs: calls.append(1) or "line"
    )
    with unheard_root() as name:
        app = LogManager(appid=6, logger_root=name)
        errors = decline_access(capture(logging.getLogger(name)))
        app.access()
        assert calls == []
        app.error("still logged")
        assert len(errors.records) == 1

        # An access handler beside it is heard again.
        seen = capture(logging.getLogger(f"{name}.access"))
        app.access()
        assert calls == [1]
        assert seen.messages == ["line"]


def test_screen_handler_stream_is_bound_at_enable_time(manager: LogManager, monkeypatch) -> None:
    fake_err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake_err)
    manager.screen = True
    manager.error("bound")
    manager.screen = False
    assert fake_err.getvalue().endswith("  bound\n")


# ------------------------------------------------------- global manager


def test_global_manager_delegates_to_app_log(root_name: str, current) -> None:
    site = GlobalLogManager(logger_root=root_name)
    app_log = LogManager(appid=99, logger_root=root_name)
    app_errors, app_access = capture(app_log.error_log), capture(app_log.access_log)
    current(FakeRequest(app=SimpleNamespace(log=app_log)))

    site("in a request", "APP")
    site.error("also via error()")
    site.access()
    assert len(app_errors.records) == 2
    assert {r.name for r in app_errors.records} == {f"{root_name}.error.99"}
    assert len(app_access.records) == 1


def test_global_manager_without_app_logs_itself(root_name: str, current) -> None:
    site = GlobalLogManager(logger_root=root_name)
    errors, access = capture(site.error_log), capture(site.access_log)
    current(FakeRequest(app=None))
    site("no app")
    site.access()
    current(FakeRequest(app=SimpleNamespace(log=site)))
    site("app log is the site log")
    assert [r.name for r in errors.records] == [f"{root_name}.error"] * 2
    assert len(access.records) == 1


def test_global_manager_outside_requests(root_name: str, monkeypatch) -> None:
    monkeypatch.setattr(serving, "request", None)
    site = GlobalLogManager(logger_root=root_name)
    errors = capture(site.error_log)
    site("idle", "ENGINE")
    assert errors.messages[0].endswith(" ENGINE idle")
