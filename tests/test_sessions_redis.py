"""RedisSession against real redis-servers: data, TTL, locks, workers, outages, fork,
Sentinel (with a failover) and Cluster."""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Any

import pytest
import redis
from bus_support import fork, wait_for_exit
from morello.sessions.base import LockTimeout, SessionUnavailable
from morello.sessions.redis_store import RedisSession
from redis.cluster import RedisCluster as ClusterClient
from redis.sentinel import SentinelConnectionPool
from store_servers import RedisCluster, RedisReplica, RedisSentinel, RedisServer, free_port
from test_sessions import (
    Root,
    assert_no_lost_updates,
    session_id,
    sessions_config,
    with_cookie,
)

PREFIX = "morello-session:"


def redis_config(server: RedisServer, **options: Any) -> dict[str, Any]:
    return sessions_config(storage_type="redis", url=server.url, **options)


def new_session(server: RedisServer, id: str | None = None, **options: Any) -> RedisSession:
    """A session used directly: locks are taken only where a test asks for them."""
    return RedisSession(id, url=server.url, clean_freq=0, locking="explicit", **options)


def stored_session(server: RedisServer, **options: Any) -> RedisSession:
    """A session with a record in Redis, so other session objects can open its id."""
    session = new_session(server, **options)
    session["stored"] = True
    session.save()
    return session


def test_counter_across_requests(serve: Any, redis_store: RedisServer) -> None:
    client = serve(Root(), {"/": redis_config(redis_store)})
    sid = session_id(client.get("/count"))
    for expected in (b"2", b"3"):
        assert client.get("/count", with_cookie(sid)).body == expected
    with redis_store.client() as r:
        assert r.keys("*") == [f"{PREFIX}{sid}".encode()]  # no lock left behind
        assert 3590_000 < r.pttl(PREFIX + sid) <= 3600_000
    assert len(new_session(redis_store)) == 1


def test_expiry_through_ttl(redis_store: RedisServer) -> None:
    session = new_session(redis_store, timeout=0.5 / 60)
    session["a"] = 1
    session.save()
    assert new_session(redis_store, session.id).get("a") == 1
    reader = new_session(redis_store, session.id, timeout=1 / 60)
    assert reader.get("a") == 1
    reader.save()  # a read refreshes the TTL without rewriting
    with redis_store.client() as r:
        assert 900 < r.pttl(PREFIX + session.id) <= 1000
    time.sleep(1.1)
    later = new_session(redis_store, session.id)
    assert later.get("a") is None and later.id != session.id


