"""The worker process, driven the way the master drives it.

Each test plays the master: it binds a listening socket on loopback,
creates the channel socketpair, forks, and calls ``morello.worker.run`` in
the child, then talks HTTP to the shared socket and reads the worker's
messages. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import worker_apps
from morello.master.channel import LATENCY_BUCKETS, MessageReader
from morello.worker import (
    EXIT_ABORTED,
    EXIT_BOOT_FAILURE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_ORPHANED,
    WorkerOptions,
    run,
)
from morello.worker.stats import RequestStats, StatsMiddleware

import morello
from morello.http.native import NativeRequest, Peer
from morello.http.parser import HeadParser

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="worker processes are tested on Linux"
)

#: Generous bound for anything that should take well under a second.
WAIT = 10.0


# -- playing the master ------------------------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    # Workers make the shared file description non-blocking anyway; the test
    # process uses it the same way (select, then accept).
    sock.setblocking(False)
    return sock


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = listening_socket()
    yield sock
    sock.close()


def become_worker(
    stderr_path: Path, options: dict[str, Any], before: Callable[[], None] | None = None
) -> None:
    """In a forked child: send output to ``stderr_path`` and run the worker.

    ``before`` runs first, to leave behind what a master might (signal handlers...).
    """
    try:
        if before is not None:
            before()
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        # The screen log handlers were made for pytest's captured stderr.
        morello.log.screen = False
        morello.log.screen = True
        # SIGABRT tests must not leave core files behind.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        run(WorkerOptions(**options))
    finally:
        os._exit(99)  # run() never returns; never fall back into pytest


class Worker:
    """A forked worker, seen from the master's side."""

    def __init__(self, pid: int, channel: socket.socket, stderr_path: Path) -> None:
        self.pid = pid
        self.channel = channel
        self.stderr_path = stderr_path
        self.reader = MessageReader()
        self.pending: list[dict[str, Any]] = []
        #: Every message received so far, in order.
        self.messages: list[dict[str, Any]] = []
        self.pidfd = os.pidfd_open(pid)
        self.status: int | None = None

    # messages

    def next_message(self, timeout: float = WAIT) -> dict[str, Any] | None:
        """The next message, or None on end-of-file or timeout."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.channel], [], [], remaining)[0]:
                return None
            data = self.channel.recv(65536)
            if not data:
                return None
            self.pending.extend(self.reader.feed(data))
        message = self.pending.pop(0)
        self.messages.append(message)
        return message

    def wait_for(
        self,
        message_type: str,
        timeout: float = WAIT,
        where: Callable[[dict[str, Any]], bool] = lambda message: True,
    ) -> dict[str, Any]:
        """Skip messages until one of ``message_type`` (matching ``where``) arrives."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.next_message(max(deadline - time.monotonic(), 0))
            if message is None:
                seen = [m["type"] for m in self.messages]
                raise AssertionError(
                    f"no {message_type!r} message; got {seen}; stderr:\n{self.stderr()}"
                )
            if message["type"] == message_type and where(message):
                return message

    def types(self) -> list[str]:
        return [message["type"] for message in self.messages]

    # the process

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait for the process to end; return its wait status."""
        if self.status is None:
            if not select.select([self.pidfd], [], [], timeout)[0]:
                raise AssertionError(f"worker {self.pid} still running after {timeout}s")
            _, self.status = os.waitpid(self.pid, 0)
        return self.status

    def exit_code(self, timeout: float = WAIT) -> int:
        return os.waitstatus_to_exitcode(self.wait_exit(timeout))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -1
        os.close(self.pidfd)
        self.channel.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``spawn(sockets, app, **options)`` forks a worker; all are killed at the end."""
    workers: list[Worker] = []

    def spawn_worker(
        sockets: list[socket.socket],
        app: Any,
        before: Callable[[], None] | None = None,
        **options: Any,
    ) -> Worker:
        number = len(workers) + 1
        master_end, worker_end = socket.socketpair()
        stderr_path = tmp_path / f"worker{number}.stderr"
        options = {
            "number": number,
            "app": app,
            "sockets": sockets,
            "channel": worker_end,
            "master_pid": os.getpid(),
            "heartbeat_interval": 0.05,
            "threads": 4,
            **options,
        }
        pid = os.fork()
        if pid == 0:
            master_end.close()
            become_worker(stderr_path, options, before)
        worker_end.close()
        worker = Worker(pid, master_end, stderr_path)
        workers.append(worker)
        return worker

    yield spawn_worker
    for worker in workers:
        worker.close()


