"""In-memory HTTP caching: ``tools.caching`` (``cherrypy.lib.caching``).

With ``tools.caching.on = True``, a response to a GET (or any method not in
``invalid_methods``) is kept in a process-wide cache, keyed on its URL and
on the request headers its ``Vary`` header names; the next request for the
same variant is answered from the cache (with an ``Age`` header) without
calling the handler. POST, PUT and DELETE drop the cached variants of
their URL. Other ``tools.caching.<name>`` keys become attributes of the
cache when it is created (``delay``, ``maxobjects``, ``cache_class``...)::

    [/]
    tools.caching.on = True
    tools.caching.delay = 3600

The process-wide cache is ``morello._cache`` (where CherryPy keeps it);
delete that attribute to start over with a new one.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import morello
from morello.errors import HTTPError, HTTPRedirect
from morello.lib import cptools
from morello.lib.caching_headers import expires  # CherryPy's location for it
from morello.lib.httputil import HeaderMap, valid_status
from morello.serving import serving
from morello.tool import Tool
from morello.urls import url

__all__ = ["Cache", "CachingTool", "MemoryCache", "expires", "get", "tee_output"]

#: Statuses whose responses are stored: those HTTP lets caches reuse by
#: default (RFC 9110 15.1), except 206, whose ranges are not part of the key.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

_creation_lock = threading.Lock()


def _log(message: str) -> None:
    morello.log(message, "TOOLS.CACHING")


def _resource_uri() -> str:
    """The current request's absolute URL with its query string: the cache key."""
    # Always absolute: with app.relative_urls, url() would give every page ''.
    return url(qs=serving.request.query_string, relative=False)


class Cache:
    """What ``tools.caching`` needs from a cache (``cache_class``).

    Each method works on the current request's resource (``serving.request``).
    A variant is ``(status, headers, body, created)``, ``created`` being
    ``response.time`` of the response that produced it.
    """

    def get(self) -> Any:
        """The cached variant for the current request, or None."""
        raise NotImplementedError

    def put(self, variant: Any, size: int) -> None:
        """Store ``variant`` (``size`` bytes of body) for the current request."""
        raise NotImplementedError

    def delete(self) -> None:
        """Drop every cached variant of the current request's URL."""
        raise NotImplementedError

    def clear(self) -> None:
        """Drop everything."""
        raise NotImplementedError


class _Entry:
    __slots__ = ("variant", "size", "expires")

    def __init__(self, variant: Any, size: int, expires: float) -> None:
        self.variant = variant
        self.size = size
        self.expires = expires


class _Resource:
    """The cached variants of one URL.

    ``selecting_headers`` are the names in the ``Vary`` header of the first
    response stored for the URL; they are assumed not to change while the
    URL has variants in the cache.
    """

    __slots__ = ("cache", "uri", "selecting_headers", "variants")

    def __init__(self, cache: MemoryCache, uri: str, selecting_headers: tuple[str, ...]) -> None:
        self.cache = cache
        self.uri = uri
        self.selecting_headers = selecting_headers
        self.variants: dict[tuple[str, ...], _Entry] = {}

    def key(self, request_headers: HeaderMap) -> tuple[str, ...]:
        return tuple(request_headers.get(name, "") for name in self.selecting_headers)

    def clear(self) -> None:
        """Drop every cached variant of the URL.

        (CherryPy's ``cache.store[uri]`` is a dict, which applications clear.)
        """
        self.cache.drop(self.uri)


class _Fill:
    """A request computing a response other requests for it wait for."""

    __slots__ = ("owner",)

    def __init__(self, owner: int) -> None:
        self.owner = owner


