"""The master's control endpoint (real HTTP over loopback and UNIX sockets) and ``morello ctl``.

A :class:`ControlServer` runs in a selector loop on a thread of the test
process, like the master's loop; a fake :class:`ControlApp` stands in for
the master. ``reload``/``stop`` are checked against a real child process
that reports the signals it receives.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import select
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from morello.master import ctl
from morello.master.control import (
    MAX_HEAD,
    ControlServer,
    control_socket,
    parse_address,
)
from morello.master.ctl import UnixHTTPConnection

DEADLINE = 10.0


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class FakeMaster:
    """A ControlApp with controllable answers; records scale requests."""

    def __init__(self) -> None:
        self.is_ready = True
        self.fail = False
        self.scaled: list[int] = []
        self.metrics_text = "# HELP morello_up Up.\n# TYPE morello_up gauge\nmorello_up 1\n"
        self.document: dict[str, Any] = {
            "master": {"pid": 4242, "uptime": 3725.0, "generation": 3, "target_workers": 2,
                       "restarts": 5, "state": "running"},
            "workers": [
                {"id": 7, "pid": 5001, "state": "ready", "generation": 3, "age": 125.5,
                 "requests": 1234, "busy_threads": 2, "threads": 10, "rss": 50_000_000},
                {"id": 8, "pid": 5002, "state": "booting", "generation": 3, "age": 1.0,
                 "requests": 0, "busy_threads": 0, "threads": 0, "rss": None},
            ],
        }  # fmt: skip

    def healthy(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def status(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("the fake master broke")
        return self.document

    def metrics(self) -> str:
        return self.metrics_text

    def scale(self, workers: int) -> None:
        if not 1 <= workers <= 32:
            raise ValueError("the number of workers must be from 1 to 32")
        self.scaled.append(workers)


class Loop:
    """The master's loop, reduced to serving one ControlServer, on a thread."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.selector = selectors.DefaultSelector()
        server.register(self.selector)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                timeout = 0.05
                deadline = self.server.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
                for key, mask in self.selector.select(timeout):
                    key.data(key.fileobj, mask)
                self.server.expire()
        except BaseException as exc:  # reported by stop(): the master must never die
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive()
        self.server.close()
        self.selector.close()
        assert not self.errors, self.errors


@dataclass
class Endpoint:
    address: str
    app: FakeMaster
    server: ControlServer


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: UNIX socket paths are limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="mctl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(short_dir: Path) -> Iterator[Callable[..., Endpoint]]:
    """Start a ControlServer (``kind`` "tcp" or "unix") with a FakeMaster in a loop thread."""
    loops: list[Loop] = []

    def start_server(kind: str = "tcp", app: Any = "fake", **options: Any) -> Endpoint:
        bind = f"unix:{short_dir}/ctl{len(loops)}.sock" if kind == "unix" else "127.0.0.1:0"
        sock = control_socket(bind)
        address = bind if kind == "unix" else f"127.0.0.1:{sock.getsockname()[1]}"
        fake = FakeMaster() if app == "fake" else app
        server = ControlServer(sock, fake, **options)
        loops.append(Loop(server))
        return Endpoint(address, fake, server)

    yield start_server
    for loop in loops:
        loop.stop()


@pytest.fixture(params=["tcp", "unix"])
def endpoint(request: pytest.FixtureRequest, start: Callable[..., Endpoint]) -> Endpoint:
    return start(request.param)


def connect(address: str) -> socket.socket:
    family, where = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(DEADLINE)
    sock.connect(where)
    return sock


