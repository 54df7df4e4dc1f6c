"""Hosting several applications, cookies, logging and grafted WSGI apps.

The "Multiple applications", "Cookies" and "Logging" examples of the
tutorial, in one process, and sites chosen by host name (``_cpwsgi.VirtualHost``).
"""

import cherrypy


class Blog:
    @cherrypy.expose
    def index(self):
        return f"blog at {cherrypy.request.script_name!r} {cherrypy.url()}"

    @cherrypy.expose
    def post(self, id):
        return f"post {id} of {cherrypy.request.app.script_name}"


class Admin:
    @cherrypy.expose
    def index(self):
        return f"admin at {cherrypy.request.script_name!r} {cherrypy.request.path_info!r}"


class Forum:
    @cherrypy.expose
    def index(self):
        return f"forum at {cherrypy.request.script_name!r} {cherrypy.url()}"

    @cherrypy.expose
    def default(self, *topic):
        return f"topic {'/'.join(topic)}"


class MyCookieApp:
    @cherrypy.expose
    def set(self):
        cookie = cherrypy.response.cookie
        cookie["cookieName"] = "cookieValue"
        cookie["cookieName"]["path"] = "/"
        cookie["cookieName"]["max-age"] = 3600
        cookie["cookieName"]["version"] = 1
        return "<html><body>Hello, I just sent you a cookie</body></html>"

    @cherrypy.expose
    def read(self):
        cookie = cherrypy.request.cookie
        res = f"""<html><body>Hi, you sent me {len(cookie)} cookies.<br />
                Here is a list of cookie names/values:<br />"""
        for name in cookie:
            res += f"name: {name}, value: {cookie[name].value}<br>"
        return res + "</body></html>"

    @cherrypy.expose
    def expire(self, name="cookieName"):
        cookie = cherrypy.response.cookie
        cookie[name] = "some value"
        cookie[name]["expires"] = 0
        return f"expired {name}"

    @cherrypy.expose
    def several(self):
        cookie = cherrypy.response.cookie
        cookie["b"] = "2"
        cookie["a"] = "1; with spaces"
        cookie["a"]["httponly"] = True
        cookie["c"] = "3"
        cookie["c"]["secure"] = True
        cookie["c"]["samesite"] = "Strict"
        return "several"


class Logging:
    @cherrypy.expose
    def index(self):
        cherrypy.log("hello there")
        return "logged"

    @cherrypy.expose
    def kaboom(self):
        try:
            int("kaboom")
        except ValueError:
            cherrypy.log("kaboom!", traceback=True)
        return "logged with a traceback"


def wsgi_app(environ, start_response):
    body = f"foreign WSGI app: {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Site:
    def __init__(self, name):
        self.name = name

    @cherrypy.expose
    def index(self):
        return f"site {self.name} at {cherrypy.request.script_name!r} {cherrypy.url()}"


def sites(use_x_forwarded_host=True):
    """One server, a site per host name, chosen by WSGI middleware."""
    default = cherrypy.Application(Site("default"))
    domains = {
        "blog.example.com": cherrypy.Application(Site("blog")),
        "blog.example.com:8080": cherrypy.Application(Site("blog on 8080")),
        "shop.example.com": wsgi_app,
    }
    return cherrypy._cpwsgi.VirtualHost(default, domains, use_x_forwarded_host)


blog_conf = {"/": {"response.headers.X-App": "blog"}}
forum_conf = {"/": {"response.headers.X-App": "forum"}}

if __name__ == "__main__":
    cherrypy.tree.mount(Blog(), "/blog", blog_conf)
    cherrypy.tree.mount(Admin(), "/blog/admin")
    cherrypy.tree.mount(MyCookieApp(), "/cookie")
    cherrypy.tree.mount(Logging(), "/log")
    cherrypy.tree.graft(wsgi_app, "/wsgi")
    cherrypy.tree.graft(sites(), "/sites")
    cherrypy.tree.graft(sites(use_x_forwarded_host=False), "/direct")
    cherrypy.quickstart(Forum(), "/forum", forum_conf)