# -- talking HTTP --------------------------------------------------------------------


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def connect(sock: socket.socket) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port_of(sock), timeout=WAIT)


def get(sock: socket.socket, path: str = "/") -> tuple[int, str, http.client.HTTPResponse]:
    """One request on a new connection: (status, body, response)."""
    connection = connect(sock)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(), response
    finally:
        connection.close()


def send_get(sock: socket.socket, path: str) -> socket.socket:
    """Send a request on a raw connection without waiting for the answer."""
    client = socket.create_connection(("127.0.0.1", port_of(sock)), timeout=WAIT)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return client


def read_response(client: socket.socket) -> tuple[int, str, http.client.HTTPResponse]:
    response = http.client.HTTPResponse(client)
    response.begin()
    return response.status, response.read().decode(), response


def closed_by_peer(client: socket.socket, timeout: float = WAIT) -> bool:
    """Whether the server closes ``client`` within ``timeout`` (sending nothing)."""
    if not select.select([client], [], [], timeout)[0]:
        return False
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def stop(worker: Worker) -> None:
    worker.signal(signal.SIGINT)
    assert worker.exit_code() == EXIT_OK


# -- booting -------------------------------------------------------------------------


def test_boots_then_serves(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", app_name="hello")
    assert worker.next_message()["type"] == "booting"
    ready = worker.next_message()
    assert ready["type"] == "ready"
    assert ready["pid"] == worker.pid

    # Ready means accepting: the first request is answered by this worker.
    assert get(listener)[:2] == (200, "hello from Root")
    cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")[0]
    assert cmdline.startswith(b"morello: worker 1 [hello]")
    stop(worker)
    assert worker.wait_for("exiting")["reason"] == "SIGINT"


def test_heartbeat_counts_requests(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", threads=3, min_threads=3)
    worker.wait_for("ready")
    for path in ("/", "/", "/", "/nowhere", "/fail"):
        get(listener, path)
    beat = worker.wait_for("heartbeat", where=lambda message: message["requests"] == 5)
    assert beat["status"] == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 1}
    assert beat["latency_count"] == 5
    assert len(beat["latency_buckets"]) == len(LATENCY_BUCKETS) + 1
    assert sum(beat["latency_buckets"]) == 5
    assert beat["latency_sum"] > 0
    assert beat["in_flight"] == beat["busy_threads"] == 0
    assert beat["oldest_request_age"] == 0
    assert beat["threads"] == 3
    stop(worker)


def test_heartbeat_shows_requests_in_flight(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")
    client = send_get(listener, "/slow?seconds=1")
    beat = worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 1)
    assert beat["busy_threads"] == 1
    assert beat["oldest_request_age"] > 0
    assert read_response(client)[:2] == (200, "slept 1")
    client.close()
    stop(worker)


def test_heartbeat_names_the_oldest_request(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", threads=2)
    worker.wait_for("ready")
    assert worker.wait_for("heartbeat")["oldest_request"] is None
    first = send_get(listener, "/slow/?seconds=2")  # the same handler, another path
    worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 1)
    second = send_get(listener, "/slow?seconds=1")
    beat = worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 2)
    # The first request is the older one: its path, and the oldest age.
    assert beat["oldest_request"]["path"] == "/slow/"
    assert beat["oldest_request"]["age"] == pytest.approx(beat["oldest_request_age"], abs=0.01)
    for client in (first, second):
        assert read_response(client)[0] == 200
        client.close()
    stop(worker)


