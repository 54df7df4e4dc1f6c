"""Basic and Digest authentication with the credential stores CherryPy ships."""

import hashlib
import os

import cherrypy
from cherrypy.lib import auth_basic, auth_digest

USERS = {"jon": "secret", "j\u00f6rg": "p\u00e4ssword", "\u2603": "snow"}
KEY = "a565c27146791cfb"
# USERS for the realm "files" (and one line of another realm).
HTDIGEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "authentication.htdigest")


def ha1(user, realm, password):
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def only_jon(realm, username, password):
    return username == "jon" and password == "secret"


class Page:
    @cherrypy.expose
    def index(self, **params):
        return f"hello {cherrypy.request.login}, {cherrypy.request.method} {sorted(params)}"


class Root:
    def __init__(self):
        for name in ("basic", "latin1", "custom", "digest", "hashes", "files"):
            setattr(self, name, Page())

    @cherrypy.expose
    def index(self):
        return "public"

    @cherrypy.expose
    @cherrypy.tools.auth_basic(realm="decorated", checkpassword=only_jon)
    def decorated(self):
        return f"decorated for {cherrypy.request.login}"


def basic(realm, checkpassword, **extra):
    conf = {
        "tools.auth_basic.on": True,
        "tools.auth_basic.realm": realm,
        "tools.auth_basic.checkpassword": checkpassword,
    }
    conf.update({f"tools.auth_basic.{k}": v for k, v in extra.items()})
    return conf


def digest(realm, get_ha1):
    return {
        "tools.auth_digest.on": True,
        "tools.auth_digest.realm": realm,
        "tools.auth_digest.get_ha1": get_ha1,
        "tools.auth_digest.key": KEY,
    }


config = {
    "/basic": basic("wonderland", auth_basic.checkpassword_dict(USERS)),
    "/latin1": basic("old", auth_basic.checkpassword_dict(USERS), accept_charset="ISO-8859-1"),
    "/custom": basic("custom", only_jon),
    "/digest": digest("localhost", auth_digest.get_ha1_dict_plain(USERS)),
    "/hashes": digest(
        "hashes", auth_digest.get_ha1_dict({u: ha1(u, "hashes", p) for u, p in USERS.items()})
    ),
    "/files": digest("files", auth_digest.get_ha1_file_htdigest(HTDIGEST)),
}

if __name__ == "__main__":
    cherrypy.quickstart(Root(), "/", config)
