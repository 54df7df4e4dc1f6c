"""A small demo site: pages, a form, a JSON endpoint, static files and sessions.

Run it with ``./dev demo`` (or ``python examples/demo/site.py``) and open
http://127.0.0.1:8080/: two prefork worker processes share file sessions,
so your guestbook entries and visit count follow you whichever worker
answers (each page shows its pid). ``PORT=8081`` (or ``./dev demo --port
8081``) serves on another port; ``WORKERS=1`` runs a single process.
With the ``morello`` command instead, from the repository root::

    morello serve examples.demo.site:application --workers 2
"""

import html
import json
import os
import tempfile

import morello

HERE = os.path.dirname(os.path.abspath(__file__))

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/static/site.css"></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a>
<a href="/guestbook/">Guestbook</a> <a href="/api/time">JSON</a></nav>
<h1>{title}</h1>{body}</body></html>"""


def page(title, body):
    return PAGE.format(title=html.escape(title), body=body)


class Guestbook:
    """A form that posts back to itself; entries live in the visitor's session."""

    @morello.expose
    def index(self):
        entries = morello.session.get("entries", [])
        items = "".join(f"<li>{html.escape(e)}</li>" for e in entries)
        form = (
            '<form method="post" action="sign">'
            '<input name="message" maxlength="200" required> <button>Sign</button></form>'
        )
        return page("Guestbook", f"<ul>{items}</ul>{form}")

    @morello.expose
    def sign(self, message=""):
        if morello.request.method != "POST":
            raise morello.HTTPError(405)
        message = message.strip()
        if not message:
            raise morello.HTTPError(400, "Please write a message.")
        morello.session["entries"] = morello.session.get("entries", []) + [message[:200]]
        raise morello.HTTPRedirect("./")


class Api:
    @morello.expose
    def time(self):
        import time

        morello.response.headers["Content-Type"] = "application/json"
        return json.dumps({"time": time.time()}).encode()

    @morello.expose
    def echo(self, **params):
        morello.response.headers["Content-Type"] = "application/json"
        return json.dumps({"method": morello.request.method, "params": params}).encode()


class Site:
    def __init__(self):
        self.guestbook = Guestbook()
        self.api = Api()

    @morello.expose
    def index(self):
        visits = morello.session["visits"] = morello.session.get("visits", 0) + 1
        return page(
            "morello demo",
            "<p>A CherryPy-style app served by morello.</p>"
            f"<p>Visit {visits} in this session, answered by process {os.getpid()}.</p>",
        )

    @morello.expose
    def about(self):
        return page("About", "<p>Pages, a form, a JSON API, sessions and static files.</p>")

    @morello.expose
    def hello(self, name="world"):
        return page("Hello", f"<p>Hello, {html.escape(name)}!</p>")


def config(port=8080, workers=2):
    return {
        "global": {
            "server.socket_host": "127.0.0.1",
            "server.socket_port": port,
            "environment": "production",
            "log.screen": True,
            "master.workers": workers,
            # Under the prefork master, access lines go where this says.
            "master.access_logfile": "-",
        },
        "/": {
            "tools.sessions.on": True,
            "tools.sessions.storage_type": "file",
            "tools.sessions.storage_path": os.path.join(
                tempfile.gettempdir(), "morello-demo-sessions"
            ),
        },
        "/static": {
            "tools.sessions.on": False,
            "tools.staticdir.on": True,
            "tools.staticdir.dir": os.path.join(HERE, "static"),
        },
    }


def application():
    """The site mounted on ``morello.tree``: for ``morello serve site:application``."""
    settings = config()
    os.makedirs(settings["/"]["tools.sessions.storage_path"], exist_ok=True)
    morello.tree.mount(Site(), "", settings)
    return morello.tree


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    settings = config(port, int(os.environ.get("WORKERS", "2")))
    os.makedirs(settings["/"]["tools.sessions.storage_path"], exist_ok=True)
    morello.quickstart(Site(), "", settings)
