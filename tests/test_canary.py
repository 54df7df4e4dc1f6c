"""Canary gating of rolling restarts (``--canary-seconds``).

How a canary is judged and what the arbiter does meanwhile is checked in this
process on :class:`Worker` records with heartbeat counters, as tests/test_arbiter.py
does; real masters under continuous load then roll a failing release back, a
slow one too, and a healthy one out.
"""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from control_support import Endpoint, fetch
from morello.master.arbiter import Arbiter
from morello.master.canary import MAX_WINDOWS, Canary, Counts
from morello.master.channel import LATENCY_BUCKETS
from morello.master.ctl import process_gone
from morello.master.settings import Settings
from morello.master.workers import State, Worker
from prefork_support import Load, running_master, wait_for
from test_arbiter import record_spawns
from test_status_page import BROWSER, page_of
from test_systemd import receiver  # noqa: F401 (a fixture)
from test_warmup import serve

pytestmark = pytest.mark.timeout(180)

# -- judging, in this process ----------------------------------------------------

SECONDS = 10.0
MIN_REQUESTS = 100


def settings(**values: Any) -> Settings:
    values = {"canary_seconds": SECONDS, "canary_min_requests": MIN_REQUESTS, **values}
    return Settings(app="app:Root", workers=2, **values)


def heartbeat(requests: int, errors: int = 0, bucket: int = 0) -> dict[str, Any]:
    """Cumulative counters of ``requests`` requests, all in latency bucket ``bucket``."""
    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    buckets[bucket] = requests
    return {"requests": requests, "status": {"2xx": requests - errors, "5xx": errors},
            "latency_buckets": buckets}  # fmt: skip


def worker(pid: int, generation: int, stats: dict[str, Any] | None = None) -> Worker:
    return Worker(pid, pid, None, generation, state=State.READY, stats=stats or {})


class Judged:
    """Two old workers and a canary of generation 2, their counters set by the test."""

    def __init__(self, **values: Any) -> None:
        self.notes: list[str] = []
        self.canary = Canary(settings(**values), 2, lambda level, text, *args: self.notes.append(
            text % args))  # fmt: skip
        self.workers = {pid: worker(pid, 1, heartbeat(1000)) for pid in (1, 2)}
        self.workers[3] = worker(3, 2)
        assert self.canary.check(self.workers, 0.0) is None  # picks worker 3, window opens

    def serve(self, old: dict[str, Any], new: dict[str, Any], at: float) -> str | None:
        """Each old worker served ``old`` more, the canary ``new``; check at ``at``."""
        for pid in (1, 2):
            self.workers[pid].stats = _plus(heartbeat(1000), old)
        self.workers[3].stats = new
        return self.canary.check(self.workers, at)


def _plus(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": base["requests"] + more["requests"],
        "status": {"5xx": more["status"]["5xx"]},
        "latency_buckets": [a + b for a, b in zip(base["latency_buckets"],
                                                  more["latency_buckets"], strict=True)],
    }  # fmt: skip


def test_the_p99_is_interpolated_in_its_histogram_bucket() -> None:
    counts = Counts.of(heartbeat(100, bucket=2))
    low, high = LATENCY_BUCKETS[1], LATENCY_BUCKETS[2]
    assert counts.quantile() == pytest.approx(low + (high - low) * 0.99)
    assert Counts.of(heartbeat(100, bucket=len(LATENCY_BUCKETS))).quantile() == LATENCY_BUCKETS[-1]
    assert Counts().quantile() is None
    # Malformed heartbeats count nothing rather than break the master.
    assert Counts.of({"requests": "many", "status": [], "latency_buckets": [1]}) == Counts()


def test_a_canary_with_more_5xx_fails_and_says_by_how_much() -> None:
    judged = Judged()
    assert judged.serve(heartbeat(300), heartbeat(150, errors=15), SECONDS - 1) is None
    failure = judged.serve(heartbeat(300), heartbeat(150, errors=15), SECONDS)
    assert failure == "canary 5xx rate 10.0% vs 0.0%"


def test_5xx_within_the_allowed_margin_pass() -> None:
    judged = Judged(canary_max_5xx_rate=0.05)
    assert judged.serve(heartbeat(300, errors=6), heartbeat(150, errors=9), SECONDS) is None
    assert judged.canary.passed
    assert any("passed: 5xx rate 6.0% vs 2.0%" in note for note in judged.notes)


