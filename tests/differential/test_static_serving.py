"""Static content against CherryPy: files, indexes, patterns, downloads, ranges,
conditional requests, and paths that try to leave the directory.

Where CherryPy answers a request wrongly (a 500, a leak, a corrupt resumed
download) morello answers it safely; those tests use ``compare.both`` and
say what CherryPy does.
"""

import pytest

APP = "static_serving"

DIGITS = ("0123456789" * 100).encode()


@pytest.mark.parametrize(
    "path",
    [
        "/static/style.css",
        "/static/digits.txt",
        "/static/docs/readme.txt",
        "/static/caf%C3%A9.txt",
        "/static/data.weird",
        "/static/archive.gz",
        "/static/favicon.ico",
        "/static/README",
        "/static/missing.txt",
        # index files, and the redirect to the slashed directory
        "/static/",
        "/static",
        "/static/docs/",
        "/static/docs",
        "/plain/",
        "/plain/docs/",
        # match: only .css under /css
        "/css/style.css",
        "/css/index.html",
        # what staticdir does not find goes to the handler
        "/dynamic/style.css",
        "/dynamic/no/such/file",
        # staticfile, with an absolute and a root-relative filename
        "/favicon.ico",
        "/home",
        # tools.staticdir.handler
        "/nav/readme.txt",
        "/nav/",
        "/nav/missing",
        "/",
    ],
)
def test_get(compare, path):
    compare("GET", path)


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE"])
def test_methods(compare, method):
    compare(method, "/static/style.css", body=b"" if method in ("POST", "PUT") else None)


def test_http_10_has_no_ranges(compare):
    reply = compare("GET", "/static/digits.txt", {"Range": "bytes=0-9"}, protocol="HTTP/1.0")
    assert reply.status == 200 and reply.header("Accept-Ranges") is None


@pytest.mark.parametrize(
    "path",
    [
        "/download",
        "/download?name=digits.txt",
        "/download?name=r%C3%A9sum%C3%A9%20final.txt",
        "/download?name=%EF%AC%81le.txt",  # a ligature folds to "file.txt"
        "/download?name=%E6%96%87%E4%BB%B6.txt",  # nothing ASCII but the extension
        "/attach?disposition=inline",
        "/attach?disposition=inline&name=caf%C3%A9.txt&content_type=text/plain",
        "/fileobj",
        "/fileobj?disposition=attachment",
        "/fileobj?disposition=attachment&name=%C3%BCber.txt",
        "/bytesio",
    ],
)
def test_serve_functions(compare, path):
    compare("GET", path)


@pytest.mark.parametrize("path", ["/static/digits.txt", "/attach", "/fileobj", "/home"])
@pytest.mark.parametrize(
    "range_",
    [
        "bytes=0-9",
        "bytes=990-",
        "bytes=-10",
        "bytes=-2000",  # more than the whole: all of it, as a range
        "bytes=995-2000",  # the end is cut to the size
        "bytes=1000-",  # unsatisfiable: 416
        "bytes=2000-3000,5000-",
        "bytes=5-2",  # invalid (see test_invalid_range_past_the_end): the whole file
        "bytes=-",
    ],
)
def test_ranges(compare, path, range_):
    compare("GET", path, {"Range": range_})


def multipart_parts(reply):
    """``[(content_range, data), ...]`` of a multipart/byteranges reply.

    Parsed by hand: CherryPy's boundaries contain "=", unquoted, which
    the email package rejects.
    """
    boundary = reply.header("Content-Type").partition("boundary=")[2].strip('"').encode()
    parts = []
    for chunk in reply.body.split(b"--" + boundary)[1:-1]:
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.lower().split(b"\r\n"))
        parts.append((fields[b"content-range"].decode(), data.removesuffix(b"\r\n")))
    return parts


def without_boundary(reply):
    """The body of a multipart/byteranges reply with its boundary replaced."""
    boundary = reply.header("Content-Type").partition("boundary=")[2].strip('"').encode()
    return reply.body.replace(boundary, b"BOUNDARY")


@pytest.mark.parametrize("path", ["/static/digits.txt", "/fileobj"])
def test_several_ranges(compare, path):
    # The boundary is random, so the parts are compared instead of the bodies.
    ours, ref = compare.both("GET", path, {"Range": "bytes=0-4,10-14,-3"})
    assert ours.status == ref.status == 206
    for reply in (ours, ref):
        assert reply.header("Content-Type").startswith("multipart/byteranges; boundary=")
        assert int(reply.header("Content-Length")) == len(reply.body)
    # The same bytes but for the boundary (clients may parse them naively).
    assert without_boundary(ours) == without_boundary(ref)
    assert (
        multipart_parts(ours)
        == multipart_parts(ref)
        == [
            ("bytes 0-4/1000", b"01234"),
            ("bytes 10-14/1000", b"01234"),
            ("bytes 997-999/1000", b"789"),
        ]
    )


@pytest.mark.parametrize("path", ["/static/digits.txt", "/attach", "/download"])
def test_conditional(compare, path):
    last_modified = compare("GET", path).header("Last-Modified")
    assert last_modified
    for headers in [
        {"If-Modified-Since": last_modified},
        {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"If-Unmodified-Since": last_modified},
        {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"If-Modified-Since": last_modified, "Range": "bytes=0-9"},
        {"If-Range": last_modified, "Range": "bytes=0-9"},
    ]:
        status = compare("GET", path, headers).status
        # (HEAD has no body by which to recognise CherryPy's error pages.)
        compare("HEAD", path, headers, framework_written=status >= 400)
    # Another method than GET or HEAD cannot be "not modified".
    compare("POST", "/attach", {"If-Modified-Since": last_modified}, body=b"")


