"""``RamSession``: sessions in this process's memory (one worker only)."""

from __future__ import annotations

import threading
import time

from .base import Session
from .metrics import store_metrics


class RamSession(Session):
    """Records in a dict shared by the threads of one process.

    Data does not survive a restart and is not shared between worker
    processes.
    """

    # id -> (record, expiration_time); id -> lock. Class-wide: one store per process.
    cache: dict[str, tuple[bytes, float]] = {}
    locks: dict[str, threading.Lock] = {}

    def _exists(self) -> bool:
        entry = self.cache.get(self.id)  # type: ignore[arg-type]
        return entry is not None and entry[1] >= time.time()

    def _load(self) -> tuple[bytes, float] | None:
        return self.cache.get(self.id)  # type: ignore[arg-type]

    def _save(self, record: bytes, expiration_time: float) -> None:
        self.cache[self.id] = (record, expiration_time)  # type: ignore[index]

    def _touch(self, expiration_time: float) -> None:
        entry = self.cache.get(self.id)  # type: ignore[arg-type]
        if entry is not None:
            self.cache[self.id] = (entry[0], expiration_time)  # type: ignore[index]

    def _delete(self) -> None:
        self.cache.pop(self.id, None)  # type: ignore[arg-type]

    def _apply(
        self, changed: dict[str, str], deleted: set[str], created: float, expiration_time: float
    ) -> bool:
        """Merge under the session lock (already ours after an explicit ``acquire_lock``).

        A busy lock is a conflict: the caller retries with a pause.
        """
        lock = None
        if not self.locked:
            lock = self._take_lock(0)
            if lock is None:
                return False
        try:
            record = self._merged_record(self._load(), changed, deleted, created)
            self._save(record, expiration_time)
        finally:
            if lock is not None:
                lock.release()
        return True

    def _take_lock(self, timeout: float) -> threading.Lock | None:
        """This id's lock, acquired within ``timeout`` seconds (0: no wait), or None."""
        deadline = time.monotonic() + timeout
        while True:
            lock = self.locks.setdefault(self.id, threading.Lock())  # type: ignore[arg-type]
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return None
            # clean_up or a release may have dropped this lock while we waited on it.
            if self.locks.get(self.id) is lock:  # type: ignore[arg-type]
                return lock
            lock.release()

    def acquire_lock(self) -> None:
        if self.locked:  # already ours (e.g. locking="early" plus an explicit call)
            return
        with store_metrics(type(self)).waiting_for_lock():
            lock = self._take_lock(self.lock_timeout)
        if lock is None:
            raise self.lock_timed_out()
        self.locked = True

    def release_lock(self) -> None:
        lock = self.locks[self.id]  # type: ignore[index]
        if self.id not in self.cache:
            # Nothing stored (a new or deleted session): drop the lock too, so
            # sessions that never stored anything leave nothing behind.
            # Threads waiting on it see it is gone and take a new one.
            self.locks.pop(self.id, None)  # type: ignore[arg-type]
        self.locked = False
        lock.release()

    def clean_up(self) -> None:
        """Drop expired records and the locks nobody holds for a missing record."""
        now = time.time()
        for session_id, (_record, expiration_time) in list(self.cache.items()):
            if expiration_time < now:
                self.cache.pop(session_id, None)
        for session_id, lock in list(self.locks.items()):
            if session_id not in self.cache and lock.acquire(blocking=False):
                self.locks.pop(session_id, None)
                lock.release()

    def __len__(self) -> int:
        """Live sessions: expired records waiting for clean-up do not count."""
        now = time.time()
        return sum(1 for _record, expiration_time in list(self.cache.values())
                   if expiration_time >= now)  # fmt: skip