def test_a_slower_canary_fails_on_its_p99() -> None:
    # Old workers answer within 10 ms, the canary within 100 ms.
    failure = Judged().serve(heartbeat(300, bucket=1), heartbeat(150, bucket=4), SECONDS)
    assert failure is not None and re.fullmatch(r"canary p99 latency \d+ ms vs \d+ ms", failure)


def test_latencies_below_the_first_bucket_are_not_compared_finer_than_it() -> None:
    # A p99 of 3 ms against 1 ms is three times, but the histogram cannot tell them apart.
    old = heartbeat(300)
    old["latency_buckets"] = [300] + [0] * len(LATENCY_BUCKETS)
    assert Judged().serve(old, heartbeat(150, bucket=0), SECONDS) is None


def test_a_canary_short_of_requests_is_given_more_time_then_passes_unjudged() -> None:
    judged = Judged()
    few = heartbeat(MIN_REQUESTS - 1, errors=MIN_REQUESTS - 1)
    assert judged.serve(heartbeat(300), few, SECONDS) is None
    assert not judged.canary.passed
    # Enough requests within the extension: judged then.
    enough = Judged()
    enough.serve(heartbeat(300), few, SECONDS)
    failing = heartbeat(MIN_REQUESTS, errors=50)
    assert enough.serve(heartbeat(300), failing, SECONDS * 2) == "canary 5xx rate 50.0% vs 0.0%"
    # Still too few after every window: the rollout goes on, and says why.
    assert judged.serve(heartbeat(300), few, SECONDS * MAX_WINDOWS) is None
    assert judged.canary.passed
    assert "passed unjudged" in judged.notes[-1]


def test_a_canary_that_dies_fails_and_one_recycled_hands_over() -> None:
    judged = Judged()
    canary = judged.workers.pop(3)
    assert judged.canary.check(judged.workers, 1.0) == "canary worker 3 (pid 3) stopped serving"
    handed = Judged()
    handed.workers[3].retired_for = "recycle"
    handed.workers[3].state = State.RETIRING
    assert handed.canary.check(handed.workers, 1.0) is None
    handed.workers[4] = worker(4, 2)
    assert handed.canary.check(handed.workers, 2.0) is None
    assert handed.canary.worker is handed.workers[4] and handed.canary.started == 2.0
    assert canary.pid == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--canary-seconds", "-1"], "canary_seconds must not be negative"),
        (["--canary-seconds", "1"], "must be 0 or at least twice heartbeat_interval (1.0s)"),
        (["--canary-max-5xx-rate", "5"], "canary_max_5xx_rate must be a fraction from 0 to 1"),
        (["--canary-max-p99-ratio", "0.5"], "canary_max_p99_ratio must be at least 1"),
        (["--canary-min-requests", "0"], "canary_min_requests must be at least 1"),
        (["--canary-seconds", "soon"], "--canary-seconds: expected a number of seconds"),
    ],
)
def test_bad_canary_settings_stop_the_start_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = serve(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- what the arbiter does while a canary is judged ---------------------------------


@pytest.fixture
def arbiter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Arbiter]:
    master = Arbiter(settings(), [], lambda *args: None)
    master.workers = {pid: worker(pid, 1) for pid in (1, 2)}
    master._next_id = 3
    yield master
    master.selector.close()
    master._wake_r.close()
    master._wake_w.close()


