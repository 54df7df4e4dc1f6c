"""The hello app on real CherryPy 18, as the WSGI callable ``application``.

What gunicorn, uWSGI and granian serve in the peers benchmark (run from this
directory): ``cherrypy.tree`` with the hello root mounted, configured like
morello's benchmark servers (production, no screen log).
"""

import cherrypy
from baseline import configure
from hello_root import make_root

configure(bind=False, framework=cherrypy)
cherrypy.tree.mount(make_root(cherrypy))
application = cherrypy.tree