@pytest.mark.parametrize(
    "path, status",
    [
        ("/static/../static_serving.py", 403),
        ("/static/%2e%2e/static_serving.py", 403),
        # Unquoted twice, so "%252e" is a dot too.
        ("/static/%252e%252e/static_serving.py", 403),
        ("/static/docs/../../static_serving.py", 403),
        ("/static/%2e%2e%2F%2e%2e%2Fstatic_serving.py", 403),
        ("/static/%2Fetc%2Fpasswd", 403),
        ("/static//etc/passwd", 404),  # leading slashes are dropped
        ("/static/%5c..%5cstatic_serving.py", 404),  # no separator on POSIX
        ("/static/style.css%00.txt", 404),
        ("/static/%00", 404),
        ("/static/%2500", 404),
        ("/plain/../static_serving.py", 403),
        ("/nav/../static_serving.py", 403),
    ],
)
def test_paths_out_of_the_directory(compare, path, status):
    reply = compare("GET", path)
    assert reply.status == status
    assert compare("GET", "/static/style.css").status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/../static_site_private/secret.txt",
        "/static/%2e%2e/static_site_private/secret.txt",
        "/plain/..%2Fstatic_site_private%2Fsecret.txt",
    ],
)
def test_sibling_with_the_same_prefix_is_refused(compare, path):
    # CherryPy checks containment with a string prefix test, so
    # ".../static_site_private" passes for ".../static_site": it leaks the file.
    ours, ref = compare.both("GET", path)
    assert (ref.status, ref.body) == (200, b"private: must never be served\n")
    assert ours.status == 403 and b"private" not in ours.body


@pytest.mark.parametrize(
    "range_, cherrypy_status",
    [
        ("bytes=", 500),
        ("bytes=a-b", 500),
        ("bytes=1", 500),
        ("bytes=0-1,x", 500),
        ("0-5", 500),
        ("items=0-5", 206),  # served as if it said bytes
        ("bytes=-0", 206),  # empty, with "Content-Range: bytes 1000-999/1000"
    ],
)
def test_malformed_ranges(compare, range_, cherrypy_status):
    # CherryPy fails on most of these. morello ignores an unparsable or
    # foreign-unit Range (RFC 7233 3.1) and answers an empty suffix with 416.
    # ("bytes=--5" is tested in test_static.py only: CherryPy hangs on it.)
    ours, ref = compare.both("GET", "/static/digits.txt", {"Range": range_})
    assert ref.status == cherrypy_status
    if range_ == "bytes=-0":
        assert ours.status == 416 and ours.header("Content-Range") == "bytes */1000"
    else:
        assert (ours.status, ours.body) == (200, DIGITS)
    assert compare("GET", "/static/style.css").status == 200


def test_invalid_range_past_the_end(compare):
    # "bytes=5-2" is invalid (last before first): RFC 7233 says to ignore the
    # header, and CherryPy does, unless the first byte is past the end (4
    # bytes here), where it answers 416. morello ignores it either way.
    ours, ref = compare.both("GET", "/favicon.ico", {"Range": "bytes=5-2"})
    assert ref.status == 416
    assert (ours.status, ours.body) == (200, b"\x00\x00\x01\x00")


def test_stale_if_range_gives_the_whole_file(compare):
    # CherryPy ignores If-Range and sends the range, which a client would
    # splice into its stale copy; morello sends the whole current file.
    ours, ref = compare.both(
        "GET",
        "/static/digits.txt",
        {"If-Range": "Sat, 01 Jan 2000 00:00:00 GMT", "Range": "bytes=0-9"},
    )
    assert ref.status == 206
    assert (ours.status, ours.body) == (200, DIGITS)


def test_overlapping_ranges_give_the_whole_file(compare):
    # Ranges adding up to more than the file would multiply the bytes sent;
    # morello sends the file once (RFC 7233 6.1). CherryPy sends every part.
    ours, ref = compare.both("GET", "/static/digits.txt", {"Range": "bytes=0-,0-,0-"})
    assert ref.status == 206 and len(ref.body) > 3000
    assert (ours.status, ours.body) == (200, DIGITS)


def test_ranges_of_a_file_object_without_descriptor(compare):
    # CherryPy fails with a 500 (it compares the range to an unknown length);
    # morello measures a seekable object and serves the range.
    ours, ref = compare.both("GET", "/bytesio", {"Range": "bytes=3-8"})
    assert ref.status == 500
    assert (ours.status, ours.body, ours.header("Content-Range")) == (206, b"memory", "bytes 3-8/9")


def test_quotes_in_a_download_name_are_escaped(compare):
    # CherryPy writes filename="a"b.txt", which ends the name early.
    ours, ref = compare.both("GET", "/download?name=a%22b.txt")
    assert ref.header("Content-Disposition") == 'attachment; filename="a"b.txt"'
    assert ours.header("Content-Disposition") == 'attachment; filename="a\\"b.txt"'
