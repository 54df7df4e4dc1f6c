"""Tools (built-in, custom, in a custom toolbox) and hooks at their priorities."""

import pytest

APP = "tooling"

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/decorated/", b"first (decorator) > late (decorator) > handler > shown"),
        ("/decorated/header", b"with header"),
        ("/decorated/noted", b"note (decorator) > handler > shown"),
        ("/decorated/loud", b"HELLO WORLD"),
        ("/decorated/loud?word=hey", b"HEY WORLD"),
        ("/decorated/answered", b"configured answer"),
        ("/as_handler", b"a HandlerTool as page handler"),
        ("/configured/", None),
        ("/configured/?a=1", None),
        ("/configured/attach", None),
        ("/reprioritized/", None),
        ("/nobody/", None),
        ("/injected/", None),
        ("/injected/?injected=by+the+client&other=1", None),
    ],
)
def test_call_order(compare, path, expected):
    reply = compare("GET", path)
    assert reply.status == 200
    if expected is not None:
        assert reply.body == expected


def test_call_order_with_body(compare):
    assert compare("POST", "/configured/", FORM, "a=1").status == 200


def test_call_order_without_body_processing(compare):
    assert compare("POST", "/nobody/", FORM, "a=1").status == 200


@pytest.mark.parametrize(
    "path, status",
    [
        ("/configured/error", 409),
        ("/configured/crash", 500),
        ("/configured/redirect", 303),
        ("/configured/missing/page", 404),
        ("/reprioritized/error", 409),
        ("/failing/error", 409),
        ("/failing/crash", 500),
        ("/refused/error", 401),
        ("/refused/crash", 402),
        ("/refused/redirect", 303),
        # before_finalize runs again for the error page, fails again: 500
        ("/refused/attach", 500),
    ],
)
def test_error_hooks(compare, path, status):
    assert compare("GET", path).status == status


@pytest.mark.parametrize(
    "path, status",
    [
        ("/slashes", 301),
        ("/slashes/", 200),
        ("/slashes/page", 200),
        ("/slashes/page/", 301),
        ("/slashes/page/?x=1", 301),
        ("/lenient", 200),
        ("/lenient/page/", 200),
        ("/temporary", 307),
        ("/temporary/page/", 307),
        ("/", 200),
    ],
)
def test_trailing_slash_and_response_headers(compare, path, status):
    assert compare("GET", path).status == status


def test_bytes_headers_appended_after_finalize(compare):
    reply = compare("GET", "/finalized/as_bytes")
    assert reply.status == 200 and reply.header("WWW-Authenticate") is not None


@pytest.mark.parametrize("path, culprit", [("bad_name", b"2"), ("bad_value", b"3")])
def test_other_headers_appended_after_finalize(compare, path, culprit):
    # A bare 500 on both; the message naming the culprit is worded differently.
    ours, ref = compare.both("GET", f"/finalized/{path}")
    assert ours.status == ref.status == 500
    assert culprit in ours.body.splitlines()[-1]
