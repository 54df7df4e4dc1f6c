"""The connection manager of morello's server: it gathers requests and backs off accept().

cheroot's :class:`~cheroot.connections.ConnectionManager` accepts
connections and waits for the next request of idle keep-alive ones; the
:class:`~morello.http.gathering.GatheringManager` below it also collects
partial requests without a thread. This module adds what happens when the
process runs out of file descriptors.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

import cheroot.server

from .gathering import GatheringManager

__all__ = ["ConnectionManager"]


#: accept() errors meaning "out of descriptors (or kernel memory) for now":
#: the connection stays queued, so an immediate retry fails the same way.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionManager(GatheringManager):
    """The connection selector (collecting partial requests, :mod:`morello.http.gathering`),
    backing off when accept() runs out of descriptors.

    cheroot retries such an accept() at once, failing and logging a
    traceback each time (over a thousand a second). This one pauses the
    polling thread instead, 0.1 s at first and doubling up to 1 s, and
    logs one line per second at most; requests in progress meanwhile finish
    and free their descriptors.
    """

    first_pause = 0.1
    max_pause = 1.0
    log_interval = 1.0

    def __init__(self, server: cheroot.server.HTTPServer) -> None:
        super().__init__(server)
        self._pause = 0.0
        self._failures = 0
        self._logged_at = -self.log_interval

    def _from_server_socket(self, server_socket: Any) -> Any:
        try:
            conn = super()._from_server_socket(server_socket)
        except OSError as exc:
            if exc.errno not in _ACCEPT_EXHAUSTED:
                raise
            self._back_off(exc)
            return None
        if self._pause:
            self._pause = 0.0
            self.server.error_log("Accepting connections again.", logging.WARNING)
        return conn

    def _back_off(self, exc: OSError) -> None:
        self._pause = min(self.max_pause, max(self.first_pause, self._pause * 2))
        self._failures += 1
        now = time.monotonic()
        if now - self._logged_at >= self.log_interval:
            self.server.error_log(
                f"Cannot accept connections: {exc.strerror} ({self._failures} failed "
                f"accept() calls); retrying in {self._pause:g}s.",
                logging.WARNING,
            )
            self._logged_at = now
            self._failures = 0
        time.sleep(self._pause)
