"""morello: CherryPy's framework, rewritten, and a prefork application server.

Applications written for CherryPy 18 run unchanged with
``import morello as cherrypy``::

    import morello

    class Root:
        @morello.expose
        def index(self):
            return "Hello world!"

    morello.quickstart(Root())
"""

from __future__ import annotations

import sys
from typing import Any

__version__ = "0.1.0"

from morello import (
    application,
    body,
    configuration,
    dispatch,
    errors,
    gateway,
    http_request,
    httpserver,
    lib,
    logs,
    tool,
)
from morello.application import Application, Tree
from morello.checker import Checker
from morello.configuration import (
    Config,
    checker_namespace,
    engine_namespace,
    log_namespace,
    tree_namespace,
)
from morello.errors import (
    CherryPyException,
    HTTPError,
    HTTPRedirect,
    InternalRedirect,
    MorelloException,
    NotFound,
    TimeoutError,
)
from morello.exposure import expose, popargs
from morello.http_request import Request
from morello.http_response import Response
from morello.lib import jsontools
from morello.lib.httputil import Host
from morello.logs import GlobalLogManager
from morello.process import bus as _bus
from morello.process import plugins
from morello.serving import Serving, ThreadLocalProxy, app_server_loading, serving, thread_data
from morello.tool import ErrorTool, HandlerTool, HandlerWrapperTool, Tool, Toolbox
from morello.toolbox import default_toolbox
from morello.urls import url

# CherryPy's private module names, which some applications reach into
# (``cherrypy._cptools.HandlerTool``, ``cherrypy._cperror.format_exc``...).
_cpconfig = configuration
_cpdispatch = dispatch
_cperror = errors
_cplogging = logs
_cpreqbody = body
_cprequest = http_request
_cpserver = httpserver
_cptools = tool
_cptree = application
_cpwsgi = gateway
_json = jsontools  # its ``json``, ``encode`` and ``decode``
# ...and import them (``from cherrypy._cptree import Application``): each
# name is registered as a submodule that *is* morello's module, so state
# set through either name is shared.
for _alias in (
    "_cpconfig", "_cpdispatch", "_cperror", "_cplogging", "_cpreqbody",
    "_cprequest", "_cpserver", "_cptools", "_cptree", "_cpwsgi", "_json",
):  # fmt: skip
    sys.modules[f"{__name__}.{_alias}"] = globals()[_alias]
del _alias

# Outside a request, morello.request/response show harmless placeholders.
Serving.request = Request(Host("127.0.0.1", 80), Host("127.0.0.1", 1111))
Serving.response = Response()

request: Any = ThreadLocalProxy("request")
response: Any = ThreadLocalProxy("response")
#: The current request's session (with ``tools.sessions`` on).
session: Any = ThreadLocalProxy("session")

tools = default_toolbox
tree = Tree()

log = GlobalLogManager()
log.screen = True
log.error_file = ""
log.access_file = ""

engine = _bus.Bus()
# Published around every request (Application.get_serving/release_serving);
# there from the start so that plugins with such methods subscribe to them.
engine.listeners["before_request"] = set()
engine.listeners["after_request"] = set()


def _bus_log(msg: str, level: int) -> None:
    log.error(msg, "ENGINE", severity=level)


engine.subscribe("log", _bus_log)
engine.autoreload = plugins.Autoreloader(engine)
engine.autoreload.subscribe()
engine.thread_manager = plugins.ThreadManager(engine)
engine.thread_manager.subscribe()
engine.signal_handler = plugins.SignalHandler(engine)


class _SignalsPlugin:
    """``engine.signals.subscribe()``: install the platform's signal handlers."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    def subscribe(self) -> None:
        self.bus.signal_handler.subscribe()


engine.signals = _SignalsPlugin(engine)

from morello.httpserver import Server, server_namespace_handler  # noqa: E402

server = Server()
server.subscribe()
#: Extra HTTP servers configured as ``server.<name>.*``.
servers: dict[str, Server] = {}

checker = Checker()
engine.subscribe("start", checker, priority=10)

config = Config()
# quickstart() takes a parameter named config too (CherryPy's signature).
_global_config = config
Config.namespaces.update(
    server=server_namespace_handler,
    log=log_namespace,
    checker=checker_namespace,
    engine=engine_namespace,
    tree=tree_namespace,
)
config.reset()


def quickstart(
    root: Any = None, script_name: str = "", config: Any = None, workers: int | None = None
) -> None:
    """Mount ``root`` at ``script_name``, start the engine and block.

    ``config`` (a dict or a config file) is applied both as global config
    (its ``[global]`` section) and as the application's config. With
    ``workers`` (or ``master.workers`` in the config) the prefork master
    serves the application with that many worker processes instead, and
    the process exits with the master's status.

    While ``morello serve`` imports the module that calls it, it only
    mounts ``root``: the master's workers serve it.
    """
    if config:
        _global_config.update(config)
    tree.mount(root, script_name, config)
    if app_server_loading():
        return
    workers = workers if workers is not None else _global_config.get("master.workers")
    if workers:
        from morello.master.embedded import serve_tree

        raise SystemExit(serve_tree(int(workers)))
    engine.signals.subscribe()
    engine.start()
    engine.block()


__all__ = [
    "Application", "CherryPyException", "Config", "HTTPError", "HTTPRedirect",
    "HandlerTool", "HandlerWrapperTool", "ErrorTool", "InternalRedirect", "MorelloException",
    "NotFound", "Request", "Response", "TimeoutError", "Tool", "Toolbox", "Tree",
    "checker", "config", "dispatch", "engine", "expose", "lib", "log", "popargs",
    "quickstart", "request", "response", "server", "servers", "serving", "session", "thread_data",
    "tools", "tree", "url", "__version__",
]  # fmt: skip
