"""pytest plugin for CherryPy's suite, laid beside the shim by the runner.

CherryPy's helper serves every test class on the fixed port 54583; the
runner runs two modules at a time, so each pytest process gets its own
free port in ``CHERRYPY_SUITE_PORT``. A failed assertion is reported, not
turned into a prompt on the terminal (cheroot's ``WebCase.interactive``).
"""

from __future__ import annotations

import os
from typing import Any


def pytest_configure(config: Any) -> None:
    port = int(os.environ["CHERRYPY_SUITE_PORT"])
    from cherrypy.test import helper

    helper.webtest.WebCase.interactive = False

    setup_server = helper.CPWebCase._setup_server.__func__

    def setup_server_on_own_port(cls: Any, supervisor: Any, conf: Any) -> Any:
        supervisor.port = port
        return setup_server(cls, supervisor, conf)

    helper.CPWebCase._setup_server = classmethod(setup_server_on_own_port)
