"""Redirects, HTTP errors, error pages, manual status, InternalRedirect and url()."""

import pytest

APP = "redirects"

PREFIXES = ["", "/mounted"]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("code", ["301", "302", "303", "307", "308", "300", ""])
@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])
def test_redirect_codes(compare, prefix, code, protocol):
    reply = compare("GET", f"{prefix}/redirects/to?code={code}", protocol=protocol)
    default = 303 if protocol == "HTTP/1.1" else 302
    assert reply.status == (int(code) if code else default)
    assert reply.header("Location") == f"http://www.example.com{prefix}/redirects/target"


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "path",
    [
        "/redirects/absolute",
        "/redirects/many",
        "/redirects/external",
        "/redirects/upward",
        "/redirects/unicode",
        "/redirects/to?url=sub/x%3Fa%3D1",
        "/redirects/to?url=//other.example/x",
        "/redirects/to?url=%23frag",
        "/redirects/to?url=",
        "/redirects/to/301",
        "/redirects",
        "/redirects/set_response",
        "/redirects/from_bytes",
    ],
)
def test_redirects(compare, prefix, path):
    assert 300 <= compare("GET", prefix + path).status < 400


@pytest.mark.parametrize(
    "path, status",
    [
        ("/redirects/not_modified", 304),
        ("/redirects/use_proxy", 305),
        ("/redirects/bad_status", 500),
        ("/redirects/unknown_status", 500),
    ],
)
def test_unusual_redirect_statuses(compare, path, status):
    assert compare("GET", path).status == status


def test_redirect_head(compare):
    assert compare("HEAD", "/redirects/to?code=302", framework_written=True).status == 302


def test_redirect_post(compare):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert compare("POST", "/redirects/to", headers, "code=307").status == 307


@pytest.mark.parametrize(
    "path, status",
    [
        ("/errors/status", 500),
        ("/errors/status?code=404", 404),
        ("/errors/status?code=401&message=Who%20are%20you%3F", 401),
        ("/errors/status?code=503", 503),
        ("/errors/status?code=599", 599),
        ("/errors/status?code=400%20Bad%20Thing", 400),
        ("/errors/status?code=302", 500),  # not an error status
        ("/errors/status?code=abc", 500),
        ("/errors/forbidden", 403),
        ("/errors/custom_reason", 499),
        ("/errors/out_of_range", 500),
        ("/errors/not_found", 404),
        ("/errors/not_found_path", 404),
        ("/errors/crash", 500),
        ("/errors/handle?value=3", 200),
        ("/errors/handle?value=x", 400),
        ("/errors/headers_dropped", 410),
        ("/errors/error_set_response", 402),
    ],
)
def test_http_errors(compare, path, status):
    assert compare("GET", path).status == status


def test_error_head(compare):
    assert compare("HEAD", "/errors/forbidden", framework_written=True).status == 403


@pytest.mark.parametrize(
    "section", ["template_pages", "callable_pages", "bytes_pages", "generator_pages"]
)
@pytest.mark.parametrize("page, status", [("missing", 404), ("forbidden", 403), ("crash", 500)])
def test_custom_error_pages(compare, section, page, status):
    reply = compare("GET", f"/{section}/{page}")
    assert reply.status == status and b"powered_by" not in reply.body


@pytest.mark.parametrize("section", ["broken_pages", "missing_template"])
def test_failing_error_pages(compare, section):
    # The custom page fails: the default page says so.
    assert compare("GET", f"/{section}/forbidden").status == 403


def test_custom_error_page_for_unmapped_path(compare):
    assert compare("GET", "/template_pages/nothing/here").status == 404


@pytest.mark.parametrize(
    "path, status",
    [
        ("/status/created", 201),
        ("/status/custom", 299),
        ("/status/string_code", 202),
        ("/status/no_content", 204),
        ("/status/not_modified", 304),
        ("/status/teapot", 418),
        ("/status/invalid", 500),
        ("/status/too_big", 500),
    ],
)
def test_manual_status(compare, path, status):
    assert compare("GET", path).status == status


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "path",
    [
        "/internal/",
        "/internal/relative",
        "/internal/with_qs?x=1",
        "/internal/to_missing",
        "/internal/loop",
    ],
)
def test_internal_redirect(compare, prefix, path):
    compare("GET", prefix + path)


def test_internal_redirect_from_post(compare):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert compare("POST", "/internal/from_post", headers, "a=1").status == 200


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "path",
    [
        "/urls/",
        "/urls",
        "/urls/page",
        "/urls/page/",
        "/urls/page/deeper/still",
        "/urls/page?q=1&r=%20",
        "/urls/anything/goes/",
        "/urls/anything",
    ],
)
def test_url(compare, prefix, path):
    compare("GET", prefix + path)


def test_url_with_http10_and_no_host(compare):
    compare("GET", "/urls/page", {"Host": None}, protocol="HTTP/1.0")


def test_no_app_mounted_at_path(compare):
    compare("GET", "/mountedx/")


@pytest.mark.parametrize("page", ["crash", "missing", "forbidden"])
def test_own_error_response(compare, page):
    # request.error_response handles unexpected errors only, not HTTPErrors.
    compare("GET", f"/own_error_response/{page}")


@pytest.mark.parametrize("query", ["q=caf%E9", "q=caf%C3%A9", "q=%ff%fe"])
def test_query_string_encoding(compare, query):
    assert compare("GET", f"/latin/page?{query}").status == 200
