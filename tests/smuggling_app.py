"""The app behind tests/test_smuggling.py, served by ``morello serve`` and in one process.

``/hidden`` is the request a client tries to smuggle: each hit appends a
line to the file named by the ``SMUGGLING_HITS`` environment variable, so
the test sees hits from every worker process.
"""

from __future__ import annotations

import os
from typing import Any

HITS_ENV = "SMUGGLING_HITS"


def build(cp: Any) -> tuple[Any, dict[str, Any]]:
    """The root object and app config, for ``subprocess_server``."""

    class Root:
        @cp.expose
        def index(self) -> str:
            return "alive"

        @cp.expose
        def echo(self, **params: str) -> str:
            return repr(sorted(params.items()))

        @cp.expose
        def hidden(self, **ignored: str) -> str:
            with open(os.environ[HITS_ENV], "a") as hits:
                hits.write("hit\n")
            return "hidden"

    return Root(), {}


def root() -> Any:
    """The root object, for ``morello serve smuggling_app:root``."""
    import morello

    return build(morello)[0]
