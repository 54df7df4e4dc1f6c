"""The hello application, written once for any CherryPy-style framework.

``make_root(cherrypy)`` and ``make_root(morello)`` build the same handler
tree, so the peers benchmark compares servers, not two copies of an app.
"""

import time
from types import ModuleType

#: Seconds the ``/sleep`` handler waits, standing in for a database or an API call.
SLEEP_SECONDS = 0.05


def make_root(framework: ModuleType) -> object:
    """A root with ``/`` (``Hello world!``) and ``/sleep`` (answers after ``SLEEP_SECONDS``)."""

    class HelloWorld:
        @framework.expose
        def index(self):
            return "Hello world!"

        @framework.expose
        def sleep(self):
            time.sleep(SLEEP_SECONDS)
            return "Slept"

    return HelloWorld()
