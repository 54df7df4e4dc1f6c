"""The arbiter's decisions, in this process: signal handling and how many workers it forks.

These tests build an :class:`Arbiter` without running its loop and replace
``spawn`` (which forks) by a recorder, so the policy is checked exactly;
tests/test_prefork.py runs the same code for real.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterator

import psutil
import pytest
from morello.master.arbiter import SPAWNS_PER_PASS, Arbiter
from morello.master.channel import encode
from morello.master.settings import Settings, default_workers
from morello.master.workers import WORKERS_PER_CPU, State, Worker, default_max_workers


@pytest.fixture
def arbiter() -> Iterator[Arbiter]:
    master = Arbiter(Settings(app="app:Root", workers=2), [], lambda *args: None)
    yield master
    master.selector.close()
    master._wake_r.close()
    master._wake_w.close()


def test_a_failing_signal_handler_is_logged_and_the_next_signal_still_handled(
    arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setattr(arbiter, "on_usr1", broken)
    arbiter.signals.extend([signal.SIGUSR1, signal.SIGTTIN])
    with caplog.at_level(logging.INFO, "morello.master"):
        arbiter.handle_signals()
    assert "handling SIGUSR1 failed" in caplog.text and "handler bug" in caplog.text
    assert arbiter.target == 3  # TTIN, queued after it, was handled


def test_ttou_at_one_worker_is_a_logged_no_op(
    arbiter: Arbiter, caplog: pytest.LogCaptureFixture
) -> None:
    arbiter.signals.extend([signal.SIGTTOU] * 3)
    arbiter.handle_signals()
    assert arbiter.target == 1
    assert caplog.text.count("TTOU ignored: already at 1 worker") == 2


def record_spawns(arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    """Make ``arbiter.spawn`` register a worker without forking; return the list of them."""
    spawned: list[Worker] = []

    def spawn() -> Worker:
        worker = Worker(len(spawned) + 1, 1_000_000 + len(spawned), None, arbiter.generation)
        arbiter.workers[worker.pid] = worker
        spawned.append(worker)
        return worker

    monkeypatch.setattr(arbiter, "spawn", spawn)
    return spawned


def test_scaling_up_forks_a_few_workers_per_pass(
    arbiter: Arbiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = record_spawns(arbiter, monkeypatch)
    arbiter.max_workers = 100
    arbiter.scale(2 + 3 * SPAWNS_PER_PASS)
    counts = []
    for _ in range(5):
        arbiter.balance(0.0)
        counts.append(len(spawned))
    step = SPAWNS_PER_PASS
    assert counts == [step, 2 * step, 3 * step, 3 * step + 2, 3 * step + 2]


def test_scale_is_bounded_by_max_workers(arbiter: Arbiter) -> None:
    assert arbiter.max_workers == default_max_workers(2)
    with pytest.raises(ValueError, match=f"max_workers={arbiter.max_workers}"):
        arbiter.scale(999_999)
    arbiter.scale(arbiter.max_workers)
    assert arbiter.target == arbiter.max_workers


@pytest.mark.parametrize("memory_mib", [64, 1024, 1 << 20])
def test_default_max_workers_follows_cpus_and_memory(
    monkeypatch: pytest.MonkeyPatch, memory_mib: int
) -> None:
    total = memory_mib << 20
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"total": total}))
    for workers in (1, 3, 100):
        cap = default_max_workers(workers)
        assert cap >= workers  # the configured number always fits
        assert cap == workers or cap <= WORKERS_PER_CPU * default_workers()
        assert cap == workers or cap <= total // (100 << 20)
    if memory_mib >= 1 << 20:
        assert default_max_workers(1) == WORKERS_PER_CPU * default_workers()


def test_an_exited_workers_last_counts_are_read_before_its_exit_is_accounted(
    arbiter: Arbiter,
) -> None:
    master_end, worker_end = socket.socketpair()
    master_end.setblocking(False)
    worker = Worker(1, 1_000_000, master_end, arbiter.generation, state=State.RETIRING)
    arbiter.workers[worker.pid] = worker
    # The worker's final heartbeat is still in the channel when reap() sees the exit.
    worker_end.sendall(encode("heartbeat", requests=41) + encode("exiting", reason="SIGTERM"))
    worker_end.close()
    arbiter.worker_exited(arbiter.workers.pop(worker.pid), 0)
    assert arbiter.stats.totals()["requests"] == 41
    assert master_end.fileno() == -1  # closed once read
