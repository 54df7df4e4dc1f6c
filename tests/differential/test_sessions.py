"""RAM sessions compared with CherryPy 18 where the answers are deterministic.

Session ids and expiry dates differ by nature; morello also adds
``SameSite`` (CherryPy 18 has no such option), so cookies are compared by
the names of their attributes without it. An expired cookie also carries
``Max-Age=0`` in morello (README, "What differs from CherryPy on purpose"):
CherryPy's has none, so browsers that had its Max-Age keep the cookie.
``regenerate()`` before the session is used keeps the data in morello
(CherryPy drops it): on purpose too.
"""

from __future__ import annotations

import email.utils
import http.cookies
import re
import time

from .conftest import Reply, send

APP = "sessions"
COOKIE = re.compile(r"session_id=([0-9a-f]{40})")


def attribute_names(reply: Reply) -> set[str]:
    cookie = reply.header("Set-Cookie") or ""
    names = {part.split("=")[0].strip().lower() for part in cookie.split(";")[1:]}
    return names - {"samesite"}


def flow(port: int) -> list[tuple[int, str, set[str], bool]]:
    """Count twice, regenerate, count again; what each step answered."""
    steps = []
    first = send(port, "GET", "/count")
    sid = COOKIE.search(first.header("Set-Cookie") or "").group(1)
    steps.append((first.status, first.text, attribute_names(first), True))
    for path in ("/count", "/regen", "/count"):
        reply = send(port, "GET", path, {"Cookie": f"session_id={sid}"})
        new = COOKIE.search(reply.header("Set-Cookie") or "").group(1)
        steps.append((reply.status, reply.text, attribute_names(reply), new == sid))
        sid = new
    return steps


def test_counter_flow_matches(compare) -> None:
    ours, ref = flow(compare.morello.port), flow(compare.cherrypy.port)
    assert ours == ref
    assert ours[2][3] is False  # regenerate() gave a new id


def test_unknown_id_gets_fresh_session(compare) -> None:
    for port in (compare.morello.port, compare.cherrypy.port):
        reply = send(port, "GET", "/count", {"Cookie": "session_id=" + "0" * 40})
        assert (reply.status, reply.text) == (200, "1")
        assert COOKIE.search(reply.header("Set-Cookie")).group(1) != "0" * 40


def test_expire_drops_the_cookie(compare) -> None:
    replies = {}
    for name, port in (("morello", compare.morello.port), ("cherrypy", compare.cherrypy.port)):
        sid = COOKIE.search(send(port, "GET", "/count").header("Set-Cookie")).group(1)
        replies[name] = send(port, "GET", "/logout", {"Cookie": f"session_id={sid}"})
        assert (replies[name].status, replies[name].text) == (200, "bye")
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        jar.load(replies[name].header("Set-Cookie"))
        expires = email.utils.parsedate_to_datetime(jar["session_id"]["expires"])
        assert expires.timestamp() < time.time()
    ours, ref = replies["morello"], replies["cherrypy"]
    assert attribute_names(ours) - {"max-age"} == attribute_names(ref)
    assert "Max-Age=0" in ours.header("Set-Cookie")


def test_regenerate_before_use_keeps_the_data_on_purpose(compare) -> None:
    kept = {}
    for name, port in (("morello", compare.morello.port), ("cherrypy", compare.cherrypy.port)):
        first = send(port, "GET", "/count")
        sid = COOKIE.search(first.header("Set-Cookie")).group(1)
        reply = send(port, "GET", "/regen_first", {"Cookie": f"session_id={sid}"})
        assert reply.status == 200
        assert COOKIE.search(reply.header("Set-Cookie")).group(1) != sid
        kept[name] = reply.text
    assert kept == {"morello": "1", "cherrypy": "None"}
