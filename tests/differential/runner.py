"""Serve one app module of ``apps/`` under CherryPy 18 or under morello.

Usage: ``python runner.py {cherrypy|morello} APP_FILE``

The app module is an ordinary CherryPy script (``import cherrypy`` ...
``cherrypy.quickstart(...)`` under ``if __name__ == '__main__'``). For
morello, ``cherrypy`` is aliased to morello before the script runs, so the
very same source runs on both frameworks. The server is moved to a free
port of 127.0.0.1 whatever the script configures, and ``PORT <n>`` is
written to stdout once it accepts connections. Everything else the process
prints goes to stderr.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import runpy
import sys
from typing import Any

FRAMEWORKS = ("cherrypy", "morello")


class MorelloAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``cherrypy.<name>`` as the module ``morello.<name>`` itself.

    Apps import CherryPy's submodules (``from cherrypy.lib import ...``) and
    config files name them (``cherrypy.dispatch.MethodDispatcher()``); they
    must get morello's modules, not second copies loaded under other names.
    """

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if not name.startswith("cherrypy."):
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module("morello" + spec.name[len("cherrypy") :])

    def exec_module(self, module: Any) -> None:
        """The module is morello's, already executed."""


def alias_morello() -> None:
    """Make ``import cherrypy`` (and ``cherrypy.<submodule>``) give morello."""
    import morello

    sys.modules["cherrypy"] = morello
    sys.meta_path.insert(0, MorelloAlias())


def main(argv: list[str]) -> None:
    framework, app_file = argv[1], os.path.abspath(argv[2])
    if framework not in FRAMEWORKS:
        raise SystemExit(f"usage: runner.py {{{'|'.join(FRAMEWORKS)}}} APP_FILE")

    # Only the readiness line goes to the parent's pipe; logs go to stderr.
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    if framework == "morello":
        alias_morello()
    import cherrypy

    cherrypy.config.update({"engine.autoreload.on": False, "checker.on": False})

    def bind_free_port() -> None:
        # Runs before the server starts, after the script's own config.
        cherrypy.server.socket_host = "127.0.0.1"
        cherrypy.server.socket_port = 0

    def announce() -> None:
        # The server's start() returns once the port accepts connections.
        ready.write(f"PORT {cherrypy.server.bound_addr[1]}\n")
        ready.flush()

    cherrypy.engine.subscribe("start", bind_free_port, priority=1)
    cherrypy.engine.subscribe("start", announce, priority=99)
    sys.path.insert(0, os.path.dirname(app_file))
    runpy.run_path(app_file, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
