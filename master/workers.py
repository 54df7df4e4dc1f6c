"""What the master knows about each worker process, and how many it may run."""

from __future__ import annotations

import enum
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from .channel import MessageReader
from .settings import default_workers

#: Why a worker ended, as ``morello_worker_restarts_total{reason}`` counts it: it
#: died or failed to boot, asked to be replaced (max_requests, request_timeout,
#: max_rss), was replaced by a rolling restart, or was retired by a scale-down.
RESTART_REASONS: tuple[str, ...] = ("crash", "recycle", "rollout", "scale")

#: Default ``max_workers``: this many per CPU...
WORKERS_PER_CPU = 4
#: ...but no more than one per this much memory (a worker with its app and threads).
MEMORY_PER_WORKER = 128 << 20


def default_max_workers(workers: int) -> int:
    """The ``max_workers`` used when none is configured: never below ``workers``."""
    by_memory = psutil.virtual_memory().total // MEMORY_PER_WORKER
    return max(workers, 1, min(WORKERS_PER_CPU * default_workers(), by_memory))


class State(enum.Enum):
    BOOTING = "booting"
    READY = "ready"
    #: SIGTERM sent (or the worker said it is draining): no longer counted as capacity.
    RETIRING = "retiring"


@dataclass(eq=False)
class Worker:
    """One worker: its pid, its end of the channel and its last reported counters."""

    id: int
    pid: int
    channel: socket.socket
    generation: int
    state: State = State.BOOTING
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    last_heartbeat: float = field(default_factory=time.monotonic)
    #: Why the worker should be replaced (set by it or by the master), if it should.
    recycle_reason: str | None = None
    #: Why the master retired it (a :data:`RESTART_REASONS` entry), if it did.
    retired_for: str | None = None
    #: When the worker must be gone: after it, SIGKILL.
    kill_at: float | None = None
    #: Set once SIGABRT was sent for a missed heartbeat, so it is sent once.
    aborted: bool = False
    rss: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    reader: MessageReader = field(default_factory=MessageReader)

    @property
    def active(self) -> bool:
        """Booting or ready: part of the capacity the master keeps up."""
        return self.state is not State.RETIRING

    def age(self, now: float) -> float:
        return now - self.started

    def describe(self, now: float) -> dict[str, Any]:
        """This worker's entry in ``/status``."""
        return {
            "id": self.id,
            "pid": self.pid,
            "state": self.state.value,
            "generation": self.generation,
            "age": round(self.age(now), 3),
            "requests": self.stats.get("requests", 0),
            "in_flight": self.stats.get("in_flight", 0),
            "busy_threads": self.stats.get("busy_threads", 0),
            "threads": self.stats.get("threads", 0),
            "rss": self.rss,
            "recycle_reason": self.recycle_reason,
        }
