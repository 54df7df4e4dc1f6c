"""Basic and Digest authentication over real HTTP.

The Digest client here computes its responses from RFC 7616 (RFC 2617 for
requests without qop) by itself, so morello's hashing is checked against
an independent implementation. Every malformed or hostile request is
followed by a good one, to show the server keeps answering.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
from wsgi_direct import call

import morello
from morello.lib import auth_basic, auth_digest
from morello.testing import running

USERS = {"alice": "wonder", "j\u00f6rg": "p\u00e4ssword", "\u2603": "snow", "nopass": ""}
KEY = "the server's secret"
UNAUTHORIZED = b"You are not authorized to access that resource"


# -- an independent client ---------------------------------------------------

HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def digest_response(
    username: str,
    password: str,
    realm: str,
    nonce: str,
    uri: str,
    method: str = "GET",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    algorithm: str = "MD5",
) -> str:
    """The request digest of RFC 7616 3.4.1 (RFC 2069 form without qop)."""

    def h(text: str) -> str:
        return HASHES[algorithm.upper()](text.encode("utf-8")).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def on_the_wire(text: str) -> str:
    """``text`` as UTF-8 bytes, spelled as the latin-1 str http.client sends as such."""
    return text.encode("utf-8").decode("latin-1")


def digest_header(
    username: str,
    password: str,
    realm: str,
    nonce: str,
    uri: str,
    method: str = "GET",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str | None = None,
    algorithm: str | None = None,
    response: str | None = None,
) -> str:
    """A Digest Authorization header; ``response`` overrides the computed digest.

    ``cnonce`` is random by default, as real clients make it.
    """
    cnonce = cnonce or secrets.token_hex(8)
    if response is None:
        response = digest_response(
            username, password, realm, nonce, uri, method, qop, nc, cnonce, algorithm or "MD5"
        )
    parts = [
        f'username="{on_the_wire(username)}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
    ]
    if algorithm:
        parts.append(f"algorithm={algorithm}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


def challenge_params(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    assert scheme == "Digest"
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


def basic_header(credentials: str, encoding: str = "utf-8") -> str:
    return "Basic " + base64.b64encode(credentials.encode(encoding)).decode("ascii")


def hmac_nonce(realm: str, key: str, timestamp: int) -> str:
    """A nonce the way morello documents them: timestamp and its HMAC-SHA256."""
    mac = hmac.new(key.encode(), f"{timestamp}:{realm}".encode(), hashlib.sha256).hexdigest()
    return f"{timestamp}:{mac}"


# -- the application -----------------------------------------------------------


class Page:
    @morello.expose
    def index(self, **params: str) -> str:
        request = morello.request
        return f"{request.login}|{request.method}|{sorted(params)}"


class Root:
    def __init__(self) -> None:
        for name in ("basic", "latin1", "digest", "sha256", "hashes", "htdigest", "traced"):
            setattr(self, name, Page())

    @morello.expose
    def index(self) -> str:
        return "public"

    @morello.expose
    @morello.tools.auth_basic(realm="decorated", checkpassword=auth_basic.checkpassword_dict(USERS))
    def decorated(self) -> str:
        return f"decorated for {morello.request.login}"


def md5_ha1(user: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def basic_conf(realm: str, **extra: object) -> dict[str, object]:
    conf = {
        "tools.auth_basic.on": True,
        "tools.auth_basic.realm": realm,
        "tools.auth_basic.checkpassword": auth_basic.checkpassword_dict(USERS),
    }
    conf.update({f"tools.auth_basic.{k}": v for k, v in extra.items()})
    return conf


def digest_conf(realm: str, get_ha1: object, **extra: object) -> dict[str, object]:
    conf = {
        "tools.auth_digest.on": True,
        "tools.auth_digest.realm": realm,
        "tools.auth_digest.get_ha1": get_ha1,
        "tools.auth_digest.key": KEY,
    }
    conf.update({f"tools.auth_digest.{k}": v for k, v in extra.items()})
    return conf


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    htdigest = tmp_path_factory.mktemp("auth") / "users.htdigest"
    htdigest.write_text(
        "not a valid line\n\n"
        f"alice:elsewhere:{md5_ha1('alice', 'elsewhere', 'other')}\n"
        f"alice:files:{md5_ha1('alice', 'files', 'wonder')}\n",
        encoding="utf-8",
    )
    config = {
        "/basic": basic_conf("wonderland"),
        "/latin1": basic_conf("old", accept_charset="ISO-8859-1", debug=True),
        "/digest": digest_conf("wonderland", auth_digest.get_ha1_dict_plain(USERS)),
        "/sha256": digest_conf(
            "modern",
            auth_digest.get_ha1_dict_plain(USERS, algorithm="SHA-256"),
            algorithm="SHA-256",
        ),
        "/hashes": digest_conf(
            "hashes", auth_digest.get_ha1_dict({"alice": md5_ha1("alice", "hashes", "wonder")})
        ),
        "/htdigest": digest_conf("files", auth_digest.get_ha1_file_htdigest(str(htdigest))),
        "/traced": digest_conf("traced", auth_digest.get_ha1_dict_plain(USERS), debug=True),
    }
    with running({"": Root()}, {"/": {}, **config}) as test_client:
        yield test_client


def get(client, path: str, authorization: str | bytes | None = None, method: str = "GET"):
    headers = {} if authorization is None else {"Authorization": authorization}
    body = b"a=1&b=2" if method == "POST" else None
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return client.request(method, path, body=body, headers=headers)


def fresh_nonce(client, path: str = "/digest/") -> str:
    response = get(client, path)
    assert response.status == 401
    return challenge_params(response.headers["WWW-Authenticate"])["nonce"]


def assert_alive(client) -> None:
    """A good request still gets its page."""
    response = get(client, "/basic/", basic_header("alice:wonder"))
    assert (response.status, response.body) == (200, b"alice|GET|[]")


# -- Basic -----------------------------------------------------------------------


def test_public_page_needs_nothing(client):
    assert get(client, "/").body == b"public"


def test_basic_challenge(client):
    response = get(client, "/basic/")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="wonderland", charset="UTF-8"'
    assert UNAUTHORIZED in response.body


def test_basic_challenge_without_charset_for_latin1(client):
    response = get(client, "/latin1/")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="old"'


@pytest.mark.parametrize(
    "credentials, login",
    [
        ("alice:wonder", "alice"),
        ("j\u00f6rg:p\u00e4ssword", "j\u00f6rg"),
        ("\u2603:snow", "\u2603"),
        # Decomposed input is normalized (NFC) before the lookup.
        (unicodedata.normalize("NFD", "j\u00f6rg:p\u00e4ssword"), "j\u00f6rg"),
    ],
)
def test_basic_success(client, credentials, login):
    response = get(client, "/basic/", basic_header(credentials))
    assert response.status == 200
    assert response.text == f"{login}|GET|[]"


def test_basic_scheme_is_case_insensitive(client):
    header = "bASIC " + basic_header("alice:wonder").split(" ")[1]
    assert get(client, "/basic/", header).status == 200


def test_basic_non_utf8_credentials_fall_back_to_latin1(client):
    # Not UTF-8: decoded as ISO-8859-1, which here gives the right password.
    header = basic_header("j\u00f6rg:p\u00e4ssword", "latin-1")
    assert get(client, "/basic/", header).text == "j\u00f6rg|GET|[]"
    assert get(client, "/latin1/", header).text == "j\u00f6rg|GET|[]"


def test_basic_latin1_charset_reads_utf8_as_latin1(client, caplog):
    caplog.set_level("DEBUG")
    # With accept_charset ISO-8859-1, UTF-8 bytes are read as latin-1: no match.
    assert get(client, "/latin1/", basic_header("j\u00f6rg:p\u00e4ssword")).status == 401
    assert get(client, "/latin1/", basic_header("alice:wonder")).status == 200
    assert "TOOLS.AUTH_BASIC" in caplog.text
    assert "Auth failed" in caplog.text and "Auth succeeded" in caplog.text


@pytest.mark.parametrize(
    "credentials",
    ["alice:wrong", "alice:", "nobody:wonder", ":", "nopass:", "alice:wonder "],
)
def test_basic_refused(client, credentials):
    response = get(client, "/basic/", basic_header(credentials))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="wonderland"')
    assert_alive(client)


@pytest.mark.parametrize(
    "authorization, status",
    [
        ("Basic !!", 400),  # no base64 at all: decodes to nothing, no colon
        ("Basic", 400),
        ("Basic " + base64.b64encode(b"alicewonder").decode(), 400),  # no colon
        ("Basic YWxpY2U6d29uZGVyX", 400),  # bad length
        ("Basic YWxpY2U6d29uZGVy\u00e9", 400),  # not ASCII
        ("Basic " + base64.b64encode(b"\xff\xfe:\x80").decode(), 401),  # not UTF-8
        ("Digest username=alice", 401),  # another scheme gets the challenge
        ("Bearer", 401),
        ("", 401),
    ],
)
def test_basic_malformed(client, authorization, status):
    response = get(client, "/basic/", authorization)
    assert response.status == status
    assert ("WWW-Authenticate" in response.headers) == (status == 401)
    assert_alive(client)


def test_basic_raw_bytes_header(client):
    response = get(client, "/basic/", b"Basic \xff\xfe")
    assert response.status == 400
    assert_alive(client)


def test_basic_decorator(client):
    assert get(client, "/decorated").status == 401
    response = get(client, "/decorated", basic_header("alice:wonder"))
    assert response.body == b"decorated for alice"


def test_checkpassword_dict_is_constant_time(monkeypatch):
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", spy)
    check = auth_basic.checkpassword_dict({"alice": "wonder", "nopass": ""})
    assert check("r", "alice", "wonder") is True
    assert check("r", "alice", "wonde") is False
    assert check("r", "nobody", "wonder") is False
    assert check("r", "nopass", "") is False
    assert len(calls) == 4  # unknown users are compared too


def test_basic_realm_with_quote_is_refused():
    with pytest.raises(ValueError):
        auth_basic.basic_auth('a "quoted" realm', auth_basic.checkpassword_dict({}))


# -- Digest ------------------------------------------------------------------------


def test_digest_challenge(client):
    response = get(client, "/digest/")
    assert response.status == 401
    assert UNAUTHORIZED in response.body
    value = response.headers["WWW-Authenticate"]
    assert re.fullmatch(
        r'Digest realm="wonderland", nonce="\d+:[0-9a-f]{64}", algorithm="MD5", '
        r'qop="auth", charset="UTF-8"',
        value,
    ), value
    timestamp, _, _ = challenge_params(value)["nonce"].partition(":")
    assert abs(int(timestamp) - time.time()) < 60
    # The nonce is the timestamp signed with the server's key.
    assert challenge_params(value)["nonce"] == hmac_nonce("wonderland", KEY, int(timestamp))


@pytest.mark.parametrize(
    "username, password", [("alice", "wonder"), ("j\u00f6rg", "p\u00e4ssword"), ("\u2603", "snow")]
)
def test_digest_success(client, username, password):
    nonce = fresh_nonce(client)
    header = digest_header(username, password, "wonderland", nonce, "/digest/")
    response = get(client, "/digest/", header)
    assert response.status == 200
    assert response.text == f"{username}|GET|[]"


def test_digest_post_with_query_string(client):
    nonce = fresh_nonce(client)
    uri = "/digest/?x=1"
    header = digest_header("alice", "wonder", "wonderland", nonce, uri, method="POST")
    response = get(client, uri, header, method="POST")
    assert response.text == "alice|POST|['a', 'b', 'x']"


def test_digest_method_is_part_of_the_digest(client):
    nonce = fresh_nonce(client)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/", method="GET")
    assert get(client, "/digest/", header, method="POST").status == 401


def test_digest_case_insensitive_names(client):
    nonce = fresh_nonce(client)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/", algorithm="md5")
    header = "digest " + header[len("Digest ") :].replace("username=", "UserName=")
    assert get(client, "/digest/", header).status == 200


def test_digest_absolute_uri(client):
    nonce = fresh_nonce(client)
    uri = f"http://127.0.0.1:{client.port}/digest/"
    response = get(client, "/digest/", digest_header("alice", "wonder", "wonderland", nonce, uri))
    assert response.status == 200


def test_digest_nonce_counts(client):
    nonce = fresh_nonce(client)
    for nc in ("00000001", "00000002", "00000004", "00000003"):
        header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/", nc=nc)
        assert get(client, "/digest/", header).status == 200, nc


def test_digest_replay_is_refused(client):
    nonce = fresh_nonce(client)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/")
    assert get(client, "/digest/", header).status == 200
    replay = get(client, "/digest/", header)
    assert replay.status == 401
    challenge = challenge_params(replay.headers["WWW-Authenticate"])
    # Stale: an honest client retries with the new nonce without asking the user.
    assert challenge["stale"] == "true"
    retry = digest_header("alice", "wonder", "wonderland", challenge["nonce"], "/digest/")
    assert get(client, "/digest/", retry).status == 200


def test_digest_concurrent_replays_let_one_through(client):
    nonce = fresh_nonce(client)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: get(client, "/digest/", header).status, range(8)))
    assert sorted(statuses) == [200] + [401] * 7


def test_digest_without_qop(client):
    # RFC 2069 style: no qop, cnonce or nc. A repeat is indistinguishable
    # from a replay, so it is answered as stale.
    nonce = fresh_nonce(client)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/?a=1", qop=None)
    assert get(client, "/digest/?a=1", header).status == 200
    replay = get(client, "/digest/?a=1", header)
    assert replay.status == 401
    assert challenge_params(replay.headers["WWW-Authenticate"])["stale"] == "true"


@pytest.mark.parametrize(
    "username, password, realm",
    [
        ("alice", "wrong", "wonderland"),
        ("nobody", "wonder", "wonderland"),
        ("nopass", "", "wonderland"),
        ("alice", "wonder", "elsewhere"),  # the realm of another challenge
    ],
)
def test_digest_wrong_credentials(client, username, password, realm):
    nonce = fresh_nonce(client)
    response = get(client, "/digest/", digest_header(username, password, realm, nonce, "/digest/"))
    assert response.status == 401
    assert "stale" not in challenge_params(response.headers["WWW-Authenticate"])
    assert_alive(client)


def forged_nonces() -> list[str]:
    now = int(time.time())
    genuine = hmac_nonce("wonderland", KEY, now)
    return [
        f"{now}:" + "0" * 64,  # made up
        hmac_nonce("wonderland", "another key", now),
        hmac_nonce("another realm", KEY, now),
        f"{now + 3600}:{genuine.partition(':')[2]}",  # another time, same signature
        genuine.replace(":", ""),
        genuine + "0",
        genuine.upper(),
        "not a nonce",
        f"{now}:{hashlib.md5(f'{now}:wonderland:{KEY}'.encode()).hexdigest()}",  # CherryPy's
    ]


@pytest.mark.parametrize("nonce", forged_nonces())
def test_digest_forged_nonce(client, nonce):
    # The digest itself is right for the nonce: only the nonce gives it away.
    response = get(
        client, "/digest/", digest_header("alice", "wonder", "wonderland", nonce, "/digest/")
    )
    assert response.status == 401
    assert "stale" not in challenge_params(response.headers["WWW-Authenticate"])
    assert_alive(client)


def test_digest_stale_nonce(client):
    old = hmac_nonce("wonderland", KEY, int(time.time()) - auth_digest.NONCE_LIFETIME - 1)
    response = get(
        client, "/digest/", digest_header("alice", "wonder", "wonderland", old, "/digest/")
    )
    assert response.status == 401
    challenge = challenge_params(response.headers["WWW-Authenticate"])
    assert challenge["stale"] == "true"
    assert challenge["nonce"] != old
    retry = digest_header("alice", "wonder", "wonderland", challenge["nonce"], "/digest/")
    assert get(client, "/digest/", retry).status == 200


def test_digest_stale_nonce_with_wrong_password_is_not_stale(client):
    # "stale" promises the credentials were right; it must not leak otherwise.
    old = hmac_nonce("wonderland", KEY, int(time.time()) - auth_digest.NONCE_LIFETIME - 1)
    response = get(client, "/digest/", digest_header("alice", "bad", "wonderland", old, "/digest/"))
    assert response.status == 401
    assert "stale" not in challenge_params(response.headers["WWW-Authenticate"])


@pytest.mark.parametrize(
    "path, uri",
    [
        ("/digest/", "/digest/other"),
        ("/digest/", "/digest"),
        ("/digest/?a=1", "/digest/"),
        ("/digest/", "/digest/?a=1"),
        ("/digest/%41", "/digest/A"),  # the target as sent, not as decoded
        ("/digest/", "http://127.0.0.1/elsewhere/"),
        ("/digest/", "http://[::1/digest/"),  # not even a URL
    ],
)
def test_digest_uri_must_be_the_request_target(client, path, uri):
    nonce = fresh_nonce(client)
    response = get(client, path, digest_header("alice", "wonder", "wonderland", nonce, uri))
    assert response.status == 400
    assert b"The digest URI is not the URI of this request." in response.body
    assert_alive(client)


def malformed_digest_headers() -> list[str]:
    nonce = hmac_nonce("wonderland", KEY, int(time.time()))
    good = digest_header("alice", "wonder", "wonderland", nonce, "/digest/", cnonce="0a4f113b")
    without = good.replace(', qop=auth, nc=00000001, cnonce="0a4f113b"', "")
    return [
        "Digest",
        "Digest x",
        "Digest username=",
        'Digest username="alice',  # unterminated quote
        "Digest ,,,",
        'Digest username="alice" realm="wonderland"',  # no comma
        good.replace("username=", "realm=", 1),  # realm twice, no username
        good + ', username="alice"',  # repeated parameter
        good.replace('response="', 'responze="'),
        good.replace(', qop=auth, nc=00000001, cnonce="0a4f113b"', ", qop=auth"),
        good.replace(", qop=auth, nc=00000001", ""),  # cnonce without qop
        without + ", nc=00000001",  # nc without qop
        good.replace("qop=auth", "qop=auth-int"),
        good.replace("qop=auth", "qop=auth-conf"),
        good + ", algorithm=SHA-256",
        good + ", algorithm=MD5-sess",
        good + ", algorithm=",
        good + ", =x",
        good + ' extra"',
    ]


@pytest.mark.parametrize("authorization", malformed_digest_headers())
def test_digest_malformed(client, authorization):
    response = get(client, "/digest/", authorization)
    assert response.status == 400
    assert b"The Authorization header could not be parsed." in response.body
    assert_alive(client)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic " + base64.b64encode(b"alice:wonder").decode(), "Digestusername=x"],
)
def test_digest_other_schemes_get_the_challenge(client, authorization):
    response = get(client, "/digest/", authorization)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Digest realm="wonderland"')


def test_digest_non_utf8_username(client):
    # Not UTF-8: read as ISO-8859-1, an unknown user.
    nonce = fresh_nonce(client)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/digest/")
    header = header.replace('username="alice"', 'username="\xff\xfe"')
    assert get(client, "/digest/", header).status == 401
    assert_alive(client)


def test_digest_latin1_username_matches_via_fallback(client):
    nonce = fresh_nonce(client)
    header = digest_header("j\u00f6rg", "p\u00e4ssword", "wonderland", nonce, "/digest/")
    header = header.replace(on_the_wire("j\u00f6rg"), "j\u00f6rg")  # ö as one latin-1 byte
    assert get(client, "/digest/", header).text == "j\u00f6rg|GET|[]"


def test_digest_sha256(client):
    response = get(client, "/sha256/")
    challenge = challenge_params(response.headers["WWW-Authenticate"])
    assert challenge["algorithm"] == "SHA-256"
    nonce = challenge["nonce"]
    header = digest_header("alice", "wonder", "modern", nonce, "/sha256/", algorithm="SHA-256")
    assert get(client, "/sha256/", header).text == "alice|GET|[]"
    # An MD5 answer to a SHA-256 challenge is not what was asked for.
    md5 = digest_header("alice", "wonder", "modern", nonce, "/sha256/", algorithm="MD5", nc="2")
    assert get(client, "/sha256/", md5).status == 400


@pytest.mark.parametrize("path, realm", [("/hashes/", "hashes"), ("/htdigest/", "files")])
def test_digest_credential_stores(client, path, realm):
    nonce = fresh_nonce(client, path)
    assert get(client, path, digest_header("alice", "wonder", realm, nonce, path)).status == 200
    nonce = fresh_nonce(client, path)
    assert get(client, path, digest_header("alice", "other", realm, nonce, path)).status == 401
    nonce = fresh_nonce(client, path)
    assert get(client, path, digest_header("bob", "wonder", realm, nonce, path)).status == 401


def test_digest_debug_log(client, caplog):
    caplog.set_level("DEBUG")
    nonce = fresh_nonce(client, "/traced/")
    header = digest_header("alice", "wonder", "traced", nonce, "/traced/")
    assert get(client, "/traced/", header).status == 200
    assert get(client, "/traced/", header).status == 401
    logged = caplog.text
    assert "TOOLS.AUTH_DIGEST" in logged
    assert "authentication of alice successful" in logged
    assert "replayed response" in logged


# -- the module's API -----------------------------------------------------------------


def test_synthesize_nonce():
    nonce = auth_digest.synthesize_nonce("realm", "key", 1234)
    assert nonce == hmac_nonce("realm", "key", 1234)
    assert nonce != auth_digest.synthesize_nonce("realm", b"other key", 1234)
    timestamp = int(auth_digest.synthesize_nonce("realm", "key").partition(":")[0])
    assert abs(timestamp - time.time()) < 60


def test_h():
    assert auth_digest.H("abc") == hashlib.md5(b"abc").hexdigest()
    assert auth_digest.H("abc", "SHA-256") == hashlib.sha256(b"abc").hexdigest()


def test_http_digest_authorization():
    nonce = auth_digest.synthesize_nonce("wonderland", KEY)
    header = digest_header("alice", "wonder", "wonderland", nonce, "/p?q=1")
    auth = auth_digest.HttpDigestAuthorization(header, "GET")
    assert (auth.username, auth.realm, auth.uri, auth.qop, auth.nc) == (
        "alice", "wonderland", "/p?q=1", "auth", "00000001",
    )  # fmt: skip
    assert auth.validate_nonce("wonderland", KEY)
    assert not auth.validate_nonce("wonderland", "other")
    assert not auth.is_nonce_stale()
    assert auth.is_nonce_stale(max_age_seconds=-60)
    ha1 = auth_digest.get_ha1_dict_plain(USERS)("wonderland", "alice")
    assert auth.request_digest(ha1) == auth.response
    with pytest.raises(ValueError):
        auth_digest.HttpDigestAuthorization("Basic abc", "GET")


def test_nonce_without_a_number_is_stale():
    header = digest_header("alice", "wonder", "r", "soon:abc", "/")
    assert auth_digest.HttpDigestAuthorization(header, "GET", debug=True).is_nonce_stale()


def test_accepted_responses_are_forgotten():
    accepted = auth_digest._AcceptedResponses(limit=2)
    assert accepted.first_use("a") and accepted.first_use("b")
    assert not accepted.first_use("a")
    assert accepted.first_use("c")  # over the limit: "a", the oldest, goes
    assert accepted.first_use("a")
    # Once their nonces are stale, entries are dropped ("c" is the oldest).
    accepted._seen["c"] -= auth_digest.NONCE_LIFETIME
    assert accepted.first_use("d") and accepted.first_use("c")


def test_digest_target_without_request_uri():
    # A WSGI server that does not pass REQUEST_URI on: the target is rebuilt.
    app = morello.Application(
        Root(), "", {"/digest": digest_conf("wonderland", auth_digest.get_ha1_dict_plain(USERS))}
    )
    nonce = auth_digest.synthesize_nonce("wonderland", KEY)
    for uri, status in [("/digest/?a=1", 200), ("/digest/", 400), ("/digest/?a=2", 400)]:
        header = digest_header("alice", "wonder", "wonderland", nonce, uri)
        reply = call(app, "/digest/", query="a=1", headers={"Authorization": header})
        assert reply.code == status, uri


def test_www_authenticate():
    value = auth_digest.www_authenticate("r", KEY, nonce="n", stale=True)
    assert (
        value
        == 'Digest realm="r", nonce="n", algorithm="MD5", qop="auth", stale="true", charset="UTF-8"'
    )
    latin1 = auth_digest.www_authenticate("r", KEY, nonce="n", accept_charset="iso-8859-1")
    assert latin1 == 'Digest realm="r", nonce="n", algorithm="MD5", qop="auth"'
    for bad in ({"qop": "auth-int"}, {"algorithm": "SHA-512"}):
        with pytest.raises(ValueError):
            auth_digest.www_authenticate("r", KEY, **bad)


def test_get_ha1_helpers(tmp_path):
    assert auth_digest.get_ha1_dict_plain(USERS)("r", "alice") == md5_ha1("alice", "r", "wonder")
    assert auth_digest.get_ha1_dict_plain(USERS)("r", "nopass") is None
    assert auth_digest.get_ha1_dict_plain(USERS)("r", "nobody") is None
    assert auth_digest.get_ha1_dict({"a": "x"})("r", "a") == "x"
    path = tmp_path / "htdigest"
    path.write_text("bad\nalice:r:abc\r\nalice:s:def\n", encoding="utf-8")
    lookup = auth_digest.get_ha1_file_htdigest(str(path))
    assert (lookup("r", "alice"), lookup("s", "alice"), lookup("t", "alice")) == (
        "abc",
        "def",
        None,
    )
    with pytest.raises(ValueError):
        auth_digest.get_ha1_dict_plain(USERS, algorithm="SHA-512")


def test_tools_are_registered():
    assert morello.tools.auth_basic.callable is auth_basic.basic_auth
    assert morello.tools.auth_digest.callable is auth_digest.digest_auth
