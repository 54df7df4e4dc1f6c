"""VirtualHost, XML-RPC and the MethodDispatcher, against CherryPy."""

import xmlrpc.client

import pytest

from .conftest import comparable_headers

APP = "dispatchers"

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
XML = {"Content-Type": "text/xml"}


def call(method, *params):
    return xmlrpc.client.dumps(params, method, allow_none=True)


# -- VirtualHost ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "www.example.com",
        "blog.example.com",
        "shop.example.com:8080",
        "shop.example.com",  # the port is part of the match
        "BLOG.EXAMPLE.COM",  # so is the case
        "unknown.example.org",
        "127.0.0.1",
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/page",
        "/page/a/b?x=1",
        "/sub",
        "/sub/",
        "/sub/deep/er",
        "/files/css/site.css",
        "/blog/page",
        "/shop/",
        "/nowhere",
    ],
)
def test_virtual_host(compare, host, path):
    compare("GET", path, {"Host": host})


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "blog.example.com"},
        {"Host": "blog.example.com", "X-Forwarded-Host": "unknown.example.org"},
        {"Host": "unknown.example.org", "X-Forwarded-Host": "shop.example.com:8080"},
        {"X-Forwarded-Host": "blog.example.com, proxy.example.net"},
        {"X-Forwarded-Host": ""},
        {"Host": ""},
        {"Host": None},
    ],
)
@pytest.mark.parametrize("path", ["/", "/page/x", "/files/a"])
def test_virtual_host_headers(compare, headers, path):
    compare("GET", path, headers)


def test_virtual_host_without_host_http10(compare):
    compare("GET", "/page", {"Host": None}, protocol="HTTP/1.0")


@pytest.mark.parametrize(
    "host",
    [
        "blog.example.com\x7f",
        "blog.example.com extra",
        "=?utf-8?q?blog.example.com?=",
        "blog.example.com:notaport",
        "\xe9\xe9.example.com",
        "[::1]:8080",
        "a" * 2000,
        "blog.example.com/../shop",
        "/blog",
    ],
)
def test_virtual_host_garbage(compare, host):
    compare("GET", "/page", {"Host": host})
    assert compare("GET", "/").status == 200


@pytest.mark.parametrize(
    "host, path",
    [
        ("api.example.com", "/multi"),
        ("api.example.com", "/multi/"),
        ("api.example.com", "/multi/x/y"),
        ("www.example.com:80", "/multi/"),
        ("www.example.com", "/multi/"),
        ("other.example.com", "/multi/a"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "HEAD"])
def test_virtual_host_before_method_dispatcher(compare, host, path, method):
    headers = {"Host": host, "X-Forwarded-Host": "other.example.com"}
    body = "" if method in ("POST", "PUT") else None
    compare(method, path, headers, body, framework_written=method == "HEAD" or None)


# -- XML-RPC --------------------------------------------------------------------

RPC_PREFIXES = ["/rpc/", "/rpc/RPC2/", "/rpc/nullable/", "/rpc/latin/"]


def fault_of(reply):
    """The fault in an XML-RPC answer, or None for a normal answer."""
    try:
        xmlrpc.client.loads(reply.body)
    except xmlrpc.client.Fault as fault:
        return fault
    return None


def compare_faults(compare, method, path, body, headers=XML):
    """Both answer with a fault of code 1; morello words its own faults its own way.

    Returns morello's fault string.
    """
    ours, ref = compare.both(method, path, headers, body)
    assert (ours.status, ours.reason) == (ref.status, ref.reason) == (200, "OK")
    assert comparable_headers(ours, True) == comparable_headers(ref, True)
    assert fault_of(ref).faultCode == fault_of(ours).faultCode == 1
    return fault_of(ours).faultString


@pytest.mark.parametrize("prefix", RPC_PREFIXES)
@pytest.mark.parametrize(
    "body",
    [
        call("math.add", 1, 2),
        call("math.add", "a", "b"),
        call("math.add", 1),  # the TypeError is the fault
        call("math.add", 1, 2, 3),
        call("echo"),
        call("echo", 1, [2, 3], {"k": "v"}, True, 1.5, None),
        call("echo", xmlrpc.client.Binary(b"\x00"), xmlrpc.client.DateTime(0)),
        call("nothing"),  # None is a fault unless allow_none
        call("fail"),
        call("returned_fault"),
        call("raised_fault"),
        call("structures"),
    ],
)
def test_xmlrpc_calls(compare, prefix, body):
    reply = compare("POST", prefix, XML, body)
    assert reply.status == 200 and reply.header("Content-Type").startswith("text/xml")


@pytest.mark.parametrize("prefix", RPC_PREFIXES)
@pytest.mark.parametrize(
    "name",
    [
        "math.hidden",
        "math.nothing",
        "math",
        "private",
        "missing",
        "missing.deeper",
        "__init__",
        "__class__.__init__",
        "echo.__globals__",
    ],
)
def test_xmlrpc_unknown_methods(compare, prefix, name):
    # CherryPy: 'method "<last name part>" is not supported'.
    message = compare_faults(compare, "POST", prefix, call(name))
    assert message == f"The XML-RPC method {name!r} does not exist."


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<methodCall><methodName>echo</methodName>",
        b"<?xml version='1.0'?><methodCall></methodCall>",
        call(""),
        xmlrpc.client.dumps((1,), methodresponse=True),
        b"<methodCall><methodName>echo</methodName><params><param><value><int>x</int>"
        b"</value></param></params></methodCall>",
        b"<methodCall><methodName>echo</methodName><params><param><value><foo>1</foo>"
        b"</value></param></params></methodCall>",
        b"<methodCall><methodName>echo\xff\xfe</methodName></methodCall>",
        b"\x00\x01\x02",
        b"<methodCall>" * 2000,
    ],
)
def test_xmlrpc_malformed_bodies(compare, body):
    # CherryPy reads a malformed call as a call of the method "ERRORMETHOD".
    message = compare_faults(compare, "POST", "/rpc/", body)
    assert message.startswith("The request body is not an XML-RPC call")
    assert compare("POST", "/rpc/", XML, call("math.add", 2, 3)).status == 200


