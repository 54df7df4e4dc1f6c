"""Settings every morello benchmark server shares with the cheroot baselines."""

import sys

import morello


def configure() -> None:
    """Production mode, no access log, 10 threads on 127.0.0.1:<argv[1]>."""
    morello.config.update(
        {
            "environment": "production",
            "server.socket_host": "127.0.0.1",
            "server.socket_port": int(sys.argv[1]),
            "server.thread_pool": 10,
            "log.screen": False,
        }
    )
