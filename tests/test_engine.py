"""Integration tests for the engine: quickstart in a real process and signals,
the bus life cycle from applications, thread and PID file plugins, and
servers on a UNIX socket and on extra ports.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import get_concurrently

import morello
from morello.process.bus import states
from morello.testing import Client, free_port, running

DEADLINE = 20.0


# -- a morello site in a subprocess -----------------------------------------------------

SITE = textwrap.dedent(
    """\
    import os, signal, sys
    import morello

    port, environment = int(sys.argv[1]), sys.argv[2]

    class Root:
        @morello.expose
        def index(self):
            return "hello from %d" % os.getpid()

        @morello.expose
        def autoreload(self):
            return str(morello.engine.autoreload.thread is not None)

    def say(word):
        print(word, flush=True)

    def serving():
        # The first "main" tick comes from block(), once the bus is STARTED:
        # a signal sent earlier would hit a bus still starting.
        morello.engine.unsubscribe("main", serving)
        say("started")

    morello.engine.subscribe("main", serving)
    morello.engine.subscribe("stop", lambda: say("stop-ran"))
    morello.engine.subscribe("exit", lambda: say("exit-ran"))
    if os.environ.get("MORELLO_TEST_RESTART"):
        # SIGUSR2 re-executes the process, as the autoreloader does.
        morello.engine.signal_handler.set_handler("SIGUSR2", morello.engine.restart)
    config = {"global": {"server.socket_host": "127.0.0.1", "server.socket_port": port}}
    if environment != "default":
        config["global"]["environment"] = environment
    morello.quickstart(Root(), "", config)
    say("quickstart-returned")
    """
)


class Site:
    """A quickstart site in a child process, read line by line from its stdout."""

    def __init__(self, tmp_path: Path, environment: str = "production", **env: str) -> None:
        script = tmp_path / "site.py"
        script.write_text(SITE)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.port), environment],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **env},
        )  # fmt: skip
        self._buffer = b""

    def next_line(self, timeout: float = DEADLINE) -> str:
        """The next line the child prints ('' at end of output)."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, f"no output from the site within {timeout}s; so far {self._buffer!r}"
            chunk = os.read(fd, 4096)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line.decode()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def lines_until_exit(self) -> list[str]:
        lines = []
        while line := self.next_line():
            lines.append(line)
        return lines

    def get(self, path: str) -> str:
        answer = Client("127.0.0.1", self.port).get(path)
        assert answer.status == 200
        return answer.text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        self.proc.stdout.close()  # type: ignore[union-attr]


@pytest.fixture
def site_factory(tmp_path: Path) -> Iterator[Any]:
    sites: list[Site] = []

    def start(environment: str = "production", **env: str) -> Site:
        site = Site(tmp_path, environment, **env)
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.close()


def test_quickstart_serves_and_sigterm_exits_cleanly(site_factory: Any) -> None:
    site = site_factory()
    assert site.next_line() == "started"
    assert site.get("/") == f"hello from {site.proc.pid}"
    assert site.get("/autoreload") == "False"  # production switches it off
    site.proc.send_signal(signal.SIGTERM)
    assert site.lines_until_exit() == ["stop-ran", "exit-ran", "quickstart-returned"]
    assert site.proc.wait(DEADLINE) == 0


def test_autoreload_runs_by_default(site_factory: Any) -> None:
    site = site_factory("default")
    assert site.next_line() == "started"
    assert site.get("/autoreload") == "True"
    site.proc.send_signal(signal.SIGTERM)
    assert site.lines_until_exit()[-1] == "quickstart-returned"
    assert site.proc.wait(DEADLINE) == 0


def test_sighup_exits_a_process_that_is_not_daemonized(site_factory: Any) -> None:
    site = site_factory()
    assert site.next_line() == "started"
    site.proc.send_signal(signal.SIGHUP)
    assert site.lines_until_exit() == ["stop-ran", "exit-ran", "quickstart-returned"]
    assert site.proc.wait(DEADLINE) == 0


def test_restart_re_executes_the_process(site_factory: Any) -> None:
    site = site_factory(MORELLO_TEST_RESTART="1")
    assert site.next_line() == "started"
    site.proc.send_signal(signal.SIGUSR2)
    # The old image stops and exits, then execv starts it again (same pid).
    assert [site.next_line() for _ in range(3)] == ["stop-ran", "exit-ran", "started"]
    assert site.get("/") == f"hello from {site.proc.pid}"
    site.proc.send_signal(signal.SIGTERM)
    assert site.lines_until_exit() == ["stop-ran", "exit-ran", "quickstart-returned"]
    assert site.proc.wait(DEADLINE) == 0


# -- the engine in this process ------------------------------------------------------


class Hello:
    @morello.expose
    def index(self) -> str:
        return "hello"


def refused(client: Client) -> bool:
    try:
        client.get("/")
    except ConnectionRefusedError:
        return True
    return False


def test_stop_start_graceful_cycle() -> None:
    graceful: list[str] = []

    def on_graceful() -> None:
        graceful.append("graceful")

    morello.engine.subscribe("graceful", on_graceful)
    try:
        with running({"": Hello()}) as client:
            assert morello.engine.state is states.STARTED
            morello.engine.stop()
            assert morello.engine.state is states.STOPPED
            assert refused(client)
            morello.engine.start()
            assert morello.engine.state is states.STARTED
            assert client.get("/").text == "hello"
            morello.engine.graceful()
            assert graceful == ["graceful"]
            assert morello.server.running
            assert client.get("/").text == "hello"
        assert morello.engine.state is states.EXITING
        assert refused(client)
    finally:
        morello.engine.unsubscribe("graceful", on_graceful)


