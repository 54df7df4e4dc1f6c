"""The bare cheroot hello app in N forked processes sharing one listening socket.

Usage: ``python raw_cheroot_prefork.py PORT N``. The same shape as ``morello
serve --workers N``: this parent binds and listens on 127.0.0.1:PORT (with
cheroot's own socket setup and morello's default backlog), forks N children
that each run cheroot's WSGI server (``raw_cheroot.THREADS`` threads) on the
inherited socket, and prints ``ready`` on stdout once every child is
serving. SIGTERM (or SIGINT) stops and reaps the children; a child that dies
stops the others; children exit by themselves when the parent is gone.

The one change to cheroot a shared socket needs, as morello's workers have
it: the listening socket is non-blocking in each child, so that a process
woken for a connection another one accepted goes back to its selector at
once instead of waiting in ``accept()`` for cheroot's one-second timeout.
"""

import os
import signal
import socket
import sys
import threading

from cheroot import wsgi
from raw_cheroot import THREADS, app

#: morello serve's default --backlog.
BACKLOG = 2048
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class InheritedSocketServer(wsgi.Server):
    """cheroot's WSGI server on a copy of a socket bound by another process."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(
            listener.getsockname(), app, numthreads=THREADS, request_queue_size=BACKLOG
        )
        self.listener = listener

    def bind(self, family, type, proto=0):
        # prepare() calls this to create and bind the socket: adopt instead.
        self.socket = self.listener.dup()
        return self.socket


def bind(port: int) -> socket.socket:
    """The listening socket, set up as cheroot sets up the sockets it binds itself."""
    address = ("127.0.0.1", port)
    sock = wsgi.Server.prepare_socket(
        address, socket.AF_INET, socket.SOCK_STREAM, 0, nodelay=True, ssl_adapter=None
    )
    sock = wsgi.Server.bind_socket(sock, address)
    sock.listen(BACKLOG)
    return sock


def child(listener: socket.socket, ready_w: int, parent_r: int) -> None:
    """Serve in a forked child until killed or orphaned; never returns."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

        def exit_with_parent() -> None:
            os.read(parent_r, 1)  # only the parent holds the write end: EOF when it is gone
            os._exit(0)

        threading.Thread(target=exit_with_parent, daemon=True).start()
        server = InheritedSocketServer(listener)
        server.prepare()
        server.socket.setblocking(False)
        os.write(ready_w, b".")
        os.close(ready_w)
        server.serve()
    finally:
        os._exit(1)


def main() -> int:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    listener = bind(port)
    ready_r, ready_w = os.pipe()
    parent_r, parent_w = os.pipe()
    children: set[int] = set()
    # Stop by an exception in the main thread, wherever it is waiting; not
    # while forking, though: a child must never run the parent's handler.
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: sys.exit(0))
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                os.close(parent_w)
                child(listener, ready_w, parent_r)
            children.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.close(ready_w)
        os.close(parent_r)
        ready = b""
        while len(ready) < count:
            chunk = os.read(ready_r, count)
            if not chunk:
                print("a child exited before it was ready", file=sys.stderr)
                return 1
            ready += chunk
        print("ready", flush=True)
        pid, status = os.wait()
        children.discard(pid)
        print(f"child {pid} exited ({status:#x}); stopping", file=sys.stderr)
        return 1
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            os.waitpid(pid, 0)


if __name__ == "__main__":
    sys.exit(main())
