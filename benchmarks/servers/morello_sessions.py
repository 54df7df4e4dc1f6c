"""A session counter on morello, configured like the cheroot baseline (no access log).

Usage: ``python morello_sessions.py PORT STORAGE_TYPE [OPTION=VALUE ...]``; each
option becomes ``tools.sessions.OPTION`` (``storage_path=/tmp/s``,
``url=redis://127.0.0.1:6379/0``, ``servers=127.0.0.1:11211``, ``locking=optimistic``).
Every request to ``/`` loads its session, increments a counter and saves it.
"""

import sys

from baseline import configure

import morello


class Counter:
    @morello.expose
    def index(self):
        morello.session["n"] = morello.session.get("n", 0) + 1
        return str(morello.session["n"])


options = dict(option.split("=", 1) for option in sys.argv[3:])
sessions = {f"tools.sessions.{name}": value for name, value in options.items()}
configure()
morello.quickstart(
    Counter(),
    "",
    {"/": {"tools.sessions.on": True, "tools.sessions.storage_type": sys.argv[2], **sessions}},
)
