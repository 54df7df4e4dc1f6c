"""Benchmark: morello serve against the other ways to serve a CherryPy app.

Every server runs 2 processes on 127.0.0.1 (from ``servers/``):

* ``morello``: ``morello serve morello_hello:worker_app --workers 2`` (default threads);
* ``cheroot``: bare cheroot's own hello app in 2 forked processes of 10 threads
  (``raw_cheroot_prefork.py``, the baseline of ``prefork.py``);
* ``gunicorn-sync``, ``gunicorn-gthread`` (10 threads), ``uwsgi`` (pyuwsgi,
  ``--http11-socket``, 10 threads) and ``granian`` (WSGI, 10 blocking threads):
  the same hello root (``hello_root.py``) mounted on real CherryPy 18's
  ``cherrypy.tree`` (``cherrypy_hello:application``);
* ``granian-morello``: granian serving that root mounted on ``morello.tree``
  (``morello_tree:application``).

Each is loaded by ``wrk --latency`` (one thread, keep-alive connections) at 16
and 64 connections on ``/``, for ``--duration`` seconds each after a 1 s
warm-up; ``morello``, ``gunicorn-gthread`` and ``granian`` also on ``/sleep``
(a handler that sleeps 50 ms) at 64 connections, an I/O-bound load whose
ceiling is processes x threads x 20 req/s. Rounds alternate over the servers;
per server and load the round with the most requests per second counts, and
the spread is (best - worst) / best over the rounds. Printed: req/s, p50, p99
per server and load; morello serve / the best peer on the CherryPy app and
morello serve / granian-morello per level; morello's p99/p50 at 64
connections; each I/O-bound rate against its ceiling.

    python benchmarks/peers.py [--duration 5] [--rounds 3] [--only morello,granian,...]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial

import psutil
from hello import free_port, stop
from morello.master.settings import Settings
from prefork import (
    SERVERS_DIR,
    START_TIMEOUT,
    THREADS,
    Result,
    cheroot_server,
    measure,
    morello_server,
)

PROCESSES = 2
LEVELS = [16, 64]
#: The I/O-bound load: ``/sleep`` at this many connections.
SLEEP_PATH = "/sleep"
SLEEP_LEVEL = 64
SLEEP_SERVERS = ("morello", "gunicorn-gthread", "granian")
#: Requests per second one thread can serve of the ``/sleep`` handler (50 ms each).
SLEEP_RATE_PER_THREAD = 20
#: The console scripts of gunicorn, pyuwsgi and granian, installed next to this Python.
BIN = os.path.dirname(sys.executable)
CHERRYPY_APP = "cherrypy_hello:application"
MORELLO_TREE_APP = "morello_tree:application"


@dataclass(frozen=True)
class Server:
    """One way to serve the hello app: what it runs and how to start it."""

    label: str
    #: Whether it serves the hello root on real CherryPy (the peers morello must beat).
    cherrypy: bool
    #: Threads per process, for the I/O-bound ceiling.
    threads: int
    #: Starts it; the context yields its port once it serves, and stops it on exit.
    start: Callable[[], AbstractContextManager[int]]


def gunicorn(worker_class: str, port: int) -> list[str]:
    threads = ["--threads", str(THREADS)] if worker_class == "gthread" else []
    # fmt: off
    return [
        os.path.join(BIN, "gunicorn"), "--workers", str(PROCESSES),
        "--worker-class", worker_class, *threads, "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", CHERRYPY_APP,
    ]
    # fmt: on


def uwsgi(port: int) -> list[str]:
    # --http11-socket keeps connections alive (--http-socket closes each);
    # --die-on-term: SIGTERM stops uWSGI 2.0 instead of reloading it.
    # fmt: off
    return [
        os.path.join(BIN, "uwsgi"), "--http11-socket", f"127.0.0.1:{port}",
        "--master", "--processes", str(PROCESSES), "--threads", str(THREADS),
        "--module", CHERRYPY_APP, "--need-app", "--die-on-term", "--disable-logging",
    ]
    # fmt: on


def granian(app: str, port: int) -> list[str]:
    # fmt: off
    return [
        os.path.join(BIN, "granian"), "--interface", "wsgi", "--workers", str(PROCESSES),
        "--blocking-threads", str(THREADS), "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", app,
    ]
    # fmt: on


def wait_serving(proc: subprocess.Popen[bytes], port: int) -> None:
    """Wait until ``proc`` has started its worker processes and ``/`` answers 200."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before it served")
        if len(psutil.Process(proc.pid).children(recursive=True)) >= PROCESSES:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
            try:
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass  # not listening yet
            finally:
                conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"did not serve within {START_TIMEOUT:g}s")


