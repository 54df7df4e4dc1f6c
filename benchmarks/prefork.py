"""Benchmark: hello world in 1 and 2 prefork processes, morello serve against bare cheroot.

For each process count N (1, 2), two servers of the same shape, each a parent
that binds 127.0.0.1 and N forked processes serving on the inherited socket
with 10 threads each:

* morello: ``morello serve morello_hello:worker_app --workers N``
  (``servers/morello_hello.py``), ready when its control endpoint's
  ``/readyz`` answers 200 and ``/status`` lists N ready workers;
* cheroot: a plain WSGI hello app on cheroot's WSGI server in N forked
  children (``servers/raw_cheroot_prefork.py``), ready when it prints ``ready``.

Each is loaded by ``wrk --latency`` (one thread, keep-alive connections) at
two concurrency levels, ``--connections`` (hello.py's default, 10) and
``--high-connections`` (64), for ``--duration`` seconds each, after a 1 s
warm-up. Rounds alternate (cheroot, morello, cheroot, ...) and, per
process count, server and level, the round with the most requests per
second counts. Printed per level and process count: requests per second,
p50 and p99 latency, p99/p50, and the ratio morello/cheroot. The targets:
ratio >= 0.8 at the same process count, and p99 <= 3 x p50 at the high level.

    python benchmarks/prefork.py [--duration 5] [--rounds 3] [--connections 10]
                                 [--high-connections 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from hello import free_port, parse_args, run_wrk, stop, wrk_rate
from morello.master.ctl import CtlError, request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_DIR = os.path.join(HERE, "servers")
sys.path.insert(0, SERVERS_DIR)
from raw_cheroot import THREADS  # noqa: E402 - the baseline's thread count, for morello too

CHEROOT_PREFORK = os.path.join(SERVERS_DIR, "raw_cheroot_prefork.py")
#: The ``morello serve`` command (a variant can be measured by changing it).
MORELLO_SERVE = [sys.executable, "-m", "morello.master", "serve"]
PROCESS_COUNTS = (1, 2)
#: Seconds a server may take to have all its processes ready.
START_TIMEOUT = 30.0
WARM_UP_SECONDS = 1
RATIO_TARGET = 0.8
TAIL_TARGET = 3.0
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Result:
    """One wrk run: requests per second, latency percentiles in seconds, socket errors."""

    rate: float
    p50: float
    p99: float
    socket_errors: str = ""

    @property
    def tail(self) -> float:
        """p99 / p50."""
        return self.p99 / self.p50

    def __str__(self) -> str:
        text = (
            f"{self.rate:7.0f} req/s  p50 {self.p50 * 1e3:6.2f} ms  p99 {self.p99 * 1e3:6.2f} ms"
            f"  p99/p50 {self.tail:4.1f}"
        )
        return f"{text}  ({self.socket_errors})" if self.socket_errors else text


def latency_percentile(report: str, percent: int) -> float:
    """A percentile of ``wrk --latency``'s "Latency Distribution", in seconds."""
    found = re.search(rf"^\s*{percent}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", report, re.M)
    if found is None:
        raise RuntimeError(f"no {percent}% latency in wrk's report:\n{report}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_report(report: str) -> Result:
    errors = re.search(r"Socket errors: (.*)", report)
    return Result(
        rate=wrk_rate(report),
        p50=latency_percentile(report, 50),
        p99=latency_percentile(report, 99),
        socket_errors=f"socket errors: {errors.group(1).strip()}" if errors else "",
    )


def _check_running(proc: subprocess.Popen[bytes], what: str) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")


@contextmanager
def cheroot_server(processes: int) -> Iterator[int]:
    """Bare cheroot in ``processes`` forked children; yields the port once all serve."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, CHEROOT_PREFORK, str(port), str(processes)], stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"cheroot did not start within {START_TIMEOUT:g}s")
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            _check_running(proc, "cheroot")
            raise RuntimeError(f"cheroot said {line!r} instead of ready")
        yield port
    finally:
        stop(proc)
        proc.stdout.close()


@contextmanager
def morello_server(processes: int, threads: int | None = THREADS) -> Iterator[int]:
    """``morello serve`` with ``processes`` workers of ``threads`` threads (None: its
    default); yields the port once all are ready."""
    port = free_port()
    thread_option = [] if threads is None else ["--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="morello-bench-prefork-") as directory:
        control = f"unix:{os.path.join(directory, 'control.sock')}"
        # fmt: off
        proc = subprocess.Popen(
            [
                *MORELLO_SERVE, "morello_hello:worker_app",
                "--workers", str(processes), *thread_option,
                "--bind", f"127.0.0.1:{port}", "--control-bind", control,
                "--log-level", "warning",
            ],
            cwd=SERVERS_DIR,
        )
        # fmt: on
        try:
            wait_ready(proc, control, processes)
            yield port
        finally:
            stop(proc)


def wait_ready(proc: subprocess.Popen[bytes], control: str, workers: int) -> None:
    """Wait until ``/readyz`` says ready and ``/status`` lists ``workers`` ready workers."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        _check_running(proc, "morello serve")
        try:
            if request(control, "GET", "/readyz", 1.0)[0] == 200:
                status = json.loads(request(control, "GET", "/status", 1.0)[1])
                if [w["state"] for w in status["workers"]] == ["ready"] * workers:
                    return
        except CtlError:
            pass  # the control socket is not there yet
        time.sleep(0.05)
    raise RuntimeError(f"morello serve: {workers} workers not ready within {START_TIMEOUT:g}s")


SERVERS: dict[str, Callable[[int], AbstractContextManager[int]]] = {
    "cheroot": cheroot_server,
    "morello": morello_server,
}


def measure(port: int, seconds: float, levels: list[int], path: str = "/") -> dict[int, Result]:
    """A warm-up at the highest level, then one ``wrk --latency`` run per level, on ``path``."""
    run_wrk(port, WARM_UP_SECONDS, max(levels), path=path)
    return {
        connections: parse_report(run_wrk(port, seconds, connections, latency=True, path=path))
        for connections in levels
    }


def best_rounds(args: argparse.Namespace, levels: list[int]) -> dict[tuple[int, str, int], Result]:
    """Every round, printed; the best (by req/s) per (processes, server, connections)."""
    best: dict[tuple[int, str, int], Result] = {}
    for round_no in range(1, args.rounds + 1):
        for processes in PROCESS_COUNTS:
            for name, server in SERVERS.items():
                with server(processes) as port:
                    results = measure(port, args.seconds, levels)
                for connections, result in results.items():
                    print(
                        f"round {round_no}: {processes} process(es) {name:7s} "
                        f"{connections:3d} connections: {result}",
                        flush=True,
                    )
                    key = (processes, name, connections)
                    if key not in best or result.rate > best[key].rate:
                        best[key] = result
    return best


def report(best: dict[tuple[int, str, int], Result], levels: list[int], rounds: int) -> None:
    high = max(levels)
    for connections in levels:
        print(f"\nbest of {rounds} round(s), {connections} connections:")
        for processes in PROCESS_COUNTS:
            cheroot = best[(processes, "cheroot", connections)]
            morello = best[(processes, "morello", connections)]
            print(f"  {processes} process(es) cheroot {cheroot}")
            print(f"  {processes} process(es) morello {morello}")
            ratio = morello.rate / cheroot.rate
            verdict = "met" if ratio >= RATIO_TARGET else "missed"
            line = (
                f"  {processes} process(es), {connections} connections: "
                f"ratio morello/cheroot = {ratio:.2f} (target >= {RATIO_TARGET}: {verdict})"
            )
            if connections == high:
                verdict = "met" if morello.tail <= TAIL_TARGET else "missed"
                target = f"target <= {TAIL_TARGET:g}: {verdict}"
                line += f"; morello p99/p50 = {morello.tail:.1f} ({target})"
            print(line, flush=True)


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--duration", dest="seconds", type=float, default=argparse.SUPPRESS,
            help="seconds of each measured run (same as --seconds; default 5)",
        )  # fmt: skip
        parser.add_argument(
            "--high-connections", type=int, default=64,
            help="the second concurrency level (default 64; --connections is the first)",
        )  # fmt: skip

    args = parse_args(__doc__.splitlines()[0], options)
    if shutil.which("wrk") is None:
        sys.exit("prefork.py needs wrk (Debian: apt-get install wrk) for its latency percentiles")
    # A SIGTERM (a test's timeout...) unwinds like an error: every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    levels = sorted({args.connections, args.high_connections})
    print(
        f"client: wrk --latency, 1 thread, {' and '.join(map(str, levels))} keep-alive "
        f"connections, {args.seconds:g}s x {args.rounds} rounds; {THREADS} threads per "
        f"process; {os.cpu_count()} CPUs",
        flush=True,
    )
    report(best_rounds(args, levels), levels, args.rounds)


if __name__ == "__main__":
    main()
