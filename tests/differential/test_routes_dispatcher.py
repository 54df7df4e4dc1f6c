"""The RoutesDispatcher, against CherryPy (skipped without the routes package)."""

import pytest

pytest.importorskip("routes")

APP = "routed"

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("prefix", ["", "/full"])
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/blog", None),
        ("GET", "/blog/", None),
        ("GET", "/blog?x=1", None),
        ("GET", "/blog/2024/hello", None),
        ("GET", "/blog/2024/hello?extra=1", None),
        ("GET", "/blog/2024", None),
        ("GET", "/blog/24/hello", None),
        ("GET", "/blog/20x4/hello", None),
        ("GET", "/blog/link", None),
        ("GET", "/blog/elsewhere", None),
        ("GET", "/blog/fail", None),
        ("POST", "/posts", "title=First"),
        ("GET", "/posts", None),
        ("PUT", "/posts", "title=First"),
        ("GET", "/broken", None),
        ("GET", "/any/index", None),
        ("GET", "/any/link", None),
        ("GET", "/any/nope", None),
        ("GET", "/shop/hat", None),
        ("GET", "/shop/hat?colour=red", None),
        ("GET", "/shop", None),
        ("GET", "/files/a/b/c.txt", None),
        ("GET", "/files/", None),
        ("GET", "/", None),
        ("GET", "/nowhere", None),
        ("HEAD", "/blog", None),
        ("GET", "/blog/caf%C3%A9/x", None),
        ("GET", "/blog/2024/caf%C3%A9", None),
        ("GET", "/blog/2024/a%2Fb", None),
    ],
)
def test_routes(compare, prefix, method, path, body):
    headers = FORM if body is not None else None
    compare(method, prefix + path, headers, body, framework_written=method == "HEAD" or None)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/blog/2024/hello", b"my.level='post handler' my.page='section /blog'"),
        ("/blog/2024", b"my.level='section /blog/2024'"),
        ("/shop/hat", b"my.level='shop class'"),
        ("/shop", b"my.level='section /shop'"),
    ],
)
def test_config_levels(compare, path, expected):
    assert expected in compare("GET", path).body


def test_full_result(compare):
    assert b"('action', 'post'), ('controller', 'post')" in compare("GET", "/full/blog/2024/x").body


@pytest.mark.parametrize("action", ["__init__", "__class__", "__dir__"])
def test_dunder_actions_are_not_found(compare, action):
    # CherryPy calls whatever attribute an {action} from the URL names, such
    # as the controller's __init__ or its class; morello never routes to
    # dunder names.
    ours, ref = compare.both("GET", f"/any/{action}")
    assert ours.status == 404 and ref.status != 404
