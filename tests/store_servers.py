"""Private redis-server and memcached processes for the session-store tests.

``tests/conftest.py`` loads this module as a plugin, so every test can use:

* ``redis_server`` / ``memcached_server`` (session scope): one server per test run;
* ``redis_store`` / ``memcached_store`` (function scope): that same server, flushed;
* ``fresh_redis_server`` / ``fresh_memcached_server`` (function scope): a server of
  the test's own, for tests that ``kill()``, ``restart()`` or ``stop()`` it;
* ``redis_sentinel`` (function scope): a sentinel watching ``fresh_redis_server``,
  which has a replica (``redis_replica``);
* ``redis_cluster`` (function scope): a three-node Redis Cluster.

Each server listens on a free 127.0.0.1 port chosen here, runs from a temporary
directory holding its log, and is started with explicit arguments so no system
service, default port or configuration file is involved.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pymemcache
import pytest
import redis
from pymemcache.exceptions import MemcacheError
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# Short enough that a test against a dead server fails fast, long enough for a loaded machine.
CLIENT_TIMEOUT = 1.0
POLL_INTERVAL = 0.01
INSTALL_HINT = "sudo apt-get install redis-server memcached"


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message includes its log."""


class _ServerExited(ServerStartError):
    """The process exited before answering (typically: its port was taken)."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


S = TypeVar("S", bound="_Server")
# What the fixtures start and stop: one server or a whole cluster.
Startable = TypeVar("Startable", bound="_Server | RedisCluster")


class _Server:
    """A server process on a fixed loopback port; subclasses say how to run and query it."""

    program: str
    name: str

    def __init__(self, port: int | None = None) -> None:
        # An explicit port is kept even when taken, so a test can provoke a failed start.
        self._fixed_port = port is not None
        self.port = port if port is not None else 0
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- subclass hooks -------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def answering_pid(self) -> int:
        """The pid of the server answering on ``port``; raise if none answers."""
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        if self.tmpdir is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.tmpdir / f"{self.name}.log"

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self: S) -> S:
        """Start in a new temporary directory and wait until the server answers."""
        if shutil.which(self.program) is None:
            raise ServerStartError(f"{self.program} is not installed: run '{INSTALL_HINT}'")
        if self.tmpdir is not None:
            raise RuntimeError(f"{self.name} already started; use restart()")
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"morello-{self.name}-"))
        # A kernel-picked port can be taken again before the server binds it; the server
        # then exits at once, so only that failure is worth another port.
        attempts = 1 if self._fixed_port else 3
        while True:
            attempts -= 1
            if not self._fixed_port:
                self.port = free_port()
            try:
                self._spawn()
                return self
            except ServerStartError as exc:
                if attempts == 0 or not isinstance(exc, _ServerExited):
                    self.stop()
                    raise

    def restart(self: S) -> S:
        """Stop the process if it still runs, then start again on the same port and dir."""
        if self.tmpdir is None or not self.tmpdir.exists():
            raise RuntimeError(f"{self.name} was never started or is stopped for good")
        self._terminate()
        self._spawn()
        return self

    def kill(self) -> None:
        """SIGKILL the process, as a crash would; port and directory stay for ``restart()``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM the process (SIGKILL if it lingers) and remove the temporary directory."""
        self._terminate()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------

    def _terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def _spawn(self) -> None:
        """Run the command with output appended to the log; wait for an answer or fail."""
        assert self.tmpdir is not None
        with open(self.log_path, "ab") as log:
            log.write(f"--- {shlex.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.tmpdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise _ServerExited(self._failure(f"exited with code {self.proc.returncode}"))
            try:
                # Another process may hold the port: only our own server's answer counts.
                if self.answering_pid() == self.proc.pid:
                    return
            except (OSError, redis.RedisError, MemcacheError):
                pass
            if time.monotonic() > deadline:
                self._terminate()
                raise ServerStartError(self._failure(f"did not answer within {START_TIMEOUT}s"))
            time.sleep(POLL_INTERVAL)

    def _failure(self, what: str) -> str:
        return f"{self.name} on 127.0.0.1:{self.port} {what}; its log:\n{self.log()}"


class RedisServer(_Server):
    """``redis-server`` without persistence, unix socket or config file."""

    program = "redis-server"
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.program,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.tmpdir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--unixsocket", "",
            "--logfile", "",
            # A replica gets its first copy at once, not after the default 5 s wait.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client with short timeouts and no retries, so a dead server fails fast."""
        options: dict[str, Any] = {
            "socket_timeout": CLIENT_TIMEOUT,
            "socket_connect_timeout": CLIENT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(kwargs)
        return redis.Redis.from_url(self.url, **options)

    def answering_pid(self) -> int:
        with self.client() as client:
            return int(client.info("server")["process_id"])

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()


class RedisReplica(RedisServer):
    """A ``redis-server`` replicating ``master``; started once its link to it is up."""

    name = "redis-replica"

    def __init__(self, master: RedisServer, port: int | None = None) -> None:
        super().__init__(port)
        self.master = master

    def command(self) -> list[str]:
        return super().command() + ["--replicaof", "127.0.0.1", str(self.master.port)]

    def _spawn(self) -> None:
        super()._spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self.client() as client:
                if client.info("replication").get("master_link_status") == "up":
                    return
            if time.monotonic() > deadline:
                self._terminate()
                raise ServerStartError(self._failure("never linked to its master"))
            time.sleep(POLL_INTERVAL)


class RedisSentinel(RedisServer):
    """``redis-server --sentinel`` watching ``master`` as service ``service``.

    Its ``client()`` talks to the sentinel itself; ``session_url`` is what
    ``RedisSession`` uses to reach the master through it.
    """

    name = "redis-sentinel"
    service = "mymaster"

    def __init__(self, master: RedisServer, port: int | None = None) -> None:
        super().__init__(port)
        self.master = master

    @property
    def session_url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    @property
    def config_path(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "sentinel.conf"

    def command(self) -> list[str]:
        return [
            self.program, str(self.config_path), "--sentinel",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.tmpdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    def _spawn(self) -> None:
        # A sentinel needs a config file it can rewrite; it keeps its state there.
        if not self.config_path.exists():
            self.config_path.write_text(
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            )
        super()._spawn()


class RedisClusterNode(RedisServer):
    """A ``redis-server`` in cluster mode, its node table in its own directory."""

    name = "redis-cluster-node"

    def command(self) -> list[str]:
        cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        # Nodes ping each other every node-timeout / 2: a short one forms the cluster fast.
        return super().command() + cluster + ["--cluster-node-timeout", "1000"]


class RedisCluster:
    """``size`` cluster nodes (no replicas) sharing the 16384 slots evenly."""

    SLOTS = 16384

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RedisClusterNode() for _ in range(size)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        """Start the nodes, give each its slots, introduce them, wait until all say ok."""
        try:
            for node in self.nodes:
                node.start()
            bounds = [self.SLOTS * i // len(self.nodes) for i in range(len(self.nodes) + 1)]
            pairs = zip(self.nodes, bounds[:-1], bounds[1:], strict=True)
            for epoch, (node, low, high) in enumerate(pairs, 1):
                with node.client() as client:
                    client.execute_command("CLUSTER", "ADDSLOTS", *range(low, high))
                    # Distinct epochs, as redis-cli sets them: no conflict to settle first.
                    client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for node in self.nodes:
                with node.client() as client:
                    for other in self.nodes:
                        if other is not node:
                            client.execute_command("CLUSTER", "MEET", "127.0.0.1", other.port)
            deadline = time.monotonic() + START_TIMEOUT
            while not all(self._ok(node) for node in self.nodes):
                if time.monotonic() > deadline:
                    raise ServerStartError(f"Redis Cluster not formed within {START_TIMEOUT}s")
                time.sleep(POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _ok(node: RedisClusterNode) -> bool:
        with node.client() as client:
            return client.execute_command("CLUSTER", "INFO").find(b"cluster_state:ok") >= 0

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class MemcachedServer(_Server):
    """``memcached`` on TCP only, with a 64 MB cache."""

    program = "memcached"
    name = "memcached"

    @property
    def servers(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.port)]

    def command(self) -> list[str]:
        cmd = [self.program, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        # memcached refuses to run as root unless told which user to be (CI containers).
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        return cmd

    def client(self, **kwargs: Any) -> pymemcache.Client:
        """A client with short timeouts, so a dead server fails fast."""
        options: dict[str, Any] = {"connect_timeout": CLIENT_TIMEOUT, "timeout": CLIENT_TIMEOUT}
        options.update(kwargs)
        return pymemcache.Client(self.servers[0], **options)

    def answering_pid(self) -> int:
        client = self.client()
        try:
            return int(client.stats()[b"pid"])
        finally:
            client.close()

    def flush(self) -> None:
        client = self.client()
        try:
            client.flush_all(noreply=False)
        finally:
            client.close()


def _running(server: Startable) -> Iterator[Startable]:
    """Start ``server`` for a fixture, failing the test (not skipping) if it cannot run."""
    try:
        server.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _flushed(server: S) -> S:
    # A test that killed the shared server must not break the tests after it.
    if not server.running:
        server.restart()
    server.flush()
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session; prefer ``redis_store`` in tests."""
    yield from _running(RedisServer())


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    """One memcached for the whole test session; prefer ``memcached_store`` in tests."""
    yield from _running(MemcachedServer())


@pytest.fixture
def redis_store(redis_server: RedisServer) -> RedisServer:
    """The session's redis-server after FLUSHALL."""
    return _flushed(redis_server)


@pytest.fixture
def memcached_store(memcached_server: MemcachedServer) -> MemcachedServer:
    """The session's memcached after flush_all."""
    return _flushed(memcached_server)


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to kill, restart or stop."""
    yield from _running(RedisServer())


@pytest.fixture
def fresh_memcached_server() -> Iterator[MemcachedServer]:
    """A memcached of this test's own, free to kill, restart or stop."""
    yield from _running(MemcachedServer())


@pytest.fixture
def redis_replica(fresh_redis_server: RedisServer) -> Iterator[RedisReplica]:
    """A replica of ``fresh_redis_server`` (its ``.master``), linked to it."""
    yield from _running(RedisReplica(fresh_redis_server))


@pytest.fixture
def redis_sentinel(
    fresh_redis_server: RedisServer, redis_replica: RedisReplica
) -> Iterator[RedisSentinel]:
    """A sentinel watching ``fresh_redis_server`` (its ``.master``) and knowing its replica."""
    yield from _running(RedisSentinel(fresh_redis_server))


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A three-node Redis Cluster of this test's own."""
    yield from _running(RedisCluster())
