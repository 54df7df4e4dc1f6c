"""The channel between the master and one worker, and its message format.

Each worker gets one end of a ``socketpair(AF_UNIX, SOCK_STREAM)``; the
master keeps the other. Messages are JSON objects, one per line (UTF-8,
``\\n``-terminated, at most :data:`MAX_MESSAGE` bytes). Every message has a
``type`` and the sender's ``pid``.

Worker to master:

``booting``
    Sent first, before the application is imported.
``ready``
    The application is imported and every server accepts connections;
    ``single_process`` says where the app keeps state other worker processes
    cannot see (RAM sessions), or is null.
``heartbeat``
    Every ``heartbeat_interval`` seconds, with cumulative counters
    (see :func:`heartbeat_fields`): ``requests``, ``in_flight``,
    ``busy_threads``, ``threads``, ``oldest_request_age`` (seconds),
    ``oldest_request`` (``{"age": s, "path": "/x"}`` of the longest-running request, or null),
    ``status`` (``{"2xx": n, ...}``), ``latency_buckets`` (counts per
    bucket of :data:`LATENCY_BUCKETS` plus a last one for slower requests),
    ``latency_sum`` (seconds) and ``latency_count``; and ``metrics``, what
    changed since the previous heartbeat in the per-handler latencies and
    the application's metrics: a list of ``{"name", "kind", "doc",
    "labels", "buckets", "gauge", "series": [[label values, value], ...]}``
    where a counter's value is its increase, a histogram's its per-bucket
    increases then the sum's, and a gauge's its current value (at most
    :data:`MAX_SERIES_PER_HEARTBEAT` series; the rest follow next time).
``recycle``
    The worker wants to be replaced (``reason``: ``max_requests`` or
    ``request_timeout``); it keeps serving until the master, once a
    replacement is ready, sends it SIGTERM.
``draining``
    The worker stopped accepting and is finishing what is in flight.
``exiting``
    The last message, with ``reason``.

Master to worker there are no messages, only signals: ``SIGTERM`` drain
and exit, ``SIGINT``/``SIGQUIT`` exit now, ``SIGUSR1`` reopen log files,
``SIGABRT`` dump every thread's stack and die. End-of-file on the channel
means the master is gone: the worker drains and exits.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

#: Longest message: room for :data:`MAX_SERIES_PER_HEARTBEAT` metric series.
MAX_MESSAGE = 2 * 1024 * 1024
#: Most metric series one heartbeat carries.
MAX_SERIES_PER_HEARTBEAT = 1000
#: Upper bounds (seconds) of the request latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx")
WORKER_MESSAGES = frozenset({"booting", "ready", "heartbeat", "recycle", "draining", "exiting"})


class ChannelError(Exception):
    """The peer sent something that is not a valid message."""


def encode(message_type: str, **fields: Any) -> bytes:
    """One message as a line of JSON, with ``type`` and this process's ``pid``."""
    message = {"type": message_type, "pid": os.getpid(), **fields}
    data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"{message_type} message is larger than {MAX_MESSAGE} bytes")
    return data


class MessageReader:
    """Splits a byte stream into messages; :meth:`feed` returns the complete ones."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; return the messages it completed. Raises :class:`ChannelError`."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_MESSAGE:
            raise ChannelError(f"message longer than {MAX_MESSAGE} bytes")
        return [parse(line) for line in lines if line]


def parse(line: bytes) -> dict[str, Any]:
    """One worker message, checked for shape (not for every field)."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ChannelError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(message, dict) or message.get("type") not in WORKER_MESSAGES:
        raise ChannelError(f"unknown message: {line[:80]!r}")
    return message


class WorkerChannel:
    """The worker's end: send messages (from any thread), notice the master leaving."""

    def __init__(self, sock: socket.socket, send_timeout: float = 5.0) -> None:
        self.sock = sock
        self.sock.settimeout(send_timeout)
        self._lock = threading.Lock()

    def send(self, message_type: str, **fields: Any) -> bool:
        """Send one message; False when the master is gone (the caller decides what then)."""
        data = encode(message_type, **fields)
        with self._lock:
            try:
                self.sock.sendall(data)
            except OSError:
                return False
        return True

    def wait_for_master_exit(self) -> None:
        """Block until the master's end is closed (EOF or error).

        The socket keeps its send timeout (other threads send on it while
        this one waits), so a receive that merely times out waits again.
        """
        while True:
            try:
                if not self.sock.recv(4096):
                    return
            except (InterruptedError, TimeoutError):
                continue
            except OSError:
                return


def heartbeat_fields(
    *,
    requests: int,
    in_flight: int,
    busy_threads: int,
    threads: int,
    oldest_request_age: float,
    status: dict[str, int],
    latency_buckets: list[int],
    latency_sum: float,
    latency_count: int,
    oldest_request: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The fields of a ``heartbeat`` message, named in one place for both ends."""
    return {
        "requests": requests,
        "in_flight": in_flight,
        "busy_threads": busy_threads,
        "threads": threads,
        "oldest_request_age": oldest_request_age,
        "oldest_request": oldest_request,
        "status": status,
        "latency_buckets": latency_buckets,
        "latency_sum": latency_sum,
        "latency_count": latency_count,
        "metrics": metrics or [],
    }
