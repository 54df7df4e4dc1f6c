"""The private redis-server and memcached of ``store_servers`` start, fail, crash and stop."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest
import redis
import store_servers
from pymemcache.exceptions import MemcacheError
from store_servers import (
    CLIENT_TIMEOUT,
    INSTALL_HINT,
    MemcachedServer,
    RedisServer,
    ServerStartError,
    _running,
)

KINDS = [RedisServer, MemcachedServer]
# Errors a client may raise against a dead server: refused connect, reset or closed socket.
DOWN_ERRORS = (OSError, redis.ConnectionError, MemcacheError)


def put(server: RedisServer | MemcachedServer, key: str, value: bytes) -> None:
    if isinstance(server, RedisServer):
        with server.client() as client:
            client.set(key, value)
    else:
        server.client().set(key, value, noreply=False)


def get(server: RedisServer | MemcachedServer, key: str) -> bytes | None:
    if isinstance(server, RedisServer):
        with server.client() as client:
            return client.get(key)
    return server.client().get(key)


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT).close()
    except OSError:
        return False
    return True


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by a listening socket of the test's own."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_redis_store_sets_and_gets(redis_store: RedisServer) -> None:
    put(redis_store, "k", b"v")
    assert get(redis_store, "k") == b"v"
    assert redis_store.url == f"redis://127.0.0.1:{redis_store.port}/0"


def test_memcached_store_sets_and_gets(memcached_store: MemcachedServer) -> None:
    put(memcached_store, "k", b"v")
    assert get(memcached_store, "k") == b"v"
    assert memcached_store.servers == [("127.0.0.1", memcached_store.port)]


def test_store_fixtures_share_the_session_server(
    redis_server: RedisServer,
    redis_store: RedisServer,
    memcached_server: MemcachedServer,
    memcached_store: MemcachedServer,
) -> None:
    assert redis_store is redis_server
    assert memcached_store is memcached_server


@pytest.mark.parametrize("kind", KINDS)
def test_flush_empties_the_server(kind: type[RedisServer | MemcachedServer]) -> None:
    with kind() as server:
        put(server, "k", b"v")
        server.flush()
        assert get(server, "k") is None


def test_redis_kill_then_restart(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    client = server.client()
    client.set("k", b"v")
    port, pid = server.port, server.pid
    assert pid is not None

    server.kill()
    assert not server.running
    assert not process_exists(pid)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    assert time.monotonic() - started < 2 * CLIENT_TIMEOUT

    server.restart()
    assert server.port == port and server.pid != pid
    # The same client reconnects; the data is gone since nothing is persisted.
    assert client.ping()
    assert client.get("k") is None
    client.close()


def test_memcached_kill_then_restart(fresh_memcached_server: MemcachedServer) -> None:
    server = fresh_memcached_server
    client = server.client()
    client.set("k", b"v", noreply=False)
    port, pid = server.port, server.pid
    assert pid is not None

    server.kill()
    assert not server.running
    assert not process_exists(pid)
    started = time.monotonic()
    with pytest.raises(DOWN_ERRORS):
        client.get("k")
    assert time.monotonic() - started < 2 * CLIENT_TIMEOUT

    server.restart()
    assert server.port == port and server.pid != pid
    # The same client reconnects; the data is gone with the crashed process.
    assert client.get("k") is None
    client.set("k", b"again", noreply=False)
    assert client.get("k") == b"again"
    client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_restart_of_a_running_server_keeps_the_port(
    kind: type[RedisServer | MemcachedServer],
) -> None:
    with kind() as server:
        port, pid = server.port, server.pid
        server.restart()
        assert server.port == port and server.pid != pid
        put(server, "k", b"v")
        assert get(server, "k") == b"v"


@pytest.mark.parametrize("kind", KINDS)
def test_stop_leaves_no_process_port_or_directory(
    kind: type[RedisServer | MemcachedServer],
) -> None:
    server = kind().start()
    pid, tmpdir = server.pid, server.tmpdir
    assert pid is not None and tmpdir is not None
    assert server.log_path.parent == tmpdir and tmpdir.is_dir()

    server.stop()
    assert not server.running
    assert not process_exists(pid)
    assert not port_answers(server.port)
    assert not tmpdir.exists()
    server.stop()  # idempotent


@pytest.mark.parametrize("kind", KINDS)
def test_stop_kills_a_server_that_ignores_sigterm(
    kind: type[RedisServer | MemcachedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_servers, "STOP_TIMEOUT", 0.2)
    server = kind().start()
    assert server.proc is not None
    # A stopped process leaves SIGTERM pending, as a hung server would.
    os.kill(server.proc.pid, signal.SIGSTOP)
    server.stop()
    assert server.proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kind", KINDS)
def test_two_servers_get_different_ports(kind: type[RedisServer | MemcachedServer]) -> None:
    with kind() as first, kind() as second:
        assert first.port != second.port
        assert first.tmpdir != second.tmpdir
        put(first, "k", b"first")
        assert get(second, "k") is None


@pytest.mark.parametrize("kind", KINDS)
def test_failed_start_shows_the_log_and_cleans_up(
    kind: type[RedisServer | MemcachedServer], taken_port: int
) -> None:
    server = kind(port=taken_port)
    with pytest.raises(ServerStartError, match="Address already in use") as failure:
        server.start()
    assert f"127.0.0.1:{taken_port} exited with code" in str(failure.value)
    assert server.tmpdir is not None and not server.tmpdir.exists()
    assert not server.running


@pytest.mark.parametrize("kind", KINDS)
def test_missing_program_fails_the_fixture_with_the_install_command(
    kind: type[RedisServer | MemcachedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kind, "program", "morello-no-such-server")
    with pytest.raises(pytest.fail.Exception, match=INSTALL_HINT):
        next(_running(kind()))


@pytest.mark.parametrize("kind", KINDS)
def test_another_server_on_the_port_does_not_count_as_started(
    kind: type[RedisServer | MemcachedServer],
) -> None:
    with kind() as other:
        with pytest.raises(ServerStartError, match="exited with code"):
            kind(port=other.port).start()
        assert other.running


@pytest.mark.parametrize("kind", KINDS)
def test_a_picked_port_taken_meanwhile_is_replaced(
    kind: type[RedisServer | MemcachedServer],
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picks = iter([taken_port, store_servers.free_port()])
    monkeypatch.setattr(store_servers, "free_port", lambda: next(picks))
    with kind() as server:
        assert server.port != taken_port
        put(server, "k", b"v")
        assert get(server, "k") == b"v"
        assert "Address already in use" in server.log()
