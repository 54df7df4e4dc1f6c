"""A small round-robin TCP balancer for tests: the stand-in for nginx in front of hosts.

Each client connection goes to the next upstream; when that upstream
refuses the connection (a host that stopped), the next one is tried, as
nginx's ``proxy_next_upstream error`` does. Bytes are relayed both ways
until either side closes. Loopback only, threads, bounded by ``close()``.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections import Counter


class Balancer:
    """Listens on 127.0.0.1 (free port) and spreads connections over ``upstreams``."""

    def __init__(self, upstreams: list[tuple[str, int]]) -> None:
        self.upstreams = upstreams
        self.connections: Counter[tuple[str, int]] = Counter()
        self._next = itertools.cycle(range(len(upstreams)))
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect_upstream(self) -> socket.socket | None:
        with self._lock:
            start = next(self._next)
        for offset in range(len(self.upstreams)):
            address = self.upstreams[(start + offset) % len(self.upstreams)]
            try:
                upstream = socket.create_connection(address, timeout=5)
            except OSError:
                continue  # refused: that host is gone, try the next one
            with self._lock:
                self.connections[address] += 1
            return upstream
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._connect_upstream()
        if upstream is None:
            client.close()
            return
        upstream.settimeout(None)
        relay = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        relay.start()
        _pipe(client, upstream)
        relay.join(30)
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._thread.join(5)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy until ``source`` ends, then pass the end on (half-close)."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    try:
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass
