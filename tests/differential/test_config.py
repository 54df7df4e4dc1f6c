"""Config files and dicts, _cp_config precedence and the MethodDispatcher."""

import pytest

APP = "configured"

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("path", ["/", "/sub/", "/sub/page", "/sub2/", "/sub2/decorated"])
def test_precedence(compare, path):
    assert compare("GET", path).status == 200


@pytest.mark.parametrize("path", ["/quiet/", "/quiet/decorated"])
def test_str_without_encode_tool(compare, path):
    assert compare("GET", path).status == 500


def test_custom_section(compare):
    assert compare("GET", "/google").body == b"appid=an-app-id key=a-key"


def test_global_config_file(compare):
    assert compare("GET", "/server_settings").body == b"thread_pool=4 global=from server.conf"


def test_error_page_from_config_file(compare):
    reply = compare("GET", "/nothing/here")
    assert reply.status == 404 and b"Custom 404" in reply.body


@pytest.mark.parametrize("prefix", ["/rest", "/api/items"])
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "", None),
        ("GET", "/", None),
        ("GET", "?id=3", None),
        ("GET", "/7", None),
        ("HEAD", "", None),
        ("POST", "", "name=Ann"),
        ("POST", "", ""),
        ("PUT", "/5", "name=Bob"),
        ("PUT", "", "name=Bob"),
        ("DELETE", "?id=1", None),
        ("DELETE", "", None),
        ("PATCH", "", "a=1&b=2"),
        ("OPTIONS", "", None),
        ("TRACE", "", None),
        ("get", "", None),
        ("GET", "/helper", None),
        ("GET", "/readonly", None),
        ("POST", "/readonly", ""),
        ("HEAD", "/readonly", None),
        ("GET", "/nothing/here/either", None),
    ],
)
def test_method_dispatcher(compare, prefix, method, path, body):
    headers = FORM if body is not None else None
    compare(method, prefix + path, headers, body, framework_written=method == "HEAD" or None)
