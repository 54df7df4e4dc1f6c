"""``tools.caching`` under CherryPy and morello: hits, misses and their headers.

Each test sends a sequence of requests to both servers and compares every
answer; ``Age`` (a whole number of seconds that may tick between the two
servers) only has to be present on both or on neither. Requests go on one
kept connection per server: CherryPy stores a response in its cache after
sending its last byte, so a request on a new connection could overtake it.
"""

import pytest

from .conftest import Reply, assert_same

APP = "caching"

LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT"


def without_age(reply: Reply) -> Reply:
    headers = [(k, v) for k, v in reply.headers if k.lower() != "age"]
    return Reply(reply.status, reply.reason, headers, reply.body, reply.error)


def same(compare, method, path, headers=None, body=None):
    """Send one request to both servers; compare all but the value of ``Age``.

    Returns morello's reply.
    """
    ours, ref = compare.both(method, path, headers, body, keep_alive=True)
    request = f"{method} {path} {headers!r}"
    assert (ours.header("Age") is None) == (ref.header("Age") is None), (
        f"{request}\nmorello:  {ours.brief()}\ncherrypy: {ref.brief()}"
    )
    try:
        assert_same(without_age(ours), without_age(ref))
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nrequest: {request}\nmorello:  {ours.brief()}\ncherrypy: {ref.brief()}"
        ) from None
    return ours


def test_miss_then_hit(compare):
    first = same(compare, "GET", "/?t=hit")
    assert first.text == "index hit ran 1" and first.header("Age") is None
    second = same(compare, "GET", "/?t=hit")
    assert second.text == "index hit ran 1" and second.header("Age") is not None
    assert second.header("Date") == first.header("Date")


def test_query_strings_and_hosts_are_separate_entries(compare):
    same(compare, "GET", "/?t=key")
    assert same(compare, "GET", "/?t=key&x=1").text == "index key ran 2"
    assert same(compare, "GET", "/?t=key", {"Host": "other.example.com"}).text == "index key ran 3"
    assert same(compare, "GET", "/?t=key").text == "index key ran 1"


def test_vary(compare):
    english = {"Accept-Language": "en"}
    french = {"Accept-Language": "fr"}
    assert same(compare, "GET", "/vary?t=v", english).text == "en ran 1"
    assert same(compare, "GET", "/vary?t=v", french).text == "fr ran 2"
    assert same(compare, "GET", "/vary?t=v", english).text == "en ran 1"
    assert same(compare, "GET", "/vary?t=v", french).text == "fr ran 2"
    assert same(compare, "GET", "/vary?t=v").text == "none ran 3"


@pytest.mark.parametrize(
    "headers",
    [{"Pragma": "no-cache"}, {"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=50"}],
)
def test_requests_for_a_fresh_copy(compare, headers):
    t = "fresh-" + "-".join(f"{k}-{v}" for k, v in headers.items())
    path = f"/aged?t={t}"
    assert same(compare, "GET", path).text == "aged ran 1"
    assert same(compare, "GET", path).text == "aged ran 1"
    # The cached copy is 100 seconds old.
    assert same(compare, "GET", path, headers).text == "aged ran 2"
    # ... and the fresh response replaced it.
    assert same(compare, "GET", path).text == "aged ran 2"


def test_max_age_wide_enough(compare):
    same(compare, "GET", "/aged?t=wide")
    assert same(compare, "GET", "/aged?t=wide", {"Cache-Control": "max-age=500"}).text == (
        "aged ran 1"
    )


def test_no_store_request_is_not_stored(compare):
    assert same(compare, "GET", "/?t=ns", {"Cache-Control": "no-store"}).text == "index ns ran 1"
    assert same(compare, "GET", "/?t=ns").text == "index ns ran 2"
    # A cached copy is still served to a no-store request.
    assert same(compare, "GET", "/?t=ns", {"Cache-Control": "no-store"}).text == "index ns ran 2"


@pytest.mark.parametrize("page", ["pragma", "nostore"])
def test_responses_that_forbid_caching(compare, page):
    assert same(compare, "GET", f"/{page}").text == f"{page} ran 1"
    assert same(compare, "GET", f"/{page}").text == f"{page} ran 2"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_invalidation(compare, method):
    path = f"/?t=inv-{method}"
    same(compare, "GET", path)
    assert same(compare, "GET", path).text.endswith("ran 1")
    assert same(compare, method, path, body=b"").text.endswith("ran 2")
    assert same(compare, "GET", path).text.endswith("ran 3")
    assert same(compare, "GET", path).text.endswith("ran 3")


