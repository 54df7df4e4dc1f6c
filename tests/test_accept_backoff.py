"""A server with few file descriptors: it backs off instead of spinning, and
a large multipart request does not use them up.

The one-process server runs in a subprocess, and ``morello serve`` in its
worker, with ``RLIMIT_NOFILE`` lowered to a few descriptors above what the
process uses when the app is loaded. Idle client connections then use up
the rest, so accept() fails with EMFILE while more connections wait.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from bus_support import wait_until
from e2e_support import alive_root, assert_alive, build_request, exchange, subprocess_server
from prefork_support import running_master, wait_for, write_app

from morello.testing import HOST

#: Descriptors the server may open beyond those it has when the app is built.
SPARE_FDS = 16
#: Idle connections opened by the test: more than the server can accept.
CLIENTS = 3 * SPARE_FDS
FAILURE = "Too many open files"


def build(cp: Any) -> tuple[Any, dict[str, Any]]:
    """The app, built in the server's process: lowers that process's descriptor limit."""
    in_use = len(os.listdir("/proc/self/fd"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + SPARE_FDS, hard))

    class Root(alive_root(cp)):
        @cp.expose
        def form(self, **fields: Any) -> str:
            return str(len(fields))

    return Root(), {}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    log = tmp_path / "error.log"
    # A backlog with room for every connection the server cannot accept.
    config = {
        "log.error_file": str(log),
        "server.socket_timeout": 30,
        "server.socket_queue_size": 2 * CLIENTS,
    }
    with subprocess_server("test_accept_backoff:build", "morello", config) as port:
        yield port, log


def failures(log: Path) -> int:
    return log.read_text(errors="replace").count(FAILURE) if log.exists() else 0


def test_accept_out_of_descriptors_backs_off_logs_rarely_and_recovers(
    server: tuple[int, Path],
) -> None:
    port, log = server
    with contextlib.ExitStack() as stack:
        for _ in range(CLIENTS):
            stack.enter_context(socket.create_connection((HOST, port), timeout=5))
        wait_until(lambda: failures(log) >= 1, 20)
        first = time.monotonic()
        # Still out of descriptors: the server keeps retrying (and logging).
        wait_until(lambda: failures(log) >= 2, 20)
        elapsed = time.monotonic() - first
        # At most one line per second (cheroot logs a traceback per retry).
        assert failures(log) <= elapsed + 2, (failures(log), elapsed)
    # The idle connections are gone: their descriptors come back.
    assert_alive(port)
    wait_until(lambda: "Accepting connections again." in log.read_text(), 20)


def test_a_megabyte_of_multipart_parts_does_not_use_up_descriptors(
    server: tuple[int, Path],
) -> None:
    # Each part is over the 1,000 bytes kept as plain bytes: stored "as a
    # file". Within the body's memory budget none of them needs a descriptor.
    count = 3 * SPARE_FDS
    size = (1 << 20) // count - 200
    parts = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n%s\r\n' % (i, b"x" * size)
        for i in range(count)
    )
    request = build_request(
        "POST", "/form", parts + b"--B--\r\n", [("Content-Type", "multipart/form-data; boundary=B")]
    )
    port, log = server
    reply = exchange(port, request)
    assert (reply.status, reply.body) == (200, str(count).encode())
    assert FAILURE not in log.read_text()
    assert_alive(port)


#: Module code for ``morello serve``'s app: each worker lowers its own limit.
LOWER_LIMIT = f"""
import resource
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(
    resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + {SPARE_FDS}, _hard)
)
"""


def test_a_worker_out_of_descriptors_backs_off_and_recovers(tmp_path: Path) -> None:
    write_app(tmp_path, extra=LOWER_LIMIT)
    with running_master(tmp_path, workers=1) as master:
        with contextlib.ExitStack() as stack:
            for _ in range(CLIENTS):
                stack.enter_context(socket.create_connection((HOST, master.port), timeout=5))
            wait_until(lambda: failures(master.log_path) >= 1, 20)
            first = time.monotonic()
            wait_until(lambda: failures(master.log_path) >= 2, 20)
            elapsed = time.monotonic() - first
            assert failures(master.log_path) <= elapsed + 2, (failures(master.log_path), elapsed)
        wait_for(lambda: requests.get(master.url, timeout=5).ok, what="a request served")
        wait_until(lambda: "Accepting connections again." in master.log(), 20)
