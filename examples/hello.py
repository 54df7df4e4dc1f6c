"""The one-minute application: run it and open http://127.0.0.1:8080/."""

import morello


class HelloWorld:
    @morello.expose
    def index(self):
        return "Hello world!"


if __name__ == "__main__":
    morello.quickstart(HelloWorld())
