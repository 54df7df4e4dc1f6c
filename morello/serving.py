"""Per-thread access to the request being served.

``serving.request`` and ``serving.response`` are swapped in by the WSGI
gateway for each request; ``morello.request`` / ``morello.response`` are
proxies that always point at the current thread's objects.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class Serving(threading.local):
    """The request/response pair of the current thread.

    Outside a request the attributes hold placeholder objects (set up by
    ``morello.__init__``) so that reading ``morello.request.config`` in a
    background thread does not blow up.
    """

    request: Any = None
    response: Any = None

    def load(self, request: Any, response: Any) -> None:
        self.request = request
        self.response = response

    def clear(self) -> None:
        """Drop the pair so their memory can be freed between requests."""
        self.__dict__.clear()


serving = Serving()

_app_server_loading = False


@contextlib.contextmanager
def loading_for_app_server() -> Iterator[None]:
    """Mark the time ``morello serve`` imports and mounts the application here.

    A module written to be run as a script calls ``quickstart()`` when
    imported; meanwhile that only mounts its root, since the master's
    workers do the serving.
    """
    global _app_server_loading
    previous, _app_server_loading = _app_server_loading, True
    try:
        yield
    finally:
        _app_server_loading = previous


def app_server_loading() -> bool:
    """Whether ``morello serve`` is loading the application in this process now."""
    return _app_server_loading


#: Free-form per-thread storage for applications (``cherrypy.thread_data``).
thread_data = threading.local()


class ThreadLocalProxy:
    """Forward attribute access to ``serving.<attrname>`` of the current thread."""

    __slots__ = ("__attrname__",)

    def __init__(self, attrname: str) -> None:
        object.__setattr__(self, "__attrname__", attrname)

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(serving, self.__attrname__), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(getattr(serving, self.__attrname__), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(getattr(serving, self.__attrname__), name)

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return getattr(serving, self.__attrname__).__dict__

    def __getitem__(self, key: Any) -> Any:
        return getattr(serving, self.__attrname__)[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        getattr(serving, self.__attrname__)[key] = value

    def __delitem__(self, key: Any) -> None:
        del getattr(serving, self.__attrname__)[key]

    def __contains__(self, key: Any) -> bool:
        return key in getattr(serving, self.__attrname__)

    def __len__(self) -> int:
        return len(getattr(serving, self.__attrname__))

    def __bool__(self) -> bool:
        return bool(getattr(serving, self.__attrname__))

    def __repr__(self) -> str:
        return f"<proxy of {getattr(serving, self.__attrname__)!r}>"
