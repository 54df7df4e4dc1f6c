"""CherryPy's built-in tools, each switched on for one branch of the tree:
gzip, json_in/json_out, allow, response_headers, referer, redirect,
err_redirect, accept, autovary, ignore_headers, flatten, proxy, etags,
params and expires.
"""

import cherrypy

TEXT = "All work and no play makes Jack a dull boy. " * 40


class Gzipped:
    @cherrypy.expose
    def index(self):
        return TEXT

    @cherrypy.expose
    def plain(self):
        cherrypy.response.headers["Content-Type"] = "text/plain"
        return TEXT

    @cherrypy.expose
    def data(self):
        cherrypy.response.headers["Content-Type"] = "application/octet-stream"
        return TEXT.encode()

    @cherrypy.expose
    @cherrypy.tools.gzip(mime_types=["text/*", "application/*+xml"])
    def css(self, kind="text/css"):
        cherrypy.response.headers["Content-Type"] = kind
        return TEXT.encode()

    @cherrypy.expose
    def empty(self):
        return ""

    @cherrypy.expose
    def tiny(self):
        return "x"

    @cherrypy.expose
    def stream(self):
        def chunks():
            for i in range(50):
                yield f"line {i}: {TEXT[:60]}\n"

        return chunks()

    stream._cp_config = {"response.stream": True}

    @cherrypy.expose
    def missing(self):
        raise cherrypy.NotFound()

    @cherrypy.expose
    def unchanged(self):
        raise cherrypy.HTTPRedirect([], 304)

    @cherrypy.expose
    @cherrypy.tools.gzip(compress_level=9)
    def best(self):
        return TEXT


class Json:
    @cherrypy.expose
    @cherrypy.tools.json_out()
    def out(self):
        return {"nested": {"list": [1, "two", 3.5, None, False]}, "text": "\u00e9t\u00e9"}

    @cherrypy.expose
    @cherrypy.tools.json_out(content_type=None)
    def untyped(self):
        return [1, 2]

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def unserializable(self):
        return {1, 2}

    @cherrypy.expose
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def echo(self):
        return {"received": cherrypy.request.json}

    @cherrypy.expose
    @cherrypy.tools.json_in(force=False)
    def lenient(self, **params):
        document = getattr(cherrypy.request, "json", "no json")
        return f"json={document!r} params={sorted(params.items())!r}"

    @cherrypy.expose
    @cherrypy.tools.json_in(content_type="application/vnd.api+json")
    @cherrypy.tools.json_out()
    def vendor(self):
        return cherrypy.request.json

    @cherrypy.expose
    @cherrypy.tools.json_out(handler=lambda *args, **kwargs: b"custom")
    def custom(self):
        return {"ignored": True}


class Guarded:
    @cherrypy.expose
    @cherrypy.tools.allow(methods=["get", "post"])
    def rw(self):
        return cherrypy.request.method

    @cherrypy.expose
    @cherrypy.tools.allow()
    def ro(self):
        return "read only"

    @cherrypy.expose
    @cherrypy.tools.allow(methods="PUT")
    def put_only(self):
        return "put"

    @cherrypy.expose
    @cherrypy.tools.referer(pattern=r"https?://www\.example\.com/")
    def referred(self):
        return "from us"

    @cherrypy.expose
    @cherrypy.tools.referer(pattern=r"https?://spam\.", accept=False, accept_missing=True)
    def not_spam(self):
        return "not spam"

    @cherrypy.expose
    @cherrypy.tools.referer(pattern="x", error=418, message="No teapots here")
    def teapot(self):
        return "never"


class Redirects:
    @cherrypy.expose
    def target(self, **params):
        return f"target {cherrypy.request.path_info} {sorted(params.items())!r}"

    @cherrypy.expose
    def crash(self):
        raise ValueError("handled by err_redirect")

    @cherrypy.expose
    def external(self):
        return "never"

    @cherrypy.expose
    def internal(self):
        return "never"