class MemoryCache(Cache):
    """A thread-safe in-memory cache of response variants.

    Limits: at most ``maxobjects`` variants, none of ``maxobj_size`` bytes
    or more, less than ``maxsize`` bytes in all. Variants expire ``delay``
    seconds after their response started; a background thread, started with
    the first entry and ending when nothing is left to expire (or at
    :meth:`stop`), frees them.

    Anti-stampede: while one request computes a variant that is not cached,
    other requests for it wait up to ``antistampede_timeout`` seconds for it
    instead of calling the handler too (None: never wait).
    """

    maxobjects = 1000
    maxobj_size = 100_000
    maxsize = 10_000_000
    delay = 600
    antistampede_timeout: float | None = 5
    debug = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Waiters for a fill, and the expiry thread, sleep on their own
        # conditions so that one kind of news does not wake the other.
        self._filled = threading.Condition(self._lock)
        self._expiry_changed = threading.Condition(self._lock)
        self._expiry_thread: threading.Thread | None = None
        self._sequence = itertools.count()
        self.clear()

    def clear(self) -> None:
        """Drop everything, statistics included."""
        with self._lock:
            self.store: dict[str, _Resource] = {}
            # (expires, sequence, uri, key, entry): a min-heap; entries that
            # were replaced or deleted stay until their time and are skipped.
            self._expirations: list[tuple[float, int, str, tuple[str, ...], _Entry]] = []
            self._fills: dict[tuple[str, tuple[str, ...] | None], _Fill] = {}
            self._objects = 0
            self.cursize = 0
            self.tot_puts = 0
            self.tot_gets = 0
            self.tot_hist = 0
            self.tot_expires = 0
            self.tot_non_modified = 0
            self._filled.notify_all()

    def get(self) -> Any:
        """The cached variant for the current request, or None.

        On a miss, the request becomes the one computing the variant unless
        another already does, in which case this waits for that one.
        """
        request = serving.request
        uri = _resource_uri()
        timeout = self.antistampede_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        awaited: _Fill | None = None
        with self._lock:
            self.tot_gets += 1
            while True:
                resource = self.store.get(uri)
                key = None
                if resource is not None:
                    key = resource.key(request.headers)
                    entry = resource.variants.get(key)
                    if entry is not None:
                        if entry.expires > time.time():
                            self.tot_hist += 1
                            return entry.variant
                        # Expired, and the expiry thread has not got to it yet.
                        self._remove(uri, resource, key)
                if deadline is None:
                    return None
                claim = (uri, key)
                fill = self._fills.get(claim)
                if fill is None or fill.owner == me:
                    if awaited is None:
                        self._claim(claim, me)
                    # else: the request waited for ended without caching this
                    # variant; compute it alongside rather than queue again.
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if self.debug:
                        _log("Gave up waiting for another request to fill the cache")
                    # Later arrivals wait for this request instead.
                    self._claim(claim, me)
                    return None
                if self.debug and awaited is None:
                    _log(f"Waiting up to {remaining:.3g}s for another request to fill the cache")
                awaited = fill
                self._filled.wait(remaining)

    def _claim(self, claim: tuple[str, tuple[str, ...] | None], owner: int) -> None:
        fill = self._fills[claim] = _Fill(owner)
        # However the request ends (stored, not cacheable, failed), waiters
        # must hear about it.
        serving.request.hooks.attach(
            "on_end_request", self._release, failsafe=True, claim=claim, fill=fill
        )

    def _release(self, claim: tuple[str, tuple[str, ...] | None], fill: _Fill) -> None:
        with self._lock:
            if self._fills.get(claim) is fill:
                del self._fills[claim]
                self._filled.notify_all()

    def put(self, variant: Any, size: int) -> None:
        """Store ``variant`` unless it breaks a size limit (or says ``Vary: *``)."""
        request, response = serving.request, serving.response
        uri = _resource_uri()
        with self._lock:
            resource = self.store.get(uri)
            if resource is None:
                names = tuple(e.value for e in response.headers.elements("Vary"))
                if "*" in names:  # varies on things no request header tells
                    return
                resource = _Resource(self, uri, names)
            key = resource.key(request.headers)
            old = resource.variants.get(key)
            freed, replaced = (old.size, 1) if old is not None else (0, 0)
            if (
                self._objects - replaced >= self.maxobjects
                or size >= self.maxobj_size
                or self.cursize - freed + size >= self.maxsize
            ):
                if self.debug:
                    _log(f"Not caching {uri}: {size} bytes would break a size limit")
                return
            self.store[uri] = resource
            entry = resource.variants[key] = _Entry(variant, size, response.time + self.delay)
            self._objects += 1 - replaced
            self.cursize += size - freed
            self.tot_puts += 1
            expiry = (entry.expires, next(self._sequence), uri, key, entry)
            heapq.heappush(self._expirations, expiry)
            self._filled.notify_all()
            if self._expiry_thread is None:
                self._expiry_thread = threading.Thread(
                    target=self._expire, name="morello-cache-expiry", daemon=True
                )
                self._expiry_thread.start()
            elif self._expirations[0] is expiry:  # it expires before all the others
                self._expiry_changed.notify()

    def delete(self) -> None:
        """Drop every cached variant of the current request's URL."""
        self.drop(_resource_uri())

    def drop(self, uri: str) -> None:
        """Drop every cached variant of ``uri``."""
        with self._lock:
            resource = self.store.get(uri)
            if resource is not None:
                for key in list(resource.variants):
                    self._remove(uri, resource, key)

    def _remove(self, uri: str, resource: _Resource, key: tuple[str, ...]) -> None:
        # The lock is held.
        entry = resource.variants.pop(key)
        self._objects -= 1
        self.cursize -= entry.size
        if not resource.variants:
            # The next response may name other Vary headers.
            del self.store[uri]

    def _expire(self) -> None:
        """The expiry thread: drop variants as they expire, until none are left."""
        me = threading.current_thread()
        with self._lock:
            while self._expiry_thread is me and self._expirations:
                now = time.time()
                heap = self._expirations
                while heap and heap[0][0] <= now:
                    _, _, uri, key, entry = heapq.heappop(heap)
                    resource = self.store.get(uri)
                    if resource is not None and resource.variants.get(key) is entry:
                        self._remove(uri, resource, key)
                        self.tot_expires += 1
                if heap:
                    self._expiry_changed.wait(heap[0][0] - now)
            if self._expiry_thread is me:
                self._expiry_thread = None

    def stop(self) -> None:
        """Stop the expiry thread (the next stored variant starts it again).

        Expired variants are never served, thread or not: it only frees them.
        """
        with self._lock:
            thread, self._expiry_thread = self._expiry_thread, None
            self._expiry_changed.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _process_cache(settings: dict[str, Any], debug: bool) -> Cache:
    """The process-wide cache, created from the first request's settings."""
    cache = getattr(morello, "_cache", None)
    if cache is not None:
        return cache
    with _creation_lock:
        cache = getattr(morello, "_cache", None)
        if cache is None:
            cache = settings.pop("cache_class", MemoryCache)()
            for name, value in settings.items():
                setattr(cache, name, value)
            cache.debug = debug
            morello._cache = cache
            # The expiry thread should not outlive the server.
            morello.engine.subscribe("stop", _stop_process_cache)
    return cache


