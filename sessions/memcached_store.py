"""``MemcachedSession``: sessions in memcached, shared by every worker on every host.

Each session is one item, ``<prefix><id>``, holding the record; its expiry
is the memcached TTL, so memcached itself forgets expired sessions and
refreshing the expiry is a ``touch``, never a rewrite.

The lock is a second item, ``<prefix><id>:lock``, taken with ``add`` (which
only one client can win) holding a random owner token, and expiring after
``lock_expiry`` seconds so a crashed worker cannot block a session forever.
Releasing it is a ``gets`` then a ``cas`` that replaces *our* token with a
short-lived "free" marker; an acquirer that finds the marker takes it over
with ``cas`` too. Both steps are atomic in memcached, so a release can never
drop a lock that expired and was taken by someone else meanwhile. What
remains: a handler that runs longer than ``lock_expiry`` loses its lock
without knowing it, and a concurrent request may then interleave with it.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheError

from .base import Session
from .hosts import split_host_port

# memcached reads a TTL above 30 days as an absolute epoch time.
_MAX_RELATIVE_TTL = 30 * 24 * 3600
_MAX_KEY_LENGTH = 250
LOCK_SUFFIX = ":lock"
# The value of a released lock: anyone may take it over with ``cas``.
_FREE = b"-"


def normalize_servers(servers: Any) -> tuple[tuple[str, int], ...]:
    """``(host, port)`` pairs from CherryPy's ``'host:port'`` strings or tuples.

    A single string or pair is accepted as one server; ``'[::1]:11211'``
    spells an IPv6 address, and the port defaults to 11211. A malformed
    entry is a ValueError naming it.
    """
    if isinstance(servers, str) or (isinstance(servers, tuple) and isinstance(servers[-1], int)):
        servers = [servers]
    result = []
    for server in servers:
        if isinstance(server, str):
            try:
                server = split_host_port(server, 11211)
            except ValueError as exc:
                raise ValueError(f"tools.sessions.servers: {exc}") from None
        host, port = server
        result.append((str(host), int(port)))
    if not result:
        raise ValueError("tools.sessions.servers lists no memcached server")
    return tuple(result)


class _Servers:
    """One connection pool per server; each session lives on the server its key hashes to.

    Unlike pymemcache's ``HashClient`` there is no failover: a failing
    server is not dropped from the ring, because that would move its
    sessions (and their locks) to another server, where workers that still
    see it alive would not find them. A session on a down server gets 503.
    """

    def __init__(self, servers: tuple[tuple[str, int], ...], **options: Any) -> None:
        self.pools = {
            f"{host}:{port}": PooledClient((host, port), **options) for host, port in servers
        }
        self.ring = RendezvousHash(list(self.pools))

    def for_key(self, key: str) -> PooledClient:
        return self.pools[self.ring.get_node(key)]


def _check_prefix(prefix: str) -> None:
    # Ids are 40 hex digits (checked by the base class); only the prefix can break a key.
    if not prefix.isascii() or not prefix.isprintable() or " " in prefix:
        raise ValueError(f"tools.sessions.prefix {prefix!r}: use printable ASCII, no spaces")
    if len(prefix) + 40 + len(LOCK_SUFFIX) > _MAX_KEY_LENGTH:
        raise ValueError(f"tools.sessions.prefix {prefix!r} is too long for memcached keys")


def _ttl(expiration_time: float) -> int:
    """The memcached ``expire`` argument for an absolute time (at least 1: 0 means never)."""
    seconds = math.ceil(expiration_time - time.time())
    if seconds > _MAX_RELATIVE_TTL:
        return math.ceil(expiration_time)
    return max(seconds, 1)


class MemcachedSession(Session):
    """Sessions in memcached ``servers``, with locks that hold across processes and hosts.

    Options: ``servers`` (default ``['127.0.0.1:11211']``; several servers
    share the sessions by key hashing), ``prefix`` of the keys,
    ``connect_timeout`` and ``socket_timeout`` in seconds (short, so a dead
    store gives a quick 503 instead of pinning threads) and ``lock_expiry``
    in seconds (how long a lock survives a crashed holder; keep it above
    your slowest request).
    """

    servers: Any = ("127.0.0.1:11211",)
    prefix = "morello-session-"
    connect_timeout = 1.0
    socket_timeout = 2.0
    lock_expiry = 60
    store_errors = (OSError, MemcacheError)

    # One client per (process, configuration): pymemcache sockets must not
    # be shared with a forked child, so a new pid means new clients.
    _clients: dict[tuple[Any, ...], _Servers] = {}
    _clients_pid = os.getpid()
    _clients_lock = threading.Lock()

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:
        self._lock_token: bytes | None = None
        super().__init__(id, **kwargs)

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Check ``servers`` and ``prefix`` at startup; clients are made lazily per process."""
        super().setup(**kwargs)
        normalize_servers(kwargs.get("servers", cls.servers))
        _check_prefix(kwargs.get("prefix", cls.prefix))

    def _client(self) -> PooledClient:
        """The (per process) pool of the server holding this session and its lock."""
        config = (normalize_servers(self.servers), self.connect_timeout, self.socket_timeout)
        cls = MemcachedSession
        with cls._clients_lock:
            if cls._clients_pid != os.getpid():
                # Forked: the inherited sockets belong to the parent; drop them unused.
                cls._clients, cls._clients_pid = {}, os.getpid()
            servers = cls._clients.get(config)
            if servers is None:
                servers = cls._clients[config] = _Servers(
                    config[0],
                    connect_timeout=self.connect_timeout,
                    timeout=self.socket_timeout,
                    default_noreply=False,
                )
        return servers.for_key(self._key())

    def _key(self) -> str:
        return f"{self.prefix}{self.id}"

    def _exists(self) -> bool:
        return self._client().get(self._key()) is not None

    def _load(self) -> tuple[bytes, float] | None:
        record = self._client().get(self._key())
        # memcached returns only live items, so a found record has not expired.
        return None if record is None else (record, math.inf)

    def _save(self, record: bytes, expiration_time: float) -> None:
        self._client().set(self._key(), record, expire=_ttl(expiration_time))

    def _touch(self, expiration_time: float) -> None:
        self._client().touch(self._key(), expire=_ttl(expiration_time))

    def _apply(
        self, changed: dict[str, str], deleted: set[str], created: float, expiration_time: float
    ) -> bool:
        """Merge into the record read by ``gets``; write it with ``cas`` (``add`` if new).

        Both fail, and we return False, if another client wrote (or created,
        or deleted) the record since we read it.
        """
        client, key = self._client(), self._key()
        record, cas = client.gets(key)
        current = None if record is None else (record, math.inf)
        merged = self._merged_record(current, changed, deleted, created)
        expire = _ttl(expiration_time)
        if record is None:
            return bool(client.add(key, merged, expire=expire))
        # cas gives False when the item changed and None when it is gone.
        return bool(client.cas(key, merged, cas, expire=expire))

    def _delete(self) -> None:
        """Delete the record; the lock goes with :meth:`release_lock` (or its expiry)."""
        self._client().delete(self._key())

    def _try_lock(self, token: bytes) -> bool:
        client, key = self._client(), self._key() + LOCK_SUFFIX
        if client.add(key, token, expire=math.ceil(self.lock_expiry)):
            return True
        value, cas = client.gets(key)
        # A released lock: take it over, unless someone else does first.
        return value == _FREE and bool(
            client.cas(key, token, cas, expire=math.ceil(self.lock_expiry))
        )

    def acquire_lock(self) -> None:
        """Take the session lock, waiting at most ``lock_timeout`` seconds (then 503)."""
        if self.locked:
            return
        token = secrets.token_hex(16).encode()
        self.wait_for_lock(lambda: self._try_lock(token))
        self._lock_token, self.locked = token, True

    def _unlock(self, token: bytes) -> None:
        client, key = self._client(), self._key() + LOCK_SUFFIX
        value, cas = client.gets(key)
        if value == token:  # still ours: it did not expire and get taken meanwhile
            client.cas(key, _FREE, cas, expire=1)

    def release_lock(self) -> None:
        """Free the lock if we still own it (an expired lock taken by another is left alone)."""
        token, self._lock_token = self._lock_token, None
        self.locked = False
        if token is not None:
            self._call_store(self._unlock, token)

    def clean_up(self) -> None:
        """Nothing to do: memcached drops expired sessions by itself."""

    def __len__(self) -> int:
        """Not available, as in CherryPy: memcached cannot count keys by prefix."""
        raise NotImplementedError("memcached cannot count the sessions it holds")
