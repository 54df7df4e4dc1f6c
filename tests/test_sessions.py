"""tools.sessions over real HTTP: stores, ids, cookies, locking, serialization."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import os
import re
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from morello.sessions.base import valid_id
from morello.sessions.codec import Codec, SessionDataError, TamperedRecord
from morello.sessions.file import FileSession
from morello.sessions.ram import RamSession

import morello
from morello.testing import HOST, Client

COOKIE = re.compile(r"session_id=([0-9a-f]*)")


class Root:
    @morello.expose
    def count(self) -> str:
        morello.session["n"] = morello.session.get("n", 0) + 1
        return str(morello.session["n"])

    @morello.expose
    def read(self) -> str:
        return str(morello.session.get("n"))

    @morello.expose
    def nothing(self) -> str:
        return "no session use"

    @morello.expose
    def regen(self) -> str:
        morello.session.regenerate()
        return morello.session.id

    @morello.expose
    def whoami(self) -> str:
        return morello.session.id

    @morello.expose
    def bad(self) -> str:
        morello.session["obj"] = object()
        return "unreachable"

    @morello.expose
    def hold(self, seconds: str = "1") -> str:
        morello.session["held"] = True
        time.sleep(float(seconds))
        return "held"

    @morello.expose
    def logout(self) -> str:
        morello.session.expire()
        return "bye"


def session_id(response: Any) -> str | None:
    match = COOKIE.search(response.headers.get("Set-Cookie", ""))
    return match.group(1) if match else None


def stored(directory: Any) -> set[str]:
    """The session and lock files (not the clean-up mark)."""
    return {name for name in os.listdir(directory) if not name.startswith(".")}


def sessions_config(**options: Any) -> dict[str, Any]:
    """``tools.sessions.*`` config, on, with ``options``."""
    return {"tools.sessions.on": True, **{f"tools.sessions.{k}": v for k, v in options.items()}}


def file_config(path: Any, **options: Any) -> dict[str, Any]:
    return sessions_config(storage_type="file", storage_path=str(path), **options)


def with_cookie(sid: str) -> dict[str, str]:
    return {"Cookie": f"session_id={sid}"}


@pytest.fixture(autouse=True)
def fresh_ram_store() -> None:
    RamSession.cache.clear()
    RamSession.locks.clear()


def test_counter_across_requests_ram(serve: Any) -> None:
    client = serve(Root(), {"/": sessions_config()})
    first = client.get("/count")
    sid = session_id(first)
    assert first.body == b"1" and valid_id(sid)
    for expected in (b"2", b"3"):
        response = client.get("/count", with_cookie(sid))
        assert response.body == expected
        assert session_id(response) == sid


def test_counter_across_requests_file(serve: Any, tmp_path: Any) -> None:
    config = file_config(tmp_path)
    client = serve(Root(), {"/": config})
    sid = session_id(client.get("/count"))
    assert client.get("/count", with_cookie(sid)).body == b"2"
    assert stored(tmp_path) == {f"session-{sid}"}  # no lock file left


def test_cookie_attributes(serve: Any) -> None:
    config = sessions_config(secure=True, domain="example.com", path="/app")
    cookie = serve(Root(), {"/": config}).get("/count").headers["Set-Cookie"]
    attributes = {part.split("=")[0].strip().lower() for part in cookie.split(";")[1:]}
    assert attributes == {"expires", "max-age", "domain", "path", "secure", "httponly", "samesite"}
    assert "SameSite=Lax" in cookie and "Path=/app" in cookie


def test_cookie_options_off(serve: Any) -> None:
    config = sessions_config(httponly=False, samesite=None, persistent=False)
    cookie = serve(Root(), {"/": config}).get("/count").headers["Set-Cookie"]
    assert "HttpOnly" not in cookie and "SameSite" not in cookie and "expires" not in cookie


@pytest.mark.parametrize("value", ["0" * 40, "../../etc/passwd", "x" * 5000, "ABC", '"a;b"'])
def test_unknown_or_malformed_ids_get_a_fresh_session(
    serve: Any, tmp_path: Any, value: str
) -> None:
    config = file_config(tmp_path)
    client = serve(Root(), {"/": config})
    response = client.get("/count", {"Cookie": f"session_id={value}"})
    assert response.status == 200 and response.body == b"1"
    assert session_id(response) not in (None, value)


def test_regenerate_keeps_data_and_deletes_old_record(serve: Any, tmp_path: Any) -> None:
    config = file_config(tmp_path)
    client = serve(Root(), {"/": config})
    old = session_id(client.get("/count"))
    response = client.get("/regen", with_cookie(old))
    new = session_id(response)
    assert new == response.text and new != old and valid_id(new)
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert stored(tmp_path) == {f"session-{new}"}
    assert client.get("/count", with_cookie(new)).body == b"2"
    # The old id is dead: it is not adopted.
    assert session_id(client.get("/count", with_cookie(old))) != old


def test_expire_drops_record_and_cookie(serve: Any) -> None:
    client = serve(Root(), {"/": sessions_config()})
    sid = session_id(client.get("/count"))
    response = client.get("/logout", with_cookie(sid))
    assert "1970" in response.headers["Set-Cookie"]
    assert client.get("/read", with_cookie(sid)).body == b"None"


def test_read_only_request_does_not_rewrite_file(serve: Any, tmp_path: Any) -> None:
    config = file_config(tmp_path)
    client = serve(Root(), {"/": config})
    sid = session_id(client.get("/count"))
    path = tmp_path / f"session-{sid}"
    before = path.stat()
    assert client.get("/read", with_cookie(sid)).body == b"1"
    after = path.stat()
    assert after.st_ino == before.st_ino  # a rewrite is a rename: a new inode
    assert after.st_mtime >= before.st_mtime  # the expiry may move forward


class CountingSession(RamSession):
    saves = 0

    def _save(self, record: bytes, expiration_time: float) -> None:
        type(self).saves += 1
        super()._save(record, expiration_time)


def test_only_changes_are_saved(serve: Any) -> None:
    config = sessions_config(storage_class=CountingSession)
    client = serve(Root(), {"/": config})
    CountingSession.saves = 0
    sid = session_id(client.get("/count"))
    client.get("/read", with_cookie(sid))
    client.get("/nothing", with_cookie(sid))
    client.get("/read")  # a new, empty session is not stored
    assert CountingSession.saves == 1
    client.get("/count", with_cookie(sid))
    assert CountingSession.saves == 2


def test_unserializable_value_names_the_key(serve: Any) -> None:
    client = serve(Root(), {"/": sessions_config()})
    response = client.get("/bad")
    assert response.status == 500
    with pytest.raises(SessionDataError, match="'obj'"):
        Codec().encode_values({"obj": object()})


def test_json_round_trips_common_types() -> None:
    codec = Codec()
    data = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 1, 2),
        "tags": {"a", "b"},
        "pair": (1, (2, 3)),
        "raw": b"\x00\xff",
        "price": decimal.Decimal("1.10"),
        "nested": {"k": [1, {2, 3}], 4: "int key", "__morello__": "tag lookalike"},
        "plain": [None, True, 1.5, "s"],
    }
    created, values = codec.unpack(codec.pack(12.0, codec.encode_values(data)))
    assert created == 12.0
    assert {key: codec.decode_value(text) for key, text in values.items()} == data


def test_signed_pickle_rejects_tampering() -> None:
    codec = Codec("pickle", secret="s3cret")
    record = codec.pack(1.0, codec.encode_values({"obj": {1, 2}}))
    assert codec.decode_value(codec.unpack(record)[1]["obj"]) == {1, 2}
    forged = record.replace(b"created", b"creatad")
    with pytest.raises(TamperedRecord):
        codec.unpack(forged)
    with pytest.raises(TamperedRecord):
        Codec("pickle", secret="other").unpack(record)
    with pytest.raises(ValueError, match="secret"):
        Codec("pickle")


def test_tampered_file_record_gives_fresh_session(serve: Any, tmp_path: Any) -> None:
    config = file_config(tmp_path, serializer="pickle", secret="k")
    client = serve(Root(), {"/": config})
    sid = session_id(client.get("/count"))
    path = tmp_path / f"session-{sid}"
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(b'"created"', b'"creatad"'))
    os.utime(path, (stat.st_mtime, stat.st_mtime))
    response = client.get("/count", with_cookie(sid))
    assert response.body == b"1" and session_id(response) != sid


@pytest.mark.parametrize("storage", ["ram", "file"])
def test_lock_timeout_gives_503_and_server_keeps_serving(
    serve: Any, tmp_path: Any, storage: str
) -> None:
    config = sessions_config(storage_type=storage, storage_path=str(tmp_path), lock_timeout=0.2)
    client = serve(Root(), {"/": config})
    sid = session_id(client.get("/count"))
    holder = threading.Thread(target=client.get, args=("/hold?seconds=1.5", with_cookie(sid)))
    holder.start()
    time.sleep(0.3)
    started = time.monotonic()
    blocked = client.get("/count", with_cookie(sid))
    assert blocked.status == 503 and b"busy" in blocked.body
    assert time.monotonic() - started < 1.2
    assert client.get("/nothing", with_cookie(sid)).status == 200
    holder.join()
    assert client.get("/count", with_cookie(sid)).body == b"2"


def test_store_failure_gives_503(serve: Any, caplog: Any) -> None:
    class BrokenStore(RamSession):
        def _save(self, record: bytes, expiration_time: float) -> None:
            raise ConnectionError("store is down")

    client = serve(Root(), {"/": sessions_config(storage_class=BrokenStore)})
    for _ in range(3):
        response = client.get("/count")
        assert response.status == 503 and b"unavailable" in response.body
    assert client.get("/nothing").status == 200
    failures = [r for r in caplog.records if "store BrokenStore failed" in r.getMessage()]
    assert len(failures) == 1  # rate-limited


def test_absolute_lifetime(tmp_path: Any) -> None:
    session = FileSession(storage_path=str(tmp_path), lifetime=1 / 60, timeout=60)
    session["a"] = 1
    session.save()
    assert FileSession(session.id, storage_path=str(tmp_path)).get("a") == 1
    time.sleep(1.1)
    later = FileSession(session.id, storage_path=str(tmp_path))
    # The expired record is noticed on first use, which also moves to a new id.
    assert later.get("a") is None and later.id != session.id


def test_file_clean_up_removes_expired_sessions_and_locks(tmp_path: Any) -> None:
    live = FileSession(storage_path=str(tmp_path), clean_freq=0)
    live["x"] = 1
    live.save()
    dead = FileSession(storage_path=str(tmp_path), timeout=0.001, clean_freq=0)
    dead["x"] = 1
    dead.save()
    (tmp_path / f"session-{'a' * 40}.lock").write_bytes(b"")  # an orphan lock
    time.sleep(0.1)
    live.clean_up()
    assert stored(tmp_path) == {f"session-{live.id}"}
    assert len(live) == 1


def _serve_forever_in_child(listener: socket.socket, root: Any, config: dict[str, Any]) -> None:
    # A worker: adopts the shared listening socket and serves until SIGTERM.
    code = 1
    try:
        morello.tree.mount(root, "", {"/": config})
        morello.config.update({"log.screen": False, "environment": "test_suite"})
        morello.server.listen_socket = listener
        morello.engine.signal_handler.subscribe()
        morello.engine.start()
        morello.engine.block()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


@contextlib.contextmanager
def two_workers(config: dict[str, Any], root: Any = None) -> Iterator[tuple[Client, str]]:
    """2 forked workers serving ``root`` on one socket; a client and a session id to share.

    The session is created by one ``/count`` (so it holds ``n = 1``).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _serve_forever_in_child(listener, root or Root(), config)
        pids.append(pid)
    try:
        client = Client(HOST, port)
        deadline = time.monotonic() + 15
        while True:
            try:
                sid = session_id(client.get("/count"))
                break
            except OSError:
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.05)
        assert sid is not None
        yield client, sid
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        for pid in pids:
            os.waitpid(pid, 0)
        listener.close()


