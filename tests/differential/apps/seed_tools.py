"""The tutorial's examples for the built-in tools: static content, downloads,
JSON and basic authentication.

Imports of tool modules happen inside the handlers, so that the process
starts on a framework that lacks one of them (its tests are skipped).
"""

import mimetypes
import os

import cherrypy

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
mimetypes.types_map[".csv"] = "text/csv"

USERS = {"jon": "secret"}


def validate_password(realm, username, password):
    return username in USERS and USERS[username] == password


class Area:
    @cherrypy.expose
    def index(self):
        return f"protected area of {cherrypy.request.login}"


class Protected:
    def __init__(self):
        self.area = Area()


class Json:
    @cherrypy.expose
    @cherrypy.tools.json_out()
    def out(self):
        return {"key": "value", "list": [1, 2.5, None, True], "text": "caf\u00e9"}

    @cherrypy.expose
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def echo(self):
        return {"received": cherrypy.request.json}


class Root:
    def __init__(self):
        self.protected = Protected()
        self.json = Json()

    @cherrypy.expose
    def index(self):
        return "Hello World!"

    @cherrypy.expose
    def download(self, name):
        from cherrypy.lib.static import serve_file

        return serve_file(
            os.path.join(STATIC, os.path.basename(name)), "application/x-download", "attachment"
        )


config = {
    "/static": {
        "tools.staticdir.on": True,
        "tools.staticdir.root": os.path.dirname(STATIC),
        "tools.staticdir.dir": "static",
    },
    "/style.css": {
        "tools.staticfile.on": True,
        "tools.staticfile.filename": os.path.join(STATIC, "style.css"),
    },
    "/protected/area": {
        "tools.auth_basic.on": True,
        "tools.auth_basic.realm": "localhost",
        "tools.auth_basic.checkpassword": validate_password,
    },
}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/", config)
