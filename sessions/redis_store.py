"""``RedisSession``: sessions in Redis, shared by every worker on every host.

Layout: ``<prefix><id>`` holds the record, and its Redis TTL *is* the
expiry (so Redis removes expired sessions and :meth:`clean_up` has nothing
to do). ``<prefix><id>:lock`` is the lock: ``SET NX PX`` with a random owner
token, removed by a Lua script only by the owner that still holds it. Every
command names one key, so the same code runs against a Redis Cluster.

A request on a stored session makes three round trips: ``EXISTS`` (the
client's id names a live record), the lock with the record's read, and the
write with the lock's release (pipelines, not transactions; on a Cluster,
whose pipelines run no script, the release goes apart).

Clients are made lazily and per process: a forked worker never uses a
socket its parent opened.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from .base import ID_BYTES, NOT_READ, Session
from .hosts import split_host_port

logger = logging.getLogger("morello.sessions")

LOCK_SUFFIX = ":lock"
# Delete the lock only if it is still ours: it may have expired and been taken over.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
# Write the merged record (ARGV[2]) only if the stored one still has the SHA-1
# we merged into (ARGV[1]; empty: there was none), so no write is lost.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
local digest = current and redis.sha1hex(current) or ''
if digest ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_SCAN_BATCH = 1000
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})

SENTINEL_PORT = 26379
_SENTINEL_QUERY = ("sentinel_username", "sentinel_password")
_URL_FORMS = (
    "redis://, rediss://, unix://, "
    "redis+sentinel://[user:password@]host[:port][,host[:port]...]/service_name[/db] "
    "or redis+cluster://[user:password@]host[:port]"
)
Client = redis.Redis | RedisCluster
ClientFactory = Callable[..., Client]


def client_factory(url: str) -> ClientFactory:
    """Check ``url`` and return what makes its client from connection options.

    Raises ValueError saying what is wrong with ``url``. Accepted forms:

    * ``redis://``, ``rediss://``, ``unix://``: one server (``redis.Redis.from_url``);
    * ``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]``:
      the master of ``service`` as the sentinels at those addresses (port
      26379 by default) report it, followed across failovers; ``user`` and
      ``password`` are the master's, ``?sentinel_username=&sentinel_password=``
      the sentinels' own;
    * ``redis+cluster://`` or ``rediss+cluster://[user:password@]host[:port]``: a Redis
      Cluster found from that node (``redis.cluster.RedisCluster.from_url``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"Redis url {url!r} has no scheme; use {_URL_FORMS}")
    if scheme == "redis+sentinel":
        return _sentinel_factory(url)
    if scheme in ("redis+cluster", "rediss+cluster"):
        plain = scheme.partition("+")[0] + "://" + rest
        if "," in _split(url, plain).netloc:
            raise ValueError(f"Redis url {url!r}: name one cluster node (the rest are found)")
        if _parse_plain(url, plain).get("db", 0) != 0:
            raise ValueError(f"Redis url {url!r}: a Redis Cluster has only database 0")
        return lambda **options: RedisCluster.from_url(plain, **options)
    _parse_plain(url, url)
    return lambda **options: redis.Redis.from_url(url, **options)


def _parse_plain(url: str, plain: str) -> dict[str, Any]:
    """redis-py's reading of a ``redis://``-style ``plain`` url, with errors naming ``url``."""
    try:
        return redis.connection.parse_url(plain)
    except ValueError as exc:
        raise ValueError(f"Redis url {url!r}: {exc}; use {_URL_FORMS}") from None


def _split(url: str, plain: str) -> SplitResult:
    """``urlsplit(plain)``, with errors naming ``url``."""
    try:
        return urlsplit(plain)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ValueError(f"Redis url {url!r}: {exc}") from None


