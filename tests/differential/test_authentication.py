"""Basic and Digest authentication, compared with CherryPy 18.

Digest nonces differ between the servers (each signs its own), so Digest
replies are compared with the nonce masked, and every authenticated request
is computed from the nonce of the server it goes to.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable

import pytest
from test_auth import basic_header, challenge_params, digest_header, hmac_nonce

from .conftest import Reply, assert_same, send

APP = "authentication"
KEY = "a565c27146791cfb"  # the app's key, to make stale nonces for each server
NONCE = re.compile(r'nonce="[^"]*"')


def masked(reply: Reply) -> Reply:
    headers = [
        (name, NONCE.sub('nonce="..."', value) if name.lower() == "www-authenticate" else value)
        for name, value in reply.headers
    ]
    return Reply(reply.status, reply.reason, headers, reply.body, reply.error)


def each_server(compare, make: Callable[[int, str], Reply]) -> tuple[Reply, Reply]:
    """``make(port, framework)`` on morello, then on CherryPy."""
    return make(compare.morello.port, "morello"), make(compare.cherrypy.port, "cherrypy")


def nonce_of(port: int, path: str) -> str:
    reply = send(port, "GET", path)
    assert reply.status == 401, reply.brief()
    return challenge_params(reply.header("WWW-Authenticate"))["nonce"]


def digest_both(
    compare,
    path: str = "/digest/",
    *,
    realm: str = "localhost",
    user: str = "jon",
    password: str = "secret",
    uri: str | None = None,
    method: str = "GET",
    signed_method: str | None = None,
    nonces: dict[str, str] | None = None,
    rewrite: Callable[[str], str] = str,
    **options,
) -> tuple[Reply, Reply]:
    """Authenticate on each server with its own nonce (or ``nonces[framework]``).

    The digest is computed for ``signed_method`` (default: ``method``);
    ``options`` go to :func:`digest_header`; ``rewrite`` edits the header.
    """
    form = {"Content-Type": "application/x-www-form-urlencoded"} if method == "POST" else {}
    body = "a=1" if method == "POST" else None

    def make(port: int, framework: str) -> Reply:
        nonce = nonces[framework] if nonces else nonce_of(port, path)
        signed = signed_method or method
        header = digest_header(user, password, realm, nonce, uri or path, signed, **options)
        return send(port, method, path, {"Authorization": rewrite(header), **form}, body)

    return each_server(compare, make)


def assert_same_masked(replies: tuple[Reply, Reply]) -> Reply:
    ours, ref = replies
    assert_same(masked(ours), masked(ref))
    return ref


# -- Basic ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/basic/", "/latin1/", "/custom/", "/decorated"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic_header("jon:secret"),
        basic_header("jon:wrong"),
        basic_header("nobody:secret"),
        basic_header("j\u00f6rg:p\u00e4ssword"),
        basic_header("j\u00f6rg:p\u00e4ssword", "latin-1"),
        basic_header("\u2603:snow"),
        basic_header("jon:"),
        basic_header(":"),
        "basic " + basic_header("jon:secret").split()[1],
        "Basic !!",
        "Basic",
        "Basic " + base64.b64encode(b"jonsecret").decode(),
        "Basic am9uOnNlY3JldA",
        "Basic am9uOnNlY3JldAX",
        "Basic am9uOnNlY3JldA==\u00e9",
        "Basic " + base64.b64encode(b"\xff\xfe:\x80").decode(),
        "Digest x",
        "Bearer abc",
    ],
)
def test_basic(compare, path, authorization):
    compare("GET", path, {"Authorization": authorization})


def test_basic_public_page(compare):
    assert compare("GET", "/").body == b"public"


# -- Digest -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/digest/", "/hashes/", "/files/"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic_header("jon:secret"),
        "Digest",
        "Digest x",
        'Digest username="jon"',
        'Digest username="jon", realm="localhost", nonce="1:2", uri="/digest/"',
        'Digest username="jon", realm="localhost", nonce="1:2", uri="/digest/", '
        'response="abc", qop=auth',
        'Digest username="jon", realm="localhost", nonce="1:2", uri="/digest/", '
        'response="abc", nc=00000001',
        'Digest username="jon", realm="localhost", nonce="1:2", uri="/digest/", '
        'response="abc", algorithm=SHA-256',
        'Digest username="jon", realm="localhost", nonce="1:2", uri="/digest/", '
        'response="abc", algorithm="MD5-sess"',
        'Digest username="jon", realm="localhost", nonce="nonsense", uri="{path}", response="abc"',
    ],
)
def test_digest_without_a_valid_nonce(compare, path, authorization):
    if authorization:
        authorization = authorization.replace("{path}", path)
    assert_same_masked(compare.both("GET", path, {"Authorization": authorization}))


@pytest.mark.parametrize("path", ["/digest/", "/hashes/", "/files/"])
@pytest.mark.parametrize(
    "user, password",
    [
        ("jon", "secret"),
        ("j\u00f6rg", "p\u00e4ssword"),
        ("\u2603", "snow"),
        ("jon", "wrong"),
        ("nobody", "secret"),
    ],
)
def test_digest(compare, path, user, password):
    realm = {"/digest/": "localhost", "/hashes/": "hashes", "/files/": "files"}[path]
    assert_same_masked(digest_both(compare, path, realm=realm, user=user, password=password))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"qop": None},
        {"algorithm": "MD5"},
        {"algorithm": "md5"},
        {"nc": "0000000a"},
        {"realm": "wrong realm"},
        {"method": "POST"},
        {"uri": "/digest/?a=1", "path": "/digest/?a=1"},
        {"uri": "/digest/elsewhere", "password": "wrong"},
    ],
)
def test_digest_variants(compare, kwargs):
    kwargs = dict(kwargs)
    assert_same_masked(digest_both(compare, kwargs.pop("path", "/digest/"), **kwargs))


def test_digest_for_another_method(compare):
    ref = assert_same_masked(digest_both(compare, method="GET", signed_method="PUT"))
    assert ref.status == 401


def cherrypy_nonce(timestamp: int) -> str:
    """CherryPy 18's nonce: the timestamp and an MD5 of it with realm and key."""
    digest = hashlib.md5(f"{timestamp}:localhost:{KEY}".encode()).hexdigest()
    return f"{timestamp}:{digest}"


