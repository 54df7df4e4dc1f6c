"""A module that mounts its application on morello.tree when imported.

Served as ``worker_apps_mounted`` (module only). Its engine ``start`` hook
records that the engine started in the worker.
"""

from __future__ import annotations

import morello

started = []


class Site:
    @morello.expose
    def index(self) -> str:
        return "hello from the mounted module"

    @morello.expose
    def engine(self) -> str:
        autoreloading = morello.engine.autoreload.thread is not None
        return f"started={bool(started)} autoreload={autoreloading}"


@morello.engine.subscribe("start")
def _record_start() -> None:
    started.append(True)


morello.tree.mount(Site(), "")