def _sentinel_factory(url: str) -> ClientFactory:
    parts = _split(url, url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    try:
        sentinels = [split_host_port(host, SENTINEL_PORT) for host in hosts.split(",")]
    except ValueError as exc:
        raise ValueError(f"Redis Sentinel url {url!r}: {exc}") from None
    service, _, db = parts.path.strip("/").partition("/")
    if not service or not (db or "0").isdigit():
        raise ValueError(
            f"Redis Sentinel url {url!r}: the path must be /service_name or /service_name/db"
        )
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = set(query) - set(_SENTINEL_QUERY)
    if unknown:
        raise ValueError(
            f"Redis Sentinel url {url!r}: unknown parameter(s) {sorted(unknown)}; "
            f"allowed: {list(_SENTINEL_QUERY)}"
        )
    master: dict[str, Any] = {"db": int(db or 0)}
    if username:
        master["username"] = unquote(username)
    if password:
        master["password"] = unquote(password)
    own = {name.removeprefix("sentinel_"): value for name, value in query.items()}

    def make(**options: Any) -> Client:
        # The sentinels get the timeouts and their own credentials, not the master's.
        sentinel = Sentinel(sentinels, sentinel_kwargs={**options, **own}, **options)
        return sentinel.master_for(service, **master)

    return make


# (url, socket_connect_timeout, socket_timeout) -> client, for the process _pid only.
_clients: dict[tuple[str, float, float], Client] = {}
_pid = os.getpid()


def client_for(url: str, socket_connect_timeout: float, socket_timeout: float) -> Client:
    """This process's client (and connection pool) for these options, made on first use."""
    global _clients, _pid
    if _pid != os.getpid():
        # A forked child: the inherited pools hold the parent's sockets. Forget
        # them without closing anything the parent still uses.
        _clients, _pid = {}, os.getpid()
    key = (url, socket_connect_timeout, socket_timeout)
    client = _clients.get(key)
    if client is None:
        client = client_factory(url)(
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
            # One immediate retry on a fresh connection covers pooled sockets
            # that died with a restarted server; a dead server still fails fast.
            retry=Retry(NoBackoff(), 1),
        )
        client = _clients.setdefault(key, client)  # atomic: racing threads share one
    return client


def _loaded(record: bytes | None, ttl_ms: int) -> tuple[bytes, float] | None:
    """What ``_load`` returns, from a record and its PTTL as Redis gave them."""
    if record is None:
        return None
    # -1: no TTL (written by someone else); treat it as never expiring.
    expiration_time = float("inf") if ttl_ms < 0 else time.time() + ttl_ms / 1000
    return record, expiration_time


class RedisSession(Session):
    """Sessions in Redis at ``url``: one server, a Sentinel-managed master or a Cluster.

    ``url`` is ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``
    or ``redis+cluster://`` (see :func:`client_factory`).

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
    store_errors = (
        OSError,
        redis.ConnectionError,  # with Sentinel's MasterNotFoundError
        redis.TimeoutError,
        ClusterError,  # CLUSTERDOWN...
        RedisClusterException,  # no cluster node reachable
    )

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:
        self._lock_token: str | None = None
        super().__init__(id, **kwargs)

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Check the ``url`` early; connections are only made on first use, per process."""
        super().setup(**kwargs)
        client_factory(kwargs.get("url", cls.url))

    @property
    def client(self) -> Client:
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
            return _loaded(*pipe.get(self._key()).pttl(self._key()).execute())

    def _save(self, record: bytes, expiration_time: float) -> None:
        key, ttl_ms = self._key(), self._ttl_ms(expiration_time)
        self._write(lambda client: client.set(key, record, px=ttl_ms))

    def _touch(self, expiration_time: float) -> None:
        key, ttl_ms = self._key(), self._ttl_ms(expiration_time)
        self._write(lambda client: client.pexpire(key, ttl_ms))

    def _write(self, command: Callable[[Any], Any]) -> None:
        """Run ``command`` on the client; a lock we hold is released in the same round trip
        (save() would release it next), but on a Redis Cluster."""
        token, client = self._lock_token, self.client
        # A cluster's pipelines run no script: there save() releases it apart.
        if token is None or isinstance(client, RedisCluster):
            command(client)
            return
        with client.pipeline(transaction=False) as pipe:
            command(pipe)
            pipe.eval(_RELEASE, 1, self._key() + LOCK_SUFFIX, token)
            released = pipe.execute()[-1]
        self._forget_lock()
        self._check_released(released)

    def _apply(
        self, changed: dict[str, str], deleted: set[str], created: float, expiration_time: float
    ) -> bool:
        """Merge into the record as read now; a script writes it only if it is unchanged."""
        record = self.client.get(self._key())
        # Redis returns only live records: no expiry to check.
        current = None if record is None else (record, float("inf"))
        merged = self._merged_record(current, changed, deleted, created)
        digest = "" if record is None else hashlib.sha1(record, usedforsecurity=False).hexdigest()
        ttl_ms = self._ttl_ms(expiration_time)
        return bool(self.client.eval(_COMPARE_AND_SET, 1, self._key(), digest, merged, ttl_ms))

    def _delete(self) -> None:
        self.client.delete(self._key())

    def acquire_lock(self) -> None:
        if self.locked:  # already ours (e.g. locking="early" plus an explicit call)
            return
        token = secrets.token_hex(16)
        lock_key = self._key() + LOCK_SUFFIX
        lock_ms = max(1, int(self.lock_expiry * 1000))
        # The first attempt also reads the record load() is about to read: one
        # round trip fewer. Not the retries: a busy lock would fetch it each time.
        attempts = iter([self.reads_ahead])
        self.wait_for_lock(lambda: self._try_lock(lock_key, token, lock_ms, next(attempts, False)))
        self._lock_token = token
        self.locked = True

    def _try_lock(self, lock_key: str, token: str, lock_ms: int, read: bool) -> bool:
        if not read:
            return bool(self.client.set(lock_key, token, nx=True, px=lock_ms))
        key = self._key()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.set(lock_key, token, nx=True, px=lock_ms).get(key).pttl(key)
            locked, record, ttl_ms = pipe.execute()
        if locked:
            # Read after the lock was taken: as good as a read under the lock.
            self.preloaded = _loaded(record, ttl_ms)
        return bool(locked)

    def release_lock(self) -> None:
        token = self._lock_token
        self._forget_lock()
        if token is None:
            return
        lock_key = self._key() + LOCK_SUFFIX
        released = self._call_store(self.client.eval, _RELEASE, 1, lock_key, token, op="unlock")
        self._check_released(released)

    def _forget_lock(self) -> None:
        self._lock_token = None
        self.locked = False
        self.preloaded = NOT_READ  # read under a lock no longer held

    def _check_released(self, released: Any) -> None:
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
