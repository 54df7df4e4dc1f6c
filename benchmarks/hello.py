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
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

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
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def load_with_wrk(port: int, seconds: float, connections: int) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def load_with_threads(port: int, seconds: float, connections: int) -> float:
    count = [0] * connections
    failures: list[str] = []
    deadline = time.monotonic() + seconds

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while time.monotonic() < deadline:
                conn.request("GET", "/")
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


def compare(
    servers: dict[str, str],
    args: argparse.Namespace,
    script_args: tuple[str, ...] = (),
    response_bytes: int = 0,
) -> None:
    """Load each server in alternating rounds; print req/s and the morello/cheroot ratio."""
    load = load_with_wrk if shutil.which("wrk") else load_with_threads
    print(
        f"client: {'wrk' if load is load_with_wrk else 'python threads'}, "
        f"{args.connections} connections, {args.seconds:g}s x {args.rounds} rounds",
        flush=True,
    )
    best = {name: 0.0 for name in servers}
    for round_no in range(1, args.rounds + 1):
        for name, script in servers.items():
            proc, port = start(script, *script_args)
            try:
                load(port, 1, args.connections)  # warm-up
                rps = load(port, args.seconds, args.connections)
            finally:
                stop(proc)
            best[name] = max(best[name], rps)
            throughput = f" {rps * response_bytes / 2**20:8.0f} MiB/s" if response_bytes else ""
            print(f"round {round_no}: {name:8s} {rps:9.0f} req/s{throughput}", flush=True)
    ratio = best["morello"] / best["cheroot"]
    print(f"best: cheroot {best['cheroot']:.0f} req/s, morello {best['morello']:.0f} req/s")
    print(f"ratio morello/cheroot = {ratio:.2f}")


def main() -> None:
    compare(SERVERS, parse_args(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