def fetch(address: str, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client: (status, lower-cased headers, body)."""
    family, where = parse_address(address)
    if family == socket.AF_UNIX:
        connection: http.client.HTTPConnection = UnixHTTPConnection(where, DEADLINE)
    else:
        connection = http.client.HTTPConnection(*where, timeout=DEADLINE)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(address: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; parse the response."""
    with connect(address) as sock:
        sock.sendall(data)
        raw = read_all(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def assert_still_serving(address: str) -> None:
    assert fetch(address, "GET", "/healthz")[0] == 200


# --- routes ------------------------------------------------------------------


def test_health_readiness_status_and_metrics(endpoint: Endpoint) -> None:
    status, headers, body = fetch(endpoint.address, "GET", "/healthz?probe=1")
    assert (status, body) == (200, b"ok")
    assert headers["connection"] == "close"
    assert headers["content-type"].startswith("text/plain")

    assert fetch(endpoint.address, "GET", "/readyz")[::2] == (200, b"ready")
    endpoint.app.is_ready = False
    assert fetch(endpoint.address, "GET", "/readyz")[::2] == (503, b"not ready")

    status, headers, body = fetch(endpoint.address, "GET", "/status")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == endpoint.app.document

    status, headers, body = fetch(endpoint.address, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body.decode() == endpoint.app.metrics_text


@pytest.mark.parametrize("path", ["/healthz", "/status", "/metrics"])
def test_head_has_the_get_headers_and_no_body(endpoint: Endpoint, path: str) -> None:
    get_status, get_headers, get_body = fetch(endpoint.address, "GET", path)
    status, headers, body = exchange(endpoint.address, f"HEAD {path} HTTP/1.1\r\n\r\n".encode())
    assert status == get_status == 200
    assert body == b""
    assert int(headers["content-length"]) == len(get_body)


def test_unknown_path_and_wrong_method(endpoint: Endpoint) -> None:
    status, _, body = fetch(endpoint.address, "GET", "/nope")
    assert status == 404 and b"/nope" in body
    status, headers, _ = fetch(endpoint.address, "POST", "/healthz")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, _ = fetch(endpoint.address, "GET", "/scale?workers=3")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = fetch(endpoint.address, "DELETE", "/metrics")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert endpoint.app.scaled == []


def test_scale(endpoint: Endpoint) -> None:
    status, headers, body = fetch(endpoint.address, "POST", "/scale?workers=4")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"workers": 4}
    assert endpoint.app.scaled == [4]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", b"missing the workers parameter"),
        ("?count=3", b"missing the workers parameter"),
        ("?workers=", b"whole number"),
        ("?workers=abc", b"whole number"),
        ("?workers=-1", b"whole number"),
        ("?workers=1.5", b"whole number"),
        ("?workers=%2B3", b"whole number"),
        ("?workers=12345678901234567890", b"whole number"),
        ("?workers=2&workers=3", b"only once"),
        ("?workers=0", b"from 1 to 32"),  # refused by the master itself
        ("?workers=99", b"from 1 to 32"),
    ],
)
def test_scale_rejects_bad_worker_counts(endpoint: Endpoint, query: str, message: bytes) -> None:
    status, _, body = fetch(endpoint.address, "POST", f"/scale{query}")
    assert status == 400
    assert message in body
    assert endpoint.app.scaled == []
    assert_still_serving(endpoint.address)


def test_application_error_is_a_500_and_the_loop_survives(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.app.fail = True
    status, _, body = fetch(endpoint.address, "GET", "/status")
    assert (status, body) == (500, b"internal error: RuntimeError\n")
    assert "GET /status failed" in caplog.text
    assert_still_serving(endpoint.address)


def test_no_app_yet_answers_503(start: Callable[..., Endpoint]) -> None:
    endpoint = start(app=None)
    assert fetch(endpoint.address, "GET", "/healthz")[::2] == (503, b"the master is starting\n")
    assert fetch(endpoint.address, "GET", "/nope")[0] == 404


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
        (b"GET /healthz\r\n\r\n", 400),
        (b"GET  /healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET http://localhost/healthz HTTP/1.1\r\n\r\n", 400),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", 400),
        (b"GET /health\x00z HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/9.9\r\n\r\n", 505),
        (b"GET /healthz HTTX/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),  # latin-1 digit
        (b"GET /healthz HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST /scale?workers=2 HTTP/1.1\r\nContent-Length: 9\r\n\r\nworkers=2", 413),
        (b"POST /scale?workers=2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 413),
    ],
)
def test_malformed_requests_get_a_clear_4xx(
    endpoint: Endpoint, request_bytes: bytes, expected: int
) -> None:
    status, headers, body = exchange(endpoint.address, request_bytes)
    assert status == expected
    assert headers["connection"] == "close"
    assert body.strip(), "the error says what is wrong"
    assert endpoint.app.scaled == []
    assert_still_serving(endpoint.address)


@pytest.mark.parametrize("size", [MAX_HEAD + 1, 64 * 1024])
def test_oversized_head_is_refused(endpoint: Endpoint, size: int) -> None:
    head = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    status, _, body = exchange(endpoint.address, head)
    assert status == 431 and str(MAX_HEAD).encode() in body
    # Without the blank line at all, the server does not wait for one forever.
    status, _, _ = exchange(endpoint.address, b"GET /" + b"a" * size)
    assert status == 431
    assert_still_serving(endpoint.address)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",  # empty lines before the request line
        b"GET /healthz HTTP/1.1\nHost: x\n\n",  # bare LF line ends
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: " + b"0" * 5000 + b"\r\n\r\n",
    ],
)
def test_tolerated_request_forms(endpoint: Endpoint, request_bytes: bytes) -> None:
    assert exchange(endpoint.address, request_bytes)[::2] == (200, b"ok")


