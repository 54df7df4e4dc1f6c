"""The :class:`Session` base class: a dict-like view of one session record.

Storage API (what a store subclass implements)
----------------------------------------------
All records are bytes made by :class:`~morello.sessions.codec.Codec`, so a
store never sees Python objects and never (de)serializes by itself.

``setup(**options)`` (classmethod)
    Check the store options at startup; raise ValueError naming a bad one.
``_exists() -> bool``
    Whether a live record exists for ``self.id``.
``_load() -> tuple[bytes, float] | None``
    The record and its expiration time (epoch seconds), or None.
``_save(record: bytes, expiration_time: float)``
    Replace the record (atomically) and set its expiry.
``_touch(expiration_time: float)``
    Push the expiry back without rewriting the data (defaults to nothing,
    so stores that cannot do it simply expire from the last write).
``_apply(changed, deleted, created, expiration_time) -> bool``
    Only for ``locking='optimistic'``: see below.
``_delete()``
    Remove the record (and whatever lock belongs to it).
``acquire_lock()`` / ``release_lock()``
    Exclusive per-session lock, bounded by ``lock_timeout`` seconds; on
    timeout raise :class:`LockTimeout` (a 503). Set ``self.locked``.
    A store that can read the record in the same round trip as the lock
    may leave what ``_load()`` would return in ``self.preloaded`` (when
    ``self.reads_ahead``): :meth:`Session.load` then takes it from there.
    ``_save`` and ``_touch`` may release a lock held in the same round trip
    (clearing ``self.locked``): :meth:`Session.save` releases it next anyway.
``__len__()``
    How many live (unexpired) sessions the store holds.
``clean_up()``
    Remove expired records; called every ``clean_freq`` minutes.

Stores raise :attr:`Session.store_errors` when the backend is down; the base
turns those into :class:`SessionUnavailable` (503, logged).

Optimistic locking
------------------
With ``locking='optimistic'`` no lock is held during the handler. At save,
:meth:`Session.changes` gives ``(changed, deleted)``: the encoded values of
the keys this request set or mutated, and the keys it removed, relative to
what it loaded. The store's ``_apply(changed, deleted, created,
expiration_time)`` reads the current record, builds the new one with
:meth:`Session._merged_record` and writes it only if nobody wrote in between
(Redis: a compare-and-set script; memcached: ``gets``/``cas``, ``add`` for a
new record; file and RAM: the session lock, taken only around
read-merge-write). It returns False on a conflict, and :meth:`Session.save`
calls it again (a bounded number of times, within ``lock_timeout``) so the
changes are merged into the newer record. Requests that change different
keys therefore never lose each other's writes; when two change the same key
the last one to save wins.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from morello.errors import HTTPError

from .codec import Codec, TamperedRecord
from .metrics import store_metrics

logger = logging.getLogger("morello.sessions")

# 160 random bits, hex: the same shape as CherryPy's ids.
ID_BYTES = 20
_ID_FORMAT = re.compile(r"[0-9a-f]{40}")
_UNSET = object()
#: ``Session.preloaded`` while the store has read nothing ahead.
NOT_READ = object()
# Seconds between two log lines about the same failing store class.
_FAILURE_LOG_INTERVAL = 10.0
#: The values of ``tools.sessions.locking``.
LOCKING_MODES = ("implicit", "early", "explicit", "optimistic")
# An optimistic save that lost this many races in a row gives up (503): each
# lost race means another request's save went through, so only a session
# written far faster than it can be saved gets there.
MAX_MERGE_ATTEMPTS = 50


def valid_id(session_id: Any) -> bool:
    """Whether ``session_id`` has the shape of an id we generate (checked before any store)."""
    return isinstance(session_id, str) and _ID_FORMAT.fullmatch(session_id) is not None


class SessionUnavailable(HTTPError):
    """The session store cannot serve this request: a 503 with a clear message."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


class LockTimeout(SessionUnavailable):
    """The session lock was not acquired within ``lock_timeout`` seconds."""


