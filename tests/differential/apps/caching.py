"""An application behind ``tools.caching``.

Every page says how many times its handler ran for its ``t`` parameter, so
a cache hit shows as a repeated count; tests give each scenario its own
``t`` because both servers keep their cache for the whole test module.
"""

import collections
import itertools

import cherrypy

LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT"

calls = collections.Counter()
stamps = itertools.count(1)


def count(page, t):
    calls[page, t] += 1
    return calls[page, t]


def stamp():
    # A before_handler hook at the default priority (50): on a hit, the
    # cache (priority 90) replaces the headers after it has run.
    cherrypy.response.headers["X-Stamp"] = str(next(stamps))


cherrypy.tools.stamp = cherrypy.Tool("before_handler", stamp)


class Root:
    @cherrypy.expose
    def index(self, t="", **ignored):
        return f"index {t} ran {count('index', t)}"

    @cherrypy.expose
    def vary(self, t=""):
        cherrypy.response.headers["Vary"] = "Accept-Language"
        language = cherrypy.request.headers.get("Accept-Language", "none")
        return f"{language} ran {count('vary', t)}"

    @cherrypy.expose
    def dated(self, t=""):
        cherrypy.response.headers["Last-Modified"] = LAST_MODIFIED
        return f"dated ran {count('dated', t)}"

    @cherrypy.expose
    def aged(self, t=""):
        # As if the response had been produced 100 seconds ago.
        cherrypy.response.time -= 100
        return f"aged ran {count('aged', t)}"

    @cherrypy.expose
    def pragma(self, t=""):
        cherrypy.response.headers["Pragma"] = "no-cache"
        return f"pragma ran {count('pragma', t)}"

    @cherrypy.expose
    def nostore(self, t=""):
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return f"nostore ran {count('nostore', t)}"

    @cherrypy.expose
    def missing(self, t=""):
        raise cherrypy.HTTPError(404, f"missing ran {count('missing', t)}")

    @cherrypy.expose
    @cherrypy.tools.stamp()
    def stamped(self, t=""):
        return f"stamped ran {count('stamped', t)}"

    @cherrypy.expose
    @cherrypy.tools.gzip()
    def zipped(self, t=""):
        return f"zipped ran {count('zipped', t)}; " * 20

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def streamed(self, t=""):
        n = count("streamed", t)
        for i in range(3):
            yield f"chunk {i} of run {n}\n".encode()


    @cherrypy.expose
    @cherrypy.config(**{"tools.caching.on": False})
    def clear(self, path):
        # The cache's store maps each URL to its variants, which apps may clear.
        cherrypy._cache.store[cherrypy.request.base + path].clear()
        return f"cleared {path}"


config = {"/": {"tools.caching.on": True}}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/", config)
