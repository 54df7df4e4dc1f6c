"""Tools, toolboxes and hooks: the order things run in, recorded in the body.

Every hook appends a label to ``request.trace``; the ``shown`` tool (last at
``before_finalize``) turns the trace into the response body, and
``after_error_response`` hooks put it in an ``X-Trace`` header of error pages.
"""

import cherrypy


def trace(label="?"):
    request = cherrypy.request
    if not hasattr(request, "trace"):
        request.trace = []
    request.trace.append(label)


def show_trace():
    trace("shown")
    text = " > ".join(cherrypy.request.trace)
    if int(str(cherrypy.response.status or 200)[:3]) >= 400:
        # Leave error pages alone: CherryPy has already fixed their length.
        cherrypy.response.headers["X-Trace"] = text
    else:
        cherrypy.response.body = text.encode()


def trace_header():
    trace("after_error_response")
    cherrypy.response.headers["X-Trace"] = " > ".join(cherrypy.request.trace)


def failing_hook():
    raise RuntimeError("a hook failed while handling an error")


def hook_at_30():
    trace("hook 30")


hook_at_30.priority = 30


def hook_default():
    trace("hook default")


cherrypy.tools.early = cherrypy.Tool("on_start_resource", trace, priority=20)
cherrypy.tools.body_seen = cherrypy.Tool("before_request_body", trace)
cherrypy.tools.first = cherrypy.Tool("before_handler", trace, priority=10)
cherrypy.tools.late = cherrypy.Tool("before_handler", trace, priority=80)
cherrypy.tools.shown = cherrypy.Tool("before_finalize", show_trace, priority=99)
cherrypy.tools.on_error = cherrypy.Tool("before_error_response", trace, priority=40)
cherrypy.tools.error_header = cherrypy.Tool("after_error_response", trace_header)


class HeaderTool(cherrypy.Tool):
    """A Tool subclass that brings its own callable."""

    def __init__(self):
        super().__init__("before_finalize", self.add_header, priority=60)

    def add_header(self, value="default"):
        cherrypy.response.headers["X-Header-Tool"] = value


cherrypy.tools.header = HeaderTool()


def refuse(point="?", status=None):
    trace(point)
    if status:
        raise cherrypy.HTTPError(status, f"refused at {point}")
    raise cherrypy.HTTPRedirect("/configured/")


def inject(name="injected", value="by a tool"):
    cherrypy.request.params[name] = value


cherrypy.tools.inject = cherrypy.Tool("before_handler", inject, priority=40)
cherrypy.tools.refuse_start = cherrypy.Tool("on_start_resource", refuse)
cherrypy.tools.refuse_handler = cherrypy.Tool("before_handler", refuse)
cherrypy.tools.refuse_finalize = cherrypy.Tool("before_finalize", refuse)

# A toolbox of our own, registered with the application below.
mytools = cherrypy._cptools.Toolbox("mytools")
mytools.note = cherrypy.Tool("before_handler", trace, priority=50)


def answer(text="answered by a tool"):
    cherrypy.response.body = text.encode()
    return True


mytools.answer = cherrypy._cptools.HandlerTool(answer)


def shout(next_handler, *args, **kwargs):
    return next_handler(*args, **kwargs).upper()


mytools.shout = cherrypy._cptools.HandlerWrapperTool(shout)


@mytools.register("before_handler", priority=5)
def registered(label="registered"):
    trace(label)


class Decorated:
    @cherrypy.expose
    @cherrypy.tools.first(label="first (decorator)")
    @cherrypy.tools.late(label="late (decorator)")
    @cherrypy.tools.shown()
    def index(self):
        trace("handler")
        return "unused"

    @cherrypy.expose
    @cherrypy.tools.header(value="decorated")
    def header(self):
        return "with header"

    @cherrypy.expose
    @mytools.note(label="note (decorator)")
    @cherrypy.tools.shown()
    def noted(self):
        trace("handler")
        return "unused"

    @cherrypy.expose
    @mytools.shout()
    def loud(self, word="hello"):
        return f"{word} world"

    @cherrypy.expose
    @mytools.answer(text="the tool answered")
    def answered(self):
        return "the handler answered"


