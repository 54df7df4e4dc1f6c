"""CherryPy's private module path of its native (non-WSGI) HTTP server.

morello's own server already hands morello applications the parsed request
without building a WSGI environ (see :mod:`morello.http.native`), so
``cherrypy._cpnative_server.CPHTTPServer`` is that same server: assign
``CPHTTPServer(morello.server)`` to ``morello.server.httpserver``, or name it
in ``server.instance``.
"""

from morello.httpserver import WSGIServer as CPHTTPServer

__all__ = ["CPHTTPServer"]
