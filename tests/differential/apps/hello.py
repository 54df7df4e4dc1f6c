"""The one-minute application of the tutorial."""

import cherrypy


class Root:
    @cherrypy.expose
    def index(self):
        return "Hello World!"


if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/")