def test_request_arriving_byte_by_byte(endpoint: Endpoint) -> None:
    with connect(endpoint.address) as sock:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment per byte
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n":
            sock.sendall(bytes([byte]))
        assert read_all(sock).endswith(b"\r\n\r\nok")


def test_client_closing_early_is_forgotten(endpoint: Endpoint) -> None:
    with connect(endpoint.address) as sock:
        sock.sendall(b"GET /hea")
    wait_until(lambda: endpoint.server.connection_count == 0)
    assert_still_serving(endpoint.address)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_slowloris_is_disconnected_after_the_timeout(
    start: Callable[..., Endpoint], kind: str
) -> None:
    timeout = 0.3
    endpoint = start(kind, timeout=timeout)
    silent = connect(endpoint.address)  # connects and never sends a byte
    with connect(endpoint.address) as sock:
        began = time.monotonic()
        sock.settimeout(0.02)
        closed = False
        # Trickle header lines: progress must not extend the deadline.
        while not closed and time.monotonic() - began < DEADLINE:
            try:
                sock.sendall(b"X-Drip: 1\r\n")
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        elapsed = time.monotonic() - began
    assert closed
    assert timeout * 0.8 <= elapsed < DEADLINE / 2
    silent.settimeout(DEADLINE)
    assert silent.recv(1) == b""
    silent.close()
    wait_until(lambda: endpoint.server.connection_count == 0)
    assert_still_serving(endpoint.address)


def test_connection_cap_evicts_the_oldest_idle_client(start: Callable[..., Endpoint]) -> None:
    endpoint = start(max_connections=3)
    idle = [connect(endpoint.address) for _ in range(3)]
    wait_until(lambda: endpoint.server.connection_count == 3)
    assert_still_serving(endpoint.address)
    idle[0].settimeout(DEADLINE)
    assert idle[0].recv(1) == b"", "the oldest idle connection made room"
    for sock in idle[1:]:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert read_all(sock).endswith(b"ok")
    for sock in idle:
        sock.close()
    wait_until(lambda: endpoint.server.connection_count == 0)


def slow_metrics_reader(endpoint: Endpoint) -> tuple[socket.socket, bytes]:
    """A client that asked for a multi-megabyte /metrics and is not reading it yet."""
    big = "".join(f'morello_line{{n="{n}"}} {n}\n' for n in range(200_000)).encode()
    endpoint.app.metrics_text = big.decode()
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(DEADLINE)
    slow.connect(parse_address(endpoint.address)[1])
    slow.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert slow.recv(1, socket.MSG_PEEK), "the server started writing the response"
    return slow, big


def assert_complete_response(slow: socket.socket, body: bytes) -> None:
    raw = read_all(slow)
    slow.close()
    head, _, received = raw.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert received == body


def test_slow_reader_does_not_block_the_loop(start: Callable[..., Endpoint]) -> None:
    endpoint = start()
    slow, big = slow_metrics_reader(endpoint)
    # Most of the response waits in the server's buffer; others are still served.
    for _ in range(3):
        assert_still_serving(endpoint.address)
    assert_complete_response(slow, big)


