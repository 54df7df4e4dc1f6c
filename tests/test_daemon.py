"""``python -m morello``, CherryPy's cherryd: one real process per test, on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from bus_support import python_env
from morello.master.ctl import process_gone
from prefork_support import wait_for

from morello.testing import Client, free_port

DEADLINE = 30.0

SITE = '''
import os
import time

import morello

VERSION = {version!r}
STARTED = time.time()


class Root:
    @morello.expose
    def index(self):
        return f"v{{VERSION}} from {{os.getpid()}}"

    @morello.expose
    def config(self, key):
        return repr(morello.request.config.get(key))

    @morello.expose
    def environment(self):
        reloading = morello.engine.autoreload.thread is not None
        return repr((morello.config.get("environment"), reloading))

    @morello.expose
    def watched(self):
        # Whether the autoreloader has seen this file's modification time yet.
        return repr(__file__ in morello.engine.autoreload.mtimes)


morello.tree.mount(Root(), "/")
'''


class Cherryd:
    """``python -m morello`` run from ``tmp_path/run``, with the site module in ``tmp_path/app``."""

    def __init__(self, tmp_path: Path) -> None:
        self.app_dir = tmp_path / "app"
        self.app_dir.mkdir()
        # Not the directory the module is in: -P must make it importable.
        self.cwd = tmp_path / "run"
        self.cwd.mkdir()
        self.port = free_port()
        self.pidfile = tmp_path / "site.pid"
        self.config = tmp_path / "site.conf"
        self.stderr = tmp_path / "stderr.log"
        self.error_log = tmp_path / "error.log"
        self.write_site("1")
        self.write_config()
        self.processes: list[subprocess.Popen[bytes]] = []

    def write_site(self, version: str) -> None:
        (self.app_dir / "cherryd_site.py").write_text(SITE.format(version=version))

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            textwrap.dedent(f"""\
            [global]
            server.socket_host = "127.0.0.1"
            server.socket_port = {self.port}
            log.screen = False
            log.error_file = {str(self.error_log)!r}
            engine.autoreload.frequency = 0.2
            {extra}
            [/]
            site.greeting = "from the config file"
            """)
        )

    def command(self, *options: str, module: str = "cherryd_site") -> list[str]:
        return [sys.executable, "-m", "morello", "-c", str(self.config), "-i", module,
                "-P", str(self.app_dir), "-p", str(self.pidfile), *options]  # fmt: skip

    def start(self, *options: str, module: str = "cherryd_site") -> subprocess.Popen[bytes]:
        # A rewritten module of the same size within the same second would
        # look unchanged to the bytecode cache: the re-executed process must
        # compile the source.
        env = {**python_env(), "PYTHONDONTWRITEBYTECODE": "1"}
        with self.stderr.open("ab") as stderr:
            process = subprocess.Popen(
                self.command(*options, module=module), cwd=self.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        self.processes.append(process)
        return process

    def get(self, path: str) -> str:
        answer = Client("127.0.0.1", self.port).get(path)
        assert answer.status == 200, answer.text
        return answer.text

    def pid_in_file(self) -> int | None:
        try:
            text = self.pidfile.read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.endswith("\n") else None

    def serving_pid(self) -> int:
        """The pid the site answers from, once it answers and has written its pid file."""
        pid = wait_for(lambda: self.pid_in_file(), DEADLINE, "the pid file")
        wait_for(lambda: self.get("/").endswith(f" from {pid}"), DEADLINE, f"{pid} serving")
        return pid

    def close(self) -> None:
        pid = self.pid_in_file()
        if pid is not None and not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(DEADLINE)


@pytest.fixture
def cherryd(tmp_path: Path) -> Iterator[Cherryd]:
    site = Cherryd(tmp_path)
    yield site
    site.close()


def test_serves_the_imported_modules_app_and_sigterm_stops_it(cherryd: Cherryd) -> None:
    process = cherryd.start("-e", "production")
    assert cherryd.serving_pid() == process.pid
    assert cherryd.get("/") == f"v1 from {process.pid}"
    # The file is the application's config too, since it is the only one mounted.
    assert cherryd.get("/config?key=site.greeting") == repr("from the config file")
    # -e applies the environment: production switches the autoreloader off.
    assert cherryd.get("/environment") == repr(("production", False))
    process.send_signal(signal.SIGTERM)
    assert process.wait(DEADLINE) == 0
    assert not cherryd.pidfile.exists()


def test_serves_a_grafted_wsgi_application(cherryd: Cherryd) -> None:
    (cherryd.app_dir / "cherryd_wsgi.py").write_text(
        textwrap.dedent("""\
        import morello

        def hello(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"wsgi hello"]

        morello.tree.graft(hello, "")
        """)
    )
    process = cherryd.start(module="cherryd_wsgi")
    pid = wait_for(lambda: cherryd.pid_in_file(), DEADLINE, "the pid file")
    assert pid == process.pid
    wait_for(lambda: cherryd.get("/") == "wsgi hello", DEADLINE, "the WSGI application")
    process.send_signal(signal.SIGTERM)
    assert process.wait(DEADLINE) == 0


def test_daemonizes_and_restarts_on_sighup(cherryd: Cherryd) -> None:
    launcher = cherryd.start("-d")
    # The process started exits once it has forked the daemon.
    assert launcher.wait(DEADLINE) == 0
    daemon = cherryd.serving_pid()
    assert daemon != launcher.pid
    assert os.getsid(daemon) != os.getsid(0)  # detached from our session

    # A daemon restarts on SIGHUP: it runs the same command again, which
    # daemonizes again and writes its new pid.
    os.kill(daemon, signal.SIGHUP)
    wait_for(lambda: process_gone(daemon), DEADLINE, "the first daemon gone")
    restarted = cherryd.serving_pid()
    assert restarted != daemon

    os.kill(restarted, signal.SIGTERM)
    wait_for(lambda: process_gone(restarted), DEADLINE, "the daemon gone")
    assert not cherryd.pidfile.exists()


def test_autoreload_re_executes_the_command_when_a_module_changes(cherryd: Cherryd) -> None:
    process = cherryd.start()
    assert cherryd.serving_pid() == process.pid
    assert cherryd.get("/environment") == repr((None, True))
    wait_for(lambda: cherryd.get("/watched") == "True", DEADLINE, "the module watched")
    cherryd.write_site("2")
    # execv: the same process, running the same command line on the new code.
    wait_for(lambda: cherryd.get("/") == f"v2 from {process.pid}", DEADLINE, "version 2")
    # The server answers before the bus has run its last start listeners; a SIGTERM
    # before then is a start interrupted (exit status 70), as in CherryPy.
    wait_for(lambda: cherryd.error_log.read_text().count("Bus STARTED") == 2, DEADLINE,
             "the new process started")  # fmt: skip
    process.send_signal(signal.SIGTERM)
    assert process.wait(DEADLINE) == 0, cherryd.error_log.read_text()


def test_a_failing_start_exits_with_status_1(cherryd: Cherryd) -> None:
    with socket.create_server(("127.0.0.1", cherryd.port)):
        process = cherryd.start()
        assert process.wait(DEADLINE) == 1
    assert f"Port {cherryd.port} not free" in cherryd.error_log.read_text()
    assert not cherryd.pidfile.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-f"], "FastCGI serving is not supported"),
        (["-s", "-x"], "SCGI and CGI serving is not supported"),
        (["-i", "no_such_cherryd_module"], "no module named 'no_such_cherryd_module'"),
        (["-e", "no_such_environment"], "Unknown environment 'no_such_environment'"),
        (["-c", "/nonexistent/site.conf"], "bad config file '/nonexistent/site.conf'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_options_are_one_line_errors_with_status_2(
    cherryd: Cherryd, options: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "morello", *options], cwd=cherryd.cwd, env=python_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("python -m morello: error: ") and message in lines[-1]
    assert len(lines) <= 2  # the usage line of an unknown option, and the error


def test_bad_config_value_names_file_section_and_key(cherryd: Cherryd) -> None:
    cherryd.write_config("server.thread_pool = ten")
    done = subprocess.run(
        cherryd.command(), cwd=cherryd.cwd, env=python_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"python -m morello: error: bad config file {str(cherryd.config)!r}")
    assert "section [global], key 'server.thread_pool': cannot parse value 'ten'" in line