class Negotiated:
    @cherrypy.expose
    @cherrypy.tools.accept(media=["text/html", "application/json"])
    def index(self):
        return "negotiated"

    @cherrypy.expose
    def chosen(self):
        from cherrypy.lib import cptools

        return cptools.accept(["text/plain", "text/html", "application/xml"])

    @cherrypy.expose
    @cherrypy.tools.autovary()
    def varied(self):
        headers = cherrypy.request.headers
        seen = [headers.get("X-Custom"), "Accept-Language" in headers]
        cherrypy.response.headers["Vary"] = "Cookie"
        return repr(seen)

    @cherrypy.expose
    @cherrypy.tools.autovary(ignore=["X-Custom"])
    @cherrypy.tools.gzip()
    def varied_gzip(self):
        return f"custom: {cherrypy.request.headers.get('X-Custom')}"

    @cherrypy.expose
    @cherrypy.tools.ignore_headers(headers=["Range", "X-Drop"])
    def ignoring(self):
        headers = cherrypy.request.headers
        return repr(["Range" in headers, headers.get("X-Drop"), headers.get("X-Keep")])

    @cherrypy.expose
    @cherrypy.tools.flatten()
    def nested(self):
        def inner(n):
            yield f"<{n}>".encode()
            if n:
                yield inner(n - 1)
            yield f"</{n}>".encode()

        return inner(3)


class Proxied:
    @cherrypy.expose
    def index(self):
        request = cherrypy.request
        return f"base={request.base} remote={request.remote.ip} url={cherrypy.url('/x')}"

    @cherrypy.expose
    def away(self):
        raise cherrypy.HTTPRedirect("elsewhere")


class Tagged:
    @cherrypy.expose
    def index(self):
        return "tagged content"

    @cherrypy.expose
    def explicit(self):
        cherrypy.response.headers["ETag"] = '"v1"'
        return "explicit tag"

    @cherrypy.expose
    def missing(self):
        raise cherrypy.NotFound()


class Params:
    @cherrypy.expose
    def add(self, a: int, b: int = 0):
        return repr(a + b)

    @cherrypy.expose
    def scaled(self, x: float, label="x"):
        return f"{label}={x!r}"


class Expiring:
    @cherrypy.expose
    def index(self):
        return "never cached"

    @cherrypy.expose
    def validated(self):
        cherrypy.response.headers["Last-Modified"] = "Sat, 01 Jan 2000 00:00:00 GMT"
        cherrypy.response.headers["Pragma"] = "public"
        return "has a validator"


class Root:
    def __init__(self):
        self.gz = Gzipped()
        self.json = Json()
        self.guarded = Guarded()
        self.redirects = Redirects()
        self.negotiated = Negotiated()
        self.proxied = Proxied()
        self.tagged = Tagged()
        self.params = Params()
        self.expiring = Expiring()

    @cherrypy.expose
    def index(self):
        return "builtin tools"


config = {
    "/gz": {"tools.gzip.on": True},
    "/guarded": {"tools.response_headers.on": True},
    "/guarded/rw": {
        "tools.response_headers.headers": [("X-Frame-Options", "DENY"), ("X-Extra", "1")]
    },
    "/redirects/internal": {"tools.redirect.on": True, "tools.redirect.url": "/redirects/target"},
    "/redirects/external": {
        "tools.redirect.on": True,
        "tools.redirect.url": "/redirects/target",
        "tools.redirect.internal": False,
    },
    "/redirects/crash": {"tools.err_redirect.on": True, "tools.err_redirect.url": "target"},
    "/proxied": {"tools.proxy.on": True},
    "/proxied/away": {"tools.proxy.base": "https://configured.example.org"},
    "/tagged": {"tools.etags.on": True, "tools.etags.autotags": True},
    "/params": {"tools.params.on": True},
    "/expiring": {"tools.expires.on": True},
    "/expiring/validated": {"tools.expires.secs": 0},
}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/", config)