def test_head(compare):
    same(compare, "GET", "/?t=head")
    reply = same(compare, "HEAD", "/?t=head")
    assert reply.body == b"" and reply.header("Age") is not None


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"If-Modified-Since": LAST_MODIFIED}, 304),
        ({"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 200),
        ({"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 412),
        ({"If-Unmodified-Since": LAST_MODIFIED}, 200),
    ],
)
def test_conditional_requests_on_a_hit(compare, headers, status):
    t = "cond-" + "-".join(headers).lower() + str(status)
    same(compare, "GET", f"/dated?t={t}")
    assert same(compare, "GET", f"/dated?t={t}", headers).status == status


def test_not_found_pages_are_cached(compare):
    assert same(compare, "GET", "/missing?t=404").status == 404
    reply = same(compare, "GET", "/missing?t=404")
    assert reply.status == 404 and "missing ran 1" in reply.text


def test_cache_runs_after_default_priority_hooks(compare):
    first = same(compare, "GET", "/stamped")
    second = same(compare, "GET", "/stamped")
    # The stamp hook ran again, but the cached headers replaced its header.
    assert second.header("X-Stamp") == first.header("X-Stamp")


def test_streamed_response(compare):
    first = same(compare, "GET", "/streamed?t=s")
    assert first.text == "chunk 0 of run 1\nchunk 1 of run 1\nchunk 2 of run 1\n"
    assert same(compare, "GET", "/streamed?t=s").body == first.body


def test_gzip_variants(compare):
    gzip = {"Accept-Encoding": "gzip"}
    assert same(compare, "GET", "/zipped?t=z", gzip).header("Content-Encoding") == "gzip"
    plain = same(compare, "GET", "/zipped?t=z")
    assert plain.header("Content-Encoding") is None and plain.text.startswith("zipped ran 2;")
    hit = same(compare, "GET", "/zipped?t=z", gzip)
    assert hit.header("Age") is not None and hit.header("Content-Encoding") == "gzip"
    assert same(compare, "GET", "/zipped?t=z").header("Age") is not None


@pytest.mark.parametrize(
    "value",
    [
        ",,,",
        "=",
        "max-age=0",
        "no-cache=",
        'no-cache="Set-Cookie, X-Other"',
        "MAX-AGE=abc",
        "max-age=99999999999999999999999",
        "private;;;=;",
        "\tno-store\t",
    ],
)
def test_odd_cache_control_on_a_hit(compare, value):
    t = "cc" + value.encode().hex()
    same(compare, "GET", f"/?t={t}")
    same(compare, "GET", f"/?t={t}", {"Cache-Control": value})
    assert compare("GET", "/").status == 200


@pytest.mark.parametrize("value", ["max-age", "max-age=", "max-age=-1", "max-age=1.5", "max-age=x"])
def test_invalid_max_age_on_a_hit(compare, value):
    t = "bad" + value.encode().hex()
    same(compare, "GET", f"/?t={t}")
    # Both refuse the request; CherryPy words its message its own way.
    ours, ref = compare.both("GET", f"/?t={t}", {"Cache-Control": value})
    assert ours.status == ref.status == 400
    names = {k.lower() for k, _ in ours.headers} - {"content-length", "date"}
    assert names == {k.lower() for k, _ in ref.headers} - {"content-length", "date"}
    assert same(compare, "GET", f"/?t={t}").status == 200


@pytest.mark.parametrize("value", ["", ",", "no-cache, no-cache", "x=\x7f", "no-cache;q=0"])
def test_odd_pragma(compare, value):
    t = "pragma" + value.encode().hex()
    same(compare, "GET", f"/?t={t}")
    same(compare, "GET", f"/?t={t}", {"Pragma": value})
    assert same(compare, "GET", f"/?t={t}").status == 200


def test_clearing_a_url_in_the_store(compare):
    english = {"Accept-Language": "en"}
    french = {"Accept-Language": "fr"}
    same(compare, "GET", "/vary?t=clr", english)
    same(compare, "GET", "/vary?t=clr", french)
    assert same(compare, "GET", "/vary?t=clr", english).text == "en ran 1"
    assert same(compare, "GET", "/clear?path=%2Fvary%3Ft%3Dclr").status == 200
    # Every variant of the URL is gone...
    assert same(compare, "GET", "/vary?t=clr", french).text == "fr ran 3"
    assert same(compare, "GET", "/vary?t=clr", english).text == "en ran 4"
    # ...and the URL is cached again.
    assert same(compare, "GET", "/vary?t=clr", english).text == "en ran 4"
