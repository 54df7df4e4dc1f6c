"""A file served by morello's staticfile tool, configured like the cheroot baseline.

Usage: ``python morello_static.py PORT FILE`` (the file is served at ``/``).
"""

import sys

from baseline import configure

import morello


class Root:
    """No handlers: the staticfile tool answers ``/``."""


configure()
morello.quickstart(
    Root(), "", {"/": {"tools.staticfile.on": True, "tools.staticfile.filename": sys.argv[2]}}
)