def test_heartbeat_threads_follow_the_pool(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", threads=4)
    assert worker.wait_for("heartbeat")["threads"] == 1  # min_threads
    clients = [send_get(listener, "/slow?seconds=1") for _ in range(4)]
    # Four requests blocked at once: the pool grew to its maximum for them.
    beat = worker.wait_for("heartbeat", where=lambda message: message["busy_threads"] == 4)
    assert beat["threads"] == 4
    for client in clients:
        assert read_response(client)[:2] == (200, "slept 1")
        client.close()
    stop(worker)


@pytest.mark.parametrize(
    ("app", "body"),
    [
        ("worker_apps:Root", "hello from Root"),
        ("worker_apps:root", "hello from Root"),
        ("worker_apps:application", "hello from Root"),
        ("worker_apps:wsgi_app", "hello from wsgi_app"),
        ("worker_apps:create_root", "hello from Root"),
        ("worker_apps:create_wsgi", "hello from wsgi_app"),
        ("worker_apps_mounted", "hello from the mounted module"),
        (worker_apps.wsgi_app, "hello from wsgi_app"),  # preloaded by the master
        (worker_apps.Root, "hello from Root"),
    ],
    ids=lambda value: value if isinstance(value, str) else getattr(value, "__name__", None),
)
def test_application_forms(listener, spawn, app, body):
    worker = spawn([listener], app)
    worker.wait_for("ready")
    assert get(listener)[:2] == (200, body)
    stop(worker)


def test_engine_start_hooks_run_without_autoreloader(listener, spawn):
    worker = spawn([listener], "worker_apps_mounted")
    worker.wait_for("ready")
    assert get(listener, "/engine")[:2] == (200, "started=True autoreload=False")
    stop(worker)


def test_config_file_is_global_and_app_config(listener, spawn, tmp_path):
    config = tmp_path / "app.conf"
    config.write_text(
        "[global]\n"
        "server.socket_timeout = 3\n"
        "[/]\n"
        "tools.response_headers.on = True\n"
        "tools.response_headers.headers = [('X-From-Config', 'yes')]\n"
    )
    worker = spawn([listener], "worker_apps:Root", config_file=str(config))
    worker.wait_for("ready")
    status, _body, response = get(listener)
    assert status == 200
    assert response.getheader("X-From-Config") == "yes"
    stop(worker)


def test_serves_every_inherited_socket(spawn):
    first, second = listening_socket(), listening_socket()
    with first, second:
        worker = spawn([first, second], "worker_apps:wsgi_app", threads=2, min_threads=2)
        worker.wait_for("ready")
        assert get(first)[:2] == (200, "hello from wsgi_app")
        assert get(second)[:2] == (200, "hello from wsgi_app")
        assert worker.wait_for("heartbeat")["threads"] == 4
        stop(worker)


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("worker_apps_nonexistent", "no module named 'worker_apps_nonexistent'"),
        ("worker_apps:nothing_here", "module 'worker_apps' has no attribute 'nothing_here'"),
        ("not a spec!", "bad application 'not a spec!'"),
        ("worker_apps:", "bad application 'worker_apps:'"),
        ("json", "module 'json' mounted no application on morello.tree"),
        ("worker_apps:not_an_app", "worker_apps:not_an_app is an int, not an application"),
        ("worker_apps:NeedsArguments", "constructor needs arguments (database)"),
    ],
)
def test_bad_application_is_a_boot_failure(listener, spawn, app, reason):
    worker = spawn([listener], app)
    assert worker.exit_code() == EXIT_BOOT_FAILURE
    lines = worker.stderr().splitlines()
    assert len(lines) == 1, lines
    assert "cannot boot: " in lines[0]
    assert reason in lines[0]
    assert worker.types() == []  # not read yet
    assert worker.next_message()["type"] == "booting"
    exiting = worker.next_message()
    assert exiting["type"] == "exiting"
    assert exiting["reason"] == "boot_failure"
    assert reason in exiting["error"]


