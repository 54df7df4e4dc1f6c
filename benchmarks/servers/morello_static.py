"""A file served by morello's staticfile tool, configured like the cheroot baseline.

Usage: ``python morello_static.py PORT FILE`` (the file is served at ``/``).
"""

import sys

import morello


class Root:
    """No handlers: the staticfile tool answers ``/``."""


morello.config.update(
    {
        "environment": "production",
        "server.socket_host": "127.0.0.1",
        "server.socket_port": int(sys.argv[1]),
        "server.thread_pool": 10,
        "log.screen": False,
    }
)
morello.quickstart(
    Root(), "", {"/": {"tools.staticfile.on": True, "tools.staticfile.filename": sys.argv[2]}}
)