def entity_call(entities, value):
    return (
        f"<?xml version='1.0'?><!DOCTYPE x [{entities}]><methodCall><methodName>echo"
        f"</methodName><params><param><value>{value}</value></param></params></methodCall>"
    )


def test_xmlrpc_internal_entities(compare):
    body = entity_call("<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>", "&b;")
    assert b"aaaaaaaaaaaa" in compare("POST", "/rpc/", XML, body).body


def test_xmlrpc_external_entities_are_not_read(compare):
    body = entity_call("<!ENTITY e SYSTEM 'file:///etc/passwd'>", "&e;")
    assert b"root:" not in compare("POST", "/rpc/", XML, body).body


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_xmlrpc_without_body(compare, method):
    compare_faults(compare, method, "/rpc/", None, {})


def test_xmlrpc_form_content_type(compare):
    # The body is parsed as a form, so nothing is left for the XML-RPC call.
    compare_faults(compare, "POST", "/rpc/", call("echo", 1), FORM)


@pytest.mark.parametrize("method", ["not_found", "redirect"])
def test_xmlrpc_http_errors(compare, method):
    compare("POST", "/rpc/", XML, call(method))


@pytest.mark.parametrize(
    "path",
    [
        "/rpc",
        "/rpc/RPC2",
        "/rpc/nullable",
        "/rpc/extra/segments/",
        "/rpc/RPC2/nullable/",
        "/rpc/rpc2/",
    ],
)
def test_xmlrpc_paths(compare, path):
    compare("POST", path, XML, call("echo", "x"))


def test_xmlrpc_query_parameters(compare):
    reply = compare("POST", "/rpc/?flag=1&name=a", XML, call("echo", 1))
    assert xmlrpc.client.loads(reply.body)[0] == ([[1], {"flag": "1", "name": "a"}],)


def test_xmlrpc_put(compare):
    compare("PUT", "/rpc/", XML, call("echo", 1))


def test_xmlrpc_non_ascii_result(compare):
    compare("POST", "/rpc/", XML, call("text"))


def test_xmlrpc_encoding_setting(compare):
    # CherryPy declares the configured encoding but sends UTF-8 bytes;
    # morello encodes the answer as it declares (unencodable characters as
    # character references).
    ours, ref = compare.both("POST", "/rpc/latin/", XML, call("text"))
    assert ours.body.startswith(b"<?xml version='1.0' encoding='iso-8859-1'?>")
    assert b"caf\xe9 &#9731;" in ours.body and b"caf\xc3\xa9" in ref.body
    assert xmlrpc.client.loads(ours.body)[0] == ("caf\u00e9 \u2603",)


def test_xmlrpc_body_too_large(compare):
    compare("POST", "/rpc/", {**XML, "Content-Length": str(200 * 1024 * 1024)}, b"")


# -- MethodDispatcher -------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/rest/", None),
        ("GET", "/rest", None),
        ("GET", "/rest/items", None),
        ("GET", "/rest/items/", None),
        ("GET", "/rest/items/7", None),
        ("GET", "/rest/items/7?colour=red&size=9", None),
        ("GET", "/rest/items?item_id=3", None),
        ("GET", "/rest/items/7/extra", None),
        ("GET", "/rest/items/a%2Fb", None),
        ("HEAD", "/rest/items/7", None),
        ("POST", "/rest/items", "name=Ann"),
        ("POST", "/rest/items", "name=Ann&x=1"),
        ("POST", "/rest/items/7", "name=Ann"),
        ("PUT", "/rest/items/5", "name=Bob"),
        ("PUT", "/rest/items", "name=Bob"),
        ("PUT", "/rest/items/5", "name=Bob&extra=1"),
        ("DELETE", "/rest/items/1", None),
        ("DELETE", "/rest/items", None),
        ("PATCH", "/rest/items/2", ""),
        ("OPTIONS", "/rest/items", None),
        ("TRACE", "/rest/items", None),
        ("FOO", "/rest/items", None),
        ("get", "/rest/items/1", None),
        ("Post", "/rest/items", "name=lower"),
        ("HEAD", "/rest/explicit", None),
        ("GET", "/rest/explicit", None),
        ("OPTIONS", "/rest/explicit", None),
        ("POST", "/rest/", ""),
        ("GET", "/rest/nothing/here", None),
        ("GET", "/rest/failing", None),
        ("POST", "/rest/failing", "count=1"),
        ("POST", "/rest/failing", "count=x"),
        ("POST", "/rest/failing", ""),
    ],
)
def test_method_dispatcher(compare, method, path, body):
    headers = FORM if body is not None else None
    compare(method, path, headers, body, framework_written=method == "HEAD" or None)


def test_method_dispatcher_allow_header(compare):
    reply = compare("DELETE", "/rest/explicit")
    assert reply.status == 405
    assert reply.header("Allow") == "HEAD, OPTIONS"
    assert compare("GET", "/rest/items").header("Allow") == "DELETE, GET, HEAD, PATCH, POST, PUT"
