"""Benchmark: a 1 MB file through morello's staticfile tool against a bare cheroot WSGI app.

Both servers serve the same file at ``/`` from their own process with the
same cheroot settings (10 threads, 127.0.0.1), one at a time, loaded by the
same client for the same time in alternating rounds; the best round of
each counts (as in ``hello.py``, whose helpers this script uses).

    python benchmarks/static_file.py [--seconds 5] [--rounds 3] [--connections 10] [--size 1048576]
"""

from __future__ import annotations

import os
import tempfile

from hello import compare, parse_args

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = {
    "cheroot": os.path.join(HERE, "servers", "cheroot_static.py"),
    "morello": os.path.join(HERE, "servers", "morello_static.py"),
}


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument(
            "--size", type=int, default=1024 * 1024, help="file size in bytes"
        ),
    )
    print(f"file of {args.size} bytes")
    with tempfile.NamedTemporaryFile(suffix=".bin") as served:
        served.write(os.urandom(args.size))
        served.flush()
        compare(SERVERS, args, (served.name,), response_bytes=args.size)


if __name__ == "__main__":
    main()
