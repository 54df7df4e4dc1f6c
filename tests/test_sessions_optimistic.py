"""locking='optimistic': no lock during the handler, changed keys merged at save.

Every store is run for real: RAM in one process, file, memcached and Redis
behind two forked workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from morello.sessions import base
from morello.sessions.base import Session, SessionUnavailable
from morello.sessions.file import FileSession
from morello.sessions.memcached_store import MemcachedSession
from morello.sessions.ram import RamSession
from morello.sessions.redis_store import RedisSession
from store_servers import MemcachedServer, RedisServer
from test_sessions import (
    Root,
    concurrently,
    file_config,
    session_id,
    sessions_config,
    two_workers,
    with_cookie,
)

import morello

MakeSession = Callable[..., Session]


class Merging(Root):
    @morello.expose
    def put(self, key: str) -> str:
        # Reading first loads the record: another request may save before we do.
        morello.session[key] = len(morello.session.keys())
        return "ok"

    @morello.expose
    def keys(self) -> str:
        return " ".join(sorted(morello.session.keys()))

    @morello.expose
    def locked_count(self) -> str:
        # The recipe for counters under optimistic locking: lock before reading.
        morello.session.acquire_lock()
        morello.session["n"] = morello.session.get("n", 0) + 1
        return str(morello.session["n"])


def optimistic(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "tools.sessions.locking": "optimistic"}


@pytest.fixture(params=["file", "memcached", "redis"])
def shared_store_config(request: Any, tmp_path: Any) -> dict[str, Any]:
    """Config of a store shared by worker processes, with its server running."""
    if request.param == "file":
        return file_config(tmp_path)
    if request.param == "memcached":
        server = request.getfixturevalue("memcached_store")
        return sessions_config(storage_type="memcached", servers=server.servers)
    server = request.getfixturevalue("redis_store")
    return sessions_config(storage_type="redis", url=server.url)


def test_concurrent_requests_setting_different_keys_all_land(
    shared_store_config: dict[str, Any],
) -> None:
    with two_workers(optimistic(shared_store_config), Merging()) as (client, sid):
        keys = [f"k{i}" for i in range(300)]
        statuses = concurrently(client, [f"/put?key={key}" for key in keys], sid)
        assert statuses == [200] * len(keys)
        assert client.get("/keys", with_cookie(sid)).text.split() == sorted(["n", *keys])


def test_counter_locked_explicitly_under_optimistic_locking(
    shared_store_config: dict[str, Any],
) -> None:
    with two_workers(optimistic(shared_store_config), Merging()) as (client, sid):
        assert concurrently(client, ["/locked_count"] * 199, sid) == [200] * 199
        assert client.get("/read", with_cookie(sid)).body == b"200"


def test_concurrent_keys_merge_in_ram(serve: Any) -> None:
    client = serve(Merging(), {"/": optimistic(sessions_config())})
    sid = session_id(client.get("/count"))
    keys = [f"k{i}" for i in range(200)]
    assert concurrently(client, [f"/put?key={key}" for key in keys], sid) == [200] * len(keys)
    assert client.get("/keys", with_cookie(sid)).text.split() == sorted(["n", *keys])


class CountingWrites(RamSession):
    writes: list[str] = []

    def _save(self, record: bytes, expiration_time: float) -> None:
        self.writes.append("save")
        super()._save(record, expiration_time)

    def _touch(self, expiration_time: float) -> None:
        self.writes.append("touch")


def test_reads_write_nothing_but_the_expiry(serve: Any) -> None:
    config = optimistic(sessions_config(storage_class=CountingWrites))
    client = serve(Merging(), {"/": config})
    CountingWrites.writes = []
    sid = session_id(client.get("/count"))
    client.get("/read", with_cookie(sid))
    client.get("/nothing", with_cookie(sid))
    client.get("/read")  # a new, empty session is not stored
    assert CountingWrites.writes == ["save", "touch"]


class AlwaysRacing(RamSession):
    """A store where some other request always saves first."""

    def _apply(self, *args: Any) -> bool:
        return False


def test_a_save_that_keeps_losing_races_is_a_clear_503(serve: Any) -> None:
    config = optimistic(sessions_config(storage_class=AlwaysRacing, lock_timeout=0.3))
    client = serve(Merging(), {"/": config})
    started = time.monotonic()
    response = client.get("/put?key=a")
    assert response.status == 503 and b"changed by too many requests" in response.body
    assert time.monotonic() - started < 1.5
    assert client.get("/nothing").status == 200


# -- conflicts, store by store ------------------------------------------------


def session_maker(request: Any, tmp_path: Any) -> MakeSession:
    """Make sessions of the store ``request.param`` names, with optimistic locking."""
    RamSession.cache.clear()
    RamSession.locks.clear()
    options: dict[str, Any] = {"clean_freq": 0, "locking": "optimistic"}
    cls: type[Session] = RamSession
    if request.param == "file":
        cls, options["storage_path"] = FileSession, str(tmp_path)
    elif request.param == "memcached":
        server: MemcachedServer = request.getfixturevalue("memcached_store")
        cls, options["servers"] = MemcachedSession, server.servers
    elif request.param == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_store")
        cls, options["url"] = RedisSession, redis_server.url
    return lambda id=None, **more: cls(id, **{**options, **more})


@pytest.fixture(params=["ram", "file", "memcached", "redis"])
def make_session(request: Any, tmp_path: Any) -> MakeSession:
    """Make sessions of each store in turn (more options as keywords)."""
    return session_maker(request, tmp_path)


@pytest.fixture(params=["memcached", "redis"])
def make_versioned_session(request: Any, tmp_path: Any) -> MakeSession:
    """Stores whose ``_apply`` writes only over the version it read."""
    return session_maker(request, tmp_path)


@pytest.fixture(params=["ram", "file"])
def make_locked_session(request: Any, tmp_path: Any) -> MakeSession:
    """Stores whose ``_apply`` merges under the session lock."""
    return session_maker(request, tmp_path)


def stored_with(make: MakeSession, **values: Any) -> str:
    session = make()
    session.update(values)
    session.save()
    return session.id  # type: ignore[return-value]


def contents(make: MakeSession, session_id: str) -> dict[str, Any]:
    return dict(make(session_id).items())


def apply_changes(session: Session) -> bool:
    """One ``_apply`` of the session's current changes, as ``save`` would call it."""
    changed, deleted = session.changes()
    return session._apply(changed, deleted, session._created, time.time() + 60)