def _stop_process_cache() -> None:
    stop = getattr(getattr(morello, "_cache", None), "stop", None)
    if stop is not None:
        stop()


def _miss(cacheable: bool) -> bool:
    request = serving.request
    request.cached = False
    request.cacheable = cacheable
    return False


def get(
    invalid_methods: Iterable[str] = ("POST", "PUT", "DELETE"), debug: bool = False, **kwargs: Any
) -> bool:
    """Answer the request from the cache if possible; True when it did.

    * A method in ``invalid_methods`` drops the URL's cached variants; its
      own response is not cached.
    * ``Pragma: no-cache`` or ``Cache-Control: no-cache`` in the request, or
      a cached copy older than the request's ``Cache-Control: max-age``,
      make a miss whose response replaces the cached one.
    * A hit restores the cached status, headers (plus ``Age``) and body, or
      answers 304/412 to conditional requests on its ``Last-Modified``.

    Sets ``request.cached`` (answered from the cache) and
    ``request.cacheable`` (the response may be stored). ``kwargs`` configure
    the cache when it is created (see the module docstring).
    """
    request, response = serving.request, serving.response
    cache = _process_cache(kwargs, debug)

    if request.method in invalid_methods:
        if debug:
            _log(f"{request.method} drops the cached copies of {_resource_uri()}")
        cache.delete()
        return _miss(cacheable=False)
    if "no-cache" in request.headers.values("Pragma"):
        return _miss(cacheable=True)

    variant = cache.get()
    if not variant:
        return _miss(cacheable=True)

    max_age = cache.delay
    # CherryPy reads the directives in header_elements' order and stops at
    # the first max-age or no-cache; so does this.
    for element in request.headers.elements("Cache-Control"):
        directive, sep, value = element.value.partition("=")
        if directive == "max-age":
            if not (value.isascii() and value.isdigit()):
                raise HTTPError(400, "Cache-Control max-age must be a whole number of seconds.")
            max_age = int(value)
            break
        if directive == "no-cache":
            if debug:
                _log("The request asks for a fresh response (Cache-Control: no-cache)")
            return _miss(cacheable=True)

    status, headers, body, created = variant
    age = int(response.time - created)
    if age > max_age:
        if debug:
            _log(f"The cached copy is older than {max_age}s")
        return _miss(cacheable=True)

    request.cached, request.cacheable = True, False
    restored = HeaderMap()
    dict.update(restored, headers)
    restored.protocol = response.headers.protocol
    restored["Age"] = str(age)
    response.headers = restored
    response.status = status
    try:
        cptools.validate_since()
    except HTTPRedirect as redirect:
        if redirect.status == 304:
            cache.tot_non_modified = getattr(cache, "tot_non_modified", 0) + 1
        raise
    response.body = body
    if debug:
        _log("Answered from the cache")
    return True


