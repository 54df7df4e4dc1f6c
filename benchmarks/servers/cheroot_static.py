"""A bare cheroot WSGI app serving one file: the baseline of the static benchmark.

Usage: ``python cheroot_static.py PORT FILE`` (the file is served at ``/``).
It does the least a file server must: open, measure, stream in large reads.
"""

import os
import signal
import sys
import threading

from cheroot import wsgi

PATH = sys.argv[2]
CHUNK_SIZE = 256 * 1024


def read_chunks(fileobj):
    with fileobj:
        while chunk := fileobj.read(CHUNK_SIZE):
            yield chunk


def app(environ, start_response):
    fileobj = open(PATH, "rb")  # noqa: SIM115 - read_chunks closes it
    size = os.fstat(fileobj.fileno()).st_size
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    return read_chunks(fileobj)


server = wsgi.Server(("127.0.0.1", int(sys.argv[1])), app, numthreads=10)
# Stop from another thread: server.stop() waits for the serving loop, which
# a signal handler (run by that loop's thread) would block.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
server.safe_start()
