"""Tests for the HTTP server adapter: morello.httpserver and morello.process.servers."""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cheroot.wsgi
import pytest
from bus_support import wait_for_exit

from morello.httpserver import Server, WSGIServer, server_namespace_handler
from morello.process import servers
from morello.process.bus import Bus, states
from morello.process.servers import (
    ServerAdapter,
    check_port,
    client_host,
    wait_for_free_port,
    wait_for_occupied_port,
)

DEADLINE = 20.0


# -- helpers -------------------------------------------------------------


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answer with the pid, the URL scheme, the server port and the path."""
    body = " ".join(
        (
            str(os.getpid()),
            environ["wsgi.url_scheme"],
            environ.get("SERVER_PORT", ""),
            environ.get("PATH_INFO", ""),
        )
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a UNIX socket."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def request(
    conn: http.client.HTTPConnection,
    path: str = "/",
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> tuple[int, bytes]:
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def get(
    addr: Any, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, bytes]:
    """One request on a fresh connection to a (host, port) or a UNIX socket path."""
    if isinstance(addr, str):
        conn: http.client.HTTPConnection = UnixHTTPConnection(addr)
    else:
        conn = http.client.HTTPConnection(addr[0], addr[1], timeout=10)
    with contextlib.closing(conn):
        return request(conn, path, {"Connection": "close", **(headers or {})}, method)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_socket(
    family: int = socket.AF_INET, address: Any = ("127.0.0.1", 0)
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(32)
    return sock


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def bus() -> Iterator[Bus]:
    """A bus that records its log; exited (stopping its servers) after the test."""
    bus = Bus()
    bus.messages = []  # type: ignore[attr-defined]
    bus.subscribe("log", lambda msg, level=20: bus.messages.append((level, msg)))  # type: ignore[attr-defined]
    yield bus
    if bus.state is not states.EXITING:
        bus.exit()


def make_server(bus: Bus, **settings: Any) -> Server:
    server = Server(bus, echo_app)
    server.socket_port = 0
    for name, value in settings.items():
        setattr(server, name, value)
    server.subscribe()
    return server


# -- port helpers --------------------------------------------------------


def test_client_host_maps_wildcards_to_loopback() -> None:
    assert client_host("0.0.0.0") == "127.0.0.1"
    assert client_host("::") == "::1"
    assert client_host("192.0.2.7") == "192.0.2.7"


def test_port_helpers_tell_free_from_occupied() -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(OSError, match=str(port)):
            check_port("127.0.0.1", port)
        wait_for_occupied_port("127.0.0.1", port, timeout=1)
        with pytest.raises(OSError, match="not free"):
            wait_for_free_port("127.0.0.1", port, timeout=0.1)
    check_port("127.0.0.1", port)
    wait_for_free_port("127.0.0.1", port, timeout=1)
    with pytest.raises(OSError, match="not bound"):
        wait_for_occupied_port("127.0.0.1", port, timeout=0.1)
    with pytest.raises(ValueError):
        check_port("", port)


def test_unverifiable_wildcard_bind_only_warns() -> None:
    # Nothing listens on the port: on a wildcard address that may only mean
    # there is no loopback to probe it through, so the wait warns; on any
    # other address it fails.
    with listening_socket() as sock:
        port = sock.getsockname()[1]
    unverified = f"Unable to verify that the server is bound on {port}"
    with pytest.warns(UserWarning, match=unverified), servers._safe_wait("0.0.0.0", port):
        wait_for_occupied_port("0.0.0.0", port, timeout=0.1)
    with pytest.raises(OSError, match="not bound"), servers._safe_wait("127.0.0.1", port):
        wait_for_occupied_port("127.0.0.1", port, timeout=0.1)


# -- Server settings -----------------------------------------------------


SETTINGS = [
    "socket_host", "socket_port", "socket_file", "socket_queue_size", "socket_timeout",
    "accepted_queue_size", "accepted_queue_timeout", "shutdown_timeout", "protocol_version",
    "thread_pool", "thread_pool_max", "max_request_header_size", "max_request_body_size",
    "instance", "ssl_context", "ssl_certificate", "ssl_certificate_chain", "ssl_private_key",
    "ssl_ciphers", "ssl_module", "statistics", "nodelay", "wsgi_version", "peercreds",
    "peercreds_resolve",
]  # fmt: skip


def test_defaults_match_cherrypy() -> None:
    cpserver = pytest.importorskip("cherrypy._cpserver")
    reference = cpserver.Server()
    server = Server(Bus())
    for name in SETTINGS:
        assert getattr(server, name) == getattr(reference, name), name
    assert server.reverse_dns is False
    assert server.listen_socket is None
    assert server.bind_addr == ("127.0.0.1", 8080)
    assert server.running is False and server.httpserver is None


def test_empty_socket_host_is_rejected_with_a_hint() -> None:
    server = Server(Bus())
    with pytest.raises(ValueError, match=r"'0\.0\.0\.0'.*'::'"):
        server.socket_host = ""
    with pytest.raises(ValueError, match="0.0.0.0"):
        server.bind_addr = ("", 8080)
    assert server.socket_host == "127.0.0.1"


def test_socket_port_is_validated_and_coerced() -> None:
    server = Server(Bus())
    server.socket_port = "9090"  # type: ignore[assignment]
    assert server.socket_port == 9090
    with pytest.raises(ValueError):
        server.socket_port = 70000
    with pytest.raises(ValueError):
        server.socket_port = "http"  # type: ignore[assignment]


def test_bind_addr_round_trips() -> None:
    server = Server(Bus())
    server.bind_addr = ("0.0.0.0", 81)
    assert (server.socket_host, server.socket_port, server.socket_file) == ("0.0.0.0", 81, None)
    server.bind_addr = "/tmp/app.sock"
    assert server.bind_addr == "/tmp/app.sock"
    assert server.socket_host is None and server.socket_port is None
    server.bind_addr = None
    assert server.bind_addr is None
    with pytest.raises(ValueError, match="bind_addr"):
        server.bind_addr = ("only-a-host",)  # type: ignore[assignment]


def test_base_url() -> None:
    server = Server(Bus())
    assert server.base() == "http://127.0.0.1:8080"
    server.socket_port = 80
    assert server.base() == "http://127.0.0.1"
    server.ssl_certificate = "cert.pem"
    assert server.base() == "https://127.0.0.1:80"
    server.socket_port = 443
    assert server.base() == "https://127.0.0.1"
    server.socket_host = "0.0.0.0"
    assert server.base() == f"https://{socket.gethostname()}"
    server.socket_host = "::1"
    assert server.base() == "https://[::1]"
    server.socket_file = "/run/app.sock"
    assert server.base() == "/run/app.sock"


def test_bus_defaults_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import morello

    engine = Bus()
    monkeypatch.setattr(morello, "engine", engine, raising=False)
    assert Server().bus is engine
    other = Bus()
    assert Server(other).bus is other


def test_httpserver_is_built_from_settings() -> None:
    server = Server(Bus(), echo_app)
    server.socket_port = 0
    server.thread_pool = 3
    server.thread_pool_max = 7
    server.socket_queue_size = 17
    server.socket_timeout = 4
    server.shutdown_timeout = 2
    server.protocol_version = "HTTP/1.0"
    server.max_request_header_size = None  # type: ignore[assignment]
    server.max_request_body_size = 1234
    server.statistics = True
    server.nodelay = False
    httpserver, bind_addr = server.httpserver_from_self()
    assert isinstance(httpserver, WSGIServer)
    assert bind_addr == ("127.0.0.1", 0)
    assert httpserver.wsgi_app is echo_app
    assert (httpserver.requests.min, httpserver.requests.max) == (3, 7)
    assert httpserver.request_queue_size == 17
    assert (httpserver.timeout, httpserver.shutdown_timeout) == (4, 2)
    assert httpserver.protocol == "HTTP/1.0"
    assert (httpserver.max_request_header_size, httpserver.max_request_body_size) == (0, 1234)
    assert httpserver.stats["Enabled"] is True
    assert httpserver.nodelay is False
    assert httpserver.ssl_adapter is None
    assert httpserver.server_name == "127.0.0.1"
    assert httpserver.version.startswith("morello/")


def test_instance_is_used_as_is_or_built_from_a_dotted_name() -> None:
    server = Server(Bus(), echo_app)
    ready_made = cheroot.wsgi.Server(("127.0.0.1", 0), echo_app)
    server.instance = ready_made
    assert server.httpserver_from_self()[0] is ready_made
    server.instance = "morello.httpserver.WSGIServer"
    built = server.httpserver_from_self()[0]
    assert isinstance(built, WSGIServer) and built.server_adapter is server


# -- serving -------------------------------------------------------------


def test_serves_on_an_ephemeral_port_and_frees_it(bus: Bus) -> None:
    server = make_server(bus)
    bus.start()
    assert server.running
    host, port = server.bound_addr  # type: ignore[misc]
    assert (host, port != 0) == ("127.0.0.1", True)
    assert f"Serving on http://127.0.0.1:{port}" in [m for _, m in bus.messages]  # type: ignore[attr-defined]
    assert server.description == f"http://127.0.0.1:{port}"
    assert server.base() == f"http://127.0.0.1:{port}"
    status, body = get(server.bound_addr, "/hello")
    assert status == 200
    assert body.split()[1:] == [b"http", str(port).encode(), b"/hello"]
    bus.stop()
    assert not server.running
    assert refuses_connections(port)
    # Nothing is bound any more: back to the port asked for.
    assert server.bound_addr == server.bind_addr == ("127.0.0.1", 0)
    server.stop()  # stopping twice is harmless
    assert any("already shut down" in m for _, m in bus.messages)  # type: ignore[attr-defined]


def test_absolute_request_targets_are_accepted(bus: Bus) -> None:
    server = make_server(bus)
    bus.start()
    status, body = get(server.bound_addr, "http://example.com/abs")
    assert status == 200
    assert body.endswith(b"/abs")


def test_several_servers_share_one_bus(bus: Bus) -> None:
    first, second = make_server(bus), make_server(bus)
    bus.start()
    ports = {first.bound_addr[1], second.bound_addr[1]}  # type: ignore[index]
    assert len(ports) == 2
    for port in ports:
        assert get(("127.0.0.1", port))[0] == 200
    bus.stop()
    assert all(refuses_connections(port) for port in ports)


def test_oversized_headers_are_refused_and_serving_goes_on(bus: Bus) -> None:
    server = make_server(bus, max_request_header_size=1024, max_request_body_size=100)
    bus.start()
    status, _ = get(server.bound_addr, headers={"X-Big": "a" * 3000})
    assert status in (413, 431)
    status, _ = get(server.bound_addr, method="POST", headers={"Content-Length": "500"})
    assert status == 413
    assert get(server.bound_addr)[0] == 200


def test_graceful_leaves_the_server_serving(bus: Bus) -> None:
    port = free_port()
    server = make_server(bus, socket_port=port)
    bus.start()
    # A keep-alive connection opened before the graceful reload keeps working.
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    assert request(idle)[0] == 200
    first_httpserver = server.httpserver
    bus.graceful()
    assert server.running and server.httpserver is first_httpserver
    assert request(idle)[0] == 200
    serving = [m for _, m in bus.messages if m.startswith("Serving on")]  # type: ignore[attr-defined]
    assert serving == [f"Serving on http://127.0.0.1:{port}"]
    idle.close()


def test_graceful_does_not_start_a_stopped_server(bus: Bus) -> None:
    server = make_server(bus)
    bus.graceful()
    assert not server.running and server.httpserver is None


def test_unix_socket_file(bus: Bus, tmp_path: Any) -> None:
    path = str(tmp_path / "app.sock")
    server = make_server(bus, socket_file=path)
    bus.start()
    assert os.path.exists(path)
    assert server.description == f"socket file: {path}"
    assert server.base() == path
    status, body = get(path, "/unix")
    assert status == 200 and body.endswith(b"/unix")
    bus.stop()
    assert not server.running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    options = (
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        " -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
    )
    subprocess.run(
        [openssl, *options.split(), "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_https_with_a_self_signed_certificate(bus: Bus, certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server = make_server(bus, ssl_certificate=cert, ssl_private_key=key)
    bus.start()
    host, port = server.bound_addr  # type: ignore[misc]
    assert server.description == f"https://127.0.0.1:{port}"
    assert server.base() == f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    with contextlib.closing(conn):
        status, body = request(conn, "/secure")
    assert status == 200
    assert body.split()[1] == b"https"
    with pytest.raises(ssl.SSLError):
        insecure = http.client.HTTPSConnection(host, port, timeout=10)  # default CAs only
        with contextlib.closing(insecure):
            request(insecure)


def test_ssl_context_replaces_the_one_built_from_files(
    bus: Bus, certificate: tuple[str, str]
) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server(bus, ssl_certificate=cert, ssl_private_key=key, ssl_context=context)
    bus.start()
    assert server.httpserver.ssl_adapter.context is context
    client = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection(*server.bound_addr, context=client, timeout=10)  # type: ignore[misc]
    with contextlib.closing(conn):
        assert request(conn)[0] == 200


# -- start-up failures and crashes -----------------------------------------


def test_port_in_use_fails_start_in_the_caller(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers.Timeouts, "free", 0.2)
    with listening_socket() as taken:
        server = make_server(bus, socket_port=taken.getsockname()[1])
        with pytest.raises(OSError, match="not free"):
            server.start()
        assert not server.running
        # Through the bus, the failure stops the bus instead of killing the process.
        with pytest.raises(Exception, match="not free"):
            bus.start()
        assert bus.state is states.EXITING


def test_bind_error_is_raised_by_start(bus: Bus, tmp_path: Any) -> None:
    server = make_server(bus, socket_file=str(tmp_path / "missing-dir" / "app.sock"))
    with pytest.raises(OSError):
        server.start()
    assert not server.running and server.interrupt is None


def test_crash_in_the_server_thread_exits_the_bus(bus: Bus) -> None:
    exited = threading.Event()
    bus.subscribe("exit", exited.set)
    server = make_server(bus)
    bus.start()
    port = server.bound_addr[1]  # type: ignore[index]
    boom = RuntimeError("boom")
    server.httpserver.interrupt = boom  # how cheroot reports a fatal error
    assert exited.wait(DEADLINE)
    assert server.interrupt is boom
    assert not server.running
    assert refuses_connections(port)
    assert any(
        level == 40 and "Error in HTTP server" in msg
        for level, msg in bus.messages  # type: ignore[attr-defined]
    )


class OpaqueServer:
    """A server exposing only start/stop/ready, like third-party servers do."""

    def __init__(self, bind_addr: tuple[str, int], fail: bool = False) -> None:
        self.inner = cheroot.wsgi.Server(bind_addr, echo_app)
        self.fail = fail

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def start(self) -> None:
        if self.fail:
            raise RuntimeError("cannot start")
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()


def test_adapter_runs_an_opaque_server(bus: Bus) -> None:
    addr = ("127.0.0.1", free_port())
    adapter = ServerAdapter(bus, OpaqueServer(addr), addr)
    adapter.subscribe()
    bus.start()
    assert adapter.running
    assert adapter.description == f"http://127.0.0.1:{addr[1]}"
    assert get(addr)[0] == 200
    bus.stop()
    assert refuses_connections(addr[1])


def test_adapter_reraises_an_opaque_start_failure(bus: Bus) -> None:
    addr = ("127.0.0.1", free_port())
    adapter = ServerAdapter(bus, OpaqueServer(addr, fail=True), addr)
    with pytest.raises(RuntimeError, match="cannot start"):
        adapter.start()
    assert not adapter.running
    assert bus.state is states.STOPPED  # a start-up failure is not a crash


def test_adapter_without_a_server() -> None:
    adapter = ServerAdapter(Bus())
    assert adapter.description == "unknown interface (dynamic?)"
    with pytest.raises(ValueError, match="No HTTP server"):
        adapter.start()


# -- pre-bound listening sockets ---------------------------------------------


class RecordingSocket(socket.socket):
    """A socket noting the calls that would change a shared listening socket."""

    calls: list[str] = []

    def bind(self, *args: Any) -> None:
        RecordingSocket.calls.append("bind")
        super().bind(*args)

    def listen(self, *args: Any) -> None:
        RecordingSocket.calls.append("listen")
        super().listen(*args)

    def setsockopt(self, *args: Any) -> None:  # type: ignore[override]
        nodelay = args[:2] == (socket.IPPROTO_TCP, socket.TCP_NODELAY)
        RecordingSocket.calls.append("TCP_NODELAY" if nodelay else "setsockopt")
        super().setsockopt(*args)


def test_handed_over_socket_is_served_as_is_and_reused(bus: Bus) -> None:
    listener = RecordingSocket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    RecordingSocket.calls.clear()
    port = listener.getsockname()[1]
    try:
        for round_number in range(2):
            server = Server(bus, echo_app)
            server.listen_socket = listener
            assert server.bind_addr == ("127.0.0.1", port)
            server.start()
            assert server.description == f"http://127.0.0.1:{port}"
            status, body = get(("127.0.0.1", port), f"/round{round_number}")
            assert status == 200
            assert body.split()[2:] == [str(port).encode(), f"/round{round_number}".encode()]
            server.stop()  # would raise if it waited for the port to be free
            assert not server.running
            # The owner's socket is still open and listening.
            assert listener.fileno() != -1
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        # Nothing that touches the binding or the backlog; only TCP_NODELAY,
        # which accepted connections inherit (without it small responses wait
        # for delayed ACKs).
        assert set(RecordingSocket.calls) == {"TCP_NODELAY"}
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # queued in the backlog: nobody closed the listener
    finally:
        listener.close()


def test_handed_over_descriptor_is_duplicated_not_closed(bus: Bus) -> None:
    with listening_socket() as listener:
        fd = listener.fileno()
        server = make_server(bus, listen_socket=fd)
        bus.start()
        assert get(listener.getsockname())[0] == 200
        bus.stop()
        os.fstat(fd)  # still open
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert server.httpserver.socket is None


def test_handed_over_unix_socket_is_not_unlinked(bus: Bus, tmp_path: Any) -> None:
    path = str(tmp_path / "master.sock")
    with listening_socket(socket.AF_UNIX, path) as listener:
        for _ in range(2):
            server = make_server(bus, listen_socket=listener)
            assert server.bind_addr == path
            bus.start()
            assert server.description == f"socket file: {path}"
            assert get(path)[0] == 200
            bus.stop()
            server.unsubscribe()
            assert os.path.exists(path)
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_a_socket_that_is_not_listening_is_refused(bus: Bus) -> None:
    with socket.socket() as unlistened:
        unlistened.bind(("127.0.0.1", 0))
        server = make_server(bus, listen_socket=unlistened)
        with pytest.raises(ValueError, match="listening"):
            server.start()
        assert not server.running


def _serve_in_child(listener: socket.socket, ready_fd: int, stop_fd: int) -> None:
    """Child process body: serve the inherited socket until stop_fd reaches EOF."""
    bus = Bus()
    server = Server(bus, echo_app)
    server.listen_socket = listener
    server.subscribe()
    bus.start()
    os.write(ready_fd, b"ready")
    os.read(stop_fd, 1)
    bus.exit()


def _wait_readable(fd: int, deadline: float) -> bytes:
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "child did not report ready in time"
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            return os.read(fd, 16)


def _wait_stopped(pid: int, deadline: float) -> None:
    """Wait until a SIGSTOP sent to ``pid`` took effect (kill() does not wait)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
        if done:
            assert os.WIFSTOPPED(status), f"child {pid} ended instead of stopping"
            return
        assert time.monotonic() < deadline, f"child {pid} did not stop in time"
        time.sleep(0.001)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_children_serve_one_inherited_socket() -> None:
    listener = listening_socket()
    port = listener.getsockname()[1]
    children: list[tuple[int, int, int]] = []  # (pid, ready read end, stop write end)
    try:
        for _ in range(2):
            ready_r, ready_w = os.pipe()
            stop_r, stop_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    # Drop the parent's ends, ours and the earlier children's,
                    # so each child sees EOF when the parent lets go of it.
                    for _, r, w in children:
                        os.close(r)
                        os.close(w)
                    os.close(ready_r)
                    os.close(stop_w)
                    _serve_in_child(listener, ready_w, stop_r)
                    code = 0
                finally:
                    os._exit(code)
            os.close(ready_w)
            os.close(stop_r)
            children.append((pid, ready_r, stop_w))

        deadline = time.monotonic() + DEADLINE
        for _, ready_r, _ in children:
            assert _wait_readable(ready_r, deadline) == b"ready"
        pids = [pid for pid, _, _ in children]

        def answering_pid() -> int:
            status, body = get(("127.0.0.1", port))
            assert status == 200
            return int(body.split()[0])

        # Freeze one child: the other must answer alone, then the other way round.
        for frozen, expected in ((pids[1], pids[0]), (pids[0], pids[1])):
            os.kill(frozen, signal.SIGSTOP)
            try:
                _wait_stopped(frozen, time.monotonic() + DEADLINE)
                assert answering_pid() == expected
            finally:
                os.kill(frozen, signal.SIGCONT)

        answers = collections.Counter(answering_pid() for _ in range(20))
        assert sum(answers.values()) == 20
        assert set(answers) <= set(pids)
    finally:
        for _pid, ready_r, stop_w in children:
            os.close(ready_r)
            os.close(stop_w)
        deadline = time.monotonic() + DEADLINE
        codes = [wait_for_exit(pid, deadline - time.monotonic()) for pid, _, _ in children]
        listener.close()
    assert codes == [0, 0]