def test_lock_excludes_a_second_session_object(redis_store: RedisServer) -> None:
    first = stored_session(redis_store)
    first.acquire_lock()
    second = new_session(redis_store, first.id, lock_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        second.acquire_lock()
    assert 0.2 <= time.monotonic() - started < 0.5
    assert second.id == first.id
    first.release_lock()
    second.acquire_lock()
    assert second.locked
    second.release_lock()


def test_lock_excludes_a_forked_process(redis_store: RedisServer) -> None:
    holder = stored_session(redis_store)
    holder.acquire_lock()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            waiter = new_session(redis_store, holder.id, lock_timeout=3)
            started = time.monotonic()
            waiter.acquire_lock()
            os.write(write_end, f"{time.monotonic() - started:.3f}".encode())
            waiter.release_lock()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    time.sleep(0.5)
    holder.release_lock()
    waited = float(os.read(read_end, 100))
    os.close(read_end)
    assert os.waitpid(pid, 0)[1] == 0
    assert 0.4 < waited < 1.5


def test_lock_is_released_only_by_its_owner(redis_store: RedisServer, caplog: Any) -> None:
    stale = stored_session(redis_store, lock_expiry=0.1)
    stale.acquire_lock()
    time.sleep(0.2)  # the lock expires while its owner still runs
    newcomer = new_session(redis_store, stale.id, lock_timeout=0.5)
    newcomer.acquire_lock()
    stale.release_lock()  # must not free the newcomer's lock
    assert "lock expired" in caplog.text
    third = new_session(redis_store, stale.id, lock_timeout=0.1)
    with pytest.raises(LockTimeout):
        third.acquire_lock()
    newcomer.release_lock()
    third.acquire_lock()
    third.release_lock()


def test_no_lost_updates_across_two_worker_processes(redis_store: RedisServer) -> None:
    assert_no_lost_updates(redis_config(redis_store))


def test_store_down_gives_503_then_recovers(serve: Any, fresh_redis_server: RedisServer) -> None:
    client = serve(Root(), {"/": redis_config(fresh_redis_server)})
    sid = session_id(client.get("/count"))
    fresh_redis_server.kill()
    for _ in range(3):
        started = time.monotonic()
        response = client.get("/count", with_cookie(sid))
        assert response.status == 503 and b"unavailable" in response.body
        assert time.monotonic() - started < 1.5
    # Requests that do not use the session (no session cookie yet) are unaffected.
    assert client.get("/nothing").status == 200
    fresh_redis_server.restart()  # no persistence: the old record is gone
    response = client.get("/count", with_cookie(sid))
    assert response.status == 200 and response.body == b"1"
    new_sid = session_id(response)
    assert client.get("/count", with_cookie(new_sid)).body == b"2"


def test_lock_calls_while_down_raise_session_unavailable(
    fresh_redis_server: RedisServer,
) -> None:
    session = stored_session(fresh_redis_server)
    session.acquire_lock()
    fresh_redis_server.kill()
    with pytest.raises(SessionUnavailable):
        session.release_lock()
    assert not session.locked  # the lock expires by itself in Redis
    with pytest.raises(SessionUnavailable):
        session.acquire_lock()


def test_session_free_request_with_a_cookie_while_down(
    serve: Any, fresh_redis_server: RedisServer
) -> None:
    client = serve(Root(), {"/": redis_config(fresh_redis_server)})
    sid = session_id(client.get("/count"))
    fresh_redis_server.kill()
    assert client.get("/nothing", with_cookie(sid)).status == 200


def test_fork_gets_its_own_client(redis_store: RedisServer) -> None:
    parent_session = new_session(redis_store)
    parent_client = parent_session.client
    parent_session["who"] = "parent"
    parent_session.save()
    connection_id = parent_client.client_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            child_session = new_session(redis_store, parent_session.id)
            child_client = child_session.client
            assert child_client is not parent_client
            assert child_client.connection_pool.pid == os.getpid()
            assert child_session["who"] == "parent"
            child_session["who"] = "child"
            child_session.save()
            os.write(write_end, str(child_client.client_id()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    child_connection_id = int(os.read(read_end, 100))
    os.close(read_end)
    assert os.waitpid(pid, 0)[1] == 0
    assert child_connection_id != connection_id
    # The parent's own connection was not touched by the child.
    assert parent_client.client_id() == connection_id
    assert new_session(redis_store, parent_session.id)["who"] == "child"


def test_clients_are_shared_per_options_in_a_process(redis_store: RedisServer) -> None:
    assert new_session(redis_store).client is new_session(redis_store).client
    other = RedisSession(url=redis_store.url, socket_timeout=2.0, clean_freq=0)
    assert other.client is not new_session(redis_store).client


def test_setup_rejects_a_bad_url() -> None:
    with pytest.raises(ValueError):
        RedisSession.setup(url="http://localhost")
    RedisSession.setup(url="unix:///tmp/redis.sock")
    RedisSession.setup(url="rediss://localhost:6380/1")


def test_prefix_separates_stores_and_len_counts_only_records(redis_store: RedisServer) -> None:
    odd = {"prefix": "app[1]*:"}  # glob characters are matched literally
    for options in ({}, odd, odd):
        stored_session(redis_store, **options).acquire_lock()  # locks are not counted
    assert len(new_session(redis_store)) == 1
    assert len(new_session(redis_store, **odd)) == 2


def test_unix_socket_url(tmp_path: Any) -> None:
    socket_path = tmp_path / "redis.sock"
    command = ["redis-server", "--port", "0", "--save", "", "--appendonly", "no"]
    command += ["--unixsocket", str(socket_path), "--dir", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not socket_path.exists():
            assert time.monotonic() < deadline, "redis-server did not open its socket"
            time.sleep(0.01)
        options = {"url": f"unix://{socket_path}", "clean_freq": 0}
        session = RedisSession(**options)
        session["a"] = 1
        session.save()
        assert RedisSession(session.id, **options)["a"] == 1
    finally:
        server.terminate()
        server.wait(5)


def test_setup_rejects_bad_sentinel_and_cluster_urls() -> None:
    for url, message in [
        ("redis+sentinel://h:1/", "/service_name"),
        ("redis+sentinel://h:1/svc/db1", "/service_name/db"),
        ("redis+sentinel://h:x/svc", "'h:x'"),
        ("redis+sentinel:///svc", "names no host"),
        ("redis+sentinel://[::1/svc", "Invalid IPv6 URL"),
        ("redis+sentinel://a,[::1]x/svc", "'[::1]x': expected '[address]:port'"),
        ("redis+sentinel://h/svc?password=x", "unknown parameter"),
        ("redis+cluster://a:1,b:2", "one cluster node"),
        ("redis+cluster://a:1/2", "only database 0"),
        ("localhost:6379", "has no scheme"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            RedisSession.setup(url=url)
    RedisSession.setup(url="redis+sentinel://u:p@a,b:26380,[::1]:1/svc/2?sentinel_password=s")
    RedisSession.setup(url="rediss+cluster://u:p@h:7000/0")


def test_sentinel_url_follows_the_master_across_a_failover(
    serve: Any, redis_sentinel: RedisSentinel, redis_replica: RedisReplica
) -> None:
    # The first sentinel listed is down: the client asks the next one.
    url = redis_sentinel.session_url.replace("//", f"//127.0.0.1:{free_port()},", 1)
    client = serve(Root(), {"/": sessions_config(storage_type="redis", url=url)})
    sid = session_id(client.get("/count"))
    assert client.get("/count", with_cookie(sid)).body == b"2"
    session = RedisSession(sid, url=url, clean_freq=0)
    assert isinstance(session.client.connection_pool, SentinelConnectionPool)
    parent_client = session.client
    assert wait_for_exit(fork(lambda: child_has_its_own_client(session, parent_client))) == 0
    with redis_sentinel.master.client() as master:
        assert master.exists(PREFIX + sid)
        assert master.wait(1, 5000) == 1  # the replica has the record too

    with redis_sentinel.client() as sentinel:
        deadline = time.monotonic() + 15
        while True:  # until the sentinel has heard from the replica it is to promote
            try:
                sentinel.execute_command("SENTINEL", "FAILOVER", redis_sentinel.service)
                break
            except redis.ResponseError as exc:
                assert "NOGOODSLAVE" in str(exc) and time.monotonic() < deadline
                time.sleep(0.05)
        service = redis_sentinel.service
        while int(sentinel.sentinel_get_master_addr_by_name(service)[1]) != redis_replica.port:
            assert time.monotonic() < deadline, "the sentinel did not fail over"
            time.sleep(0.05)
    statuses = []
    for _ in range(5):  # bounded: a request may still meet the demoted master
        response = client.get("/count", with_cookie(sid))
        statuses.append(response.status)
        if response.status == 200:
            break
    assert statuses[-1] == 200 and statuses.count(503) <= 1
    assert response.body == b"3"
    with redis_replica.client() as new_master:
        assert new_master.get(PREFIX + sid) is not None


def child_has_its_own_client(parent: RedisSession, parent_client: Any) -> None:
    """In a forked child: the session's client is not the parent's, and works."""
    child = RedisSession(parent.id, url=parent.url, clean_freq=0, locking="explicit")
    assert child.client is not parent_client
    assert child.client.connection_pool.pid == os.getpid()
    assert child["n"] == 2


def test_cluster_url(serve: Any, redis_cluster: RedisCluster) -> None:
    config = sessions_config(storage_type="redis", url=redis_cluster.url)
    client = serve(Root(), {"/": config})
    sids = [session_id(client.get("/count")) for _ in range(12)]
    for sid in sids:
        assert client.get("/count", with_cookie(sid)).body == b"2"
    per_node = []
    for node in redis_cluster.nodes:
        with node.client() as raw:
            per_node.append(raw.dbsize())
    assert sum(per_node) == 12 and sum(1 for count in per_node if count) >= 2
    session = RedisSession(sids[0], url=redis_cluster.url, clean_freq=0, lock_timeout=0.1)
    assert isinstance(session.client, ClusterClient)
    assert len(session) == 12  # counted on every node
    session.acquire_lock()
    with pytest.raises(LockTimeout):
        RedisSession(sids[0], url=redis_cluster.url, clean_freq=0, lock_timeout=0.1).acquire_lock()
    session.release_lock()
    # Optimistic merges use one-key scripts, which a cluster runs on the key's node.
    first, second = (
        RedisSession(sids[0], url=redis_cluster.url, clean_freq=0, locking="optimistic")
        for _ in range(2)
    )
    first["a"], second["b"] = 1, 2
    first.save()
    second.save()
    assert dict(RedisSession(sids[0], url=redis_cluster.url).items()) == {"n": 2, "a": 1, "b": 2}