def concurrently(client: Client, paths: list[str], sid: str) -> list[int]:
    """GET each path with the session cookie, 20 at a time; the statuses in order."""
    with ThreadPoolExecutor(20) as pool:
        replies = pool.map(lambda path: client.get(path, with_cookie(sid)), paths)
        return [reply.status for reply in replies]


def assert_no_lost_updates(config: dict[str, Any]) -> None:
    """2 workers, 1,000 ``/count``s of one session (20 at a time): the count is 1000."""
    with two_workers(config) as (client, sid):
        paths = ["/count"] * 999
        assert concurrently(client, paths, sid) == [200] * len(paths)
        assert client.get("/read", with_cookie(sid)).body == b"1000"


def test_no_lost_updates_across_two_worker_processes(tmp_path: Any) -> None:
    assert_no_lost_updates(file_config(tmp_path))


class Secret:
    @morello.expose
    def index(self) -> str:
        return f"hello {morello.request.login}"


def check(username: str, password: str) -> str | None:
    return None if (username, password) == ("alice", "pw") else "Wrong login"


def test_session_auth_login_flow(serve: Any) -> None:
    config = {
        **sessions_config(),
        "tools.session_auth.on": True,
        "tools.session_auth.check_username_and_password": check,
    }
    client = serve(Secret(), {"/": config})
    form = client.get("/")
    assert form.status == 200 and b'action="do_login"' in form.body
    sid = session_id(form)
    assert client.get("/do_login?username=alice&password=pw").status == 405
    form_headers = {**with_cookie(sid), "Content-Type": "application/x-www-form-urlencoded"}
    wrong = client.post("/do_login", "username=<b>&password=no&from_page=/", form_headers)
    assert b"Wrong login" in wrong.body and b"&lt;b&gt;" in wrong.body
    login = client.post("/do_login", "username=alice&password=pw&from_page=/", form_headers)
    assert login.status == 303
    assert client.get("/", with_cookie(sid)).body == b"hello alice"
    assert client.post("/do_logout", "from_page=/", form_headers).status == 303
    assert b"do_login" in client.get("/", with_cookie(sid)).body


