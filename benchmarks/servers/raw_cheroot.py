"""A bare cheroot WSGI hello app: the baseline morello is measured against."""

import signal
import sys

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
signal.signal(signal.SIGTERM, lambda *_: server.stop())
server.safe_start()
