"""The master as its control endpoint shows it: health, readiness, status and metrics.

:class:`MasterView` is the :class:`~morello.master.control.ControlApp` the
arbiter attaches to its control endpoint. It builds the ``/status`` document and
the Prometheus text from the arbiter's state when a client asks, and passes
``/scale`` on to :meth:`~morello.master.arbiter.Arbiter.scale`.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .cli import version
from .metrics import prometheus_text
from .workers import State

logger = logging.getLogger("morello.master")

if TYPE_CHECKING:
    from .arbiter import Arbiter
    from .control import ControlServer


#: Events the status page lists at most (the oldest are forgotten).
MAX_EVENTS = 50


class EventLog:
    """The master's recent events (rollouts, recycles, crashes, scaling), newest last."""

    def __init__(self, size: int = MAX_EVENTS) -> None:
        self._events: collections.deque[tuple[float, str]] = collections.deque(maxlen=size)

    def add(self, text: str) -> None:
        """Remember ``text`` as happening now."""
        self._events.append((time.time(), text))

    def recent(self) -> list[dict[str, Any]]:
        """The events kept, oldest first, as ``{"time": unix seconds, "text": ...}``."""
        return [{"time": round(at, 3), "text": text} for at, text in self._events]


class Endpoints:
    """The HTTP servers the master's loop runs (control endpoint, probe port), each
    answering from ``view``.

    :attr:`pending` holds openers of endpoints whose address is still taken (after
    USR2 the old master holds it until it exits): each returns the server, or
    None while the address is taken; :meth:`open_pending` tries them again.
    """

    def __init__(self, view: MasterView, servers: Iterable[Any] = ()) -> None:
        self.view = view
        self.servers: list[Any] = []
        self.pending: list[Callable[[], Any]] = []
        for server in servers:
            if server is not None:
                self._add(server)

    def _add(self, server: Any) -> None:
        self.view.attach(server)
        self.servers.append(server)

    def register(self, selector: selectors.BaseSelector) -> None:
        """Serve every endpoint from ``selector``."""
        for server in self.servers:
            server.register(selector)

    def open_pending(self, selector: selectors.BaseSelector) -> None:
        """Open, and serve from ``selector``, the pending endpoints whose address is free."""
        for opener in list(self.pending):
            try:
                server = opener()
            except OSError as exc:
                logger.error("endpoint unavailable: %s", exc)
                self.pending.remove(opener)
                continue
            if server is not None:
                self.pending.remove(opener)
                self._add(server)
                server.register(selector)
                logger.info("%s open", server.name)

    def expire(self) -> None:
        """Close the clients that are too slow (each loop iteration)."""
        now = time.monotonic()
        for server in self.servers:
            server.expire(now)

    def close(self) -> None:
        """Close every endpoint (in the master at exit; in a child, its copies)."""
        for server in self.servers:
            server.close()


class MasterView:
    """The control endpoint's view of one :class:`~morello.master.arbiter.Arbiter`."""

    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter

    def attach(self, server: ControlServer) -> None:
        """Make ``server`` answer from the arbiter, with the configured token."""
        # The token comes with the app: until then every route answers 503.
        server.token = self.arbiter.settings.control_token
        server.app = self

    def healthy(self) -> bool:
        """Always true: the master's loop serves the endpoint, so an answer proves it runs."""
        return True

    def ready(self) -> bool:
        """Whether at least one worker is ready and the master is not stopping."""
        return not self.arbiter.stopping and self.arbiter.ready_count() > 0

    def status(self) -> dict[str, Any]:
        """The master and its workers, as ``/status`` shows them."""
        arbiter, now = self.arbiter, time.monotonic()
        workers = arbiter.workers.values()
        return {
            "master": {
                "pid": os.getpid(),
                "version": version(),
                "uptime": round(now - arbiter.started, 3),
                "generation": arbiter.generation,
                "target_workers": arbiter.target,
                "active_workers": sum(1 for w in workers if w.active),
                "rollout": self._rollout(now),
                "last_rollout": arbiter.last_rollout,
                "boot_failures": arbiter.boot_failures,
                "max_workers": arbiter.max_workers,
                "restarts": sum(arbiter.restarts.values()),
                "restarts_by_reason": dict(arbiter.restarts),
                "state": arbiter.stopping or ("halted" if arbiter.halted else "running"),
                "halted": arbiter.halted,
                "binds": [s.address for s in arbiter.sockets],
            },
            "workers": [w.describe(now) for w in workers],
            "events": arbiter.events.recent(),
        }

    def _rollout(self, now: float) -> dict[str, Any] | None:
        """The rolling restart under way: from which generation, how far it got, its canary."""
        arbiter = self.arbiter
        if arbiter.rollout_from is None:
            return None
        ready = sum(
            1 for w in arbiter.workers.values()
            if w.state is State.READY and w.generation == arbiter.generation
        )  # fmt: skip
        canary = arbiter.canary
        return {"from_generation": arbiter.rollout_from, "ready": ready, "target": arbiter.target,
                "canary": canary.describe(arbiter.workers, now) if canary else None}  # fmt: skip

    def metrics(self) -> str:
        """The Prometheus text exposition of the workers' counters and the status."""
        return prometheus_text(self.arbiter.stats, self.status())

    def scale(self, workers: int) -> None:
        """Run ``workers`` workers from now on (see ``Arbiter.scale``)."""
        self.arbiter.scale(workers)
