"""The hello app on morello, configured like the cheroot baseline (no access log).

``python morello_hello.py PORT`` serves it in this one process on 127.0.0.1:PORT;
``morello serve morello_hello:worker_app`` (run from this directory) serves it
in prefork workers.
"""

from baseline import configure
from hello_root import make_root

import morello


def worker_app() -> object:
    """The application of each ``morello serve`` worker, with the same settings."""
    configure(bind=False)
    return make_root(morello)


if __name__ == "__main__":
    configure()
    morello.quickstart(make_root(morello))