def test_start_with_callback() -> None:
    seen: list[Any] = []

    def callback(path: str, tag: str = "") -> None:
        seen.append((morello.engine.state, Client("127.0.0.1", morello.server.socket_port)
                     .get(path).text, tag))  # fmt: skip

    with running({"": Hello()}):
        morello.engine.stop()
        thread = morello.engine.start_with_callback(callback, ("/",), {"tag": "kw"})
        thread.join(DEADLINE)
    assert seen == [(states.STARTED, "hello", "kw")]


def test_applications_subscribe_and_publish() -> None:
    received: list[Any] = []

    def double(value: int) -> int:
        received.append(value)
        return value * 2

    class Root:
        @morello.expose
        def index(self, value: str) -> str:
            return repr(morello.engine.publish("app-channel", int(value)))

    # before_request / after_request frame every request (after_request once
    # the response is out, hence the semaphore).
    requests: list[str] = []
    finished = threading.Semaphore(0)

    def before() -> None:
        requests.append("before")

    def after() -> None:
        requests.append("after")
        finished.release()

    morello.engine.subscribe("app-channel", double)
    morello.engine.subscribe("app-channel", lambda value: value + 1, priority=10)
    morello.engine.subscribe("before_request", before)
    morello.engine.subscribe("after_request", after)
    try:
        with running({"": Root()}) as client:
            assert client.get("/?value=5").text == "[6, 10]"
            assert finished.acquire(timeout=10)
            assert client.get("/?value=0").text == "[1, 0]"
            assert finished.acquire(timeout=10)
    finally:
        morello.engine.listeners.pop("app-channel")
        morello.engine.unsubscribe("before_request", before)
        morello.engine.unsubscribe("after_request", after)
    assert received == [5, 0]
    assert requests == ["before", "after", "before", "after"]


def test_plugin_methods_subscribe_to_the_request_channels() -> None:
    """The engine has before_request and after_request from the start, as CherryPy's has."""
    calls: list[str] = []
    finished = threading.Semaphore(0)

    class PerRequest(morello.process.plugins.SimplePlugin):
        def before_request(self) -> None:
            calls.append("before")

        def after_request(self) -> None:
            calls.append("after")
            finished.release()

    class Root:
        @morello.expose
        def index(self) -> str:
            return "ok"

    plugin = PerRequest(morello.engine)
    plugin.subscribe()
    try:
        with running({"": Root()}) as client:
            assert client.get("/").text == "ok"
            assert finished.acquire(timeout=10)
    finally:
        plugin.unsubscribe()
    assert calls == ["before", "after"]


def test_thread_manager_reports_real_server_threads() -> None:
    started: list[tuple[int, int]] = []
    stopped: list[int] = []
    both_inside = threading.Barrier(2, timeout=10)

    def on_start_thread(index: int) -> None:
        started.append((index, threading.get_ident()))

    def on_stop_thread(index: int) -> None:
        stopped.append(index)

    class Root:
        @morello.expose
        def index(self, wait: str = "") -> str:
            if wait:
                both_inside.wait()
            return str(threading.get_ident())

    morello.engine.subscribe("start_thread", on_start_thread)
    morello.engine.subscribe("stop_thread", on_stop_thread)
    try:
        with running({"": Root()}, global_config={"server.thread_pool": 2}) as client:
            idents = get_concurrently(client, "/?wait=1", timeout=DEADLINE)
            for _ in range(4):  # threads already seen are not reported again
                idents.append(client.get("/").text)
            assert stopped == []
    finally:
        morello.engine.unsubscribe("start_thread", on_start_thread)
        morello.engine.unsubscribe("stop_thread", on_stop_thread)
        morello.server.thread_pool = 10
    assert sorted(index for index, _ in started) == [1, 2]
    assert {str(ident) for _, ident in started} == set(idents)
    assert threading.get_ident() not in {ident for _, ident in started}
    assert sorted(stopped) == [1, 2]


def test_pid_file_plugin_from_engine_config(tmp_path: Path) -> None:
    pidfile = tmp_path / "site.pid"
    morello.engine.pidfile = morello.plugins.PIDFile(morello.engine, "unset")
    try:
        global_config = {"engine.pidfile.pidfile": str(pidfile), "engine.pidfile.on": True}
        with running({"": Hello()}, global_config=global_config):
            assert pidfile.read_text() == f"{os.getpid()}\n"
        assert not pidfile.exists()
    finally:
        morello.engine.pidfile.unsubscribe()
        del morello.engine.pidfile


# -- where the servers listen ----------------------------------------------------------


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def test_server_on_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    try:
        with running({"": Hello()}, global_config={"server.socket_file": path}):
            assert morello.server.bind_addr == path
            connection = UnixConnection(path)
            try:
                connection.request("GET", "/")
                answer = connection.getresponse()
                assert (answer.status, answer.read()) == (200, b"hello")
            finally:
                connection.close()
            # As in CherryPy, the server's "base" outside a request is the socket path.
            assert morello.url("/x") == path + "/x"
    finally:
        morello.server.socket_file = None
    assert morello.server.bind_addr == ("127.0.0.1", morello.server.socket_port)


def test_extra_server_from_config_answers_on_both_ports() -> None:
    second_port = free_port()
    global_config = {"server.second.socket_host": "127.0.0.1",
                     "server.second.socket_port": second_port}  # fmt: skip
    try:
        with running({"": Hello()}, global_config=global_config) as client:
            second = Client("127.0.0.1", second_port)
            assert morello.servers["second"].running
            assert client.get("/").text == "hello"
            assert second.get("/").text == "hello"
        assert refused(second)
    finally:
        extra = morello.servers.pop("second", None)
        if extra is not None:
            extra.unsubscribe()
