"""Helpers for the engine bus and plugin tests: fixtures, waiting and forked children.

``tests/conftest.py`` loads this module as a plugin, so the ``bus`` and
``log`` fixtures are available to every test module (a module may still
define its own ``bus``); the plain helpers are imported where needed.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from morello.process.bus import Bus

REPO_ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 15.0


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def log(bus: Bus) -> list[tuple[str, int]]:
    """The ``(message, level)`` pairs published on the ``bus`` fixture's log channel."""
    entries: list[tuple[str, int]] = []
    bus.subscribe("log", lambda msg, level: entries.append((msg, level)))
    return entries


def messages(entries: list[tuple[str, int]]) -> list[str]:
    return [msg for msg, _ in entries]


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


def wait_for_exit(pid: int, timeout: float = DEADLINE) -> int:
    """Reap child ``pid`` and return its exit code; kill it and fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not exit within {timeout}s")
        time.sleep(0.01)


def fork(target: Callable[[], None]) -> int:
    """Run ``target`` in a forked child that exits 0 if it returns, 1 if it raises."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            target()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def run_forked_reporting(target: Callable[[int], None]) -> tuple[int, bytes]:
    """Run ``target(write_fd)`` in a forked child; its exit code and what it wrote to the fd.

    The child's report must fit in a pipe buffer: it is read once the child
    has exited (so a stuck child fails after :data:`DEADLINE`).
    """
    read_fd, write_fd = os.pipe()

    def child() -> None:
        os.close(read_fd)
        target(write_fd)

    pid = fork(child)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        code = wait_for_exit(pid)
        return code, pipe.read()


def python_env() -> dict[str, str]:
    """This process's environment with the repository on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env
