"""The master's control endpoint: real HTTP over loopback and UNIX sockets, a fake master."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bus_support import wait_until
from control_support import (
    DEADLINE,
    Endpoint,
    FakeMaster,
    assert_still_serving,
    connect,
    exchange,
    fetch,
    read_all,
)
from morello.master.control import (
    MAX_HEAD,
    ControlServer,
    control_socket,
    parse_address,
)

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


@pytest.mark.parametrize(("path", "accept"), [("/routes", None), ("/", "text/plain")])
def test_routes_lists_every_endpoint(endpoint: Endpoint, path: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    status, headers, body = fetch(endpoint.address, "GET", path, headers)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    listed = {line.split()[1]: line.split()[0] for line in body.decode().splitlines()[1:]}
    assert {"/", "/routes", "/healthz", "/readyz", "/status", "/metrics", "/scale"} <= set(listed)
    for path, method in listed.items():
        # Each listed route exists: a GET route answers, /scale wants its parameter.
        assert fetch(endpoint.address, method, path)[0] in (200, 400), path
    assert endpoint.app.scaled == []


# --- callers: browsers, DNS rebinding, the token -------------------------------


def test_cross_site_request_is_refused(endpoint: Endpoint) -> None:
    attacker = {"Host": "attacker.example", "Origin": "http://attacker.example"}
    status, _, body = fetch(endpoint.address, "POST", "/scale?workers=3", attacker)
    assert status == 403 and body.count(b"\n") == 1
    assert endpoint.app.scaled == []
    assert_still_serving(endpoint.address)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1"},  # a page served from loopback still is a page
        {"Origin": "null"},
        {"Host": "attacker.example"},  # DNS rebinding: the attacker's name, our address
        {"Host": "localhost.attacker.example"},
        {"Host": "127.0.0.2"},
        {"Host": "[::1]"},
    ],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/scale?workers=3"), ("GET", "/status")])
def test_requests_from_browsers_are_refused(
    endpoint: Endpoint, headers: dict[str, str], method: str, path: str
) -> None:
    status, _, body = fetch(endpoint.address, method, path, headers)
    assert status == 403, body
    assert body.count(b"\n") == 1 and len(body) < 200
    assert endpoint.app.scaled == []


def test_host_with_another_port_is_refused(start: Callable[..., Endpoint]) -> None:
    endpoint = start("tcp")
    port = int(endpoint.address.rpartition(":")[2])
    status, _, body = fetch(endpoint.address, "GET", "/status", {"Host": f"127.0.0.1:{port + 1}"})
    assert status == 403 and str(port).encode() in body


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_own_address_is_accepted(start: Callable[..., Endpoint], kind: str) -> None:
    endpoint = start(kind)
    hosts = ["localhost", "LocalHost"]
    if kind == "tcp":
        port = endpoint.address.rpartition(":")[2]
        hosts += ["127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}"]
    for host in hosts:
        assert fetch(endpoint.address, "POST", "/scale?workers=2", {"Host": host})[0] == 200, host
    # Without any Host header (not a browser): accepted too.
    assert exchange(endpoint.address, b"GET /healthz HTTP/1.0\r\n\r\n")[::2] == (200, b"ok")


def test_token_is_required_for_post(start: Callable[..., Endpoint]) -> None:
    endpoint = start("tcp", token="s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                    {"Authorization": "Bearer s3cret-token-and-more"}):  # fmt: skip
        status, received, body = fetch(endpoint.address, "POST", "/scale?workers=3", headers)
        assert status == 401, headers
        assert received["www-authenticate"].startswith("Bearer")
        assert b"Authorization: Bearer" in body and b"s3cret" not in body
    assert endpoint.app.scaled == []
    good = {"Authorization": "Bearer s3cret-token"}
    assert fetch(endpoint.address, "POST", "/scale?workers=3", good)[0] == 200
    assert endpoint.app.scaled == [3]
    # Reading needs no token.
    assert fetch(endpoint.address, "GET", "/status")[0] == 200


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
        b"GET /healthz HTTP/1.1\nHost: localhost\n\n",  # bare LF line ends
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: " + b"0" * 5000 + b"\r\n\r\n",
    ],
)
def test_tolerated_request_forms(endpoint: Endpoint, request_bytes: bytes) -> None:
    assert exchange(endpoint.address, request_bytes)[::2] == (200, b"ok")


def test_request_arriving_byte_by_byte(endpoint: Endpoint) -> None:
    with connect(endpoint.address) as sock:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment per byte
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n":
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
