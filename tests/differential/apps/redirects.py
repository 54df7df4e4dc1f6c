"""Steering the response: redirects, errors, error pages, status, url().

Mounted twice: at "/" (quickstart) and at "/mounted" (tree.mount), so that
url() and relative redirects are seen with and without a script name.
"""

import cherrypy


def error_page_callable(status, message, traceback, version):
    return f"callable page: {status} / {message}"


def error_page_bytes(**kwargs):
    cherrypy.response.headers["Content-Type"] = "text/plain"
    cherrypy.response.headers["X-Error-Page"] = "yes"
    return f"bytes page {kwargs['status']}".encode("ascii")


def error_page_generator(status, message, traceback, version):
    yield "generated "
    yield status


def own_error_response():
    cherrypy.response.status = 500
    cherrypy.response.headers["Content-Type"] = "text/plain"
    path = cherrypy.request.path_info.encode()
    cherrypy.response.body = [b"Sorry, an error occurred: ", path]


def error_page_broken(**kwargs):
    raise ValueError("the error page itself failed")


class Pages:
    """Handlers raising errors, under custom error_page config."""

    @cherrypy.expose
    def missing(self):
        raise cherrypy.NotFound()

    @cherrypy.expose
    def forbidden(self):
        raise cherrypy.HTTPError(403, "Go away & <stay> away")

    @cherrypy.expose
    def crash(self):
        raise RuntimeError("boom")


class Redirects:
    @cherrypy.expose
    def index(self):
        return "redirects index"

    @cherrypy.expose
    def to(self, code=None, url="target"):
        raise cherrypy.HTTPRedirect(url, int(code) if code else None)

    @cherrypy.expose
    def absolute(self):
        raise cherrypy.HTTPRedirect("/abs/path", 307)

    @cherrypy.expose
    def many(self):
        raise cherrypy.HTTPRedirect(["path1", "path2?a=1&b=2"], 301)

    @cherrypy.expose
    def external(self):
        raise cherrypy.HTTPRedirect("http://www.cherrypy.dev/?q=<x>")

    @cherrypy.expose
    def upward(self):
        raise cherrypy.HTTPRedirect("../elsewhere")

    @cherrypy.expose
    def unicode(self):
        raise cherrypy.HTTPRedirect("/caf\u00e9?q=\u00e9")

    @cherrypy.expose
    def from_bytes(self):
        raise cherrypy.HTTPRedirect([b"caf\xe9", b"/x"], 300, encoding="latin-1")

    @cherrypy.expose
    def not_modified(self):
        cherrypy.response.headers["Last-Modified"] = "Sat, 01 Jan 2000 00:00:00 GMT"
        raise cherrypy.HTTPRedirect("", 304)

    @cherrypy.expose
    def use_proxy(self):
        raise cherrypy.HTTPRedirect("http://proxy.example/", 305)

    @cherrypy.expose
    def bad_status(self):
        raise cherrypy.HTTPRedirect("target", 200)

    @cherrypy.expose
    def unknown_status(self):
        raise cherrypy.HTTPRedirect("target", 399)

    @cherrypy.expose
    def target(self, **kwargs):
        return f"target {sorted(kwargs.items())!r}"

    @cherrypy.expose
    def set_response(self):
        # Use the exception without raising it.
        cherrypy.HTTPRedirect("target", 302).set_response()
        return cherrypy.response.body


class Errors:
    @cherrypy.expose
    def status(self, code="500", message=None):
        raise cherrypy.HTTPError(int(code) if code.isdigit() else code, message)

    @cherrypy.expose
    def forbidden(self):
        raise cherrypy.HTTPError("403 Forbidden", "You are not allowed to access this resource.")

    @cherrypy.expose
    def custom_reason(self):
        raise cherrypy.HTTPError("499 Too Curious", "Stop asking.")

    @cherrypy.expose
    def out_of_range(self):
        raise cherrypy.HTTPError(600)

    @cherrypy.expose
    def not_found(self):
        raise cherrypy.NotFound()

    @cherrypy.expose
    def not_found_path(self):
        raise cherrypy.NotFound("/some/where")

    @cherrypy.expose
    def crash(self):
        raise ValueError("kaboom <b>bold</b>")

    @cherrypy.expose
    def handle(self, value="x"):
        with cherrypy.HTTPError.handle(ValueError, 400, "bad value"):
            return str(int(value))

    @cherrypy.expose
    def headers_dropped(self):
        cherrypy.response.headers["ETag"] = '"abc"'
        cherrypy.response.headers["X-Kept"] = "kept"
        raise cherrypy.HTTPError(410)

    @cherrypy.expose
    def error_set_response(self):
        cherrypy.HTTPError(402, "pay up").set_response()
        return cherrypy.response.body


