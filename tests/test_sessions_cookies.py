"""The session cookie over real HTTP(S): ``Secure`` behind TLS, expiry; counting sessions."""

from __future__ import annotations

import contextlib
import http.client
import http.cookies
import os
import ssl
from typing import Any

import pytest
from morello.sessions.ram import RamSession
from test_server import certificate  # noqa: F401 - the module's TLS certificate fixture
from test_sessions import Root, file_config, session_id, sessions_config, with_cookie

import morello
from morello.testing import HOST, running


class Counted(Root):
    @morello.expose
    def how_many(self) -> str:
        return str(len(morello.session))


def cookie_of(headers: Any) -> http.cookies.Morsel[str]:
    """The ``session_id`` morsel of a response's ``Set-Cookie``."""
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    jar.load(headers["Set-Cookie"])
    return jar["session_id"]


@pytest.fixture(autouse=True)
def fresh_ram_store() -> None:
    RamSession.cache.clear()
    RamSession.locks.clear()


# -- Secure --------------------------------------------------------------------


def https_get(port: int, path: str, cafile: str) -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection(HOST, port, context=context, timeout=10)
    with contextlib.closing(conn):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    return response


@pytest.mark.parametrize(("setting", "secure"), [({}, True), ({"secure": False}, False)])
def test_cookie_is_secure_over_direct_tls(
    certificate: tuple[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    setting: dict[str, Any],
    secure: bool,
) -> None:
    cert, key = certificate
    # The server keeps its settings after the engine stops: later tests want plain HTTP.
    for name in ("ssl_certificate", "ssl_private_key"):
        monkeypatch.setattr(morello.server, name, None)
    tls = {"server.ssl_certificate": cert, "server.ssl_private_key": key}
    with running({"": Root()}, {"/": sessions_config(**setting)}, tls) as client:
        response = https_get(client.port, "/count", cert)
    assert response.status == 200
    assert bool(cookie_of(response.headers)["secure"]) is secure


@pytest.mark.parametrize(
    ("setting", "proto", "secure"),
    [
        ({}, "https", True),
        ({}, None, False),
        ({}, "http", False),
        ({"secure": False}, "https", False),
        ({"secure": True}, None, True),
    ],
)
def test_cookie_is_secure_behind_a_tls_proxy(
    serve: Any, setting: dict[str, Any], proto: str | None, secure: bool
) -> None:
    config = {"tools.proxy.on": True, **sessions_config(**setting)}
    client = serve(Root(), {"/": config})
    headers = {"X-Forwarded-Proto": proto} if proto else {}
    response = client.get("/count", headers)
    assert response.status == 200
    assert bool(cookie_of(response.headers)["secure"]) is secure


def test_untrusted_peer_cannot_claim_tls(serve: Any) -> None:
    config = {"tools.proxy.on": True, "tools.proxy.trusted": ["192.0.2.1"], **sessions_config()}
    response = serve(Root(), {"/": config}).get("/count", {"X-Forwarded-Proto": "https"})
    assert response.status == 200
    assert not cookie_of(response.headers)["secure"]


# -- expiry --------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [True, False])
def test_expired_cookie_has_max_age_zero(serve: Any, persistent: bool) -> None:
    client = serve(Root(), {"/": sessions_config(persistent=persistent)})
    sid = session_id(client.get("/count"))
    morsel = cookie_of(client.get("/logout", with_cookie(sid)).headers)
    # Browsers obey Max-Age before Expires: both must say the cookie is gone.
    assert morsel.value == "" and morsel["max-age"] == "0"
    assert morsel["expires"].endswith("1970 00:00:00 GMT")


# -- len(session) ----------------------------------------------------------------


def expire_record(store: str, sid: str, directory: Any) -> None:
    """Make a stored session expired, as time passing would, without waiting."""
    if store == "ram":
        record, _expiration = RamSession.cache[sid]
        RamSession.cache[sid] = (record, 0.0)
    else:
        os.utime(directory / f"session-{sid}", (0, 0))


@pytest.mark.parametrize("store", ["ram", "file"])
def test_len_counts_the_live_sessions_of_the_store(serve: Any, tmp_path: Any, store: str) -> None:
    # No clean-up thread: it would remove the expired record behind our back.
    options = {"clean_freq": 0}
    config = sessions_config(**options) if store == "ram" else file_config(tmp_path, **options)
    client = serve(Counted(), {"/": config})
    assert client.get("/how_many").body == b"0"
    sids = [session_id(client.get("/count")) for _ in range(3)]
    # A request that only reads its session stores nothing: not a session.
    client.get("/read")
    assert client.get("/how_many").body == b"3"
    expire_record(store, sids[0], tmp_path)
    assert client.get("/how_many").body == b"2"
    client.get("/logout", with_cookie(sids[1]))
    assert client.get("/how_many", with_cookie(sids[2])).body == b"1"
