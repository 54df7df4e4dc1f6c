"""Settings every morello benchmark server shares with the cheroot baselines."""

import sys
from types import ModuleType

import morello


def configure(bind: bool = True, framework: ModuleType = morello) -> None:
    """Production mode, no access log, 10 threads; on 127.0.0.1:<argv[1]> if ``bind``.

    A ``morello serve`` worker passes ``bind=False``: it serves on the
    master's socket, and its thread count comes from ``--threads``; an app
    another WSGI server runs passes it too. ``framework``: morello or CherryPy.
    """
    framework.config.update(
        {
            "environment": "production",
            "server.thread_pool": 10,
            "log.screen": False,
        }
    )
    if bind:
        framework.config.update(
            {"server.socket_host": "127.0.0.1", "server.socket_port": int(sys.argv[1])}
        )