def test_digest_stale_nonce(compare):
    old = int(time.time()) - 601
    nonces = {"morello": hmac_nonce("localhost", KEY, old), "cherrypy": cherrypy_nonce(old)}
    ref = assert_same_masked(digest_both(compare, nonces=nonces))
    assert ref.status == 401
    assert 'stale="true"' in ref.header("WWW-Authenticate")


def test_digest_nonce_of_the_other_server(compare):
    # Each server's nonce is a forgery as far as the other is concerned.
    now = int(time.time())
    nonces = {"morello": cherrypy_nonce(now), "cherrypy": hmac_nonce("localhost", KEY, now)}
    assert assert_same_masked(digest_both(compare, nonces=nonces)).status == 401


# -- where morello differs on purpose ------------------------------------------


def test_digest_uri_of_another_resource(compare):
    """CherryPy accepts a digest made for any URI; RFC 7616 3.4.6 wants a 400."""
    ours, ref = digest_both(compare, uri="/digest/elsewhere")
    assert (ours.status, ref.status) == (400, 200)


def test_digest_replay(compare):
    """CherryPy accepts the same request again; morello asks for a new nonce."""
    sent: dict[int, dict[str, str]] = {}

    def remember(header: str) -> str:
        sent[len(sent)] = {"Authorization": header}
        return header

    first = digest_both(compare, rewrite=remember)
    assert [reply.status for reply in first] == [200, 200]
    ours = send(compare.morello.port, "GET", "/digest/", sent[0])
    ref = send(compare.cherrypy.port, "GET", "/digest/", sent[1])
    assert (ours.status, ref.status) == (401, 200)
    assert 'stale="true"' in ours.header("WWW-Authenticate")


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda header: header.replace("qop=auth", "qop=auth-int"),
        lambda header: header.replace('username="jon"', "username="),
    ],
    ids=["auth-int", "empty-unquoted-username"],
)
def test_digest_headers_cherrypy_fails_on(compare, rewrite):
    """Headers CherryPy answers with a 500 get a 400 from morello."""
    ours, ref = digest_both(compare, rewrite=rewrite)
    assert (ours.status, ref.status) == (400, 500)


@pytest.mark.parametrize("authorization", ["", "Bearer", "Digest"])
def test_basic_bare_scheme(compare, authorization):
    """A header that is not Basic gets the challenge, however short (CherryPy: 400)."""
    ours, ref = compare.both("GET", "/basic/", {"Authorization": authorization})
    assert (ours.status, ref.status) == (401, 400)
