"""Benchmark: a session counter in each store (ram, file, memcached, redis) against hello.

Each request to a store's server loads its session, increments a counter and
saves it (``servers/morello_sessions.py``); the session-free hello app
(``servers/morello_hello.py``) is measured in the same run, with the same
client and settings (10 threads, 127.0.0.1), in alternating rounds; the best
round of each counts, and each store's best is printed as a ratio to hello's.

Each client connection keeps a session of its own: the sessions are made
before the load (one request each) and wrk runs one thread per connection,
each sending its own ``Cookie`` (the Python client does the same). One shared
cookie would instead make every request wait for that one session's lock,
measuring lock contention rather than the store. hello gets the same kind of
cookie, which it ignores.

redis-server and memcached are started on free loopback ports with the
launchers of the test suite (``tests/store_servers.py``), and stopped at the end.

    python benchmarks/sessions.py [--seconds 5] [--rounds 3] [--connections 10]
                                  [--locking implicit|early|explicit|optimistic]
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
from http.cookies import SimpleCookie

from hello import best_rates, parse_args

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from store_servers import MemcachedServer, RedisServer  # noqa: E402 - the tests' launchers

HELLO = os.path.join(HERE, "servers", "morello_hello.py")
SESSIONS = os.path.join(HERE, "servers", "morello_sessions.py")
# What hello is sent: a cookie of the same shape, naming no session.
UNUSED_COOKIE = "session_id=" + "0" * 40


def new_sessions(port: int, count: int) -> list[str]:
    """``count`` new sessions of the server on ``port``, as ``Cookie`` values (for hello,
    which sets no cookie, :data:`UNUSED_COOKIE`)."""
    cookies = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(count):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"making a session: {response.status} {response.reason}")
            morsel = SimpleCookie(response.getheader("Set-Cookie", "")).get("session_id")
            cookies.append(UNUSED_COOKIE if morsel is None else f"session_id={morsel.value}")
    finally:
        conn.close()
    return cookies


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument(
            "--locking", default="implicit", help="tools.sessions.locking of every store"
        ),
    )
    print(f"sessions: locking={args.locking}, one session per connection")
    locking = f"locking={args.locking}"
    with (
        RedisServer() as redis,
        MemcachedServer() as memcached,
        tempfile.TemporaryDirectory(prefix="morello-bench-sessions-") as storage_path,
    ):
        servers = {
            "hello": (HELLO,),
            "ram": (SESSIONS, "ram", locking),
            "file": (SESSIONS, "file", f"storage_path={storage_path}", locking),
            "memcached": (SESSIONS, "memcached", f"servers=127.0.0.1:{memcached.port}", locking),
            "redis": (SESSIONS, "redis", f"url={redis.url}", locking),
        }
        best = best_rates(servers, args, new_sessions)
    hello = best["hello"]
    print(f"best: hello {hello:.0f} req/s")
    for name in ("ram", "file", "memcached", "redis"):
        print(
            f"  {name:9s} {best[name]:9.0f} req/s   ratio {name}/hello = {best[name] / hello:.2f}"
        )


if __name__ == "__main__":
    main()