def test_while_the_canary_is_judged_no_other_worker_starts_and_none_retires(
    arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = record_spawns(arbiter, monkeypatch)
    arbiter.on_hup()
    for _ in range(3):
        arbiter.balance(0.0)
    assert len(spawned) == 1 and spawned[0].generation == 2
    spawned[0].state = State.READY
    arbiter.canary.check(arbiter.workers, 0.0)
    arbiter.on_ttin()  # more capacity waits for the verdict
    arbiter.balance(1.0)
    assert len(spawned) == 1
    assert all(w.state is State.READY for w in arbiter.workers.values())
    arbiter.on_ttou()
    arbiter.on_ttou()  # down to 1: one old worker goes, the canary stays
    arbiter.balance(1.0)
    assert [w.pid for w in arbiter.workers.values() if w.state is State.RETIRING] == [1]
    assert spawned[0].state is State.READY
    # USR2 would start the new code in a new master, canary or not.
    arbiter.reexec_command = lambda: None
    arbiter.on_usr2()
    assert arbiter.reexec_pid is None


def judge_a_canary(arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    """HUP, and let the first new worker become ready: its canary window is open."""
    spawned = record_spawns(arbiter, monkeypatch)
    arbiter.on_hup()
    arbiter.supervise(0.0)
    spawned[0].state = State.READY
    arbiter.supervise(0.0)
    return spawned


def test_a_canary_that_asks_to_be_recycled_retires_no_old_worker(
    arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = judge_a_canary(arbiter, monkeypatch)
    spawned[0].recycle_reason = "max_requests"
    arbiter.supervise(1.0)
    assert [w.state for w in arbiter.workers.values()] == [State.READY] * 3


def test_a_hup_during_the_verdict_replaces_the_canary_and_a_rollback_skips_its_release(
    arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = judge_a_canary(arbiter, monkeypatch)
    arbiter.on_hup()
    assert spawned[0].state is State.RETIRING and arbiter.rollout_from == 1
    arbiter.supervise(1.0)
    assert [w.generation for w in spawned] == [2, 3]
    spawned[1].state = State.READY
    arbiter.supervise(1.0)
    spawned[1].stats = heartbeat(MIN_REQUESTS, errors=MIN_REQUESTS)
    arbiter.supervise(1.0 + SECONDS)
    assert arbiter.last_rollout["state"].startswith("rolled back: canary 5xx rate")
    # Back to the generation that served before both HUPs: nothing to replace.
    assert arbiter.generation == 1
    arbiter.supervise(2.0 + SECONDS)
    assert len(spawned) == 2
    assert [arbiter.workers[pid].state for pid in (1, 2)] == [State.READY] * 2


def test_a_failed_canary_is_retired_and_the_old_generation_stays_current(
    arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch, receiver: socket.socket  # noqa: F811
) -> None:
    spawned = record_spawns(arbiter, monkeypatch)
    arbiter.on_hup()
    assert receiver.recv(4096).startswith(b"RELOADING=1")
    arbiter.supervise(0.0)
    canary = spawned[0]
    canary.state = State.READY
    arbiter.supervise(0.0)
    assert receiver.recv(4096) == (f"STATUS=rolling restart to generation 2: canary worker "
                                   f"{canary.id} judged for {SECONDS:g}s").encode()  # fmt: skip
    canary.stats = heartbeat(MIN_REQUESTS, errors=MIN_REQUESTS)
    arbiter.supervise(SECONDS)
    assert canary.state is State.RETIRING and canary.retired_for == "rollout"
    assert arbiter.generation == 1 and arbiter.rollout_from is None and arbiter.canary is None
    assert arbiter.last_rollout["state"] == "rolled back: canary 5xx rate 100.0% vs 0.0%"
    # systemd hears that the reload is over, and how it ended.
    assert receiver.recv(4096) == (b"READY=1\nSTATUS=generation 1; last rollout rolled back: "
                                   b"canary 5xx rate 100.0% vs 0.0%")  # fmt: skip
    arbiter.supervise(SECONDS + 1)
    assert len(spawned) == 1  # the old workers are the current generation again


def test_the_status_page_shows_the_canary_and_why_a_rollout_was_rolled_back(
    endpoint: Endpoint,
) -> None:
    master = endpoint.app.document["master"]
    master["rollout"] = {"from_generation": 3, "ready": 0, "target": 2, "canary": {
        "state": "judging", "pid": 5003, "seconds": 30, "seconds_left": 12.0, "requests": 40,
        "min_requests": 100, "summary": None}}  # fmt: skip
    text, _ = page_of(endpoint.address)
    assert "Canary pid 5003: judging, 12s left, 40 requests of the 100 needed." in text
    assert "canary judging" in text  # the summary's Rollout cell
    master["rollout"] = None
    master["last_rollout"] = {"from_generation": 3, "to_generation": 4, "time": 1_700_000_000.0,
                              "state": "rolled back: canary 5xx rate 10.2% vs 0.0%"}  # fmt: skip
    text, _ = page_of(endpoint.address)
    assert (
        "Last rolling restart</strong> to generation 4 (at 2023-11-14 22:13:20 UTC) "
        "rolled back: canary 5xx rate 10.2% vs 0.0%; generation 3 keeps serving."
    ) in text
    master["last_rollout"]["state"] = "complete"
    assert "Last rolling restart" not in page_of(endpoint.address)[0]


# -- real masters under load --------------------------------------------------------

APP = '''
import itertools
import os
import time

import morello

VERSION = {version!r}
FAIL_EVERY = {fail_every}
DELAY = {delay}
served = itertools.count(1)


class Root:
    @morello.expose
    def index(self):
        # A new connection for every request, so the canary gets its share.
        morello.response.headers["Connection"] = "close"
        time.sleep(DELAY)
        if FAIL_EVERY and next(served) % FAIL_EVERY == 0:
            morello.response.status = 500
            return f"v{{VERSION}} failed in {{os.getpid()}}"
        return f"hello from {{os.getpid()}} v{{VERSION}}"
'''

CANARY_ARGS = ("--canary-seconds", "3", "--canary-min-requests", "50")


def write_app(directory: Path, version: str = "1", fail_every: int = 0, delay: float = 0) -> None:
    (directory / "canary_app.py").write_text(
        APP.format(version=version, fail_every=fail_every, delay=delay)
    )


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def canary_pid(master: Any) -> int | None:
    rollout = master.status()["master"]["rollout"]
    canary = rollout and rollout["canary"]
    return canary and canary["pid"]


def last_rollout(master: Any) -> dict[str, Any] | None:
    return master.status()["master"]["last_rollout"]


def test_a_release_failing_a_tenth_of_its_requests_is_rolled_back(app_dir: Path) -> None:
    with running_master(app_dir, *CANARY_ARGS, app="canary_app:Root") as master:
        old = master.worker_pids()
        with Load(master.url) as load:
            write_app(app_dir, version="2", fail_every=10)
            master.send(signal.SIGHUP)
            canary = wait_for(lambda: canary_pid(master), what="a canary")
            outcome = wait_for(lambda: last_rollout(master), what="the canary's verdict")
            assert outcome["state"].startswith("rolled back: canary 5xx rate ")
            wait_for(lambda: process_gone(canary), what="the canary gone")
            failed_on_canary = len(load.failures)
            wait_for(load.served_more(300), what="load after the rollback")
            assert master.worker_pids() == old
        # Only the canary failed requests, and only while it served.
        assert load.failures[failed_on_canary:] == []
        assert failed_on_canary > 0
        assert all(failure == f"500: v2 failed in {canary}" for failure in load.failures)
        status = master.status()["master"]
        assert status["generation"] == 1 and status["rollout"] is None
        page = fetch(master.control_address, "GET", "/", BROWSER)[2].decode()
        assert "rolled back: canary 5xx rate" in page
        log = master.log()
        assert re.search(r"canary: worker \d+ \(pid \d+\) of generation 2 serves", log)
        assert re.search(r"canary worker \d+ failed: 5xx rate [\d.]+% vs 0.0%, p99 ", log)
        assert "rolled back: canary 5xx rate" in log and "retiring worker" in log


def test_a_slower_release_is_rolled_back_on_its_p99(app_dir: Path) -> None:
    with running_master(app_dir, *CANARY_ARGS, app="canary_app:Root") as master:
        old = master.worker_pids()
        with Load(master.url) as load:
            write_app(app_dir, version="2", delay=0.1)
            master.send(signal.SIGHUP)
            outcome = wait_for(lambda: last_rollout(master), what="the canary's verdict")
            assert outcome["state"].startswith("rolled back: canary p99 latency ")
            master.wait_ready(2)
            assert master.worker_pids() == old
        assert load.failures == []


def test_a_healthy_release_passes_its_canary_and_rolls_out(app_dir: Path) -> None:
    with running_master(app_dir, *CANARY_ARGS, app="canary_app:Root") as master:
        old = master.worker_pids()
        with Load(master.url) as load:
            write_app(app_dir, version="2")
            master.send(signal.SIGHUP)
            canary = wait_for(lambda: canary_pid(master), what="a canary")
            # Judged: the old workers serve throughout the window.
            assert master.worker_pids() == old | {canary}
            new = master.wait_ready(2, exclude=old, timeout=60)
            wait_for(load.served_more(100), what="load after the rollout")
            assert last_rollout(master)["state"] == "complete"
        assert load.failures == []
        assert canary in new
        assert re.search(r"canary worker \d+ passed: 5xx rate 0.0% vs 0.0%", master.log())