class Explicit:
    @morello.expose
    def count(self) -> str:
        morello.session.acquire_lock()
        morello.session["n"] = morello.session.get("n", 0) + 1
        return f"{morello.session['n']} {morello.session.locked}"

    @morello.expose
    def locked(self) -> str:
        return str(morello.session.locked)


@pytest.mark.parametrize(("locking", "expected"), [("early", b"True"), ("explicit", b"False")])
def test_locking_modes(serve: Any, locking: str, expected: bytes) -> None:
    config = sessions_config(locking=locking)
    client = serve(Explicit(), {"/": config})
    assert client.get("/locked").body == expected
    sid = session_id(client.get("/count"))
    assert client.get("/count", with_cookie(sid)).body == b"2 True"


def test_lib_sessions_names() -> None:
    from morello.sessions.memcached_store import MemcachedSession

    from morello.lib import sessions

    names = ("Session", "RamSession", "FileSession", "init", "save", "close", "expire",
             "set_response_cookie")  # fmt: skip
    for name in names:
        assert hasattr(sessions, name)
    assert sessions.MemcachedSession is MemcachedSession
    assert morello.tools.sessions.regenerate
    # No monitor thread cleans up: requests do.
    assert sessions.RamSession.clean_thread is sessions.FileSession.clean_thread is None


