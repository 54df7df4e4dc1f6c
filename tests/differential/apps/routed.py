"""The RoutesDispatcher (needs the ``routes`` package).

``/``: named routes with requirements, method conditions, defaults, a
controller class and a callable controller; ``/full``: the same routes with
``full_result=True``, so controller and action reach the handlers too.
"""

import cherrypy
import routes


def show(*args, **kwargs):
    config = cherrypy.request.config
    return "\n".join(
        [
            f"args={args!r} kwargs={sorted(kwargs.items())!r}",
            f"params={sorted(cherrypy.request.params.items())!r}",
            f"path_info={cherrypy.request.path_info!r} is_index={cherrypy.request.is_index!r}",
            f"my.level={config.get('my.level')!r} my.page={config.get('my.page')!r}",
            f"section={config.get('tools.staticdir.section')!r}",
        ]
    )


class Blog:
    _cp_config = {"my.level": "blog controller", "response.headers.X-Controller": "blog"}

    def index(self, **kwargs):
        return show(**kwargs)

    def post(self, year, slug="untitled", **kwargs):
        return show(year=year, slug=slug, **kwargs)

    post._cp_config = {"my.level": "post handler"}

    def create(self, title=None, **kwargs):
        cherrypy.response.status = 201
        return show(title=title, **kwargs)

    def link(self, **kwargs):
        return routes.url_for("post", year="2024", slug="hello")

    def elsewhere(self, **kwargs):
        routes.redirect_to("/blog")

    def fail(self, **kwargs):
        raise ValueError("fails on purpose")


class Shop:
    """A controller class: instantiated for each request, called without action."""

    _cp_config = {"my.level": "shop class"}

    def __call__(self, **kwargs):
        return f"shop {id(self) != 0} " + show(**kwargs)


def make_dispatcher(**options):
    d = cherrypy.dispatch.RoutesDispatcher(**options)
    blog = Blog()
    d.connect("blog", "/blog", controller=blog, action="index")
    d.connect("link", "/blog/link", controller=blog, action="link")
    d.connect("elsewhere", "/blog/elsewhere", controller=blog, action="elsewhere")
    d.connect("fail", "/blog/fail", controller=blog, action="fail")
    d.connect(
        "post",
        "/blog/{year}/{slug}",
        controller=blog,
        action="post",
        requirements={"year": r"\d{4}"},
    )
    d.connect("year", "/blog/{year}", controller=blog, action="post", requirements={"year": r"\d+"})
    d.connect("create", "/posts", controller=blog, action="create", conditions={"method": ["POST"]})
    d.connect("missing", "/broken", controller=blog, action="nope")
    d.connect("any", "/any/{action}", controller=blog)
    d.connect("shop", "/shop/{item}", controller=Shop)
    d.connect("shop_home", "/shop", controller=Shop, page="home")
    d.connect("catch", "/files/{path:.*}", controller=blog, action="index")
    return d


CONFIG = {
    "/blog": {"my.page": "section /blog"},
    "/blog/2024": {"my.level": "section /blog/2024"},
    "/files": {"tools.staticdir.dir": "static"},
    "/shop": {"my.level": "section /shop"},
}


if __name__ == "__main__":
    cherrypy.tree.mount(
        None, "/full", {"/": {"request.dispatch": make_dispatcher(full_result=True)}, **CONFIG}
    )
    cherrypy.tree.mount(None, "", {"/": {"request.dispatch": make_dispatcher()}, **CONFIG})
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    cherrypy.engine.block()
