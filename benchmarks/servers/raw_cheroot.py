"""A bare cheroot WSGI hello app: the baseline morello is measured against.

``python raw_cheroot.py PORT`` serves it on 127.0.0.1:PORT; ``app`` is the
same app for ``raw_cheroot_prefork.py``.
"""

import signal
import sys
import threading

from cheroot import wsgi

BODY = b"Hello world!"
#: Request threads per process, as morello's benchmark servers have.
THREADS = 10


def app(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/html;charset=utf-8"),
            ("Content-Length", str(len(BODY))),
        ],
    )
    return [BODY]


if __name__ == "__main__":
    server = wsgi.Server(("127.0.0.1", int(sys.argv[1])), app, numthreads=THREADS)
    # Stop from another thread: server.stop() waits for the serving loop, which
    # a signal handler (run by that loop's thread) would block.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
    server.safe_start()