def test_new_client_is_refused_when_every_slot_is_writing(
    start: Callable[..., Endpoint],
) -> None:
    endpoint = start(max_connections=1)
    slow, big = slow_metrics_reader(endpoint)
    with connect(endpoint.address) as refused:
        assert refused.recv(1) == b""
    assert_complete_response(slow, big)
    assert_still_serving(endpoint.address)


# --- the control socket -----------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["9100", ":9100", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000",
     "::1:9100", "unix:"],
)  # fmt: skip
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="control address"):
        control_socket(address)


@pytest.mark.parametrize("address", ["0.0.0.0:0", "192.0.2.1:9100", "example.com:9100"])
def test_non_loopback_needs_explicit_permission(address: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        control_socket(address)


def test_loopback_and_allowed_remote_binds() -> None:
    for address, allow in (("127.0.0.1:0", False), ("localhost:0", False), ("0.0.0.0:0", True)):
        with control_socket(address, allow_remote=allow) as sock:
            assert sock.getblocking() is False
            assert sock.getsockname()[1] > 0
    try:
        sock = control_socket("[::1]:0")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6


def test_unix_socket_mode_stale_and_live_files(short_dir: Path) -> None:
    path = short_dir / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a dead master's socket file stays behind
    sock = control_socket(f"unix:{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(OSError) as info:
        control_socket(f"unix:{path}")  # a live one is not stolen
    assert info.value.errno == errno.EADDRINUSE
    server = ControlServer(sock, FakeMaster())
    server.close()
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(ValueError, match="not a socket"):
        control_socket(f"unix:{path}")


def test_close_in_forked_child_leaves_the_master_serving(start: Callable[..., Endpoint]) -> None:
    endpoint = start("unix")
    pid = os.fork()
    if pid == 0:  # the worker side of a fork: close what was inherited, nothing more
        code = 1
        try:
            endpoint.server.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Path(endpoint.address[len("unix:") :]).exists()
    assert_still_serving(endpoint.address)


# --- morello ctl: HTTP commands ------------------------------------------------


def test_ctl_status_table(endpoint: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["status", "--control", endpoint.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("master 4242  state running  uptime 1h02m  generation 3")
    assert "workers 1/2 ready" in lines[0] and "restarts 5" in lines[0]
    assert lines[1].split() == ["ID", "PID", "STATE", "GEN", "AGE", "REQUESTS", "BUSY", "RSS"]
    assert lines[2].split() == ["7", "5001", "ready", "3", "2m05s", "1234", "2/10", "47.7M"]
    assert lines[3].split() == ["8", "5002", "booting", "3", "1s", "0", "0/0", "-"]


def test_ctl_status_json_and_options_before_the_command(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["--control", endpoint.address, "--timeout", "3", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == endpoint.app.document


@pytest.mark.parametrize("document", [{"workers": []}, {"master": 1, "workers": 5}, {}])
def test_ctl_status_without_workers(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], document: dict[str, Any]
) -> None:
    endpoint.app.document = document
    assert ctl.main(["status", "--control", endpoint.address]) == 0
    out = capsys.readouterr().out
    assert out.startswith("master -  state -") and "(no workers)" in out


def test_ctl_status_reports_server_errors(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.app.fail = True
    assert ctl.main(["status", "--control", endpoint.address]) == 1
    assert capsys.readouterr().err.strip() == (
        "morello ctl: error: status failed: HTTP 500: internal error: RuntimeError"
    )


def test_ctl_scale(endpoint: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["scale", "6", "--control", endpoint.address]) == 0
    assert capsys.readouterr().out == "scaling to 6 worker(s)\n"
    assert endpoint.app.scaled == [6]
    assert ctl.main(["scale", "64", "--control", endpoint.address]) == 1
    err = capsys.readouterr().err
    assert err.startswith("morello ctl: error: scale refused: HTTP 400: cannot scale to 64")
    assert "from 1 to 32" in err
    assert endpoint.app.scaled == [6]


@pytest.mark.parametrize("value", ["abc", "1.5", "", "-3", "\u00b2"])
def test_ctl_scale_rejects_invalid_numbers_locally(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert ctl.main(["scale", value, "--control", endpoint.address]) == 2
    assert "error" in capsys.readouterr().err
    assert endpoint.app.scaled == []


def test_ctl_unreachable_endpoint(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    for address in (f"127.0.0.1:{port}", f"unix:{short_dir}/missing.sock"):
        assert ctl.main(["status", "--control", address]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"morello ctl: error: cannot reach the control endpoint at {address}")
        assert err.count("\n") == 1


def test_ctl_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["status"]) == 2
    assert "--control ADDR" in capsys.readouterr().err
    assert ctl.main(["status", "--control", "nowhere"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert ctl.main(["frobnicate"]) == 2
    assert ctl.main([]) == 2
    assert ctl.main(["reload"]) == 2
    assert "--pidfile PATH" in capsys.readouterr().err
    assert ctl.main(["stop", "--pidfile", "x", "--timeout", "0"]) == 2


# --- morello ctl: signals ----------------------------------------------------

CHILD = r"""
import signal, sys
exit_on_term = sys.argv[1] == "exit"

def record(signum, frame):
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM and exit_on_term:
        sys.exit(0)

signal.signal(signal.SIGHUP, record)
signal.signal(signal.SIGTERM, record)
print("ready", flush=True)
while True:
    signal.pause()
"""


class Child:
    """A python child that prints the name of each signal it gets."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, bufsize=0
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        assert readable, "the child said nothing in time"
        return self.proc.stdout.readline().decode().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def child(request: pytest.FixtureRequest) -> Iterator[Child]:
    spawned = Child(getattr(request, "param", "exit"))
    yield spawned
    spawned.stop()


@pytest.fixture
def pidfile(tmp_path: Path, child: Child) -> str:
    path = tmp_path / "morello.pid"
    path.write_text(f"{child.proc.pid}\n")
    return str(path)


def test_ctl_reload_sends_sighup(
    child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["reload", "--pidfile", pidfile]) == 0
    assert child.readline() == "SIGHUP"
    assert child.proc.poll() is None
    assert capsys.readouterr().out == f"sent SIGHUP to master {child.proc.pid}: rolling restart\n"


def test_ctl_stop_sends_sigterm(child: Child, pidfile: str) -> None:
    assert ctl.main(["stop", "--pidfile", pidfile]) == 0
    assert child.readline() == "SIGTERM"
    assert child.proc.wait(DEADLINE) == 0


def test_ctl_stop_wait_returns_once_the_process_is_gone(
    child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["stop", "--pidfile", pidfile, "--wait", "--timeout", str(DEADLINE)]) == 0
    assert capsys.readouterr().out == f"master {child.proc.pid} stopped\n"
    assert child.readline() == "SIGTERM"
    assert child.proc.wait(DEADLINE) == 0


@pytest.mark.parametrize("child", ["ignore"], indirect=True)
def test_ctl_stop_wait_times_out(
    child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    assert ctl.main(["stop", "--pidfile", pidfile, "--wait", "--timeout", "0.3"]) == 1
    assert time.monotonic() - began >= 0.3
    assert child.readline() == "SIGTERM"
    assert child.proc.poll() is None
    assert capsys.readouterr().err == (
        f"morello ctl: error: master {child.proc.pid} still running after 0.3s\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist (is the server running?)"),
        ("", "does not hold a pid"),
        ("abc\n", "does not hold a pid"),
        ("0\n", "does not hold a pid"),
        ("-1\n", "does not hold a pid"),
        ("99999999999\n", "does not hold a pid"),
        ("\u00b2\n", "does not hold a pid"),
        ("gone", "stale pid file"),
    ],
)
@pytest.mark.parametrize("command", ["reload", "stop"])
def test_ctl_bad_pid_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "morello.pid"
    if content == "gone":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait(DEADLINE)  # reaped: its pid now names no process
        content = str(gone.pid)
    if content is not None:
        path.write_text(content)
    assert ctl.main([command, "--pidfile", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("morello ctl: error: ") and message in err
    assert err.count("\n") == 1