def python_path(directory: str) -> dict[str, str]:
    """This environment with ``directory`` first on ``PYTHONPATH`` (kept: it may name
    the morello checkout to measure)."""
    paths = [directory, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


@contextmanager
def command_server(command: Callable[[int], list[str]]) -> Iterator[int]:
    """Run ``command(port)`` in ``servers/``; yield the port once it serves, then stop it."""
    port = free_port()
    argv = command(port)
    with tempfile.TemporaryFile() as log:
        # A session of its own: Ctrl-C reaches this script only, which stops the server.
        # fmt: off
        proc = subprocess.Popen(
            argv, cwd=SERVERS_DIR, env=python_path(SERVERS_DIR),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        # fmt: on
        try:
            try:
                wait_serving(proc, port)
            except RuntimeError as error:
                log.seek(0)
                output = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{' '.join(argv)}: {error}\n{output}") from None
            yield port
        finally:
            stop(proc)


SERVERS = {
    "morello": Server(
        "morello serve", False, Settings.threads, partial(morello_server, PROCESSES, None)
    ),
    "cheroot": Server("raw cheroot", False, THREADS, partial(cheroot_server, PROCESSES)),
    "gunicorn-sync": Server(
        "gunicorn sync", True, 1, partial(command_server, partial(gunicorn, "sync"))
    ),
    "gunicorn-gthread": Server(
        "gunicorn gthread", True, THREADS, partial(command_server, partial(gunicorn, "gthread"))
    ),
    "uwsgi": Server("uWSGI", True, THREADS, partial(command_server, uwsgi)),
    "granian": Server(
        "granian", True, THREADS, partial(command_server, partial(granian, CHERRYPY_APP))
    ),
    "granian-morello": Server(
        "granian on morello",
        False,
        THREADS,
        partial(command_server, partial(granian, MORELLO_TREE_APP)),
    ),
}
#: Keys of ``Runs``: a connection count on ``/``, or this for the ``/sleep`` load.
SLEEP = "sleep"
Runs = dict[tuple[str, int | str], list[Result]]


def run_rounds(names: list[str], seconds: float, rounds: int) -> Runs:
    """Every round of every server, printed as it ends; all results per (server, load)."""
    runs: Runs = {}
    width = max(len(SERVERS[name].label) for name in names)
    for round_no in range(1, rounds + 1):
        for name in names:
            with SERVERS[name].start() as port:
                results: dict[int | str, Result] = dict(measure(port, seconds, LEVELS))
                if name in SLEEP_SERVERS:
                    sleep = measure(port, seconds, [SLEEP_LEVEL], SLEEP_PATH)
                    results[SLEEP] = sleep[SLEEP_LEVEL]
            for load, result in results.items():
                what = f"{SLEEP_PATH} {SLEEP_LEVEL}" if load == SLEEP else f"/ {load}"
                print(
                    f"round {round_no}: {SERVERS[name].label:{width}s} {what:>9s} "
                    f"connections: {result}",
                    flush=True,
                )
                runs.setdefault((name, load), []).append(result)
    return runs


def best(runs: Runs, name: str, load: int | str) -> Result | None:
    """The round with the most req/s, or None if the server was not measured."""
    results = runs.get((name, load))
    return max(results, key=lambda result: result.rate) if results else None


def summary(runs: Runs, name: str, load: int | str, width: int) -> str:
    """The server's best round for ``load``, with the spread over its rounds."""
    rates = [result.rate for result in runs[(name, load)]]
    spread = (max(rates) - min(rates)) / max(rates)
    return f"    {SERVERS[name].label:{width}s} {best(runs, name, load)}  spread {spread:4.0%}"


def ratio_line(what: str, numerator: Result | None, denominator: Result | None) -> str:
    if numerator is None or denominator is None:
        return f"  {what}: not measured"
    return f"  {what} = {numerator.rate / denominator.rate:.2f}"


def report(runs: Runs, names: list[str], rounds: int) -> None:
    width = max(len(SERVERS[name].label) for name in names)
    print(f"\nbest of {rounds} round(s); spread = (best - worst) / best req/s:")
    for level in LEVELS:
        print(f"  / at {level} connections:")
        for name in names:
            print(summary(runs, name, level, width))
    print("\nratios (best rounds):")
    for level in LEVELS:
        morello = best(runs, "morello", level)
        peers = [name for name in names if SERVERS[name].cherrypy]
        top = max(peers, key=lambda name: best(runs, name, level).rate, default=None)
        label = SERVERS[top].label if top else "none"
        what = f"{level} connections: morello serve / best peer on CherryPy ({label})"
        print(ratio_line(what, morello, best(runs, top, level) if top else None))
        what = f"{level} connections: morello serve / granian on morello"
        print(ratio_line(what, morello, best(runs, "granian-morello", level)))
    morello = best(runs, "morello", max(LEVELS))
    tail = f"{morello.tail:.1f}" if morello else "not measured"
    print(f"  morello serve p99/p50 at {max(LEVELS)} connections = {tail}")
    measured = [name for name in names if (name, SLEEP) in runs]
    if measured:
        print(f"\nI/O-bound: {SLEEP_PATH} (sleeps 50 ms) at {SLEEP_LEVEL} connections:")
    for name in measured:
        threads = SERVERS[name].threads
        ceiling = PROCESSES * threads * SLEEP_RATE_PER_THREAD
        rate = best(runs, name, SLEEP).rate
        print(
            f"{summary(runs, name, SLEEP, width)}  ceiling {PROCESSES} x {threads} x "
            f"{SLEEP_RATE_PER_THREAD} = {ceiling} req/s, ratio {rate / ceiling:.2f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--only", type=lambda text: text.split(","), default=list(SERVERS),
        help=f"comma-separated servers to run, of {','.join(SERVERS)} (default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(SERVERS))
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    # In SERVERS' order, each once.
    args.only = [name for name in SERVERS if name in args.only]
    return args


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("peers.py needs wrk (Debian: apt-get install wrk) for its latency percentiles")
    # A SIGTERM (a test's timeout...) unwinds like an error: every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(
        f"client: wrk --latency, 1 thread, {' and '.join(map(str, LEVELS))} keep-alive "
        f"connections, {args.duration:g}s x {args.rounds} rounds; {PROCESSES} processes "
        f"per server; {os.cpu_count()} CPUs",
        flush=True,
    )
    report(run_rounds(args.only, args.duration, args.rounds), args.only, args.rounds)


if __name__ == "__main__":
    main()