def test_file_session_names_files_with_its_prefix(serve: Any, tmp_path: Any) -> None:
    client = serve(Root(), {"/": file_config(tmp_path)})
    sid = session_id(client.get("/count"))
    assert stored(tmp_path) == {FileSession.SESSION_PREFIX + sid}
    assert FileSession.LOCK_SUFFIX == ".lock"


def test_deleted_session_proxy_comes_back(serve: Any, monkeypatch: Any) -> None:
    """Applications may ``del morello.session`` (CherryPy's do to switch stores)."""
    monkeypatch.setattr(morello, "session", morello.session)  # restored afterwards

    class Forgetful(Root):
        @morello.expose
        def forget(self) -> str:
            del morello.session
            return "forgotten"

    client = serve(Forgetful(), {"/": sessions_config()})
    sid = session_id(client.get("/count"))
    assert client.get("/forget", with_cookie(sid)).body == b"forgotten"
    assert client.get("/count", with_cookie(sid)).body == b"2"


def test_no_lost_updates_across_threads_ram(serve: Any) -> None:
    client = serve(Root(), {"/": sessions_config()})
    sid = session_id(client.get("/count"))
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: client.get("/count", with_cookie(sid)), range(49)))
    assert client.get("/read", with_cookie(sid)).body == b"50"
    # Read-only requests from new visitors leave no record and no lock behind.
    client.get("/read")
    assert len(RamSession.cache) == 1 and set(RamSession.locks) <= {sid}
