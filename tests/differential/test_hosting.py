"""Several applications in one process, cookies, logging and grafted WSGI apps."""

import pytest

APP = "hosting"


@pytest.mark.parametrize(
    "path, status",
    [
        ("/blog/", 200),
        ("/blog", 301),
        ("/blog/post/3", 200),
        ("/blog/post?id=4", 200),
        ("/blog/admin/", 200),
        ("/blog/admin", 301),
        ("/blog/administration", 404),
        ("/blog/admin/x", 404),
        ("/forum/", 200),
        ("/forum/some/topic", 200),
        ("/", 404),  # nothing is mounted at the root
        ("/blogger/", 404),
        ("/cookie/", 404),
        ("/log/", 200),
        ("/log/kaboom", 200),
        ("/wsgi", 200),
        ("/wsgi/deeper/path?q=1", 200),
    ],
)
def test_applications(compare, path, status):
    assert compare("GET", path).status == status


@pytest.mark.parametrize("path", ["/cookie/set", "/cookie/expire", "/cookie/several"])
def test_cookies_sent(compare, path):
    assert compare("GET", path).header("Set-Cookie")


@pytest.mark.parametrize(
    "cookie",
    [
        None,
        "cookieName=cookieValue",
        "a=1; b=2; c=3",
        'quoted="a value"; other=x',
        "a=1;b=2",
        "broken",
        "a=1; broken; b=2",
        "$Version=1; a=1; $Path=/",
        "a=\u00e9",
        "bad name=1",
        "a=1, b=2",
    ],
)
def test_cookies_read(compare, cookie):
    compare("GET", "/cookie/read", {"Cookie": cookie})


@pytest.mark.parametrize("mount", ["/sites", "/direct"])
@pytest.mark.parametrize(
    "headers",
    [
        {},  # www.example.com: the default site
        {"Host": "blog.example.com"},
        {"Host": "blog.example.com:8080"},
        {"Host": "BLOG.example.com"},  # looked up as sent
        {"Host": "shop.example.com"},  # a plain WSGI app
        {"Host": None},
        {"X-Forwarded-Host": "blog.example.com"},
        {"Host": "blog.example.com", "X-Forwarded-Host": "shop.example.com"},
        {"Host": "blog.example.com", "X-Forwarded-Host": "nowhere.example.com"},
    ],
)
def test_sites_by_host_name(compare, mount, headers):
    compare("GET", f"{mount}/", headers)
    compare("GET", f"{mount}/missing", headers)
