"""The tutorial's one-minute application."""

APP = "hello"


def test_index(compare):
    assert compare("GET", "/").text == "Hello World!"


def test_head(compare):
    reply = compare("HEAD", "/")
    assert reply.status == 200 and reply.body == b""


def test_not_found(compare):
    assert compare("GET", "/nope").status == 404
