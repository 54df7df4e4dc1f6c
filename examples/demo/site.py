"""A small demo site: pages, a form, a JSON endpoint, static files and errors.

Run it with ``./dev demo`` (or ``python examples/demo/site.py``) and open
http://127.0.0.1:8080/.
"""

import html
import json
import os

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
    """A form that posts back to itself; entries live in memory."""

    def __init__(self):
        self.entries = []

    @morello.expose
    def index(self):
        items = "".join(f"<li>{html.escape(e)}</li>" for e in self.entries)
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
        self.entries.append(message[:200])
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
        return page("morello demo", "<p>A CherryPy-style app served by morello.</p>")

    @morello.expose
    def about(self):
        return page("About", "<p>Pages, a form, a JSON API and static files.</p>")

    @morello.expose
    def hello(self, name="world"):
        return page("Hello", f"<p>Hello, {html.escape(name)}!</p>")

    @morello.expose
    def static(self, *parts):
        # Static files come with the toolbox (staticdir); until then a tiny,
        # path-safe handler keeps the demo self-contained.
        name = "/".join(parts)
        path = os.path.realpath(os.path.join(HERE, "static", name))
        if not path.startswith(os.path.join(HERE, "static") + os.sep) or not os.path.isfile(path):
            raise morello.NotFound()
        types = {".css": "text/css", ".txt": "text/plain"}
        morello.response.headers["Content-Type"] = types.get(
            os.path.splitext(path)[1], "application/octet-stream"
        )
        with open(path, "rb") as f:
            return f.read()


def config(port=8080):
    return {
        "global": {
            "server.socket_host": "127.0.0.1",
            "server.socket_port": port,
            "environment": "production",
            "log.screen": True,
        },
    }


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    morello.quickstart(Site(), "", config(port))
