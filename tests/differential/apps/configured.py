"""Configuration: global config files, app config files, dicts, _cp_config.

The configuration examples of the tutorial: ``cherrypy.config.update`` with
a file, ``quickstart`` with an app config file that has a ``[global]``
section and a custom section read through ``request.app.config``, per-handler
settings with ``_cp_config`` and ``cherrypy.config()``, and the
MethodDispatcher set up from a config file and from a config dict.
"""

import cherrypy


def show(*keys):
    config = cherrypy.request.config
    return "\n".join(f"{key} = {config.get(key)!r}" for key in keys)


SETTINGS = (
    "my.setting",
    "my.root_only",
    "my.global",
    "my.global_from_app_file",
    "my.types",
    "my.text",
    "my.handler",
)


class Sub:
    _cp_config = {"my.setting": "sub _cp_config", "my.handler": "sub"}

    @cherrypy.expose
    def index(self):
        return show(*SETTINGS)

    @cherrypy.expose
    def page(self):
        return show(*SETTINGS)

    page._cp_config = {"my.setting": "page _cp_config", "my.handler": "page"}


class Sub2:
    _cp_config = {"my.setting": "sub2 _cp_config"}

    @cherrypy.expose
    def index(self):
        return show(*SETTINGS)

    @cherrypy.expose
    @cherrypy.config(**{"my.handler": "decorated", "response.headers.X-Decorated": "yes"})
    def decorated(self):
        return show(*SETTINGS)


class Resource:
    """A REST resource for the MethodDispatcher."""

    exposed = True

    def GET(self, id=None):
        return f"GET {id}"

    def POST(self, name="anonymous"):
        cherrypy.response.status = 201
        return f"POST {name}"

    def PUT(self, id, name=None):
        return f"PUT {id} {name}"

    def DELETE(self, id):
        cherrypy.response.status = 204

    @cherrypy.tools.encode(encoding="iso-8859-1")
    def PATCH(self, **fields):
        return f"PATCH {sorted(fields.items())} caf\u00e9"

    def helper(self):
        return "not a method handler"


class ReadOnly:
    exposed = True

    def GET(self):
        return "read only"


class Root:
    _cp_config = {"my.setting": "root _cp_config", "my.root_only": "root"}

    def __init__(self):
        self.sub = Sub()
        self.sub2 = Sub2()
        self.rest = Resource()
        self.rest.readonly = ReadOnly()
        self.quiet = Sub2()

    @cherrypy.expose
    def index(self):
        return show(*SETTINGS)

    @cherrypy.expose
    def google(self):
        google_appid = cherrypy.request.app.config["googleapi"]["appid"]
        return f"appid={google_appid} key={cherrypy.request.app.config['googleapi']['key']}"

    @cherrypy.expose
    def server_settings(self):
        global_setting = cherrypy.config.get("my.global")
        return f"thread_pool={cherrypy.server.thread_pool} global={global_setting}"


class Api:
    """The MethodDispatcher from a config dict."""

    def __init__(self):
        self.items = Resource()


if __name__ == "__main__":
    cherrypy.config.update("server.conf")
    cherrypy.tree.mount(
        Api(), "/api", {"/": {"request.dispatch": cherrypy.dispatch.MethodDispatcher()}}
    )
    cherrypy.quickstart(Root(), "/", "app.conf")
