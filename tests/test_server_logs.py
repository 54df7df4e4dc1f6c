"""``morello serve``'s error and access logs: one format, files, rotation, daemons."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from morello.master import ctl
from morello.master.ctl import process_gone
from prefork_support import DEADLINE, MasterProcess, running_master, wait_for, write_app

from morello.testing import free_port

pytestmark = pytest.mark.timeout(120)

#: A line of the error log: time, pid, level, logger name, message.
LINE = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] \[(?P<pid>\d+)\] "
    r"\[(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\] (?P<name>morello[\w.]*): (?P<message>.*)"
)
#: The framework's own timestamp, which error-log lines must not repeat.
FRAMEWORK_STAMP = re.compile(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\]")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def log_lines(path: Path) -> list[re.Match[str]]:
    """The records of an error log: lines in the one format (a traceback may follow one)."""
    lines = path.read_text().splitlines() if path.exists() else []
    assert not lines or LINE.fullmatch(lines[0]), lines[0]
    return [match for match in map(LINE.fullmatch, lines) if match]


def pids_in(path: Path) -> set[int]:
    return {int(match["pid"]) for match in log_lines(path)}


def test_master_and_workers_write_one_format_to_the_log_files(app_dir: Path) -> None:
    args = ("--error-logfile", "error.log", "--access-logfile", "access.log")
    with running_master(app_dir, *args, workers=2) as master:
        workers = master.worker_pids()
        for n in range(4):
            assert requests.get(f"{master.url}/pid?n={n}", timeout=10).status_code == 200
        access = app_dir / "access.log"
        wait_for(lambda: access.read_text().count("/pid?n=") == 4, what="4 access lines")
        error = app_dir / "error.log"
        wait_for(lambda: workers <= pids_in(error), what="every worker in the error log")
    lines = log_lines(error)
    assert len(lines) == len(error.read_text().splitlines())  # every line in the one format
    assert master.pid in pids_in(error)
    assert any(m["name"] == "morello.master" and "ready" in m["message"] for m in lines)
    # The framework's error log (ENGINE messages of each worker) in the same format.
    engine = [m for m in lines if m["message"].startswith("ENGINE ")]
    assert {int(m["pid"]) for m in engine} >= workers
    assert not any(FRAMEWORK_STAMP.search(m["message"]) for m in lines)
    # Nothing of it left on the terminal, and no access line in the error log.
    assert "ENGINE" not in master.log() and "GET /pid" not in error.read_text()
    for line in access.read_text().splitlines():
        assert re.fullmatch(
            r'127\.0\.0\.1 - - \[[^]]+\] "GET /pid\?n=\d HTTP/1\.1" 200 \d+ "" "[^"]+"', line
        ), line


def test_a_worker_that_cannot_boot_says_why_in_the_error_log(app_dir: Path) -> None:
    write_app(app_dir, extra=(
        "def connect():\n"
        "    raise ConnectionRefusedError('no database')\n"
        "morello.engine.subscribe('start', connect)"
    ))  # fmt: skip
    master = MasterProcess(
        app_dir, "--error-logfile", "error.log", "--max-boot-failures", "1", workers=1
    )
    assert master.start().wait_exit() != 0
    said = [m for m in log_lines(app_dir / "error.log") if m["name"] == "morello.worker"]
    assert len(said) == 1 and int(said[0]["pid"]) != master.pid
    assert said[0]["level"] == "ERROR" and "cannot boot" in said[0]["message"]
    assert "no database" in said[0]["message"]


def test_access_log_settings_from_the_config_file(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text(
        "[global]\n"
        "master.access_logfile = 'requests.log'\n"
        "master.access_log_format = '{s} {r} {o}'\n"
    )
    with running_master(app_dir, "-c", "site.conf", workers=1) as master:
        requests.get(f"{master.url}/pid?x=1", timeout=10)
        log = app_dir / "requests.log"
        wait_for(lambda: log.exists() and log.read_text(), what="the access line")
    assert log.read_text() == f"200 GET /pid?x=1 HTTP/1.1 127.0.0.1:{master.port}\n"


def test_a_bad_access_log_format_stops_the_start(app_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", "app:Root",
         "--access-log-format", "{h} {nope}"],
        cwd=app_dir, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown field(s) {nope}" in result.stderr and result.stderr.count("\n") == 1


def test_usr1_reopens_the_server_logs_in_master_and_workers(app_dir: Path) -> None:
    args = ("--error-logfile", "error.log", "--access-logfile", "access.log")
    with running_master(app_dir, *args, workers=2) as master:
        workers = master.worker_pids()
        error, access = app_dir / "error.log", app_dir / "access.log"
        wait_for(lambda: workers <= pids_in(error), what="every worker in the error log")
        error.rename(app_dir / "error.log.1")
        access.rename(app_dir / "access.log.1")
        master.send(signal.SIGUSR1)
        # Each process says so in the new file once it reopened it.
        wait_for(
            lambda: {master.pid, *workers} <= {
                int(m["pid"]) for m in log_lines(error) if "reopened" in m["message"]
            },
            what="master and workers reopened the error log",
        )
        before = (app_dir / "access.log.1").read_text()
        for n in range(6):
            requests.get(f"{master.url}/pid?after={n}", timeout=10)
        wait_for(lambda: access.read_text().count("/pid?after=") == 6, what="new access lines")
        assert (app_dir / "access.log.1").read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--daemon needs --error-logfile FILE"),
        (["--error-logfile", "-"], "--daemon needs --error-logfile FILE"),
        (["--error-logfile", "e.log", "--access-logfile", "-"], "--daemon needs --access-logfile"),
    ],
)
def test_a_daemon_needs_log_files(app_dir: Path, args: list[str], message: str) -> None:
    pidfile = app_dir / "daemon.pid"
    result = subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", "app:Root", "-D",
         "-b", f"127.0.0.1:{free_port()}", "--pidfile", str(pidfile), *args],
        cwd=app_dir, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    if result.returncode == 0:  # it went into the background anyway: do not leave it there
        os.kill(wait_for(lambda: int(pidfile.read_text()), what="pid file"), signal.SIGTERM)
    assert result.returncode == 2
    assert result.stderr.startswith("morello serve: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_daemon_logs_to_its_error_logfile_and_ctl_stops_it(app_dir: Path) -> None:
    error = app_dir / "error.log"
    master = MasterProcess(app_dir, "-D", "--error-logfile", str(error), workers=1)
    assert master.start().wait_exit() == 0  # the command returns; the daemon serves
    pid = wait_for(lambda: int(Path(master.pidfile).read_text()), what="the daemon's pid file")
    try:
        wait_for(lambda: "all 1 worker(s) ready" in error.read_text(), what="workers ready")
        assert requests.get(master.url, timeout=10).status_code == 200
        assert pid in pids_in(error)
        assert ctl.main(["stop", "--pidfile", master.pidfile, "--wait"]) == 0
        assert f"master {pid} exiting" in error.read_text()
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


#: Sets up the server's logs as ``settings`` say, then asks an application's
#: log for an access line, counting the lines formatted.
COUNT_FORMATTED = """
import sys
from morello.logs import LogManager
from morello.master import server_logs
from morello.master.settings import Settings

formatted = []
LogManager._format_access = lambda self, request, response: formatted.append(1) or "line"
server_logs.configure(Settings(app="app:Root", access_logfile=sys.argv[1] or None))
LogManager(appid=1).access()
print(len(formatted))
"""


@pytest.mark.parametrize("access_logfile", ["", "access.log"])
def test_access_lines_are_formatted_only_for_an_access_log(
    tmp_path: Path, access_logfile: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", COUNT_FORMATTED, access_logfile],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["1" if access_logfile else "0"]
    if access_logfile:
        assert (tmp_path / access_logfile).read_text() == "line\n"
