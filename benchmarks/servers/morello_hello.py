"""The hello app on morello, configured like the cheroot baseline (no access log).

``python morello_hello.py PORT`` serves it in this one process on 127.0.0.1:PORT;
``morello serve morello_hello:worker_app`` (run from this directory) serves it
in prefork workers.
"""

from baseline import configure

import morello


class HelloWorld:
    @morello.expose
    def index(self):
        return "Hello world!"


def worker_app() -> HelloWorld:
    """The application of each ``morello serve`` worker, with the same settings."""
    configure(bind=False)
    return HelloWorld()


if __name__ == "__main__":
    configure()
    morello.quickstart(HelloWorld())
