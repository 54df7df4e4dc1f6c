"""tools.caching over real HTTP: hits, variants, limits, expiry, anti-stampede."""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import morello
from morello.lib import caching
from morello.testing import running

DEADLINE = 5.0


def drop_cache() -> None:
    stop = getattr(morello.__dict__.pop("_cache", None), "stop", None)
    if stop is not None:
        stop()


@pytest.fixture(autouse=True)
def fresh_cache():
    drop_cache()
    yield
    drop_cache()


def wait_for(predicate, deadline=DEADLINE):
    """Poll ``predicate`` until it is true; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def expiry_threads():
    return [t for t in threading.enumerate() if t.name == "morello-cache-expiry"]


class Counting:
    """Pages that say how often their handler ran (per page and ``t``)."""

    def __init__(self):
        self.calls = collections.Counter()
        self.lock = threading.Lock()

    def count(self, page, t):
        with self.lock:
            self.calls[page, t] += 1
            return self.calls[page, t]

    @morello.expose
    def index(self, t=""):
        return f"ran {self.count('index', t)}"

    @morello.expose
    def vary(self):
        morello.response.headers["Vary"] = "Accept-Language, Accept-Encoding"
        headers = morello.request.headers
        language = headers.get("Accept-Language", "-")
        encoding = headers.get("Accept-Encoding", "-")
        return f"{language}/{encoding} ran {self.count('vary', '')}"

    @morello.expose
    def vary_all(self):
        morello.response.headers["Vary"] = "*"
        return f"ran {self.count('vary_all', '')}"

    @morello.expose
    def sized(self, n, t=""):
        self.count("sized", t + n)
        return b"x" * int(n)

    @morello.expose
    def aged(self, age="100"):
        morello.response.time -= int(age)
        morello.response.headers["Last-Modified"] = "Tue, 01 Jan 2030 00:00:00 GMT"
        return f"ran {self.count('aged', age)}"

    @morello.expose
    def status(self, code):
        n = self.count("status", code)
        if code == "303":
            raise morello.HTTPRedirect("/", 303)
        raise morello.HTTPError(int(code), f"run {n}")

    @morello.expose
    def empty(self):
        self.count("empty", "")
        return b""

    @morello.expose
    def uncacheable(self, how):
        if how == "pragma":
            morello.response.headers["Pragma"] = "no-cache"
        else:
            morello.response.headers["Cache-Control"] = "private, no-store"
        return f"ran {self.count('uncacheable', how)}"


CACHING = {"/": {"tools.caching.on": True}}


def caching_config(**settings):
    section = {f"tools.caching.{name}": value for name, value in settings.items()}
    return {"/": {"tools.caching.on": True, **section}}


# -- hits and misses -------------------------------------------------------


def test_miss_then_hit_with_age(serve):
    client = serve(Counting(), config=CACHING)
    first = client.get("/")
    assert (first.status, first.body, first.headers.get("Age")) == (200, b"ran 1", None)
    second = client.get("/")
    assert (second.status, second.body, second.headers.get("Age")) == (200, b"ran 1", "0")
    assert second.headers["Content-Length"] == "5"
    assert second.headers["Date"] == first.headers["Date"]
    cache = morello._cache
    assert (cache.tot_gets, cache.tot_hist, cache.tot_puts) == (2, 1, 1)


def test_age_counts_from_the_cached_response(serve):
    client = serve(Counting(), config=CACHING)
    assert client.get("/aged?age=100").body == b"ran 1"
    reply = client.get("/aged?age=100")
    assert reply.body == b"ran 1"
    assert 100 <= int(reply.headers["Age"]) <= 102


def test_request_state_flags(serve):
    seen = []

    class Root(Counting):
        @morello.expose
        def flags(self):
            return "x"

    def record():
        request = morello.request
        seen.append((request.headers["X-Turn"], request.cached, request.cacheable))

    config = {"/": {"tools.caching.on": True, "hooks.on_end_request": record}}
    client = serve(Root(), config=config)
    client.get("/flags", headers={"X-Turn": "1"})
    client.get("/flags", headers={"X-Turn": "2"})
    client.post("/flags", body=b"", headers={"X-Turn": "3"})
    # on_end_request hooks run once the response is out, so one request's hook
    # may run after the next request's (on another connection): sort by turn.
    wait_for(lambda: len(seen) == 3)
    assert sorted(seen) == [("1", False, True), ("2", True, False), ("3", False, False)]


def test_head_is_answered_from_the_cache(serve):
    client = serve(Counting(), config=CACHING)
    client.get("/")
    reply = client.head("/")
    assert (reply.status, reply.body, reply.headers["Content-Length"]) == (200, b"", "5")
    assert reply.headers["Age"] == "0"


def test_urls_query_strings_and_hosts_are_separate_entries(serve):
    client = serve(Counting(), config=CACHING)
    assert client.get("/?t=a").body == b"ran 1"
    assert client.get("/?t=b").body == b"ran 1"
    assert client.get("/?t=a", headers={"Host": "example.org"}).body == b"ran 2"
    assert client.get("/?t=a").body == b"ran 1"
    assert client.get("/?t=a", headers={"Host": "example.org"}).body == b"ran 2"


def test_vary_keys_entries_on_the_named_request_headers(serve):
    client = serve(Counting(), config=CACHING)

    def get(language=None, encoding=None):
        headers = {}
        if language:
            headers["Accept-Language"] = language
        if encoding:
            headers["Accept-Encoding"] = encoding
        return client.get("/vary", headers=headers).body

    assert get("en", "gzip") == b"en/gzip ran 1"
    assert get("gzip", "en") == b"gzip/en ran 2"  # the same values, swapped
    assert get("en", "gzip") == b"en/gzip ran 1"
    assert get("en") == b"en/- ran 3"
    assert get() == b"-/- ran 4"
    assert get("en") == b"en/- ran 3"
    assert get("gzip", "en") == b"gzip/en ran 2"
    reply = client.get("/vary", headers={"Accept-Language": "en", "Accept-Encoding": "gzip"})
    assert reply.headers["Vary"] == "Accept-Language, Accept-Encoding"


def test_vary_star_is_never_cached(serve):
    client = serve(Counting(), config=CACHING)
    assert client.get("/vary_all").body == b"ran 1"
    assert client.get("/vary_all").body == b"ran 2"


def test_conditional_requests_on_a_hit(serve):
    client = serve(Counting(), config=CACHING)
    client.get("/aged?age=1")
    last_modified = "Tue, 01 Jan 2030 00:00:00 GMT"
    reply = client.get("/aged?age=1", headers={"If-Modified-Since": last_modified})
    assert (reply.status, reply.body) == (304, b"")
    assert "Content-Type" not in reply.headers and "Age" in reply.headers
    long_ago = "Mon, 01 Jan 2001 00:00:00 GMT"
    reply = client.get("/aged?age=1", headers={"If-Unmodified-Since": long_ago})
    assert reply.status == 412
    assert morello._cache.tot_non_modified == 1
    assert client.get("/aged?age=1").body == b"ran 1"


# -- what is not cached ----------------------------------------------------


@pytest.mark.parametrize("headers", [{"Pragma": "no-cache"}, {"Cache-Control": "no-cache"}])
def test_no_cache_requests_refresh_the_entry(serve, headers):
    client = serve(Counting(), config=CACHING)
    assert client.get("/").body == b"ran 1"
    assert client.get("/", headers=headers).body == b"ran 2"
    reply = client.get("/")
    assert (reply.body, reply.headers.get("Age")) == (b"ran 2", "0")


def test_max_age_of_the_request(serve):
    client = serve(Counting(), config=CACHING)
    client.get("/aged?age=100")
    assert client.get("/aged?age=100", headers={"Cache-Control": "max-age=500"}).body == b"ran 1"
    assert client.get("/aged?age=100", headers={"Cache-Control": "max-age=50"}).body == b"ran 2"


def test_no_store_request(serve):
    client = serve(Counting(), config=CACHING)
    assert client.get("/", headers={"Cache-Control": "no-store"}).body == b"ran 1"
    assert client.get("/").body == b"ran 2"
    assert client.get("/").body == b"ran 2"


@pytest.mark.parametrize("how", ["pragma", "no-store"])
def test_responses_that_forbid_caching(serve, how):
    client = serve(Counting(), config=CACHING)
    assert client.get(f"/uncacheable?how={how}").body == b"ran 1"
    assert client.get(f"/uncacheable?how={how}").body == b"ran 2"
    assert morello._cache.tot_puts == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_invalidating_methods(serve, method):
    client = serve(Counting(), config=CACHING)
    client.get("/")
    assert client.get("/").body == b"ran 1"
    assert client.request(method, "/", body=b"").body == b"ran 2"
    assert client.get("/").body == b"ran 3"
    assert client.get("/").body == b"ran 3"
    assert morello._cache.cursize == len(b"ran 3")


def test_invalid_methods_are_configurable(serve):
    client = serve(Counting(), config=caching_config(invalid_methods=("PATCH",)))
    client.get("/")
    assert client.post("/", body=b"").body == b"ran 1"  # POST is served from the cache
    assert client.request("PATCH", "/", body=b"").body == b"ran 2"
    assert client.get("/").body == b"ran 3"


@pytest.mark.parametrize("code", ["303", "500", "503"])
def test_uncacheable_statuses(serve, code):
    client = serve(Counting(), config=CACHING)
    assert client.get(f"/status?code={code}").status == int(code)
    client.get(f"/status?code={code}")
    assert morello._cache.tot_puts == 0


def test_not_found_is_cached(serve):
    client = serve(Counting(), config=CACHING)
    assert b"run 1" in client.get("/status?code=404").body
    reply = client.get("/status?code=404")
    assert reply.status == 404 and b"run 1" in reply.body and "Age" in reply.headers


def test_empty_bodies_are_not_cached(serve):
    root = Counting()
    client = serve(root, config=CACHING)
    client.get("/empty")
    client.get("/empty")
    assert root.calls["empty", ""] == 2


# -- limits ----------------------------------------------------------------


def test_maxobjects(serve):
    client = serve(Counting(), config=caching_config(maxobjects=2))
    for t in "abc":
        client.get(f"/?t={t}")
    assert [client.get(f"/?t={t}").body for t in "abc"] == [b"ran 1", b"ran 1", b"ran 2"]
    # Replacing an entry does not count as one more.
    assert client.get("/?t=a", headers={"Pragma": "no-cache"}).body == b"ran 2"
    assert client.get("/?t=a").body == b"ran 2"


def test_maxobj_size(serve):
    root = Counting()
    client = serve(root, config=caching_config(maxobj_size=100))
    for n in ("99", "100"):
        client.get(f"/sized?n={n}")
        client.get(f"/sized?n={n}")
    assert root.calls["sized", "99"] == 1
    assert root.calls["sized", "100"] == 2


def test_maxsize(serve):
    root = Counting()
    client = serve(root, config=caching_config(maxsize=100))
    client.get("/sized?n=60&t=a")
    client.get("/sized?n=60&t=b")  # 120 bytes in all: refused
    client.get("/sized?n=39&t=c")  # 99 bytes in all: fits
    pages = (("a", "60"), ("b", "60"), ("c", "39"))
    for t, n in pages:
        client.get(f"/sized?n={n}&t={t}")
    assert [root.calls["sized", t + n] for t, n in pages] == [1, 2, 1]
    assert morello._cache.cursize == 99


# -- expiry ----------------------------------------------------------------


def test_delay_expires_entries(serve):
    client = serve(Counting(), config=caching_config(delay=0.3))
    assert client.get("/").body == b"ran 1"
    assert client.get("/").body == b"ran 1"
    cache = morello._cache
    wait_for(lambda: cache.tot_expires == 1)
    assert (cache.store, cache.cursize) == ({}, 0)
    assert client.get("/").body == b"ran 2"
    # Nothing is left to expire after the second entry goes: the thread ends.
    wait_for(lambda: cache.tot_expires == 2 and not expiry_threads())


def test_expired_entries_are_not_served_without_the_thread(serve):
    client = serve(Counting(), config=caching_config(delay=0.2))
    client.get("/")
    morello._cache.stop()
    assert not expiry_threads()
    time.sleep(0.25)
    assert client.get("/").body == b"ran 2"
    assert expiry_threads()  # the new entry started it again


def test_engine_stop_ends_the_expiry_thread():
    with running({"": Counting()}, CACHING) as client:
        client.get("/")
        assert len(expiry_threads()) == 1
    assert not expiry_threads()


# -- concurrency -----------------------------------------------------------


class Slow:
    def __init__(self):
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()

    @morello.expose
    def index(self):
        self.calls += 1
        n = self.calls
        if n == 1:
            self.entered.set()
            self.gate.wait(DEADLINE)
        return f"ran {n}"


def test_anti_stampede_runs_the_handler_once(serve):
    root = Slow()
    client = serve(root, config=caching_config(antistampede_timeout=DEADLINE))
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(client.get, "/")
        assert root.entered.wait(DEADLINE)
        others = [pool.submit(client.get, "/") for _ in range(5)]
        time.sleep(0.2)  # let them reach the cache and wait there
        assert root.calls == 1
        root.gate.set()
        replies = [first.result()] + [f.result() for f in others]
    assert [r.body for r in replies] == [b"ran 1"] * 6
    assert root.calls == 1
    assert morello._cache.tot_hist == 5


def test_anti_stampede_wait_is_bounded(serve):
    root = Slow()
    client = serve(root, config=caching_config(antistampede_timeout=0.3, debug=True))
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.get, "/")
        assert root.entered.wait(DEADLINE)
        started = time.monotonic()
        others = [pool.submit(client.get, "/") for _ in range(3)]
        bodies = sorted(f.result().body for f in others)
        elapsed = time.monotonic() - started
        root.gate.set()
        assert first.result().body == b"ran 1"
    # They gave up waiting and ran the handler themselves (or hit the one
    # that did), well before the first request finished.
    assert 0.25 <= elapsed < DEADLINE - 1
    assert root.calls >= 2 and all(b.startswith(b"ran ") for b in bodies)


def test_no_timeout_means_no_waiting(serve):
    root = Slow()
    client = serve(root, config=caching_config(antistampede_timeout=None))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.get, "/")
        assert root.entered.wait(DEADLINE)
        assert client.get("/").body == b"ran 2"
        root.gate.set()
        assert first.result().body == b"ran 1"


def test_waiters_compute_when_the_fill_caches_nothing(serve):
    class Failing:
        calls = 0
        entered = threading.Event()
        gate = threading.Event()

        @morello.expose
        def index(self):
            type(self).calls += 1
            if self.calls == 1:
                self.entered.set()
                self.gate.wait(DEADLINE)
                raise morello.HTTPError(503)
            return "ok"

    root = Failing()
    client = serve(root, config=caching_config(antistampede_timeout=DEADLINE))
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.get, "/")
        assert root.entered.wait(DEADLINE)
        others = [pool.submit(client.get, "/") for _ in range(3)]
        time.sleep(0.2)
        started = time.monotonic()
        root.gate.set()
        assert first.result().status == 503
        assert [f.result().body for f in others] == [b"ok"] * 3
        # Released when the failed request ended, not at the timeout.
        assert time.monotonic() - started < DEADLINE / 2


def test_concurrent_load_keeps_the_cache_consistent(serve):
    root = Counting()
    client = serve(root, config=caching_config(maxobjects=4))
    paths = [f"/?t={i}" for i in range(6)]

    def work(worker):
        results = []
        for i in range(20):
            path = paths[(worker + i) % len(paths)]
            if i % 7 == 3:
                reply = client.post(path, body=b"")
            else:
                reply = client.get(path, headers={"Pragma": "no-cache"} if i % 5 == 0 else {})
            results.append((reply.status, reply.body.startswith(b"ran ")))
        return results

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(work, range(8)) for r in rs]
    assert results == [(200, True)] * 160
    cache = morello._cache
    # Claims end with their requests, just after the responses went out.
    wait_for(lambda: not cache._fills)
    with cache._lock:
        variants = [e for r in cache.store.values() for e in r.variants.values()]
        assert len(variants) == cache._objects <= 4
        assert cache.cursize == sum(e.size for e in variants)


# -- streaming -------------------------------------------------------------


class Streams:
    def __init__(self):
        self.calls = collections.Counter()
        self.sent_first = threading.Event()
        self.client_gone = threading.Event()
        self.finished = threading.Event()

    @morello.expose
    @morello.config(**{"response.stream": True})
    def chunks(self):
        self.calls["chunks"] += 1
        n = self.calls["chunks"]
        for i in range(3):
            yield f"{i}:{n};".encode()

    @morello.expose
    @morello.config(**{"response.stream": True})
    def broken(self):
        self.calls["broken"] += 1
        yield b"start;"
        raise ValueError("the stream breaks")

    @morello.expose
    @morello.config(**{"response.stream": True})
    def abandoned(self):
        self.calls["abandoned"] += 1
        try:
            yield b"start;"
            self.sent_first.set()
            self.client_gone.wait(DEADLINE)
            for _ in range(200):
                yield b"y" * 65536
        finally:
            self.finished.set()


def test_streamed_response_is_cached_once_complete(serve):
    root = Streams()
    client = serve(root, config=CACHING)
    first = client.get("/chunks")
    assert first.body == b"0:1;1:1;2:1;" and "Content-Length" not in first.headers
    second = client.get("/chunks")
    assert second.body == b"0:1;1:1;2:1;" and "Age" in second.headers
    assert root.calls["chunks"] == 1


def test_broken_stream_is_not_cached(serve):
    root = Streams()
    client = serve(root, config=CACHING)
    for _ in range(2):
        try:
            client.get("/broken")
        except Exception:  # the connection is cut short
            pass
    assert root.calls["broken"] == 2
    assert morello._cache.tot_puts == 0


def test_stream_abandoned_by_the_client_is_not_cached(serve):
    root = Streams()
    limits = caching_config(maxobj_size=10**8, maxsize=10**9, antistampede_timeout=0.5)
    client = serve(root, config=limits)
    with socket.create_connection((client.host, client.port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET /abandoned HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert root.sent_first.wait(DEADLINE)
    root.client_gone.set()
    assert root.finished.wait(DEADLINE)
    wait_for(lambda: not morello._cache._fills)
    assert morello._cache.tot_puts == 0
    client.get("/abandoned")
    assert root.calls["abandoned"] == 2


# -- configuration and bad input ------------------------------------------


def test_custom_cache_class(serve):
    class DictCache(caching.Cache):
        def __init__(self):
            self.entries = {}
            self.delay = 600

        def get(self):
            return self.entries.get(morello.url())

        def put(self, variant, size):
            self.entries[morello.url()] = variant

        def delete(self):
            self.entries.pop(morello.url(), None)

        def clear(self):
            self.entries.clear()

    client = serve(Counting(), config=caching_config(cache_class=DictCache, label="mine"))
    client.get("/")
    assert client.get("/").body == b"ran 1"
    cache = morello._cache
    assert isinstance(cache, DictCache) and cache.label == "mine"
    assert list(cache.entries) == [f"{client.base}/"]


def test_the_first_request_configures_the_cache(serve):
    config = {
        "/": {"tools.caching.on": True, "tools.caching.delay": 30},
        "/vary": {"tools.caching.delay": 60},
    }
    client = serve(Counting(), config=config)
    client.get("/")
    client.get("/vary")
    assert morello._cache.delay == 30


def test_debug_logs_what_the_cache_does(serve, caplog):
    client = serve(Counting(), config=caching_config(debug=True, maxsize=50))
    with caplog.at_level(logging.INFO, logger="morello.error"):
        client.get("/aged?age=100")
        client.get("/aged?age=100")
        client.get("/aged?age=100", headers={"Cache-Control": "max-age=5"})
        client.get("/aged?age=100", headers={"Cache-Control": "no-cache"})
        client.post("/aged?age=100", body=b"")
        client.get("/sized?n=60")
    messages = [r.getMessage() for r in caplog.records if "TOOLS.CACHING" in r.getMessage()]
    for expected in (
        "Answered from the cache",
        "older than 5s",
        "Cache-Control: no-cache",
        "POST drops the cached copies of",
        "bytes would break a size limit",
    ):
        assert any(expected in m for m in messages), (expected, messages)


def test_cache_base_class_is_abstract():
    cache = caching.Cache()
    for call in (cache.get, cache.delete, cache.clear, lambda: cache.put(None, 0)):
        with pytest.raises(NotImplementedError):
            call()


def test_clear_empties_the_cache(serve):
    client = serve(Counting(), config=CACHING)
    client.get("/")
    cache = morello._cache
    cache.clear()
    assert (cache.store, cache.cursize, cache.tot_gets) == ({}, 0, 0)
    assert client.get("/").body == b"ran 2"


def test_tool_is_registered_like_cherrypy():
    from morello.lib import caching_headers

    assert caching.expires is caching_headers.expires
    tool = morello.tools.caching
    assert isinstance(tool, caching.CachingTool)
    assert (tool._point, tool._name, tool.callable) == ("before_handler", "caching", caching.get)


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Cache-Control": "max-age=abc"}, 400),
        ({"Cache-Control": "max-age=\u00b2"}, 400),  # a digit to isdigit(), not to int()
        ({"Cache-Control": "max-age"}, 400),
        ({"Cache-Control": "max-age=-5"}, 400),
        ({"Cache-Control": "max-age=99999999999999999999999999"}, 200),
        ({"Cache-Control": ",,,;;;==="}, 200),
        ({"Cache-Control": '"no-cache'}, 200),
        ({"Cache-Control": "no-cache=\x01\x02"}, 400),  # the server refuses control characters
        ({"Pragma": ";;;,,"}, 200),
        ({"Pragma": "no-cache;" + "x" * 5000}, 200),
        ({"Pragma": "\u00e9t\u00e9"}, 200),
    ],
)
def test_malformed_cache_headers_never_fail_the_server(serve, headers, status):
    client = serve(Counting(), config=CACHING)
    client.get("/")
    # header values are latin-1 on the wire
    encoded = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
    assert client.get("/", headers=encoded).status == status
    assert client.get("/").status == 200
    assert client.get("/", headers=encoded).status == status