# -- the server config namespace -------------------------------------------


def test_server_namespace_handler(monkeypatch: pytest.MonkeyPatch, bus: Bus) -> None:
    import morello

    main = Server(bus, echo_app)
    monkeypatch.setattr(morello, "server", main, raising=False)
    monkeypatch.setattr(morello, "engine", bus, raising=False)
    monkeypatch.setattr(morello, "servers", {}, raising=False)

    server_namespace_handler("socket_port", 0)
    server_namespace_handler("thread_pool", 3)
    assert (main.socket_port, main.thread_pool) == (0, 3)

    server_namespace_handler("alt.socket_port", 0)
    server_namespace_handler("alt.app", echo_app)
    extra = morello.servers["alt"]
    assert isinstance(extra, Server) and extra is not main
    assert extra.bus is bus and extra.socket_port == 0
    assert extra.start in bus.listeners["start"]

    server_namespace_handler("off.socket_port", 0)
    server_namespace_handler("off.on", False)
    assert morello.servers["off"].start not in bus.listeners["start"]

    bus.start()
    assert get(extra.bound_addr)[0] == 200
    assert not morello.servers["off"].running


def test_many_keep_alive_connections_stay_open(bus: Bus) -> None:
    """Forty clients each keep their connection between requests (cheroot's own limit
    of 10 idle ones made the others reconnect); the limit is a setting."""
    server = make_server(bus, socket_queue_size=64)
    bus.start()
    clients = [socket.create_connection(server.bound_addr, timeout=10) for _ in range(40)]
    try:
        for _ in range(2):
            for client in clients:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = [client.recv(65536) for client in clients]
            assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)
            assert not [a for a in answers if b"connection: close" in a.lower()]
    finally:
        for client in clients:
            client.close()
    assert server.httpserver.keep_alive_conn_limit == 1000
