"""A module whose engine ``start`` hook fails: the worker cannot boot."""

import worker_apps

import morello


@morello.engine.subscribe("start")
def _connect_to_database() -> None:
    raise ConnectionRefusedError("database is down")


root = worker_apps.Root()
