"""``RedisSession``: sessions in Redis, shared by every worker on every host.

Layout: ``<prefix><id>`` holds the record, and its Redis TTL *is* the
expiry (so Redis removes expired sessions and :meth:`clean_up` has nothing
to do). ``<prefix><id>:lock`` is the lock: ``SET NX PX`` with a random owner
token, removed by a Lua script only by the owner that still holds it.

Clients are made lazily and per process: a forked worker never uses a
socket its parent opened.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .base import ID_BYTES, Session

logger = logging.getLogger("morello.sessions")

LOCK_SUFFIX = ":lock"
# Delete the lock only if it is still ours: it may have expired and been taken over.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
_SCAN_BATCH = 1000
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})

# (url, socket_connect_timeout, socket_timeout) -> client, for the process _pid only.
_clients: dict[tuple[str, float, float], redis.Redis] = {}
_pid = os.getpid()


def client_for(url: str, socket_connect_timeout: float, socket_timeout: float) -> redis.Redis:
    """This process's client (and connection pool) for these options, made on first use."""
    global _clients, _pid
    if _pid != os.getpid():
        # A forked child: the inherited pools hold the parent's sockets. Forget
        # them without closing anything the parent still uses.
        _clients, _pid = {}, os.getpid()
    key = (url, socket_connect_timeout, socket_timeout)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
            # One immediate retry on a fresh connection covers pooled sockets
            # that died with a restarted server; a dead server still fails fast.
            retry=Retry(NoBackoff(), 1),
        )
        client = _clients.setdefault(key, client)  # atomic: racing threads share one
    return client


class RedisSession(Session):
    """Sessions in Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    Options: ``prefix`` for the keys, ``socket_connect_timeout`` and
    ``socket_timeout`` in seconds (short, so a dead store does not pin
    threads), ``lock_expiry`` in seconds (a lock left by a crashed worker
    frees itself after it; keep it above the longest request).
    """

    url = "redis://localhost:6379/0"
    prefix = "morello-session:"
    socket_connect_timeout = 1.0
    socket_timeout = 1.0
    lock_expiry = 60.0
    store_errors = (OSError, redis.ConnectionError, redis.TimeoutError)

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:
        self._lock_token: str | None = None
        super().__init__(id, **kwargs)

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Check the ``url`` early; connections are only made on first use, per process."""
        redis.connection.parse_url(kwargs.get("url", cls.url))

    @property
    def client(self) -> redis.Redis:
        """This process's client for this session's options."""
        return client_for(self.url, self.socket_connect_timeout, self.socket_timeout)

    def _key(self) -> str:
        return self.prefix + self.id  # type: ignore[operator]

    @staticmethod
    def _ttl_ms(expiration_time: float) -> int:
        return max(1, int((expiration_time - time.time()) * 1000))

    def _exists(self) -> bool:
        return bool(self.client.exists(self._key()))

    def _load(self) -> tuple[bytes, float] | None:
        with self.client.pipeline() as pipe:  # MULTI: data and TTL of the same record
            record, ttl_ms = pipe.get(self._key()).pttl(self._key()).execute()
        if record is None:
            return None
        # -1: no TTL (written by someone else); treat it as never expiring.
        expiration_time = float("inf") if ttl_ms < 0 else time.time() + ttl_ms / 1000
        return record, expiration_time

    def _save(self, record: bytes, expiration_time: float) -> None:
        self.client.set(self._key(), record, px=self._ttl_ms(expiration_time))

    def _touch(self, expiration_time: float) -> None:
        self.client.pexpire(self._key(), self._ttl_ms(expiration_time))

    def _delete(self) -> None:
        self.client.delete(self._key())

    def acquire_lock(self) -> None:
        if self.locked:  # already ours (e.g. locking="early" plus an explicit call)
            return
        token = secrets.token_hex(16)
        lock_key = self._key() + LOCK_SUFFIX
        lock_ms = max(1, int(self.lock_expiry * 1000))
        self.wait_for_lock(lambda: self._try_lock(lock_key, token, lock_ms))
        self._lock_token = token
        self.locked = True

    def _try_lock(self, lock_key: str, token: str, lock_ms: int) -> bool:
        return bool(self.client.set(lock_key, token, nx=True, px=lock_ms))

    def release_lock(self) -> None:
        token, self._lock_token = self._lock_token, None
        self.locked = False
        if token is None:
            return
        lock_key = self._key() + LOCK_SUFFIX
        released = self._call_store(self.client.eval, _RELEASE, 1, lock_key, token)
        if not released:
            logger.warning(
                "session %s: lock expired after lock_expiry=%ss and was not released",
                self.id,
                self.lock_expiry,
            )

    def clean_up(self) -> None:
        """Nothing to do: Redis expires records by their TTL."""

    def __len__(self) -> int:
        """Sessions under ``prefix``, counted by SCAN in batches (never a blocking KEYS)."""
        # Ids have a fixed length, so lock keys (id + suffix) do not match.
        pattern = self.prefix.translate(_GLOB_SPECIALS) + "?" * (2 * ID_BYTES)
        return sum(1 for _ in self.client.scan_iter(match=pattern, count=_SCAN_BATCH))
