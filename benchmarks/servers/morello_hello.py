"""The hello app on morello, configured like the cheroot baseline (no access log)."""

import sys

import morello


class HelloWorld:
    @morello.expose
    def index(self):
        return "Hello world!"


morello.config.update(
    {
        "environment": "production",
        "server.socket_host": "127.0.0.1",
        "server.socket_port": int(sys.argv[1]),
        "server.thread_pool": 10,
        "log.screen": False,
    }
)
morello.quickstart(HelloWorld())