class Session:
    """A session: dict-like data for one ``id``, loaded from its store on first use.

    Attributes: ``id``, ``originalid`` (the id the client sent),
    ``missing`` (the client sent an id we could not use), ``loaded``,
    ``locked``, ``timeout`` (idle minutes), ``lifetime`` (absolute minutes
    since creation, None for no limit), ``lock_timeout`` (seconds),
    ``locking``, ``clean_freq`` (minutes), ``debug``.
    """

    timeout: float = 60
    lifetime: float | None = None
    lock_timeout: float = 30
    locking = "implicit"
    clean_freq: float = 5
    debug = False
    serializer = "json"
    secret: str | bytes | None = None
    store_errors: tuple[type[BaseException], ...] = (OSError,)
    #: Always None: expired sessions are cleaned up by the requests that
    #: notice it is time (no monitor thread). Kept for CherryPy's API.
    clean_thread: Any = None

    # Per class: when the last clean-up was started (see _maybe_clean_up).
    _last_clean_up = 0.0
    _clean_up_lock = threading.Lock()
    _last_failure_log = float("-inf")

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            setattr(self, name, value)
        self.codec = Codec(self.serializer, self.secret)
        #: Called with the new id when it changes (None when the session expires).
        self.id_observers: list[Callable[[str | None], None]] = []
        self.originalid = id
        self.loaded = False
        self.locked = False
        self._missing = False
        self._data: dict[str, Any] = {}
        self._snapshot: dict[str, str] = {}
        self._created = time.time()
        self._stored = False  # a record exists for self.id
        #: What the store read with the lock, for load() (see the module doc).
        self.preloaded: Any = NOT_READ
        # The store is asked only about ids of the right shape, and only when
        # the session is first used: a request that never touches the session
        # keeps working while the store is down.
        self.id: str | None = id if valid_id(id) else None
        self._checked = self.id is None
        if self.id is None:
            self._missing = id is not None
            self.id = self.generate_id()
        self._maybe_clean_up()

    @property
    def reads_ahead(self) -> bool:
        """Whether load() will read a stored record: a lock taken now may read it too."""
        return self._stored and not self.loaded

    @property
    def missing(self) -> bool:
        """True when the client sent an id that names no live session."""
        self._check_id()
        return self._missing

    @missing.setter
    def missing(self, value: bool) -> None:
        self._missing = value

    def _check_id(self) -> None:
        """On first use, confirm that the client's id names a live record."""
        if self._checked:
            return
        self._checked = True
        if self._call_store(self._exists):
            self._stored = True
        else:
            # Fixation defence: never adopt an id we did not issue for a live record.
            self._missing = True
            self._move_to_new_id()

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Check the store options ``kwargs``, raising ValueError for a bad one.

        The session tool calls it once per distinct configuration, at
        startup and before the first request using it. Options are also
        given to every instance, so nothing is set on the class here: one
        application's settings never leak into another's. Subclasses call
        ``super().setup(**kwargs)``.
        """
        Codec(kwargs.get("serializer", cls.serializer), kwargs.get("secret", cls.secret))

    def generate_id(self) -> str:
        """A fresh random id."""
        return secrets.token_hex(ID_BYTES)

    # -- lifecycle ---------------------------------------------------------

    def load(self) -> None:
        """Read the record (taking the lock first with ``locking='implicit'``)."""
        self._check_id()
        if self.locking == "implicit" and not self.locked:
            self.acquire_lock()
        self.loaded = True
        if not self._stored:
            return
        loaded, self.preloaded = self.preloaded, NOT_READ
        if loaded is NOT_READ:
            loaded = self._call_store(self._load)
        now = time.time()
        try:
            if loaded is None:
                raise LookupError("gone")
            record, expiration_time = loaded
            created, values = self.codec.unpack(record)
            if expiration_time < now or self._past_lifetime(created, now):
                raise LookupError("expired")
            data = {key: self.codec.decode_value(text) for key, text in values.items()}
        except (LookupError, TamperedRecord, ValueError) as exc:
            if isinstance(exc, TamperedRecord):
                logger.warning("session %s: %s; starting afresh", self.id, exc)
            self._call_store(self._delete)
            self._start_afresh()
            return
        self._data, self._snapshot, self._created = data, values, created

    def _past_lifetime(self, created: float, now: float) -> bool:
        return self.lifetime is not None and created + self.lifetime * 60 < now

    def _start_afresh(self) -> None:
        """Empty data under a new id (the old one is never reused)."""
        self._data = {}
        self._created = time.time()
        self.missing = True
        self._move_to_new_id()

    def _move_to_new_id(self) -> None:
        """Take a fresh id (and its lock, if we held the old one); nothing is stored yet."""
        was_locked = self.locked
        if was_locked:
            self.release_lock()
        self._snapshot, self._stored = {}, False  # everything must be written anew
        self._set_id(self.generate_id())
        if was_locked:
            self.acquire_lock()

    def changes(self) -> tuple[dict[str, str], set[str]]:
        """``(changed, deleted)``: encoded values that differ from what was loaded, removed keys.

        Raises :class:`~morello.sessions.codec.SessionDataError` naming a key
        whose value cannot be stored.
        """
        encoded = self.codec.encode_values(self._data)
        changed = {k: v for k, v in encoded.items() if self._snapshot.get(k) != v}
        return changed, set(self._snapshot) - set(encoded)

    def save(self) -> None:
        """Write the data if it changed (else refresh the expiry), then release the lock.

        With ``locking='optimistic'`` only the changed and deleted keys are
        written, merged into the record as it is now (see the module doc).
        """
        try:
            if not self.loaded:
                return
            changed, deleted = self.changes()
            expiration_time = self._expiration_time()
            if (changed or deleted) and self.locking == "optimistic":
                self._save_changes(changed, deleted, expiration_time)
            elif changed or deleted:  # the lock modes rewrite the whole record
                values = self.codec.encode_values(self._data)
                if values or self._stored:
                    record = self.codec.pack(self._created, values)
                    self._call_store(self._save, record, expiration_time)
                    self._snapshot, self._stored = values, True
            elif self._stored:
                self._call_store(self._touch, expiration_time)
        finally:
            if self.locked:
                self.release_lock()

    def _save_changes(
        self, changed: dict[str, str], deleted: set[str], expiration_time: float
    ) -> None:
        """Merge the changes into the stored record, again after each conflict (bounded)."""
        self._retry(
            lambda: self._apply(changed, deleted, self._created, expiration_time),
            self._merge_gave_up,
            MAX_MERGE_ATTEMPTS,
            op="apply",
        )
        self._stored = True
        self._snapshot.update(changed)
        for key in deleted:
            self._snapshot.pop(key, None)

    def _merge_gave_up(self) -> SessionUnavailable:
        logger.error(
            "session %s: changes not saved: other requests kept writing it "
            "(locking='optimistic'; gave up after %s attempts or lock_timeout=%ss)",
            self.id,
            MAX_MERGE_ATTEMPTS,
            self.lock_timeout,
        )
        return SessionUnavailable(
            "The session is changed by too many requests at once; your changes were "
            "not saved. Please try again."
        )

    def _merged_record(
        self,
        current: tuple[bytes, float] | None,
        changed: dict[str, str],
        deleted: set[str],
        created: float,
    ) -> bytes:
        """The record ``_apply`` writes: ``current`` (as ``_load`` gives it) with the changes.

        A missing, expired or unreadable current record counts as empty, and
        the new record then dates from ``created``.
        """
        values: dict[str, str] = {}
        if current is not None:
            record, expiration_time = current
            try:
                stored_created, stored_values = self.codec.unpack(record)
            except TamperedRecord:
                stored_created, stored_values = created, {}
            now = time.time()
            if expiration_time >= now and not self._past_lifetime(stored_created, now):
                values, created = stored_values, stored_created
        values.update(changed)
        for key in deleted:
            values.pop(key, None)
        return self.codec.pack(created, values)

    def _expiration_time(self) -> float:
        expiration_time = time.time() + self.timeout * 60
        if self.lifetime is not None:
            expiration_time = min(expiration_time, self._created + self.lifetime * 60)
        return expiration_time

    def regenerate(self) -> None:
        """Move the data to a new id, delete the old record, re-send the cookie."""
        if not self.loaded:
            self.load()
        if self._stored:
            self._call_store(self._delete)
        self._move_to_new_id()

    def delete(self) -> None:
        """Delete the record and forget the data."""
        self._check_id()
        if self._stored:
            self._call_store(self._delete)
        self._data, self._snapshot, self._stored = {}, {}, False

    def expire(self) -> None:
        """Delete the session and tell the client to drop its cookie."""
        self.delete()
        for observer in self.id_observers:
            observer(None)

    def _set_id(self, new_id: str) -> None:
        self.id = new_id
        for observer in self.id_observers:
            observer(new_id)

    # -- store plumbing ----------------------------------------------------

    def _call_store(self, method: Callable[..., Any], *args: Any, op: str = "") -> Any:
        """``method(*args)``, timed as store operation ``op`` (default: the method's name).

        Store errors become :class:`SessionUnavailable` (503), logged.
        """
        op = op or method.__name__.lstrip("_")
        timing = store_metrics(type(self))
        started = time.perf_counter()
        try:
            return method(*args)
        except self.store_errors as exc:
            timing.error(op)
            # While a store is down every request fails: log once per interval.
            cls = type(self)
            now = time.monotonic()
            if now - cls._last_failure_log >= _FAILURE_LOG_INTERVAL:
                cls._last_failure_log = now
                # Name the exception type: some client errors repr() to little.
                logger.error(
                    "session store %s failed: %s: %s", cls.__name__, type(exc).__name__, exc
                )
            raise SessionUnavailable(
                "The session store is unavailable; please try again shortly."
            ) from exc
        finally:
            timing.round_trip(op, time.perf_counter() - started)

    def wait_for_lock(self, try_lock: Callable[[], Any]) -> Any:
        """Call ``try_lock`` until it gives something other than None or False.

        Raises :meth:`lock_timed_out` (503) after ``lock_timeout`` seconds;
        store errors become 503 through :meth:`_call_store`. Stores use this
        in ``acquire_lock`` so every store waits the same way.
        """
        with store_metrics(type(self)).waiting_for_lock():
            return self._retry(try_lock, self.lock_timed_out, op="lock")

    def _retry(
        self,
        attempt: Callable[[], Any],
        give_up: Callable[[], SessionUnavailable],
        max_attempts: int | None = None,
        op: str = "",
    ) -> Any:
        """Call ``attempt`` until it gives something other than None or False.

        Pauses grow from 1 ms to 50 ms, each shortened by a random part of
        up to a half so that competing workers do not retry in step; after
        ``lock_timeout`` seconds or ``max_attempts`` calls, raise ``give_up()``.
        Each attempt is timed as store operation ``op``; each retry of an
        ``apply`` (a lost optimistic race) is counted.
        """
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.001
        attempts = 0
        while True:
            result = self._call_store(attempt, op=op)
            if result is not None and result is not False:
                return result
            if op == "apply":
                store_metrics(type(self)).retries.inc()
            attempts += 1
            left = deadline - time.monotonic()
            if left <= 0 or attempts == max_attempts:
                raise give_up()
            time.sleep(min(pause * random.uniform(0.5, 1.0), left))
            pause = min(pause * 2, 0.05)

    def lock_timed_out(self) -> LockTimeout:
        store_metrics(type(self)).lock_timeouts.inc()
        logger.error("session %s: lock not acquired within %ss", self.id, self.lock_timeout)
        return LockTimeout(
            f"The session is busy (lock not acquired within {self.lock_timeout} seconds)."
        )

    def _maybe_clean_up(self) -> None:
        """Start :meth:`clean_up` in a background thread every ``clean_freq`` minutes."""
        cls = type(self)
        now = time.monotonic()
        if not self.clean_freq or now - cls._last_clean_up < self.clean_freq * 60:
            return
        with cls._clean_up_lock:
            if now - cls._last_clean_up < self.clean_freq * 60:
                return
            cls._last_clean_up = now
        threading.Thread(target=self._clean_up_logged, name="session-clean-up", daemon=True).start()

    def _clean_up_logged(self) -> None:
        try:
            self.clean_up()
        except Exception:
            logger.exception("session clean-up failed")

    # -- storage API defaults -----------------------------------------------

    def _exists(self) -> bool:
        raise NotImplementedError

    def _load(self) -> tuple[bytes, float] | None:
        raise NotImplementedError

    def _save(self, record: bytes, expiration_time: float) -> None:
        raise NotImplementedError

    def _touch(self, expiration_time: float) -> None:
        """Refresh the expiry only; stores that cannot may leave this as is."""

    def _apply(
        self, changed: dict[str, str], deleted: set[str], created: float, expiration_time: float
    ) -> bool:
        """Merge the changes into the current record unless it changed meanwhile (optimistic)."""
        raise NotImplementedError

    def _delete(self) -> None:
        raise NotImplementedError

    def acquire_lock(self) -> None:
        raise NotImplementedError

    def release_lock(self) -> None:
        raise NotImplementedError

    def clean_up(self) -> None:
        """Remove expired sessions (nothing by default)."""

    def __len__(self) -> int:
        raise NotImplementedError

    # -- the dict interface ------------------------------------------------

    def _loaded_data(self) -> dict[str, Any]:
        if not self.loaded:
            self.load()
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._loaded_data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._loaded_data()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._loaded_data()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._loaded_data()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded_data())

    def get(self, key: str, default: Any = None) -> Any:
        return self._loaded_data().get(key, default)

    def pop(self, key: str, default: Any = _UNSET) -> Any:
        if default is _UNSET:
            return self._loaded_data().pop(key)
        return self._loaded_data().pop(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        return self._loaded_data().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._loaded_data().update(*args, **kwargs)

    def clear(self) -> None:
        self._loaded_data().clear()

    def keys(self) -> Any:
        return self._loaded_data().keys()

    def values(self) -> Any:
        return self._loaded_data().values()

    def items(self) -> Any:
        return self._loaded_data().items()

    def has_key(self, key: str) -> bool:
        """CherryPy's spelling of ``key in session``."""
        return key in self
