"""The dispatchers besides the object tree: VirtualHost, XML-RPC, MethodDispatcher.

* ``/``: sites chosen by the Host header, the VirtualHost set up in
  ``vhosts.conf`` (host names need ``**{...}`` in a config file).
* ``/multi``: a VirtualHost without X-Forwarded-Host, in front of a
  MethodDispatcher, from a config dict.
* ``/rpc``: XML-RPC services behind the XMLRPCDispatcher.
* ``/rest``: REST resources for the MethodDispatcher, with popargs and
  per-method config.
"""

import xmlrpc.client

import cherrypy
from cherrypy import _cptools


def describe(site, *args, **kwargs):
    request = cherrypy.request
    return "\n".join(
        [
            f"site={site} args={args!r} kwargs={sorted(kwargs.items())!r}",
            f"path_info={request.path_info!r} is_index={request.is_index!r}",
            f"url={cherrypy.url()!r} base={request.base!r}",
            f"section={request.config.get('tools.staticdir.section')!r}",
            f"my.section={request.config.get('my.section')!r}",
        ]
    )


class Files:
    @cherrypy.expose
    def default(self, *args):
        return describe("files", *args)


class Site:
    def __init__(self, name):
        self.name = name
        self.files = Files()
        self.sub = Files()

    @cherrypy.expose
    def index(self):
        return describe(self.name)

    @cherrypy.expose
    def page(self, *args, **kwargs):
        return describe(self.name, *args, **kwargs)


class Root(Site):
    def __init__(self):
        super().__init__("root")
        self.blog = Site("blog")
        self.shop = Site("shop")
        self.www = Site("www")


# -- /multi: VirtualHost in front of a MethodDispatcher ----------------------


class Version:
    exposed = True

    def __init__(self, name):
        self.name = name

    def GET(self, *args):
        return f"{self.name} GET {args!r} {cherrypy.request.path_info}"

    def POST(self):
        return f"{self.name} POST"


class Multi(Version):
    def __init__(self):
        super().__init__("v1")
        self.v2 = Version("v2")


# -- /rpc: XML-RPC -------------------------------------------------------------


class Arithmetic:
    @cherrypy.expose
    def add(self, a, b):
        return a + b

    def hidden(self):
        return "not exposed"


class Service(_cptools.XMLRPCController):
    math = Arithmetic()

    @cherrypy.expose
    def echo(self, *args, **kwargs):
        return [list(args), kwargs]

    @cherrypy.expose
    def nothing(self):
        return None

    @cherrypy.expose
    def fail(self):
        raise ValueError("broken on purpose")

    @cherrypy.expose
    def returned_fault(self):
        return xmlrpc.client.Fault(42, "a fault returned by the method")

    @cherrypy.expose
    def raised_fault(self):
        raise xmlrpc.client.Fault(7, "a fault raised by the method")

    @cherrypy.expose
    def not_found(self):
        raise cherrypy.NotFound()

    @cherrypy.expose
    def redirect(self):
        raise cherrypy.HTTPRedirect("/elsewhere")

    @cherrypy.expose
    def structures(self):
        return {
            "int": 1,
            "float": 2.5,
            "bool": True,
            "list": [1, "two", [3]],
            "binary": xmlrpc.client.Binary(b"\x00\x01<&>"),
            "escaped": "<&>",
        }

    @cherrypy.expose
    def text(self):
        return "caf\u00e9 \u2603"

    def private(self):
        return "not exposed"


class RPCRoot(Service):
    def __init__(self):
        self.nullable = Service()
        self.latin = Service()


# -- /rest: the MethodDispatcher ------------------------------------------------


@cherrypy.popargs("item_id")
class Items:
    exposed = True

    def GET(self, item_id=None, **filters):
        return f"GET item={item_id} filters={sorted(filters.items())!r}"

    GET._cp_config = {"response.headers.X-Handler": "GET"}

    def POST(self, name="anonymous", **extra):
        cherrypy.response.status = 201
        return f"POST name={name} extra={sorted(extra.items())!r}"

    @cherrypy.config(**{"response.headers.X-Handler": "PUT"})
    def PUT(self, item_id, name=None):
        return f"PUT item={item_id} name={name}"

    def DELETE(self, item_id):
        cherrypy.response.status = 204

    @cherrypy.tools.encode(encoding="iso-8859-1")
    def PATCH(self, item_id=None):
        return f"PATCH caf\u00e9 {item_id}"


class Explicit:
    """Defines HEAD itself, and no GET."""

    exposed = True

    def HEAD(self):
        cherrypy.response.headers["X-Head"] = "own"
        return ""

    def OPTIONS(self):
        return "options"


class Failing:
    exposed = True

    def GET(self):
        raise ValueError("fails on purpose")

    def POST(self, count):
        return f"{int(count) + 1}"


class Rest:
    exposed = True

    def __init__(self):
        self.items = Items()
        self.explicit = Explicit()
        self.failing = Failing()

    def GET(self):
        return "rest root"


if __name__ == "__main__":
    cherrypy.tree.mount(
        Multi(),
        "/multi",
        {
            "/": {
                "request.dispatch": cherrypy.dispatch.VirtualHost(
                    cherrypy.dispatch.MethodDispatcher(),
                    use_x_forwarded_host=False,
                    **{"api.example.com": "/v2", "www.example.com:80": "/v2"},
                )
            }
        },
    )
    cherrypy.tree.mount(
        RPCRoot(),
        "/rpc",
        {
            "/": {"request.dispatch": cherrypy.dispatch.XMLRPCDispatcher()},
            "/nullable": {"tools.xmlrpc.allow_none": True},
            "/latin": {"tools.xmlrpc.encoding": "iso-8859-1"},
        },
    )
    cherrypy.tree.mount(
        Rest(), "/rest", {"/": {"request.dispatch": cherrypy.dispatch.MethodDispatcher()}}
    )
    cherrypy.quickstart(Root(), "/", "vhosts.conf")
