"""MemcachedSession against a real memcached: data, expiry, locks, store down, fork safety."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from bus_support import fork, wait_for_exit
from morello.sessions.base import LockTimeout
from morello.sessions.memcached_store import LOCK_SUFFIX, MemcachedSession, normalize_servers
from store_servers import MemcachedServer, free_port
from test_sessions import (
    Root,
    assert_no_lost_updates,
    session_id,
    sessions_config,
    with_cookie,
)

PREFIX = "morello-session-"


def memcached_config(servers: Any, **options: Any) -> dict[str, Any]:
    return sessions_config(storage_class=MemcachedSession, servers=servers, **options)


def ttl(server: MemcachedServer, key: str) -> int:
    """The remaining TTL of ``key`` in seconds (memcached's meta get), -2 if absent."""
    client = server.client()
    try:
        reply = client.raw_command(f"mg {key} t".encode())
    finally:
        client.close()
    if reply.startswith(b"EN"):
        return -2
    return int(reply.split()[1][1:])


def test_counter_ttl_and_touch(serve: Any, memcached_store: MemcachedServer) -> None:
    client = serve(Root(), {"/": memcached_config(memcached_store.servers, timeout=1)})
    sid = session_id(client.get("/count"))
    assert client.get("/count", with_cookie(sid)).body == b"2"
    key = PREFIX + sid
    assert 55 <= ttl(memcached_store, key) <= 60  # the expiry is the memcached TTL
    raw = memcached_store.client()
    record = raw.get(key)
    raw.touch(key, 5)
    # A read-only request refreshes the TTL without rewriting the data.
    assert client.get("/read", with_cookie(sid)).body == b"2"
    assert ttl(memcached_store, key) >= 55 and raw.get(key) == record
    # No lock is left held: the lock item is absent or marked free.
    assert raw.get(key + LOCK_SUFFIX) in (None, b"-")
    raw.close()


def test_storage_type_memcached_from_config(serve: Any, memcached_store: MemcachedServer) -> None:
    # CherryPy's way to pick the store: a storage_type name and "host:port" strings.
    servers = [f"{host}:{port}" for host, port in memcached_store.servers]
    config = sessions_config(storage_type="memcached", servers=servers)
    client = serve(Root(), {"/": config})
    sid = session_id(client.get("/count"))
    assert client.get("/count", with_cookie(sid)).body == b"2"
    assert memcached_store.client().get(PREFIX + sid) is not None


def test_expired_session_is_gone(memcached_store: MemcachedServer) -> None:
    options = {"servers": memcached_store.servers, "timeout": 1 / 60}
    session = MemcachedSession(**options)
    session["a"] = 1
    session.save()
    assert MemcachedSession(session.id, **options).get("a") == 1
    time.sleep(2.1)
    later = MemcachedSession(session.id, **options)
    # Asking whether it is missing checks the store, and moves to a new id.
    assert later.missing and later.id != session.id and later.get("a") is None


def test_lock_excludes_a_forked_process_and_children_get_their_own_clients(
    memcached_store: MemcachedServer,
) -> None:
    options = {"servers": memcached_store.servers, "lock_timeout": 0.2}
    owner = MemcachedSession(**options)
    owner["a"] = 1
    owner.save()
    owner.acquire_lock()
    parent_pool = owner._client()

    def blocked() -> None:
        other = MemcachedSession(owner.id, **options)
        assert other._client() is not parent_pool  # fork safety: no inherited sockets
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            other.acquire_lock()
        assert time.monotonic() - started < 0.5

    def free() -> None:
        other = MemcachedSession(owner.id, **options)
        other.acquire_lock()  # takes over the released lock at once
        assert other.locked and other["a"] == 1
        other.release_lock()

    assert wait_for_exit(fork(blocked)) == 0
    owner.release_lock()
    assert wait_for_exit(fork(free)) == 0
    assert owner._client() is parent_pool  # the parent keeps its own


def test_release_leaves_a_lock_taken_by_someone_else(memcached_store: MemcachedServer) -> None:
    session = MemcachedSession(servers=memcached_store.servers)
    session.acquire_lock()
    # As if our lock had expired and another worker had taken it since.
    raw = memcached_store.client()
    raw.set(PREFIX + session.id + LOCK_SUFFIX, b"their-token")
    session.release_lock()
    assert raw.get(PREFIX + session.id + LOCK_SUFFIX) == b"their-token"
    assert not session.locked
    raw.close()


def test_no_lost_updates_across_two_worker_processes(memcached_store: MemcachedServer) -> None:
    assert_no_lost_updates(memcached_config(memcached_store.servers))


def _session_on(client: Any, server: MemcachedServer) -> str:
    """A session id whose record landed on ``server`` (of the store's several)."""
    raw = server.client()
    try:
        for _ in range(100):
            sid = session_id(client.get("/count"))
            if raw.get(PREFIX + sid) is not None:
                return sid
    finally:
        raw.close()
    raise AssertionError("no session landed on this server")


def test_store_down_gives_quick_503_and_recovers(
    serve: Any, memcached_store: MemcachedServer, fresh_memcached_server: MemcachedServer
) -> None:
    # Two servers: sessions are spread over both and never move when one fails.
    servers = memcached_store.servers + fresh_memcached_server.servers
    client = serve(Root(), {"/": memcached_config(servers, socket_timeout=0.3)})
    doomed = _session_on(client, fresh_memcached_server)
    alive = _session_on(client, memcached_store)

    fresh_memcached_server.kill()
    started = time.monotonic()
    down = client.get("/count", with_cookie(doomed))
    assert down.status == 503 and b"unavailable" in down.body
    assert time.monotonic() - started < 0.5
    assert client.get("/nothing").status == 200
    assert client.get("/count", with_cookie(alive)).body == b"2"

    fresh_memcached_server.restart()
    assert client.get("/count", with_cookie(doomed)).status == 200  # recovered by itself

    # A hung (not dead) server: reads time out after socket_timeout, not forever.
    doomed = _session_on(client, fresh_memcached_server)
    os.kill(fresh_memcached_server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert client.get("/count", with_cookie(doomed)).status == 503
        assert time.monotonic() - started < 1.0
    finally:
        os.kill(fresh_memcached_server.pid, signal.SIGCONT)
    assert client.get("/count", with_cookie(doomed)).status == 200


def test_session_free_request_with_a_cookie_while_store_is_down(serve: Any) -> None:
    dead = ("127.0.0.1", free_port())
    client = serve(Root(), {"/": memcached_config([dead])})
    assert client.get("/nothing", with_cookie("a" * 40)).status == 200


def test_options_len_and_clean_up(memcached_store: MemcachedServer) -> None:
    assert normalize_servers(["a:1", ("b", 2), "[::1]:3", "c", "::1"]) == (
        ("a", 1),
        ("b", 2),
        ("::1", 3),
        ("c", 11211),
        ("::1", 11211),
    )
    assert normalize_servers("a:1") == normalize_servers(("a", 1)) == (("a", 1),)
    with pytest.raises(ValueError, match="prefix"):
        MemcachedSession.setup(prefix="has space")
    with pytest.raises(ValueError, match="no memcached server"):
        MemcachedSession.setup(servers=[])
    session = MemcachedSession(servers=memcached_store.servers, prefix="app1:")
    session["a"] = 1
    session.save()
    raw = memcached_store.client()
    assert raw.get(f"app1:{session.id}") is not None
    raw.close()
    session.clean_up()  # memcached expires records itself
    with pytest.raises(NotImplementedError):
        len(session)
