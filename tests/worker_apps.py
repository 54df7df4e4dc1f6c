"""Applications for tests/test_worker.py, in every form a worker accepts.

Imported by the forked worker (``worker_apps:Root``...), never mounted by
the test process itself.
"""

from __future__ import annotations

import threading
import time

import morello


class Root:
    """A root handler: the class form (``worker_apps:Root``)."""

    @morello.expose
    def index(self) -> str:
        return "hello from Root"

    @morello.expose
    def slow(self, seconds: str = "1") -> str:
        time.sleep(float(seconds))
        return f"slept {seconds}"

    @morello.expose
    def exit_engine(self) -> str:
        # As a crashing server thread would: the engine exits under the worker.
        threading.Thread(target=morello.engine.exit).start()
        return "exiting the engine"

    @morello.expose
    def fail(self) -> str:
        raise RuntimeError("this handler always fails")


#: The instance form (``worker_apps:root``).
root = Root()

#: A morello Application, served as is.
application = morello.Application(Root())


def wsgi_app(environ: dict, start_response) -> list[bytes]:
    """A plain WSGI callable."""
    body = b"hello from wsgi_app"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def create_root() -> Root:
    """A factory returning a root handler."""
    return Root()


def create_wsgi(debug: bool = False):
    """A factory (optional arguments only) returning a WSGI callable."""
    return wsgi_app


class NeedsArguments:
    """A class the worker cannot instantiate on its own."""

    def __init__(self, database: str) -> None:
        self.database = database


not_an_app = 42
