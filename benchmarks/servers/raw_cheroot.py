"""A bare cheroot WSGI hello app: the baseline morello is measured against."""

import signal
import sys
import threading

from cheroot import wsgi

BODY = b"Hello world!"


def app(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/html;charset=utf-8"),
            ("Content-Length", str(len(BODY))),
        ],
    )
    return [BODY]


server = wsgi.Server(("127.0.0.1", int(sys.argv[1])), app, numthreads=10)
# Stop from another thread: server.stop() waits for the serving loop, which
# a signal handler (run by that loop's thread) would block.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
server.safe_start()
