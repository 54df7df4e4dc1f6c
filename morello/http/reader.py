"""A connection's receive buffer: request heads out of it, body bytes on demand.

One ``recv_into`` (into a buffer each thread reuses) takes whatever the
client sent: several pipelined requests, a head and part of its body, or
a fragment of a head. :meth:`SocketReader.take_head` cuts complete heads off the front;
the body readers (cheroot's ``KnownLengthRFile``, morello's
``ChunkedBody``) pull body bytes through :meth:`~SocketReader.read` and
:meth:`~SocketReader.readline`, which receive more only when the buffer
runs dry.
"""

from __future__ import annotations

import re
import socket
import threading
import time

__all__ = ["BodyPace", "BodyTooSlow", "HeadTooLarge", "SocketReader"]

#: Bytes asked of the socket per receive.
RECV_SIZE = 65536

#: Each thread receives into its own buffer, whatever the connection: idle
#: keep-alive connections then hold only the bytes they have not consumed.
_receiving = threading.local()

_END_OF_HEAD = b"\r\n\r\n"
#: A line end without CR: such a head never ends with CRLF CRLF, yet must be refused now.
_BARE_LF = re.compile(rb"(?<!\r)\n")


class HeadTooLarge(Exception):
    """The request line, or the head, is longer than the server accepts."""

    def __init__(self, in_request_line: bool) -> None:
        super().__init__("request line too long" if in_request_line else "head too long")
        #: Whether the request line alone was over the limit (414 rather than 413).
        self.in_request_line = in_request_line


class BodyTooSlow(TimeoutError):
    """The client sends its request body slower than the server's minimum rate."""


class BodyPace:
    """How long a thread may still wait for a client's body bytes.

    ``grace`` seconds, plus ``1 / rate`` seconds for every byte received:
    a client that averages at least ``rate`` bytes a second (after the
    grace) never runs out. Only the time spent waiting on the client counts,
    not the time the application takes between reads.
    """

    def __init__(self, rate: float, grace: float, received: int = 0) -> None:
        self.rate = rate
        self.allowance = grace + received / rate

    def receive(self, sock: socket.socket, view: memoryview) -> int:
        """``sock.recv_into(view)``, waiting no longer than the allowance left."""
        if self.allowance <= 0:
            raise BodyTooSlow("request body below the minimum rate")
        timeout = sock.gettimeout()
        shortened = timeout is None or self.allowance < timeout
        if shortened:
            sock.settimeout(self.allowance)
        started = time.monotonic()
        try:
            count = sock.recv_into(view)
        except TimeoutError:
            if shortened:
                raise BodyTooSlow("request body below the minimum rate") from None
            raise
        finally:
            self.allowance -= time.monotonic() - started
            if shortened:
                sock.settimeout(timeout)
        self.allowance += count / self.rate
        return count


class SocketReader:
    """The bytes received on one connection and not consumed yet.

    Also the connection's ``rfile`` for cheroot's connection manager, which
    asks :meth:`has_data` before waiting for the socket to become readable.
    """

    #: cheroot's statistics add this up per connection; the lean path does not count.
    bytes_read = 0

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.pos = 0  # start of the unconsumed bytes in data
        self._scanned = 0  # data[:_scanned] holds no end of head
        #: Sent before the next receive, then forgotten (``100 Continue``).
        self.interim: bytes | None = None
        #: While a thread reads a request body: the minimum rate it must come at.
        self.pace: BodyPace | None = None

    def fill(self) -> int:
        """Receive once (waiting up to the socket's timeout); return the byte count, 0 at EOF.

        On a non-blocking socket, raises what its ``recv_into`` raises when
        nothing has come (``BlockingIOError``, ``ssl.SSLWantReadError``).
        """
        if self.interim is not None:
            self.sock.sendall(self.interim)
            self.interim = None
        view = getattr(_receiving, "view", None)
        if view is None:
            view = _receiving.view = memoryview(bytearray(RECV_SIZE))
        if self.pace is None:
            count = self.sock.recv_into(view)
        else:
            count = self.pace.receive(self.sock, view)
        if count:
            if self.pos:
                del self.data[: self.pos]
                self._scanned = max(0, self._scanned - self.pos)
                self.pos = 0
            self.data += view[:count]
        return count

    @property
    def pending(self) -> int:
        """How many received bytes are not consumed yet."""
        return len(self.data) - self.pos

    def head_end(self, limit: int) -> int | None:
        """Where the next complete head ends in :attr:`data` (after its blank line), or None.

        A head with a bare LF counts as complete at once, whole or not, to be
        refused. Returns None while the head is incomplete; raises
        :class:`HeadTooLarge` once more than ``limit`` bytes (0: no limit)
        are received without an end of head.
        """
        data, pos = self.data, self.pos
        # Blank lines before a request line are tolerated (RFC 9112 2.2).
        while data.startswith(b"\r\n", pos):
            pos += 2
        self.pos = pos
        end = data.find(_END_OF_HEAD, max(pos, self._scanned - 3))
        if end < 0:
            if _BARE_LF.search(data, max(pos, self._scanned - 1)):
                end = len(data) - 4  # all of it: the parser refuses it
            else:
                self._scanned = len(data)
                if limit and len(data) - pos > limit:
                    raise HeadTooLarge(data.find(b"\n", pos, pos + limit) < 0)
                return None
        end += 4
        if limit and end - pos > limit:
            raise HeadTooLarge(data.find(b"\n", pos, pos + limit) < 0)
        return end

    def take_head(self, limit: int) -> bytes | None:
        """Cut the next complete head (request line and fields, with the blank line) off the front.

        None while it is incomplete; see :meth:`head_end`.
        """
        end = self.head_end(limit)
        if end is None:
            return None
        head = bytes(self.data[self.pos : end])
        self.pos = self._scanned = end
        return head

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` body bytes (all until EOF if negative), fewer only at EOF."""
        while size < 0 or self.pending < size:
            if not self.fill():
                break
        end = len(self.data) if size < 0 else min(len(self.data), self.pos + size)
        chunk = bytes(self.data[self.pos : end])
        self.pos = end
        return chunk

    def readline(self, size: int = -1) -> bytes:
        """One line, LF included, of at most ``size`` bytes (shorter only at EOF)."""
        searched = 0  # bytes after pos known to hold no LF
        while True:
            stop = self.pending if size < 0 else min(self.pending, size)
            newline = self.data.find(b"\n", self.pos + searched, self.pos + stop)
            if newline >= 0:
                end = newline + 1
                break
            searched = stop
            if stop == size or not self.fill():
                end = self.pos + stop
                break
        line = bytes(self.data[self.pos : end])
        self.pos = end
        return line

    def has_data(self) -> bool:
        """Whether bytes wait that the selector cannot see (decrypted TLS records)."""
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    def close(self) -> None:
        """Forget the buffered bytes (the socket belongs to the connection)."""
        self.data = bytearray()
        self.pos = self._scanned = 0
