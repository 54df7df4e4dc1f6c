"""CherryPy's ``cherrypy.lib.sessions`` names, served by :mod:`morello.sessions`."""

from __future__ import annotations

from morello.sessions.base import LockTimeout, Session, SessionUnavailable
from morello.sessions.codec import SessionDataError
from morello.sessions.file import FileSession
from morello.sessions.ram import RamSession
from morello.sessions.tool import close, expire, init, save, set_response_cookie

__all__ = [
    "FileSession", "LockTimeout", "RamSession", "Session", "SessionDataError",
    "SessionUnavailable", "close", "expire", "init", "save", "set_response_cookie",
]  # fmt: skip