class Status:
    """Manual ``response.status``."""

    @cherrypy.expose
    def created(self):
        cherrypy.response.status = 201
        cherrypy.response.headers["Location"] = cherrypy.url("/status/created")
        return "made it"

    @cherrypy.expose
    def custom(self):
        cherrypy.response.status = "299 Fine Thanks"
        return "custom"

    @cherrypy.expose
    def string_code(self):
        cherrypy.response.status = "202"
        return "accepted"

    @cherrypy.expose
    def no_content(self):
        cherrypy.response.status = 204
        return "dropped"

    @cherrypy.expose
    def not_modified(self):
        cherrypy.response.status = 304
        return "dropped too"

    @cherrypy.expose
    def teapot(self):
        cherrypy.response.status = 418
        return "short and stout"

    @cherrypy.expose
    def invalid(self):
        cherrypy.response.status = "abc"
        return "never"

    @cherrypy.expose
    def too_big(self):
        cherrypy.response.status = 1000
        return "never"


class Internal:
    @cherrypy.expose
    def index(self):
        raise cherrypy.InternalRedirect("/internal/target?from=index")

    @cherrypy.expose
    def relative(self):
        raise cherrypy.InternalRedirect("target")

    @cherrypy.expose
    def with_qs(self):
        raise cherrypy.InternalRedirect("/internal/target", "a=1&a=2")

    @cherrypy.expose
    def from_post(self, **kwargs):
        raise cherrypy.InternalRedirect("/internal/target?b=2")

    @cherrypy.expose
    def target(self, **kwargs):
        request = cherrypy.request
        prev = request.prev
        came_from = f"{prev.path_info}?{prev.query_string}" if prev else None
        return f"{request.method} {request.path_info} {sorted(kwargs.items())!r} from {came_from}"

    @cherrypy.expose
    def loop(self):
        raise cherrypy.InternalRedirect("/internal/loop")

    @cherrypy.expose
    def to_missing(self):
        raise cherrypy.InternalRedirect("/internal/nothing_here")


class Urls:
    """``url()`` in its variants, asked for from an index and from a page."""

    def _urls(self):
        lines = []
        for path in ("", "x", "/x", "../x", "./x", "x/../y", "/a/./b/../c"):
            for relative in (None, False, True, "server"):
                lines.append(f"{path!r} {relative!r}: {cherrypy.url(path, relative=relative)}")
        lines.append(cherrypy.url("page", qs="a=1&b=2"))
        lines.append(cherrypy.url("page", qs={"a": "1", "b": "x y"}))
        lines.append(cherrypy.url("page", qs=cherrypy.request.query_string))
        lines.append(cherrypy.url("/p", script_name="/other"))
        lines.append(cherrypy.url("/p", base="https://base.example"))
        return "\n".join(lines)

    @cherrypy.expose
    def index(self):
        return self._urls()

    @cherrypy.expose
    def page(self, *args, **kwargs):
        return self._urls()

    @cherrypy.expose
    def default(self, *args):
        return self._urls()


class Root:
    def __init__(self):
        self.redirects = Redirects()
        self.errors = Errors()
        self.status = Status()
        self.internal = Internal()
        self.urls = Urls()
        self.template_pages = Pages()
        self.callable_pages = Pages()
        self.bytes_pages = Pages()
        self.generator_pages = Pages()
        self.broken_pages = Pages()
        self.missing_template = Pages()
        self.own_error_response = Pages()
        self.latin = Urls()

    @cherrypy.expose
    def index(self):
        return "root"


config = {
    "/template_pages": {
        "error_page.404": "error_template.html",
        "error_page.default": "error_template.html",
    },
    "/callable_pages": {"error_page.default": error_page_callable},
    "/bytes_pages": {"error_page.default": error_page_bytes},
    "/generator_pages": {"error_page.default": error_page_generator},
    "/broken_pages": {"error_page.default": error_page_broken},
    "/missing_template": {"error_page.403": "no_such_template.html"},
    "/own_error_response": {"request.error_response": own_error_response},
    "/latin": {"request.query_string_encoding": "latin-1"},
}

if __name__ == "__main__":
    cherrypy.tree.mount(Root(), "/mounted", config)
    cherrypy.quickstart(Root(), "", config)
