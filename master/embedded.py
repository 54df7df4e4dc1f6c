"""``quickstart`` under the master: the tree this process mounted, served by forked workers.

CherryPy's ``quickstart`` runs one process. With ``master.workers`` in its
config (or the ``workers`` keyword) morello's runs the master instead: the
application is already imported and configured here, so the workers
inherit it (as with ``preload``); ``server.socket_host``/``socket_port``
(or ``socket_file``) give the bind, ``server.thread_pool`` and ``thread_pool_max``
the threads.
"""

from __future__ import annotations

import dataclasses

from .launch import Launch
from .settings import Settings, socket_bind


def serve_tree(workers: int | None = None) -> int:
    """Serve ``morello.tree`` with the master until it stops; return the exit status."""
    import morello

    values = {
        key.split(".", 1)[1]: value
        for key, value in morello.config.items()
        if key.startswith("master.")
    }
    server = morello.server
    bind = socket_bind(server.socket_host, server.socket_port, server.socket_file)
    # Workers size their pools as the single-process server would.
    threads = max(server.thread_pool, server.thread_pool_max)
    base = Settings(
        app="quickstart",
        bind=[bind],
        threads=threads,
        min_threads=server.thread_pool,
        preload=True,
    )
    settings = base.updated(values, "config")
    if "min_threads" not in values and settings.min_threads > settings.threads:
        # master.threads alone lowers the maximum: the minimum follows.
        settings = dataclasses.replace(settings, min_threads=settings.threads)
    if workers is not None:
        settings = dataclasses.replace(settings, workers=workers)
    settings.check()
    return Launch(settings, None, app=morello.tree).run()
