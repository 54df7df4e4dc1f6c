"""Run ``morello serve`` for real in tests, and keep it under load while doing things.

:class:`MasterProcess` starts the master as a subprocess in a temp directory
(the app module lives there, so a test can change its code before HUP),
talks to its control endpoint over a UNIX socket and reads its log.
:class:`Load` is a continuous client: threads with keep-alive sessions
(``requests``, which like most clients checks a pooled connection before
reusing it) that record every failed request.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from bus_support import REPO_ROOT
from morello.master.control import parse_address
from morello.master.ctl import UnixHTTPConnection

from morello.testing import free_port

DEADLINE = 30.0

APP_SOURCE = '''
import os
import signal
import time

import morello

VERSION = {version!r}
{extra}

class Root:
    @morello.expose
    def index(self):
        return f"hello from {{os.getpid()}} v{{VERSION}}"

    @morello.expose
    def pid(self, **ignored):
        return str(os.getpid())

    @morello.expose
    def slow(self, seconds="1"):
        time.sleep(float(seconds))
        return f"slept {{seconds}} in {{os.getpid()}}"

    @morello.expose
    def freeze(self):
        # The whole process stops: no more heartbeats.
        os.kill(os.getpid(), signal.SIGSTOP)

    @morello.expose
    def grow(self, mb="10"):
        # Memory kept alive on purpose, to trip max_rss.
        Root.hoard = getattr(Root, "hoard", []) + [bytearray(int(mb) << 20)]
        return str(len(Root.hoard))
'''


def write_app(directory: Path, version: str = "1", extra: str = "") -> None:
    """(Re)write ``directory/app.py``; ``extra`` is module-level code (e.g. a raise)."""
    (directory / "app.py").write_text(APP_SOURCE.format(version=version, extra=extra))


def wait_for(predicate: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    """Poll ``predicate`` (errors count as not yet) until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"not within {timeout}s: {what or predicate} (last error: {last_error})")


class MasterProcess:
    """A ``morello serve app:Root`` subprocess in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        workers: int = 2,
        app: str = "app:Root",
        host: str = "127.0.0.1",
        control_tcp: bool = False,
    ) -> None:
        self.directory = directory
        self.host = host
        self.port = free_port(host)
        self.control_path = str(directory / "control.sock")
        # A browser cannot reach a UNIX socket: control_tcp puts the endpoint on loopback TCP.
        self.control_address = (
            f"127.0.0.1:{free_port()}" if control_tcp else f"unix:{self.control_path}"
        )
        self.log_path = directory / "master.log"
        self.pidfile = str(directory / "master.pid")
        self.command = [
            sys.executable, "-m", "morello.master", "serve", app,
            "--bind", f"{host}:{self.port}", "--workers", str(workers),
            "--control-bind", self.control_address, "--pidfile", self.pidfile,
            "--threads", "8", "--graceful-timeout", "10", *args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, env: dict[str, str] | None = None) -> MasterProcess:
        environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **(env or {}))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                env=environment,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def control(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        family, where = parse_address(self.control_address)
        if family == socket.AF_UNIX:
            connection: http.client.HTTPConnection = UnixHTTPConnection(where, timeout=5.0)
        else:
            connection = http.client.HTTPConnection(*where, timeout=5.0)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def status(self) -> dict[str, Any]:
        code, body = self.control("GET", "/status")
        assert code == 200, body
        return json.loads(body)

    def worker_pids(self, state: str = "ready") -> set[int]:
        return {w["pid"] for w in self.status()["workers"] if w["state"] == state}

    def wait_ready(self, count: int, exclude: set[int] = frozenset(), timeout: float = DEADLINE):
        """Wait until ``count`` workers are ready, none of them in ``exclude``, and
        no other worker is left; return their pids."""

        def settled() -> set[int] | None:
            self.check_alive()
            workers = self.status()["workers"]
            ready = {w["pid"] for w in workers if w["state"] == "ready"}
            if len(workers) == count and len(ready) == count and not ready & exclude:
                return ready
            return None

        return wait_for(settled, timeout, f"{count} ready workers\n{self.log()[-3000:]}")

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"master exited with {self.process.returncode}:\n{self.log()[-3000:]}")

    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"master did not exit within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running_master(
    directory: Path, *args: str, workers: int = 2, **kw: Any
) -> Iterator[MasterProcess]:
    """A started master with ``workers`` ready workers; stopped (fast) afterwards."""
    master = MasterProcess(directory, *args, workers=workers, **kw).start()
    try:
        master.wait_ready(workers)
        yield master
    finally:
        master.stop()


class Load:
    """Continuous GETs of ``path`` from ``clients`` threads until :meth:`stop`.

    Each thread keeps one keep-alive session. Every request that does not end
    in a 200 (error, reset, timeout) is recorded in :attr:`failures`.
    """

    def __init__(self, base_url: str, path: str = "/", clients: int = 4, max_seconds: float = 60):
        self.url = base_url + path
        self.clients = clients
        self.max_seconds = max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.pids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        # Under way before the caller acts: every client got an answer.
        wait_for(lambda: self.ok >= self.clients or self.failures, 10, "load to start")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = session.get(self.url, timeout=15)
                    failure = None if response.status_code == 200 else (
                        f"{response.status_code}: {response.text[:200]}"
                    )
                except requests.RequestException as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if failure is None:
                        self.ok += 1
                        self.pids.add(response.text.split()[2] if " from " in response.text else "")
                    else:
                        self.failures.append(failure)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)

    def assert_none_failed(self, master: MasterProcess) -> None:
        """Fail, with the master's log, if a request failed."""
        assert self.failures == [], f"{self.failures}\n--- master log ---\n{master.log()[-6000:]}"

    def served_more(self, count: int) -> Callable[[], bool]:
        """A predicate: at least ``count`` more requests succeeded from now on."""
        target = self.ok + count
        return lambda: self.ok >= target
