"""The production environment: no tracebacks, no parameter hints.

``/loud`` switches both back on for its part of the site.
"""

import cherrypy


def failing_hook():
    raise RuntimeError("the error handling failed")


class Pages:
    @cherrypy.expose
    def index(self):
        return "quiet please"

    @cherrypy.expose
    def crash(self):
        raise ValueError("secret details")

    @cherrypy.expose
    def params(self, a, b=None):
        return f"{a} {b}"

    @cherrypy.expose
    def forbidden(self):
        raise cherrypy.HTTPError(403, "This message is always shown.")

    @cherrypy.expose
    def loop(self):
        raise cherrypy.InternalRedirect(cherrypy.request.path_info)

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream(self):
        raise ValueError("failed before the first chunk")
        yield "never"

    @cherrypy.expose
    @cherrypy.config(**{"hooks.before_error_response": failing_hook})
    def double_fault(self):
        raise ValueError("first failure")


class Root(Pages):
    def __init__(self):
        self.loud = Pages()


config = {
    "global": {"environment": "production"},
    "/loud": {"request.show_tracebacks": True, "request.show_mismatched_params": True},
}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "", config)