def test_import_error_inside_the_application_is_a_boot_failure(listener, spawn):
    worker = spawn([listener], "worker_apps_broken:app")
    assert worker.exit_code() == EXIT_BOOT_FAILURE
    lines = worker.stderr().splitlines()
    # The traceback shows where, the last line says what.
    assert "import morello_no_such_dependency" in worker.stderr()
    assert lines[-1].endswith(
        "cannot boot: cannot import 'worker_apps_broken': "
        "No module named 'morello_no_such_dependency'"
    )


def test_failing_engine_start_is_a_boot_failure(listener, spawn):
    worker = spawn([listener], "worker_apps_bad_start:root")
    assert worker.exit_code() == EXIT_BOOT_FAILURE
    assert worker.stderr().splitlines()[-1].endswith(
        "cannot boot: the engine did not start: ConnectionRefusedError: database is down"
    )
    assert worker.wait_for("exiting")["reason"] == "boot_failure"
    assert "ready" not in worker.types()


def test_unreadable_config_file_is_a_boot_failure(listener, spawn, tmp_path):
    missing = tmp_path / "missing.conf"
    worker = spawn([listener], "worker_apps:Root", config_file=str(missing))
    assert worker.exit_code() == EXIT_BOOT_FAILURE
    (line,) = worker.stderr().splitlines()
    assert f"cannot boot: bad config file {str(missing)!r}" in line


def test_sigterm_while_booting_exits_at_once(listener, spawn):
    worker = spawn([listener], "worker_apps_slow_import:root")
    assert worker.wait_for("booting")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.exit_code(timeout=5) == EXIT_OK
    assert time.monotonic() - started < 5
    assert worker.wait_for("exiting")["reason"] == "SIGTERM"
    assert "ready" not in worker.types()


def test_sigterm_while_booting_stops_the_boot_where_it_is(listener, spawn, tmp_path, monkeypatch):
    """Nothing of the boot runs after the signal: no server starts, so no connection is
    accepted and then dropped with the process (an exit from another thread raced that)."""
    marker = tmp_path / "went-on"
    monkeypatch.setenv("MORELLO_TEST_MARKER", str(marker))
    worker = spawn([listener], "worker_apps_term_at_start:root")
    assert worker.exit_code() == EXIT_OK
    assert worker.wait_for("exiting")["reason"] == "SIGTERM"
    assert "ready" not in worker.types()
    assert not marker.exists(), marker.read_text()


def test_only_the_main_thread_takes_signals_while_booting(listener, spawn):
    """Helper threads block signals, so SIGTERM interrupts the main thread's slow import."""
    worker = spawn([listener], "worker_apps_slow_import:root")
    assert worker.wait_for("booting")
    sigterm = 1 << (signal.SIGTERM - 1)
    blocked = {}
    for task in os.listdir(f"/proc/{worker.pid}/task"):
        with open(f"/proc/{worker.pid}/task/{task}/status") as status:
            fields = dict(line.split(":\t", 1) for line in status if ":\t" in line)
        blocked[int(task)] = bool(int(fields["SigBlk"], 16) & sigterm)
    assert len(blocked) > 1, blocked
    main = blocked.pop(worker.pid)
    assert not main and all(blocked.values()), (main, blocked)


def test_what_the_master_left_behind_is_reset(listener, spawn, tmp_path):
    """Inherited handlers, wakeup fd and ignored signals do not leak into the worker."""
    wakeup_reader, wakeup_writer = os.pipe()
    os.set_blocking(wakeup_writer, False)

    def like_a_master() -> None:
        os.close(wakeup_reader)
        signal.set_wakeup_fd(wakeup_writer)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, lambda signum, frame: print("master handler ran"))

    worker = spawn([listener], "worker_apps:Root", before=like_a_master)
    os.close(wakeup_writer)
    try:
        worker.wait_for("ready")
        status = Path(f"/proc/{worker.pid}/status").read_text()
        ignored = int(status.split("SigIgn:")[1].split()[0], 16)
        assert not ignored & (1 << (signal.SIGCHLD - 1))
        assert ignored & (1 << (signal.SIGPIPE - 1))  # as in any Python process

        # The worker's signals no longer wake up the master...
        worker.signal(signal.SIGUSR1)
        wait_for_text(worker, "reopened")
        assert not select.select([wakeup_reader], [], [], 0)[0]
        # ...and the master's handlers are gone: SIGUSR2 does what it does by default.
        worker.signal(signal.SIGUSR2)
        assert os.WTERMSIG(worker.wait_exit()) == signal.SIGUSR2
        assert "master handler ran" not in worker.stderr()
    finally:
        os.close(wakeup_reader)


