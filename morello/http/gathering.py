"""Requests collected while polling, so that no pool thread waits on a slow client.

cheroot's connection manager hands a connection to a pool thread as soon
as its socket is readable, and the thread then waits on the client for the
rest of the request: a client trickling its request a few bytes at a time
holds a thread for as long as it likes, and a handful of them stop a pool.

:class:`GatheringManager` receives while polling instead (the pool's idle
threads take turns at :meth:`GatheringManager.poll`, see
:mod:`morello.http.turns`). Each time a lean connection
(:mod:`morello.http.connection`) is readable, the poll does one
non-blocking receive into the connection's buffer and looks for the end of
the head. A connection is ready for a thread only once its head is
complete, with its body when a ``Content-Length`` of at most
:data:`SMALL_BODY` bytes announces one; the thread parses and checks the
head as if it had received it itself. A head over the size limit, or with
a bare LF, is ready at once, to be refused. A client that closes its end
mid-request is ready too (the thread answers or closes, as it would
have); one that closes between requests is closed here.

A request waiting here gets a ``408 Request Timeout`` (written without
blocking: a client that does not read it loses it) and is closed when

* its head is not complete ``request_head_timeout`` seconds after its
  first byte came, however it trickles;
* its small body comes slower than ``min_body_rate`` bytes a second, after
  ``body_rate_grace`` seconds (the rule threads apply to larger bodies,
  :class:`~morello.http.reader.BodyPace`);
* or the client sends nothing for ``socket_timeout`` seconds.

A connection that never sent a request gets the same ``408`` when it has
been idle for ``socket_timeout`` seconds (one that has been served is
closed without a word).

These clocks are read when a thread polls: while every thread is busy,
the waiting requests are timed out at the next poll.

TLS connections take part too: a receive that finds only part of a TLS
record raises ``SSLWantReadError``, which means "nothing yet" here. The
TLS handshake itself still happens where cheroot does it, when accepting.
Connections off the lean path (pyOpenSSL's) keep cheroot's behaviour.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import threading
import time
from typing import Any

from cheroot import connections

from morello.http.reader import HeadTooLarge
from morello.http.readiness import ArmedSelector
from morello.http.response import refusal
from morello.http.tls import refuse_plain_http, speaks_plain_http

__all__ = ["SMALL_BODY", "GatheringManager", "small_body_length"]

#: Largest body collected with its head before a thread takes the request.
SMALL_BODY = 65536

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,7})[ \t]*(?=\r\n)", re.I)
#: Fields that mean the body need not follow the head at once (chunked, 100-continue).
_BODY_HELD_BACK = re.compile(rb"\r\n(?:transfer-encoding|expect)[ \t]*:", re.I)

#: What a non-blocking receive raises when nothing (or no whole TLS record) has come.
_NOTHING_YET = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def small_body_length(data: bytes | bytearray, start: int, end: int, largest: int) -> int:
    """How many body bytes to collect after the head ``data[start:end]``.

    Its ``Content-Length`` when that is the only one, at most ``largest``,
    and nothing holds the body back; otherwise 0: a thread reads the body,
    or refuses the head.
    """
    lengths = _CONTENT_LENGTH.findall(data, start, end)
    if len(lengths) != 1 or _BODY_HELD_BACK.search(data, start, end):
        return 0
    length = int(lengths[0])
    return length if length <= largest else 0


def _gathers(conn: Any) -> bool:
    return getattr(conn, "is_lean", False)


class GatheringManager(connections.ConnectionManager):
    """cheroot's keep-alive selector, also collecting partial requests (see the module)."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        # Connections stay in one epoll set, armed once per request (see ArmedSelector).
        self._selector.close()
        self._selector = ArmedSelector()
        self._selector.register(server.socket.fileno(), server, persistent=True)
        #: Registered connections with a request begun: ``(when it is overdue
        #: on the monotonic clock, whether its head is complete)``. Polling thread only.
        self._due: dict[Any, tuple[float, bool]] = {}
        #: Connections the current poll found ready for a thread.
        self._found: list[Any] = []
        self._checked = time.time()
        self._expiration_interval = 0.5
        self._stopped = threading.Event()
        # A byte on this pair ends a poll early (see wake()).
        self._alarm, alarm_out = socket.socketpair()
        self._alarm_out = alarm_out
        self._alarm.setblocking(False)
        alarm_out.setblocking(False)
        self._selector.register(self._alarm.fileno(), self._alarm, persistent=True)

    @property
    def _num_connections(self) -> int:
        # Every registered socket but the listening one and the alarm.
        return len(self._selector) - 2

    @property
    def can_add_keepalive_connection(self) -> bool:
        """Whether another idle connection may be kept (those mid-request do not count)."""
        limit = self.server.keep_alive_conn_limit
        return limit is None or self._num_connections - len(self._due) < limit

    def put(self, conn: Any) -> None:
        """Take back a connection between requests (or with part of the next one received)."""
        conn.last_used = time.time()
        if conn.rfile.has_data():
            # Buffered (or decrypted TLS) bytes wait, which select() cannot see.
            self.server.process_conn(conn)
            return
        if _gathers(conn):
            conn.socket.settimeout(0)
        self._selector.rearm(conn.socket.fileno(), conn)

    def run(self, expiration_interval: float) -> None:
        """Let the server's threads poll this manager (:mod:`morello.http.turns`) until stopped."""
        self._expiration_interval = expiration_interval
        self._serving = True
        turns = self.server.requests.turns
        try:
            turns.poll_with(self)
            self._stopped.wait()
        finally:
            turns.poll_with(None)
            self._serving = False

    def stop(self) -> None:
        """End :meth:`run`, once no thread polls any more."""
        self._stop_requested = True
        self._stopped.set()
        while self._serving:
            time.sleep(0.01)

    def close(self) -> None:
        """Close every connection left, and the selector."""
        super().close()
        self._alarm.close()
        self._alarm_out.close()

    def wake(self) -> None:
        """End the current poll now (it returns what it found so far)."""
        try:
            self._alarm_out.send(b"\0")
        except OSError:
            pass  # full (a wake is pending anyway) or closed

    def has_pending_events(self) -> bool:
        """Whether a poll would find something now (a connection, bytes to read)."""
        return self._selector.has_events()

    def poll(self, timeout: float) -> list[Any]:
        """Wait up to ``timeout`` seconds for events, handle them; return the connections
        a thread should serve now. One thread at a time polls."""
        try:
            ready = self._selector.select(timeout=timeout)
        except OSError:
            if not self._stop_requested:
                self._remove_invalid_sockets()
            return []
        if self._stop_requested:
            for fd, conn in ready:
                if conn is not self.server and conn is not self._alarm:
                    self._selector.rearm(fd, conn)  # still listed, for close()
            return []
        self._found = []
        for _, conn in ready:
            if conn is self.server:
                # One at a time, as cheroot does: the worker processes sharing
                # the socket each take their share, not the first one all.
                accepted = self._from_server_socket(self.server.socket)
                if accepted is not None:
                    self._admit(accepted)
            elif conn is self._alarm:
                try:
                    while self._alarm.recv(512):
                        pass
                except OSError:
                    pass
            elif _gathers(conn):
                self._receive(conn, watched=True)
            else:
                self._found.append(conn)
        now = time.time()
        if now - self._checked > self._expiration_interval:
            self._expire(threshold=now - self.server.timeout)
            self._checked = now
        found, self._found = self._found, []
        return found

    def _admit(self, conn: Any) -> None:
        """A new connection: read what already came, then wait for the rest here."""
        if not _gathers(conn):
            self._found.append(conn)
            return
        conn.last_used = time.time()
        conn.socket.settimeout(0)
        self._receive(conn, watched=False)

    def _receive(self, conn: Any, watched: bool) -> None:
        """One receive without waiting; hand the connection on once its request is complete.

        ``watched``: whether the selector has the socket (it reported it).
        """
        reader = conn.rfile
        try:
            count = reader.fill()
            while count and reader.has_data():  # the rest of a TLS record, already decrypted
                count = reader.fill()
        except _NOTHING_YET:
            count = None
        except ssl.SSLError as exc:  # a failed TLS handshake (see morello.http.tls)
            if speaks_plain_http(exc):
                refuse_plain_http(conn.socket, self.server.protocol)
            count = 0
        except OSError:
            count = 0  # reset: as good as closed
        if count == 0:
            if reader.pending:
                self._hand_over(conn)  # the thread answers, or closes
            else:
                self._drop(conn)
            return
        if count is not None:
            conn.last_used = time.time()
            if self._complete(conn):
                self._hand_over(conn)
                return
        if watched:
            self._selector.rearm(conn.socket.fileno(), conn)
        else:
            self._selector.register(conn.socket.fileno(), conn)

    def _complete(self, conn: Any) -> bool:
        """Whether a thread has work on ``conn``; starts the request's clocks if not."""
        reader, server = conn.rfile, self.server
        try:
            end = reader.head_end(server.max_request_header_size)
        except HeadTooLarge:
            return True
        now = time.monotonic()
        if end is None:
            if reader.pending and conn not in self._due:
                limit = server.request_head_timeout
                self._due[conn] = (now + limit if limit else math.inf, False)
            return False
        largest = min(SMALL_BODY, server.max_request_body_size or SMALL_BODY)
        length = small_body_length(reader.data, reader.pos, end, largest)
        if len(reader.data) - end >= length:
            return True
        due = self._due.get(conn)
        if due is None or not due[1]:
            rate = server.min_body_rate
            self._due[conn] = (
                now + server.body_rate_grace + length / rate if rate else math.inf,
                True,
            )
        return False

    def _hand_over(self, conn: Any) -> None:
        # Disarmed: the thread re-arms it with put(), or closes it.
        self._due.pop(conn, None)
        conn.socket.settimeout(self.server.timeout)
        self._found.append(conn)

    def _drop(self, conn: Any) -> None:
        self._selector.unregister(conn.socket.fileno())
        self._due.pop(conn, None)
        conn.close()

    def _expire(self, threshold: float) -> None:
        """Close connections idle since before ``threshold``; time out overdue requests.

        A request begun is judged by its own clocks and ``socket_timeout``,
        whatever ``threshold`` (which draining may bring forward) says.
        """
        now, silent_since = time.monotonic(), time.time() - self.server.timeout
        kept = {}
        for fd, conn in list(self._selector.connections):
            if conn is self.server or conn is self._alarm:
                continue
            if _gathers(conn) and conn.rfile.pending:
                due = self._due.get(conn, (math.inf, False))[0]
                if conn.last_used >= silent_since and due > now:
                    kept[conn] = fd
                    continue
                self._selector.unregister(fd)
                self._time_out(conn)
            elif conn.last_used < threshold:
                self._selector.unregister(fd)
                if _gathers(conn) and not conn.has_served:
                    # Opened and never used: told why, as cheroot tells it.
                    self._time_out(conn)
                else:
                    conn.close()
            else:
                kept[conn] = fd
        self._due = {conn: due for conn, due in self._due.items() if conn in kept}

    def _time_out(self, conn: Any) -> None:
        try:
            conn.socket.send(refusal(self.server.protocol, "408 Request Timeout"))
        except OSError:
            pass  # a client that does not read does not learn why
        conn.close()
