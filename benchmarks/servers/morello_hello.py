"""The hello app on morello, configured like the cheroot baseline (no access log)."""

from baseline import configure

import morello


class HelloWorld:
    @morello.expose
    def index(self):
        return "Hello world!"


configure()
morello.quickstart(HelloWorld())
