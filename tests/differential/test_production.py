"""``request.show_tracebacks`` and ``request.show_mismatched_params`` on and off."""

import pytest

APP = "production"

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("prefix", ["", "/loud"])
@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "/", None, 200),
        ("GET", "/crash", None, 500),
        ("GET", "/params", None, 404),
        ("GET", "/params?a=1&c=2", None, 404),
        ("GET", "/params/1/2/3", None, 404),
        ("POST", "/params", "a=1&c=2", 400),
        ("POST", "/params/1", "a=2", 400),
        ("GET", "/params/1?a=2", None, 404),
        ("GET", "/forbidden", None, 403),
        ("GET", "/nothing", None, 404),
        ("GET", "/stream", None, 500),
        ("GET", "/double_fault", None, 500),
    ],
)
def test_show_details(compare, prefix, method, path, body, status):
    headers = FORM if body is not None else None
    reply = compare(method, prefix + path, headers, body)
    assert reply.status == status
    if status >= 500:
        assert (b"Traceback" in reply.body) == (prefix == "/loud")


@pytest.mark.parametrize("prefix", ["", "/loud"])
def test_error_escaping_the_application(compare, prefix):
    # CherryPy bug: an error that escapes the application (here an internal
    # redirect loop) is reported after the request was released, so CherryPy
    # reads show_tracebacks from its placeholder request, which is always
    # True, and shows the traceback even in production. morello follows the
    # global config (production: no traceback).
    ours, ref = compare.both("GET", prefix + "/loop")
    assert (ours.status, ref.status) == (500, 500)
    assert ours.body == b"Unrecoverable error in the server."
    assert b"Traceback (most recent call last)" in ref.body
