"""CherryPy's private module path of its WSGI server, which config files name.

``server.instance = 'cherrypy._cpwsgi_server.CPWSGIServer'`` (or
``server.<name>.instance``) builds morello's own server from the settings.
"""

from morello.httpserver import WSGIServer as CPWSGIServer

__all__ = ["CPWSGIServer"]
