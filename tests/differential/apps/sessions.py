"""A session counter with a login page, on RAM sessions."""

import cherrypy


class Root:
    @cherrypy.expose
    def count(self):
        cherrypy.session["n"] = cherrypy.session.get("n", 0) + 1
        return str(cherrypy.session["n"])

    @cherrypy.expose
    def regen(self):
        # Read first: CherryPy's regenerate() before any use drops the data
        # (morello loads it first and keeps it).
        cherrypy.session.get("n")
        cherrypy.session.regenerate()
        return str(cherrypy.session.get("n"))

    @cherrypy.expose
    def regen_first(self):
        cherrypy.session.regenerate()
        return str(cherrypy.session.get("n"))

    @cherrypy.expose
    def logout(self):
        # As CherryPy's docs spell it: no import of cherrypy.lib.sessions.
        cherrypy.lib.sessions.expire()
        return "bye"


config = {
    "/": {
        "tools.sessions.on": True,
        "tools.sessions.httponly": True,
        "tools.sessions.domain": "example.com",
        "tools.sessions.secure": True,
    },
}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/", config)
