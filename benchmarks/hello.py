"""Benchmark: the hello app on morello against a bare cheroot WSGI app.

Both servers run in their own process with the same cheroot settings (10
threads, 127.0.0.1), one at a time, and are loaded with the same client
for the same time. Rounds alternate (cheroot, morello, cheroot, ...) so
that drift on a noisy machine hits both; the best round of each counts.

    python benchmarks/hello.py [--seconds 5] [--rounds 3] [--connections 10]

The load client is ``wrk`` when installed (Debian: ``apt-get install wrk``),
else a small threaded keep-alive client in this script (which measures
less precisely, because it competes for the same CPUs with Python).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = {
    "cheroot": os.path.join(HERE, "servers", "raw_cheroot.py"),
    "morello": os.path.join(HERE, "servers", "morello_hello.py"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def start(script: str, *script_args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Run a server script as ``script PORT [script_args]``; return it and its port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, script, str(port), *script_args])
    try:
        wait_for_port(port, time.monotonic() + 20)
    except RuntimeError:
        proc.kill()
        raise
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server, then SIGKILL it and any process it started that is still there."""
    # Its processes are listed first: a worker orphaned by a killed master
    # can no longer be found from the master.
    family = []
    if proc.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(family, timeout=10)
    for leftover in alive:
        leftover.kill()
    psutil.wait_procs(alive, timeout=10)


# One wrk thread per connection, each sending the cookie setup() gave it.
_COOKIES_LUA = """
local cookies = {%s}
local next_cookie = 0
function setup(thread)
    next_cookie = next_cookie + 1
    thread:set("cookie", cookies[next_cookie])
end
function request()
    return wrk.format("GET", nil, {Cookie = cookie})
end
"""


@contextmanager
def _wrk_options(connections: int, cookies: list[str] | None) -> Iterator[list[str]]:
    """wrk's thread and script options: one thread, or one per connection with its cookie."""
    if cookies is None:
        yield ["-t1"]
        return
    assert len(cookies) == connections, "one cookie per connection"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_COOKIES_LUA % ", ".join(f'"{cookie}"' for cookie in cookies))
        script.flush()
        yield [f"-t{connections}", "-s", script.name]


def run_wrk(
    port: int,
    seconds: float,
    connections: int,
    cookies: list[str] | None = None,
    latency: bool = False,
    path: str = "/",
) -> str:
    """``wrk``'s report on ``path`` (with its latency percentiles if ``latency``);
    ``cookies``: one ``Cookie`` per connection. Failed responses raise RuntimeError."""
    with _wrk_options(connections, cookies) as options:
        out = subprocess.run(
            [
                "wrk",
                *options,
                *(["--latency"] if latency else []),
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses:\n{out}")
    return out


def wrk_rate(report: str) -> float:
    """Requests per second in a ``wrk`` report."""
    return float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))


def load_with_wrk(
    port: int, seconds: float, connections: int, cookies: list[str] | None = None
) -> float:
    """Requests per second of ``wrk`` on ``/``; ``cookies``: one ``Cookie`` per connection."""
    return wrk_rate(run_wrk(port, seconds, connections, cookies))


def load_with_threads(
    port: int, seconds: float, connections: int, cookies: list[str] | None = None
) -> float:
    """Requests per second of keep-alive client threads; ``cookies``: one per connection."""
    count = [0] * connections
    failures: list[str] = []
    deadline = time.monotonic() + seconds

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Cookie": cookies[slot]} if cookies else {}
        try:
            while time.monotonic() < deadline:
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(str(response.status))
                    return
                count[slot] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    if failures:
        raise RuntimeError(f"failed responses: {failures[:5]}")
    return sum(count) / (time.monotonic() - started)


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def best_rates(
    servers: dict[str, tuple[str, ...]],
    args: argparse.Namespace,
    cookies: Callable[[int, int], list[str]] | None = None,
    response_bytes: int = 0,
) -> dict[str, float]:
    """Load each server in alternating rounds, printing each round; the best req/s of each.

    ``servers`` maps a name to the server script and its arguments (after
    the port). ``cookies(port, connections)``, when given, returns one
    ``Cookie`` header value per connection for a server just started.
    """
    load = load_with_wrk if shutil.which("wrk") else load_with_threads
    print(
        f"client: {'wrk' if load is load_with_wrk else 'python threads'}, "
        f"{args.connections} connections, {args.seconds:g}s x {args.rounds} rounds",
        flush=True,
    )
    best = {name: 0.0 for name in servers}
    for round_no in range(1, args.rounds + 1):
        for name, (script, *script_args) in servers.items():
            proc, port = start(script, *script_args)
            try:
                sent = cookies(port, args.connections) if cookies else None
                load(port, 1, args.connections, sent)  # warm-up
                rps = load(port, args.seconds, args.connections, sent)
            finally:
                stop(proc)
            best[name] = max(best[name], rps)
            throughput = f" {rps * response_bytes / 2**20:8.0f} MiB/s" if response_bytes else ""
            print(f"round {round_no}: {name:9s} {rps:9.0f} req/s{throughput}", flush=True)
    return best


def compare(
    servers: dict[str, str],
    args: argparse.Namespace,
    script_args: tuple[str, ...] = (),
    response_bytes: int = 0,
) -> None:
    """Load each server in alternating rounds; print req/s and the morello/cheroot ratio."""
    commands = {name: (script, *script_args) for name, script in servers.items()}
    best = best_rates(commands, args, response_bytes=response_bytes)
    ratio = best["morello"] / best["cheroot"]
    print(f"best: cheroot {best['cheroot']:.0f} req/s, morello {best['morello']:.0f} req/s")
    print(f"ratio morello/cheroot = {ratio:.2f}")


def main() -> None:
    compare(SERVERS, parse_args(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
