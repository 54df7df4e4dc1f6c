"""CherryPy's ``cherrypy.lib.sessions`` names, served by :mod:`morello.sessions`.

``MemcachedSession`` is imported when first asked for: its client library
is an optional extra (``pip install 'morello[memcached]'``).
"""

from __future__ import annotations

from typing import Any

from morello.sessions.base import LockTimeout, Session, SessionUnavailable
from morello.sessions.codec import SessionDataError
from morello.sessions.file import FileSession
from morello.sessions.ram import RamSession
from morello.sessions.tool import close, expire, init, save, set_response_cookie

__all__ = [
    "FileSession", "LockTimeout", "RamSession", "Session",
    "SessionDataError", "SessionUnavailable", "close", "expire", "init", "save",
    "set_response_cookie",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name == "MemcachedSession":
        from morello.sessions.memcached_store import MemcachedSession

        return MemcachedSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
