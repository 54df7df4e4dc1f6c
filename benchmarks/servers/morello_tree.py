"""The hello app mounted on ``morello.tree``, as the WSGI callable ``application``.

granian serves it in the peers benchmark: morello's framework under another server.
"""

from baseline import configure
from hello_root import make_root

import morello

configure(bind=False)
morello.tree.mount(make_root(morello))
application = morello.tree
