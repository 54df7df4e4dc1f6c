"""The tutorial's examples for built-in tools morello may not have yet.

Each test runs once morello has the tool it needs and is skipped until then.
"""

import base64
import json

import pytest

import morello

APP = "seed_tools"


def needs(*tools):
    missing = [f"tools.{tool}" for tool in tools if not hasattr(morello.tools, tool)]
    return pytest.mark.skipif(bool(missing), reason=f"morello has no {', '.join(missing)}")


@needs("staticdir", "staticfile")
@pytest.mark.parametrize(
    "path",
    [
        "/static/style.css",
        "/static/js/my.js",
        "/static/data.csv",
        "/static/missing.css",
        "/static/",
        "/static/../seed_tools.py",
        "/static/%2e%2e/seed_tools.py",
        "/style.css",
    ],
)
def test_static(compare, path):
    compare("GET", path)


@needs("staticdir")
@pytest.mark.parametrize(
    "headers",
    [
        {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
        {"Range": "bytes=0-3"},
        {"Range": "bytes=5-"},
        {"Range": "bytes=-4"},
        {"Range": "bytes=100-200"},
    ],
)
def test_static_conditional_and_ranges(compare, headers):
    # (Several ranges are left out: their multipart boundary is random.)
    compare("GET", "/static/style.css", headers)


@needs("staticfile")
@pytest.mark.parametrize("name", ["data.csv", "style.css", "nothing.txt"])
def test_download(compare, name):
    compare("GET", f"/download?name={name}")


@needs("json_in", "json_out")
def test_json_out(compare):
    reply = compare("GET", "/json/out")
    assert json.loads(reply.body)["key"] == "value"


@needs("json_in", "json_out")
@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", '{"a": [1, 2]}'),
        ("application/json", "not json"),
        ("text/plain", '{"a": 1}'),
        ("application/json; charset=utf-8", '"caf\u00e9"'),
    ],
)
def test_json_in(compare, content_type, body):
    compare("POST", "/json/echo", {"Content-Type": content_type}, body)


def basic(credentials):
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@needs("auth_basic")
@pytest.mark.parametrize(
    "authorization",
    [None, basic("jon:secret"), basic("jon:wrong"), basic("nobody:secret"), "Basic !!", "Digest x"],
)
def test_auth_basic(compare, authorization):
    compare("GET", "/protected/area/", {"Authorization": authorization})