def tee_output() -> None:
    """Store the response body in the cache as it goes out (a ``before_finalize`` hook).

    Nothing is stored when the request says ``Cache-Control: no-store``, the
    response says ``Pragma: no-cache`` or ``Cache-Control: no-store``, its
    status is not in :data:`CACHEABLE_STATUSES`, its body is empty, or the
    body is not sent to the end (a streamed body that failed or whose
    client went away).
    """
    request, response = serving.request, serving.response
    if "no-store" in request.headers.values("Cache-Control"):
        return
    response.body = _tee(response.body, response, morello._cache)


def _tee(body: Iterable[bytes], response: Any, cache: Cache) -> Iterator[bytes]:
    headers = response.headers
    if "no-cache" in headers.values("Pragma") or "no-store" in headers.values("Cache-Control"):
        yield from body
        return
    # Stop copying a body the cache would refuse anyway.
    limit = getattr(cache, "maxobj_size", None)
    chunks: list[bytes] | None = []
    size = 0
    for chunk in body:
        if chunks is not None:
            size += len(chunk)
            if limit is not None and size >= limit:
                chunks = None
            else:
                chunks.append(chunk)
        yield chunk
    if not chunks or valid_status(response.status)[0] not in CACHEABLE_STATUSES:
        return
    data = b"".join(chunks)
    # Content-Length is recomputed from the cached body when it is served.
    stored = response.headers.copy()
    stored.pop("Content-Length", None)
    cache.put((response.status, stored, data, response.time), len(data))


class CachingTool(Tool):
    """``tools.caching``: answer from the cache, or cache what the handler returns.

    Its hook runs at ``before_handler`` with priority 90 (after the other
    built-in tools there); on a miss it attaches :func:`tee_output` to
    ``before_finalize`` with priority 100, so the stored body is the one
    the other tools have finished with.
    """

    def __init__(
        self,
        point: str,
        callable: Callable[..., Any],
        name: str | None = None,
        priority: int = 90,
    ) -> None:
        super().__init__(point, callable, name, priority)

    def _wrapper(self, **kwargs: Any) -> None:
        request = serving.request
        if self.callable(**kwargs):
            request.handler = None
        elif request.cacheable:
            request.hooks.attach("before_finalize", tee_output, priority=100)

    def _hook_callback(self) -> Callable[..., Any]:
        return self._wrapper
