"""URL mapping: the object tree, exposed methods, index/default, popargs, _cp_dispatch.

The examples of the "URL mapping, handlers" notes and of the API overview.
"""

import random
import string

import cherrypy

# The StringMaker example draws random characters: a fixed seed makes both
# servers draw the same ones for the same sequence of requests.
rng = random.Random(7)


class StringMaker:
    @cherrypy.expose
    def index(self):
        return "Hello! How are you?"

    @cherrypy.expose
    def generate(self, length=9):
        return "".join(rng.sample(string.hexdigits, int(length)))


class HelloRegression:
    @cherrypy.expose
    def index(self):
        return "regression index"

    @cherrypy.expose
    def run(self, case="all"):
        return f"running {case}"


class Test:
    """Both ways of exposing a handler."""

    @cherrypy.expose
    def foo(self):
        return "Foo"

    def bar(self):
        return "Bar"

    bar.exposed = True

    def hidden(self):
        return "never served"


class Catalog:
    @cherrypy.expose
    def index(self):
        return "catalog index"

    @cherrypy.expose
    def item(self, id):
        return f"item {id}"

    @cherrypy.expose
    def default(self, *args, **kwargs):
        return f"default {args!r} {sorted(kwargs.items())!r}"


@cherrypy.popargs("year", "month")
class Archive:
    @cherrypy.expose
    def index(self, year=None, month=None):
        return f"archive {year}/{month}"

    @cherrypy.expose
    def entries(self, year, month=None, tag=None):
        return f"entries {year}/{month} tag={tag}"


class Album:
    @cherrypy.expose
    def index(self, artist, title):
        return f"About {title} by {artist}..."


class Band:
    """The _cp_dispatch example of the CherryPy documentation."""

    def __init__(self):
        self.albums = Album()

    def _cp_dispatch(self, vpath):
        if len(vpath) == 1:
            cherrypy.request.params["name"] = vpath.pop()
            return self
        if len(vpath) == 3:
            cherrypy.request.params["artist"] = vpath.pop(0)
            vpath.pop(0)  # "albums"
            cherrypy.request.params["title"] = vpath.pop(0)
            return self.albums
        return vpath

    @cherrypy.expose
    def index(self, name):
        return f"About {name}..."


class Track:
    @cherrypy.expose
    def index(self, artist, number=None):
        return f"track {number} of {artist}"


class Artists:
    """popargs with a handler object: dispatch continues there."""

    _cp_dispatch = cherrypy.popargs("artist", handler=Track())

    @cherrypy.expose
    def index(self):
        return "all artists"


class Introspect:
    """What the request object says about the request."""

    def _describe(self, *args, **kwargs):
        request = cherrypy.request
        accept = [(str(e), e.value, e.qvalue) for e in request.headers.elements("Accept")]
        return "\n".join(
            [
                f"args={args!r} kwargs={sorted(kwargs.items())!r}",
                f"method={request.method} protocol={request.protocol!r} scheme={request.scheme}",
                f"request_line={request.request_line!r}",
                f"script_name={request.script_name!r} path_info={request.path_info!r}",
                f"query_string={request.query_string!r} params={sorted(request.params.items())!r}",
                f"is_index={request.is_index!r} base={request.base!r} url={cherrypy.url()!r}",
                f"accept={accept!r}",
                f"header_list={sorted(k.lower() for k, v in request.header_list)!r}",
            ]
        )

    @cherrypy.expose
    def index(self, *args, **kwargs):
        return self._describe(*args, **kwargs)

    @cherrypy.expose
    def page(self, *args, **kwargs):
        return self._describe(*args, **kwargs)

    @cherrypy.expose
    def default(self, *args, **kwargs):
        return self._describe(*args, **kwargs)


class Root:
    def __init__(self):
        self.introspect = Introspect()
        self.tests = HelloRegression()
        self.test = Test()
        self.strings = StringMaker()
        self.catalog = Catalog()
        self.archive = Archive()
        self.bands = Band()
        self.artists = Artists()

    @cherrypy.expose
    def index(self):
        return "Hi"

    @cherrypy.expose
    def users(self, *args, **kwargs):
        return f"{args!r}, {kwargs!r}"

    @cherrypy.expose
    def blog(self, year, *args):
        return f"{year}, {args!r}"

    @cherrypy.expose
    def form(self, name="", colour="", **extra):
        return f"name={name!r} colour={colour!r} extra={sorted(extra.items())!r}"

    @cherrypy.expose
    def many(self, tag=None):
        return f"tag={tag!r}"

    @cherrypy.expose(alias="synonym")
    def original(self):
        return "original or synonym"

    @cherrypy.expose(["first_alias", "second.alias"])
    def aliased(self):
        return "aliased"

    @cherrypy.expose
    def broken(self, value):
        # A TypeError raised inside the handler is a bug (500), not a mismatch.
        return len(int(value))

    @cherrypy.expose
    def kwonly(self, *, flag):
        return f"flag={flag}"


if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/")
