"""Session store metrics: round trips, lock waits, optimistic retries, errors, lock timeouts.

Sessions are used over real HTTP; the values are read back the way a scraper
reads them: from :func:`morello.metrics.text` in this process, and from the
master's ``/metrics`` when workers serve. The registry is shared by the
whole test process, so each test compares values before and after.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from morello.sessions.ram import RamSession
from prefork_support import running_master, wait_for, write_app
from prometheus_client.parser import text_string_to_metric_families
from store_servers import RedisServer
from test_sessions import Root, session_id, sessions_config, with_cookie

import morello.metrics

ROUND_TRIP = "morello_session_store_seconds"


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of the exposition ``text`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def local(name: str, **labels: str) -> float:
    return sample(morello.metrics.text(), name, **labels)


@pytest.fixture(autouse=True)
def fresh_ram_store() -> None:
    RamSession.cache.clear()
    RamSession.locks.clear()


@pytest.mark.parametrize("storage", ["ram", "file"])
def test_round_trips_are_timed_by_store_and_operation(
    serve: Any, tmp_path: Path, storage: str
) -> None:
    client = serve(Root(), {"/": sessions_config(storage_type=storage, storage_path=str(tmp_path))})
    loads = local(f"{ROUND_TRIP}_count", store=storage, op="load")
    saves = local(f"{ROUND_TRIP}_count", store=storage, op="save")
    sid = session_id(client.get("/count"))
    for _ in range(5):
        assert client.get("/count", with_cookie(sid)).status == 200
    # The first request had no record to load; each later one loaded and saved.
    assert local(f"{ROUND_TRIP}_count", store=storage, op="load") == loads + 5
    assert local(f"{ROUND_TRIP}_count", store=storage, op="save") == saves + 6
    assert local(f"{ROUND_TRIP}_sum", store=storage, op="load") > 0


def test_redis_round_trips(serve: Any, redis_store: RedisServer) -> None:
    """Three round trips per request on a stored session: the id's check, the lock with
    the read, the write with the unlock."""
    config = sessions_config(storage_type="redis", url=redis_store.url)
    client = serve(Root(), {"/": config})
    before = {op: local(f"{ROUND_TRIP}_count", store="redis", op=op)
              for op in ("exists", "load", "save", "lock", "unlock")}  # fmt: skip
    sid = session_id(client.get("/count"))
    for _ in range(3):
        assert client.get("/count", with_cookie(sid)).status == 200
    assert client.get("/count", with_cookie(sid)).text == "5"
    after = {op: local(f"{ROUND_TRIP}_count", store="redis", op=op) for op in before}
    assert {op: after[op] - before[op] for op in before} == {
        "exists": 4,
        "lock": 5,  # no other request waits for this session's lock
        "load": 0,
        "save": 5,
        "unlock": 0,
    }


@pytest.mark.parametrize("storage", ["ram", "file"])
def test_lock_timeouts_and_waits_are_counted(serve: Any, tmp_path: Path, storage: str) -> None:
    config = sessions_config(storage_type=storage, storage_path=str(tmp_path), lock_timeout=0.2)
    client = serve(Root(), {"/": config})
    timeouts = local("morello_session_lock_timeouts_total", store=storage)
    long_waits = local("morello_session_lock_wait_seconds_count", store=storage) - local(
        "morello_session_lock_wait_seconds_bucket", store=storage, le="0.1"
    )
    sid = session_id(client.get("/count"))
    holder = threading.Thread(target=client.get, args=("/hold?seconds=1.5", with_cookie(sid)))
    holder.start()
    wait_for(lambda: _held(tmp_path, storage, sid), what="the holder to take the lock")
    assert client.get("/count", with_cookie(sid)).status == 503
    holder.join()
    assert local("morello_session_lock_timeouts_total", store=storage) == timeouts + 1
    # The refused request waited about lock_timeout: its wait is above 0.1 s.
    waits = local("morello_session_lock_wait_seconds_count", store=storage) - local(
        "morello_session_lock_wait_seconds_bucket", store=storage, le="0.1"
    )
    assert waits == long_waits + 1


def _held(directory: Path, storage: str, sid: str) -> bool:
    """Whether someone holds ``sid``'s session lock now."""
    if storage == "ram":
        lock = RamSession.locks.get(sid)
        return lock is not None and lock.locked()
    return (directory / f"session-{sid}.lock").exists()


class RacingTwice(RamSession):
    """Loses the first two races of every save."""

    lost = 0

    def _apply(self, *args: Any) -> bool:
        if RacingTwice.lost % 3 < 2:
            RacingTwice.lost += 1
            return False
        RacingTwice.lost += 1
        return super()._apply(*args)


def test_optimistic_retries_are_counted(serve: Any) -> None:
    config = sessions_config(storage_class=RacingTwice, locking="optimistic")
    client = serve(Root(), {"/": config})
    retries = local("morello_session_optimistic_retries_total", store="racingtwice")
    applies = local(f"{ROUND_TRIP}_count", store="racingtwice", op="apply")
    assert client.get("/count").status == 200
    assert local("morello_session_optimistic_retries_total", store="racingtwice") == retries + 2
    assert local(f"{ROUND_TRIP}_count", store="racingtwice", op="apply") == applies + 3


class BrokenSave(RamSession):
    def _save(self, record: bytes, expiration_time: float) -> None:
        raise ConnectionError("store is down")


def test_store_errors_are_counted_by_operation(serve: Any) -> None:
    client = serve(Root(), {"/": sessions_config(storage_class=BrokenSave)})
    errors = local("morello_session_store_errors_total", store="brokensave", op="save")
    for _ in range(3):
        assert client.get("/count").status == 503
    assert local("morello_session_store_errors_total", store="brokensave", op="save") == errors + 3


SESSION_APP = '''
class Counting:
    _cp_config = {"tools.sessions.on": True, "tools.sessions.storage_type": "file",
                  "tools.sessions.storage_path": STORE}

    @morello.expose
    def index(self):
        morello.session["n"] = morello.session.get("n", 0) + 1
        return str(morello.session["n"])
'''


def test_the_master_exports_session_metrics(tmp_path: Path) -> None:
    store = tmp_path / "sessions"
    store.mkdir()
    write_app(tmp_path, extra=f"STORE = {str(store)!r}\n" + SESSION_APP)
    (tmp_path / "site.conf").write_text("[global]\nmaster.heartbeat_interval = 0.2\n")
    with running_master(tmp_path, "-c", "site.conf", app="app:Counting") as master:
        first = requests.get(master.url, timeout=10)
        cookies = {"session_id": session_id(first) or ""}
        for expected in range(2, 12):
            assert requests.get(master.url, cookies=cookies, timeout=10).text == str(expected)

        def exported(name: str, **labels: str) -> float:
            code, text = master.control("GET", "/metrics")
            assert code == 200
            return sample(text, name, **labels)

        wait_for(lambda: exported(f"{ROUND_TRIP}_count", store="file", op="load") == 10,
                 what="10 loads on /metrics")  # fmt: skip
        assert exported(f"{ROUND_TRIP}_count", store="file", op="save") == 11
        assert exported("morello_session_lock_wait_seconds_count", store="file") == 11