def test_exits_when_the_master_is_not_its_parent(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", master_pid=-1)
    assert worker.exit_code() == EXIT_ORPHANED
    assert worker.wait_for("exiting")["reason"] == "orphaned"
    assert "booting" not in worker.types()


# -- draining ------------------------------------------------------------------------


def test_sigterm_drains_without_dropping_anything(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")

    # A keep-alive connection that will send one more request while draining,
    # and one that stays idle.
    keep_alive = connect(listener)
    keep_alive.request("GET", "/")
    response = keep_alive.getresponse()
    assert response.read() == b"hello from Root"
    assert response.getheader("Connection") is None
    idle = socket.create_connection(("127.0.0.1", port_of(listener)), timeout=WAIT)
    idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response(idle)[0] == 200

    slow = send_get(listener, "/slow?seconds=1.5")
    worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 1)
    worker.signal(signal.SIGTERM)
    assert worker.wait_for("draining")["reason"] == "SIGTERM"

    # The next request on a keep-alive connection is served, then closed.
    keep_alive.request("GET", "/")
    response = keep_alive.getresponse()
    assert response.status == 200
    assert response.read() == b"hello from Root"
    assert response.getheader("Connection") == "close"
    keep_alive.close()

    # New connections are left to the other workers (here, the test itself).
    newcomer = socket.create_connection(("127.0.0.1", port_of(listener)), timeout=WAIT)
    assert select.select([listener], [], [], WAIT)[0], "the draining worker accepted it"
    accepted, _ = listener.accept()
    accepted.close()
    newcomer.close()

    # The idle keep-alive connection is closed after a short grace.
    assert closed_by_peer(idle, timeout=5)
    idle.close()

    # The request in flight completes.
    assert read_response(slow)[:2] == (200, "slept 1.5")
    slow.close()

    assert worker.exit_code() == EXIT_OK
    exiting = worker.wait_for("exiting")
    assert exiting["reason"] == "SIGTERM"
    assert exiting["unfinished"] == 0

    # The worker did not connect to the shared socket to wake itself up...
    assert not select.select([listener], [], [], 0)[0]
    # ...and the socket still serves through the next worker.
    successor = spawn([listener], "worker_apps:Root")
    successor.wait_for("ready")
    assert get(listener)[:2] == (200, "hello from Root")
    stop(successor)


def test_replacing_a_worker_under_load_fails_no_request(listener, spawn):
    """Two workers share the socket; one drains while clients keep going."""
    leaving = spawn([listener], "worker_apps:wsgi_app")
    staying = spawn([listener], "worker_apps:wsgi_app")
    leaving.wait_for("ready")
    staying.wait_for("ready")

    stop_clients = threading.Event()
    outcomes: list[str] = []

    def client(keep_alive: bool) -> None:
        connection = connect(listener)
        while not stop_clients.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                answer = (response.status, response.read())
                ok = answer == (200, b"hello from wsgi_app")
                outcomes.append("ok" if ok else repr(answer))
            except Exception as exc:  # any failure is what this test looks for
                outcomes.append(repr(exc))
            if not keep_alive or response.getheader("Connection") == "close":
                connection.close()
                connection = connect(listener)
        connection.close()

    clients = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    for thread in clients:
        thread.start()
    try:
        leaving.wait_for("heartbeat", where=lambda message: message["requests"] >= 20)
        leaving.signal(signal.SIGTERM)
        assert leaving.exit_code() == EXIT_OK
        served_before = len(outcomes)
        deadline = time.monotonic() + WAIT
        while len(outcomes) < served_before + 50 and time.monotonic() < deadline:
            staying.next_message(timeout=0.1)
    finally:
        stop_clients.set()
        for thread in clients:
            thread.join(WAIT)
    failures = [outcome for outcome in outcomes if outcome != "ok"]
    assert not failures, failures[:5]
    assert len(outcomes) >= served_before + 50
    stop(staying)


def test_graceful_timeout_bounds_the_drain(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", graceful_timeout=0.5)
    worker.wait_for("ready")
    slow = send_get(listener, "/slow?seconds=30")
    worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 1)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.exit_code(timeout=5) == EXIT_OK
    assert time.monotonic() - started < 5
    assert worker.wait_for("exiting")["unfinished"] == 1
    assert closed_by_peer(slow, timeout=2)
    slow.close()


def test_idle_worker_drains_at_once(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.exit_code() == EXIT_OK
    assert time.monotonic() - started < 2
    assert worker.wait_for("exiting")["reason"] == "SIGTERM"
    types = worker.types()
    assert types.index("draining") < types.index("exiting")
    assert worker.next_message(timeout=0.2) is None  # exiting is the last word


def test_channel_eof_makes_the_worker_exit(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")
    started = time.monotonic()
    worker.channel.close()
    assert worker.exit_code(timeout=2) == EXIT_OK
    assert time.monotonic() - started < 2


def test_worker_exits_when_its_master_is_killed(listener, tmp_path):
    """PDEATHSIG: the master is SIGKILLed while the channel stays open elsewhere."""
    master_end, worker_end = socket.socketpair()
    pid_reader, pid_writer = os.pipe()
    master = os.fork()
    if master == 0:
        try:
            os.close(pid_reader)
            master_end.close()
            worker = os.fork()
            if worker == 0:
                options = {
                    "number": 1,
                    "app": "worker_apps:Root",
                    "sockets": [listener],
                    "channel": worker_end,
                    "master_pid": os.getppid(),
                }
                become_worker(tmp_path / "orphan.stderr", options)
            os.write(pid_writer, str(worker).encode())
            signal.pause()  # until the test kills this stand-in master
        finally:
            os._exit(0)
    os.close(pid_writer)
    worker_end.close()
    try:
        assert select.select([pid_reader], [], [], WAIT)[0]
        worker_pid = int(os.read(pid_reader, 32))
        pidfd = os.pidfd_open(worker_pid)
        reader = MessageReader()
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT
        while "ready" not in [m["type"] for m in messages] and time.monotonic() < deadline:
            if select.select([master_end], [], [], 0.5)[0]:
                messages += reader.feed(master_end.recv(65536))
        assert "ready" in [m["type"] for m in messages]

        os.kill(master, signal.SIGKILL)
        os.waitpid(master, 0)
        # The test still holds the master's end of the channel: no EOF, only
        # the kernel's parent-death signal tells the worker.
        assert select.select([pidfd], [], [], 5)[0], "worker outlived its master"
        os.close(pidfd)
        while select.select([master_end], [], [], 0)[0]:
            data = master_end.recv(65536)
            if not data:
                break
            messages += reader.feed(data)
        assert {"type": "draining", "reason": "SIGTERM"}.items() <= next(
            m for m in messages if m["type"] == "draining"
        ).items()
        assert messages[-1]["type"] == "exiting"
    finally:
        os.close(pid_reader)
        master_end.close()
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(master, signal.SIGKILL)
            os.waitpid(master, 0)


def test_sigquit_exits_at_once_even_mid_request(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")
    slow = send_get(listener, "/slow?seconds=30")
    worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 1)
    worker.signal(signal.SIGQUIT)
    assert worker.exit_code(timeout=3) == EXIT_OK
    assert worker.wait_for("exiting")["reason"] == "SIGQUIT"
    assert "draining" not in worker.types()
    slow.close()


def test_worker_exits_when_the_engine_stops_under_it(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")
    assert get(listener, "/exit_engine")[:2] == (200, "exiting the engine")
    assert worker.exit_code() == EXIT_ERROR
    assert worker.wait_for("draining")["reason"] == "engine_stopped"
    assert worker.wait_for("exiting")["reason"] == "engine_stopped"


# -- recycling -------------------------------------------------------------------------


def test_request_timeout_logs_the_stack_and_asks_for_recycling(listener, spawn):
    worker = spawn([listener], "worker_apps:Root", request_timeout=0.3)
    worker.wait_for("ready")
    slow = send_get(listener, "/slow?seconds=2")
    assert worker.wait_for("recycle", timeout=3)["reason"] == "request_timeout"
    stderr = worker.stderr()
    assert "Request GET /slow has been running for" in stderr
    assert "worker_apps.py" in stderr
    assert "time.sleep(float(seconds))" in stderr
    # Logged once per request, asked once per worker; the request still ends.
    assert read_response(slow)[:2] == (200, "slept 2")
    slow.close()
    worker.wait_for("heartbeat", where=lambda message: message["requests"] == 1)
    assert worker.stderr().count("has been running for") == 1
    assert worker.types().count("recycle") == 1
    stop(worker)


def test_max_requests_asks_for_recycling_once(listener, spawn):
    worker = spawn([listener], "worker_apps:wsgi_app", max_requests=3)
    worker.wait_for("ready")
    for _ in range(2):
        assert get(listener)[0] == 200
    worker.wait_for("heartbeat", where=lambda message: message["requests"] == 2)
    assert "recycle" not in worker.types()
    assert get(listener)[0] == 200
    assert worker.wait_for("recycle")["reason"] == "max_requests"
    # It keeps serving until the master replaces it.
    assert get(listener)[0] == 200
    worker.wait_for("heartbeat", where=lambda message: message["requests"] == 4)
    worker.signal(signal.SIGTERM)
    worker.wait_for("exiting")
    assert worker.types().count("recycle") == 1
    assert worker.exit_code() == EXIT_OK


# -- signals ---------------------------------------------------------------------------


def wait_for_file(path: Path, text: str, timeout: float = WAIT) -> str:
    """Poll ``path`` until it contains ``text``; return its content."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            content = path.read_text()
            if text in content:
                return content
        time.sleep(0.02)
    raise AssertionError(f"{path} never contained {text!r}")


def wait_for_text(worker: Worker, text: str, timeout: float = WAIT) -> None:
    """Poll the worker's stderr until it contains ``text``."""
    deadline = time.monotonic() + timeout
    while text not in worker.stderr():
        assert time.monotonic() < deadline, f"{text!r} never written; stderr:\n{worker.stderr()}"
        time.sleep(0.02)


def test_sigusr1_reopens_log_files(listener, spawn, tmp_path):
    error_log, access_log = tmp_path / "error.log", tmp_path / "access.log"
    config = tmp_path / "logs.conf"
    config.write_text(
        "[global]\n"
        "log.screen = False\n"
        f"log.error_file = {str(error_log)!r}\n"
        f"log.access_file = {str(access_log)!r}\n"
    )
    worker = spawn([listener], "worker_apps:Root", config_file=str(config))
    worker.wait_for("ready")
    assert get(listener, "/slow?seconds=0")[0] == 200
    wait_for_file(access_log, "GET /slow?seconds=0")

    access_log.rename(tmp_path / "access.log.1")
    error_log.rename(tmp_path / "error.log.1")
    worker.signal(signal.SIGUSR1)
    assert "reopened" in wait_for_file(error_log, "SIGUSR1")

    assert get(listener, "/slow?seconds=0.01")[0] == 200
    assert "GET /slow?seconds=0.01" in wait_for_file(access_log, "GET /slow?seconds=0.01")
    rotated = (tmp_path / "access.log.1").read_text()
    assert "GET /slow?seconds=0" in rotated
    assert "GET /slow?seconds=0.01" not in rotated
    stop(worker)


def test_sigabrt_dumps_every_stack_and_dies(listener, spawn):
    worker = spawn([listener], "worker_apps:Root")
    worker.wait_for("ready")
    slow = send_get(listener, "/slow?seconds=30")
    worker.wait_for("heartbeat", where=lambda message: message["in_flight"] == 1)
    worker.signal(signal.SIGABRT)
    assert worker.exit_code() == EXIT_ABORTED
    stderr = worker.stderr()
    assert "Thread 0x" in stderr
    assert "worker_apps.py" in stderr
    assert 'in slow' in stderr
    assert worker.wait_for("exiting")["reason"] == "SIGABRT"
    slow.close()


# -- the stats middleware on its own ------------------------------------------------


def test_stats_count_a_body_that_fails_midway_as_a_server_error():
    stats = RequestStats()

    def streaming_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise RuntimeError("the stream broke")

    middleware = StatsMiddleware(streaming_app, stats)
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app", "PATH_INFO": "/stream"}
    response = middleware(environ, lambda status, headers, exc_info=None: None)
    (active,) = stats.active()
    assert (active.method, active.path) == ("GET", "/app/stream")
    with pytest.raises(RuntimeError):
        list(response)
    response.close()
    response.close()  # servers may close twice; counted once
    snapshot = stats.snapshot()
    assert snapshot["requests"] == 1
    assert snapshot["status"]["5xx"] == 1
    assert snapshot["status"]["2xx"] == 0
    assert snapshot["in_flight"] == 0


def test_stats_latency_buckets_and_overflow():
    stats = RequestStats()
    now = time.monotonic()
    stats.begin(1, now - 0.3, {})
    stats.end(1, now - 0.3, "200 OK")
    stats.begin(1, now - 60, {})
    stats.end(1, now - 60, "302 Found")
    snapshot = stats.snapshot()
    buckets = snapshot["latency_buckets"]
    assert buckets[LATENCY_BUCKETS.index(0.5)] == 1
    assert buckets[-1] == 1  # slower than the last bound
    assert sum(buckets) == snapshot["latency_count"] == 2
    assert 60.3 <= snapshot["latency_sum"] < 61
    assert snapshot["status"] == {"1xx": 0, "2xx": 1, "3xx": 1, "4xx": 0, "5xx": 0}


def test_stats_counts_of_many_threads_add_up_exactly():
    stats = RequestStats()
    threads, each = 8, 2000

    def serve() -> None:
        thread_id = threading.get_ident()
        for _ in range(each):
            started = time.monotonic()
            stats.begin(thread_id, started, {})
            stats.end(thread_id, started, "200 OK")

    workers = [threading.Thread(target=serve) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(30)
    snapshot = stats.snapshot()  # the threads are gone: their counts stay
    assert snapshot["requests"] == stats.requests == threads * each
    assert snapshot["latency_count"] == snapshot["status"]["2xx"] == threads * each
    assert snapshot["in_flight"] == 0


def test_stats_middleware_serves_natively_when_the_application_does():
    stats = RequestStats()
    assert not hasattr(StatsMiddleware(lambda environ, start: [], stats), "serve_native")

    class Native:
        def __call__(self, environ, start_response):
            raise AssertionError("served with an environ")

        def serve_native(self, request, start_response):
            (active,) = stats.active()
            seen.append((active.method, active.path))
            start_response("404 Not Found", [])
            return [b"gone"]

    seen: list[tuple[str, str]] = []
    middleware = StatsMiddleware(Native(), stats)
    head = HeadParser(True).parse(b"PUT /a/b?c HTTP/1.1\r\nHost: x\r\n\r\n", 0)
    peer = Peer({"SERVER_NAME": "x", "SERVER_PORT": "80", "REMOTE_ADDR": "", "REMOTE_PORT": ""})
    request = NativeRequest(peer, head, io.BytesIO(), "http")
    response = middleware.serve_native(request, lambda status, headers, exc_info=None: None)
    assert list(response) == [b"gone"]
    response.close()
    assert seen == [("PUT", "/a/b")]
    snapshot = stats.snapshot()
    assert (snapshot["requests"], snapshot["status"]["4xx"], snapshot["in_flight"]) == (1, 1, 0)