class Configured:
    @cherrypy.expose
    def index(self, **params):
        trace("handler")
        return "unused"

    @cherrypy.expose
    def error(self):
        trace("handler")
        raise cherrypy.HTTPError(409, "conflict")

    @cherrypy.expose
    def crash(self):
        trace("handler")
        raise ValueError("handler crashed")

    @cherrypy.expose
    def redirect(self):
        trace("handler")
        raise cherrypy.HTTPRedirect("/configured/")

    @cherrypy.expose
    def attach(self):
        # Hooks may also be attached while the request runs.
        cherrypy.request.hooks.attach("before_finalize", trace, priority=98, label="attached")
        trace("handler")
        return "unused"


def append_headers(header_list=()):
    # After finalize: straight into the list that goes to the server.
    cherrypy.response.header_list.extend(header_list)


cherrypy.tools.append_headers = cherrypy.Tool("on_end_resource", append_headers)


class Finalized:
    """Headers appended to ``response.header_list``, as bytes (CherryPy's type) or wrong."""

    @cherrypy.expose
    @cherrypy.tools.append_headers(
        header_list=[(b"WWW-Authenticate", b"Negotiate"), (b"WWW-Authenticate", b"Basic x=\xe9")]
    )
    def as_bytes(self):
        return "two more headers"

    @cherrypy.expose
    @cherrypy.tools.append_headers(header_list=[(2, b"3")])
    def bad_name(self):
        return "never sent"

    @cherrypy.expose
    @cherrypy.tools.append_headers(header_list=[(b"X-Number", 3)])
    def bad_value(self):
        return "never sent"


class Root:
    def __init__(self):
        self.finalized = Finalized()
        self.decorated = Decorated()
        self.configured = Configured()
        self.reprioritized = Configured()
        self.failing = Configured()
        self.slashes = Slashes()
        self.nobody = Configured()
        self.refused = Configured()
        self.injected = Configured()
        self.lenient = Slashes()
        self.temporary = Slashes()

    @cherrypy.expose
    def index(self):
        return "tools"

    as_handler = mytools.answer.handler(text="a HandlerTool as page handler")


class Slashes:
    @cherrypy.expose
    def index(self):
        return "slashes index"

    @cherrypy.expose
    def page(self):
        return "slashes page"


HOOKS = {
    "tools.early.on": True,
    "tools.early.label": "early",
    "tools.body_seen.on": True,
    "tools.body_seen.label": "before_request_body",
    "tools.first.on": True,
    "tools.first.label": "first",
    "tools.late.on": True,
    "tools.late.label": "late",
    "tools.shown.on": True,
    "tools.on_error.on": True,
    "tools.on_error.label": "before_error_response",
    "tools.error_header.on": True,
    "mytools.note.on": True,
    "mytools.note.label": "note",
    "mytools.registered.on": True,
    "hooks.before_handler": hook_at_30,
    "hooks.before_handler.default": hook_default,
}

config = {
    "/configured": HOOKS,
    "/reprioritized": {
        **HOOKS,
        "tools.first.priority": 95,
        "tools.late.priority": 1,
        "mytools.registered.label": "registered (configured)",
    },
    "/failing": {**HOOKS, "hooks.before_error_response": failing_hook},
    "/nobody": {**HOOKS, "request.process_request_body": False},
    "/refused/error": {**HOOKS, "tools.refuse_start.on": True, "tools.refuse_start.status": 401},
    "/refused/crash": {
        **HOOKS,
        "tools.refuse_handler.on": True,
        "tools.refuse_handler.status": 402,
    },
    "/refused/redirect": {**HOOKS, "tools.refuse_handler.on": True},
    "/refused/attach": {
        **HOOKS,
        "tools.refuse_finalize.on": True,
        "tools.refuse_finalize.status": 503,
    },
    "/decorated/header": {"tools.header.value": "config beats decorator"},
    "/decorated/answered": {"mytools.answer.text": "configured answer"},
    "/injected": {**HOOKS, "tools.inject.on": True},
    "/slashes": {"tools.trailing_slash.extra": True},
    "/lenient": {"tools.trailing_slash.missing": False},
    "/temporary": {"tools.trailing_slash.status": 307, "tools.trailing_slash.extra": True},
    "/slashes/page": {"response.headers.X-Page": "page header"},
    "/": {"response.headers.X-Everywhere": "yes"},
}

if __name__ == "__main__":
    app = cherrypy.tree.mount(Root(), "", config)
    app.toolboxes["mytools"] = mytools
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    cherrypy.engine.block()