def test_changes_merge_and_the_same_key_goes_to_the_last_save(make_session: MakeSession) -> None:
    sid = stored_with(make_session, a=1, shared="old", gone=True)
    first, second = make_session(sid), make_session(sid)
    first.update(shared="first", b=2)
    second.update(shared="second", c=3)
    del second["gone"]
    first.save()
    second.save()
    assert contents(make_session, sid) == {"a": 1, "b": 2, "c": 3, "shared": "second"}


def test_a_new_session_is_created(make_session: MakeSession) -> None:
    session = make_session()
    session["a"] = 1
    session.save()
    assert contents(make_session, session.id) == {"a": 1}  # type: ignore[arg-type]


def test_a_write_between_read_and_write_is_a_conflict(
    make_versioned_session: MakeSession,
) -> None:
    """The version check itself: ``_apply`` refuses to write over a record it did not read."""
    make_session = make_versioned_session
    for existing in (True, False):
        sid = stored_with(make_session, a=1) if existing else make_session().id
        writer = make_session(sid)
        writer["b"] = 2
        merge = writer._merged_record

        def race(*args: Any, writer: Session = writer, merge: Any = merge) -> bytes:
            # Another worker writes the record after we read it, before we write.
            intruder = make_session(writer.id)
            record = intruder.codec.pack(time.time(), intruder.codec.encode_values({"c": 3}))
            intruder.id = writer.id
            intruder._save(record, time.time() + 60)
            writer._merged_record = merge  # type: ignore[method-assign]
            return merge(*args)

        writer._merged_record = race  # type: ignore[method-assign]
        assert apply_changes(writer) is False
        assert apply_changes(writer) is True  # merged into the intruder's record
        assert contents(make_session, writer.id) == {"b": 2, "c": 3}  # type: ignore[arg-type]


def test_a_busy_lock_is_a_conflict_and_save_retries(make_locked_session: MakeSession) -> None:
    """RAM and file merge under the session lock: held by another, ``_apply`` says conflict."""
    make_session = make_locked_session
    sid = stored_with(make_session, a=1)
    holder = make_session(sid, locking="explicit")
    holder.acquire_lock()
    writer = make_session(sid)
    writer["b"] = 2
    assert apply_changes(writer) is False

    conflicts, attempt = [], writer._apply
    conflicted = threading.Event()

    def counted(*args: Any) -> bool:
        result = attempt(*args)
        if not result:
            conflicts.append(1)
            conflicted.set()
        return result

    writer._apply = counted  # type: ignore[method-assign]
    saver = threading.Thread(target=writer.save)
    saver.start()
    assert conflicted.wait(5)
    holder.release_lock()
    saver.join(5)
    assert not saver.is_alive() and conflicts
    assert contents(make_session, sid) == {"a": 1, "b": 2}


def test_retries_are_bounded(make_session: MakeSession, monkeypatch: Any) -> None:
    monkeypatch.setattr(base, "MAX_MERGE_ATTEMPTS", 3)
    writer = make_session(stored_with(make_session, a=1))
    writer["b"] = 2
    attempts = []
    writer._apply = lambda *args: attempts.append(args) or False  # type: ignore[method-assign]
    with pytest.raises(SessionUnavailable, match="changed by too many requests"):
        writer.save()
    assert len(attempts) == 3
