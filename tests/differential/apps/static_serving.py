"""Static content: the staticdir and staticfile tools and the serve_* functions.

``static_site/`` is served at ``/static`` (with an index file and a content
type override), at ``/css`` (only names matching a pattern), at ``/plain``
(no index) and by a handler built with ``tools.staticdir.handler``.
``static_site_private/`` sits next to it and must never be served.
"""

import io
import os

import cherrypy
from cherrypy.lib import static

HERE = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(HERE, "static_site")
DIGITS = os.path.join(SITE, "digits.txt")


class Dynamic:
    """Answers what staticdir does not find."""

    @cherrypy.expose
    def default(self, *path):
        return "dynamic: " + "/".join(path)


class Root:
    def __init__(self):
        self.dynamic = Dynamic()

    @cherrypy.expose
    def index(self):
        return "root"

    nav = cherrypy.tools.staticdir.handler(section="/nav", dir="static_site/docs", root=HERE)

    @cherrypy.expose
    def download(self, name=None):
        return static.serve_download(DIGITS, name)

    @cherrypy.expose
    def attach(self, name=None, disposition="attachment", content_type=None):
        return static.serve_file(DIGITS, content_type, disposition, name)

    @cherrypy.expose
    def fileobj(self, name=None, disposition=None):
        return static.serve_fileobj(open(DIGITS, "rb"), "text/plain", disposition, name)

    @cherrypy.expose
    def bytesio(self):
        return static.serve_fileobj(io.BytesIO(b"in memory"), "text/plain")


SITE_CONFIG = {"tools.staticdir.on": True, "tools.staticdir.dir": SITE}

config = {
    "/static": {
        "tools.staticdir.on": True,
        "tools.staticdir.root": HERE,
        "tools.staticdir.dir": "static_site",
        "tools.staticdir.index": "index.html",
        "tools.staticdir.content_types": {"weird": "text/x-weird", "txt": "text/plain"},
    },
    "/css": {**SITE_CONFIG, "tools.staticdir.match": r"\.css$"},
    "/plain": SITE_CONFIG,
    "/dynamic": SITE_CONFIG,
    "/favicon.ico": {
        "tools.staticfile.on": True,
        "tools.staticfile.filename": os.path.join(SITE, "favicon.ico"),
    },
    "/home": {
        "tools.staticfile.on": True,
        "tools.staticfile.root": SITE,
        "tools.staticfile.filename": "index.html",
    },
}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/", config)
