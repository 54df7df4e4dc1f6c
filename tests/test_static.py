"""Static files: serve_file / serve_fileobj and the staticdir / staticfile tools.

Behaviour shared with CherryPy is compared request by request in
``differential/test_static_serving.py``; these tests cover what needs a
real file system (symlinks, FIFOs, a 1 MB file), morello's own choices,
and hostile paths and Range headers. After every test the server still
answers a normal request.
"""

from __future__ import annotations

import io
import mimetypes
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import morello
from morello.lib import static
from morello.lib.httputil import HTTPDate, get_ranges
from morello.lib.ranges import MAX_RANGES
from morello.testing import Client, running

BIG = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: several read chunks
SECRET = b"secret: never served"


# -- unit ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        # NFKC composes: "é" stays one non-ASCII character, and is dropped.
        (
            "résumé final.pdf",
            'attachment; filename="rsum final.pdf"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf",
        ),
        # NFKC folds the ligature into ASCII letters.
        ("\ufb01le.txt", "attachment; filename=\"file.txt\"; filename*=UTF-8''%EF%AC%81le.txt"),
        ("文件.txt", "attachment; filename=\".txt\"; filename*=UTF-8''%E6%96%87%E4%BB%B6.txt"),
        # Quotes and backslashes cannot end the quoted name early.
        ('a"b\\c.txt', 'attachment; filename="a\\"b\\\\c.txt"'),
        ("a/b.txt", 'attachment; filename="a/b.txt"'),
    ],
)
def test_content_disposition(name: str, expected: str) -> None:
    assert static.content_disposition("attachment", name) == expected


@pytest.mark.parametrize(
    "header, expected",
    [
        ("bytes=0-9", [(0, 10)]),
        ("bytes=990-", [(990, 1000)]),
        ("bytes=1000-", []),  # past the end: unsatisfiable, not invalid
        ("bytes=1000-1005", []),
        ("bytes=5-2", None),
        ("bytes=-10", [(990, 1000)]),
        ("bytes=-0", []),
        ("bytes=--5", None),
        ("bytes=0-1,x", None),
        ("items=0-5", None),
    ],
)
def test_get_ranges(header: str, expected: Any) -> None:
    assert get_ranges(header, 1000) == expected


def test_relative_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        static.serve_file("relative/file.txt")
    # (Outside a request morello.request is a GET placeholder.)
    with pytest.raises(ValueError, match="absolute"):
        static.staticdir("/", "relative")
    with pytest.raises(ValueError, match="absolute"):
        static.staticfile("relative.txt")


def test_cherrypy_mimetypes_are_registered() -> None:
    assert mimetypes.types_map[".ico"] == "image/x-icon"
    assert mimetypes.types_map[".gz"] == "application/x-gzip"


def test_importable_under_cherrypys_name() -> None:
    assert morello.lib.static is static
    assert morello.tools.staticdir.callable is static.staticdir
    assert morello.tools.staticfile.callable is static.staticfile


# -- over HTTP -----------------------------------------------------------


class Stream(io.RawIOBase):
    """A stream without descriptor and without seek: its length is unknown."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.stream.readinto(buffer)


class Root:
    def __init__(self, site: Path) -> None:
        self.site = site
        self.opened: list[Any] = []

    @morello.expose
    def index(self) -> str:
        return "alive"

    @morello.expose
    def big(self) -> Any:
        fileobj = open(self.site / "static" / "big.bin", "rb")  # noqa: SIM115 - served
        self.opened.append(fileobj)
        return static.serve_fileobj(fileobj, "application/octet-stream")

    @morello.expose
    def closed(self) -> str:
        return repr([f.closed for f in self.opened])

    @morello.expose
    def tail(self) -> Any:
        fileobj = open(self.site / "static" / "a.txt", "rb")  # noqa: SIM115 - served
        fileobj.seek(2)
        return static.serve_fileobj(fileobj)

    @morello.expose
    def stream(self) -> Any:
        return static.serve_fileobj(io.BufferedReader(Stream(b"streamed")), "text/plain")

    @morello.expose
    def missing(self) -> Any:
        return static.serve_file(str(self.site / "nope.txt"))


def build_site(site: Path) -> None:
    (site / "static" / "sub").mkdir(parents=True)
    (site / "static" / "index.html").write_bytes(b"<p>index</p>")
    (site / "static" / "a.txt").write_bytes(b"abcdef")
    (site / "static" / "big.bin").write_bytes(BIG)
    (site / "static" / "sub" / "b.txt").write_bytes(b"b")
    (site / "static-private").mkdir()
    (site / "static-private" / "secret.txt").write_bytes(SECRET)
    (site / "outside").mkdir()
    (site / "outside" / "secret.txt").write_bytes(SECRET)
    (site / "static" / "link_in").symlink_to("a.txt")
    (site / "static" / "link_out").symlink_to(site / "outside" / "secret.txt")
    (site / "static" / "relative_out").symlink_to("../outside/secret.txt")
    (site / "static" / "dir_out").symlink_to(site / "outside")
    (site / "static" / "loop").symlink_to("loop")
    (site / "linked").symlink_to(site / "static")
    os.mkfifo(site / "static" / "fifo")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    build_site(site)
    return site


@pytest.fixture(scope="module")
def client(site: Path) -> Iterator[Client]:
    directory = {"tools.staticdir.on": True, "tools.staticdir.dir": str(site / "static")}
    config = {
        "/static": {**directory, "tools.staticdir.index": "index.html"},
        "/debugged": {**directory, "tools.staticdir.debug": True},
        "/linked": {"tools.staticdir.on": True, "tools.staticdir.dir": str(site / "linked")},
        "/one": {
            "tools.staticfile.on": True,
            "tools.staticfile.filename": str(site / "static" / "a.txt"),
        },
    }
    # The same app and config again under a script name.
    with running({"": Root(site), "/mounted": Root(site)}, config) as client:
        yield client


@pytest.fixture(autouse=True)
def still_serving(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "client" in request.fixturenames:
        response = request.getfixturevalue("client").get("/")
        assert (response.status, response.body) == (200, b"alive")


def test_file(client: Client, site: Path) -> None:
    response = client.get("/static/a.txt")
    assert (response.status, response.body) == (200, b"abcdef")
    headers = response.headers
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Length"] == "6"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Last-Modified"] == HTTPDate((site / "static" / "a.txt").stat().st_mtime)


def test_paths_are_relative_to_the_mount_point(client: Client) -> None:
    assert client.get("/mounted/static/sub/b.txt").body == b"b"
    assert client.get("/mounted/static/").body == b"<p>index</p>"
    assert client.get("/mounted/one").body == b"abcdef"


def test_big_file_streams_whole(client: Client) -> None:
    for path in ("/static/big.bin", "/big"):
        response = client.get(path)
        assert (response.status, response.body) == (200, BIG)
        assert response.headers["Content-Length"] == str(len(BIG))


def test_head(client: Client) -> None:
    response = client.head("/static/big.bin")
    assert (response.status, response.body) == (200, b"")
    assert response.headers["Content-Length"] == str(len(BIG))


def test_files_are_closed_once_served(client: Client) -> None:
    client.get("/big")
    client.get("/big", headers={"Range": "bytes=0-0,-1"})
    client.get("/big", headers={"Range": "bytes=10-20"})
    # The server closes a file after the last byte is sent, which can be just
    # after the client has read it: wait (bounded) for the third close.
    deadline = time.monotonic() + 5
    while not (state := client.get("/closed").text).endswith("True, True, True]"):
        assert time.monotonic() < deadline, state
        time.sleep(0.01)


def test_file_object_from_its_position(client: Client) -> None:
    response = client.get("/tail")
    assert (response.status, response.body) == (200, b"cdef")
    response = client.get("/tail", headers={"Range": "bytes=1-2"})
    assert (response.status, response.body) == (206, b"de")
    assert response.headers["Content-Range"] == "bytes 1-2/4"


def test_stream_of_unknown_length(client: Client) -> None:
    response = client.get("/stream", headers={"Range": "bytes=0-1"})
    assert (response.status, response.body) == (200, b"streamed")
    assert "Accept-Ranges" not in response.headers
    assert "Last-Modified" not in response.headers


def test_missing_file_from_a_handler(client: Client) -> None:
    assert client.get("/missing").status == 404


def test_staticfile(client: Client) -> None:
    assert client.get("/one").body == b"abcdef"
    assert client.post("/one", body=b"").status == 404  # only GET and HEAD


def test_debug_logs_decisions(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        assert client.get("/debugged/a.txt").status == 200
        assert client.get("/debugged/../outside/secret.txt").status == 403
    text = caplog.text
    assert "a.txt" in text and "outside" in text


# -- ranges --------------------------------------------------------------


def multipart(response: Any) -> list[tuple[str, bytes]]:
    boundary = response.headers["Content-Type"].partition("boundary=")[2].encode()
    assert response.body.endswith(b"--" + boundary + b"--\r\n")
    parts = []
    for chunk in response.body.split(b"--" + boundary)[1:-1]:
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(line.lower().split(": ", 1) for line in head.decode().split("\r\n"))
        assert fields["content-type"] == "application/octet-stream"
        parts.append((fields["content-range"], data.removesuffix(b"\r\n")))
    return parts


@pytest.mark.parametrize("path", ["/static/big.bin", "/big"])
def test_single_ranges(client: Client, path: str) -> None:
    size = len(BIG)
    for header, start, stop in [
        ("bytes=0-0", 0, 1),
        ("bytes=100000-400000", 100000, 400001),
        ("bytes=-4", size - 4, size),
        (f"bytes={size - 10}-", size - 10, size),
        (f"bytes=5-{size * 2}", 5, size),
    ]:
        response = client.get(path, headers={"Range": header})
        assert response.status == 206, header
        assert response.body == BIG[start:stop]
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}"
        assert response.headers["Content-Length"] == str(stop - start)


def test_several_ranges(client: Client) -> None:
    response = client.get("/big", headers={"Range": "bytes=0-9, 300000-300009 ,-5"})
    assert response.status == 206
    assert response.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert int(response.headers["Content-Length"]) == len(response.body)
    size = len(BIG)
    assert multipart(response) == [
        (f"bytes 0-9/{size}", BIG[:10]),
        (f"bytes 300000-300009/{size}", BIG[300000:300010]),
        (f"bytes {size - 5}-{size - 1}/{size}", BIG[-5:]),
    ]


@pytest.mark.parametrize("header", ["bytes=6-,100-200", "bytes=-0", "bytes=99999999999999999999-"])
def test_unsatisfiable_range(client: Client, header: str) -> None:
    response = client.get("/static/a.txt", headers={"Range": header})
    assert response.status == 416
    assert response.headers["Content-Range"] == "bytes */6"
    assert b"abcdef" not in response.body


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-,0-,0-",  # overlapping: more than the file
        ",".join(["bytes=0-0"] + [f"{i}-{i}" for i in range(1, MAX_RANGES + 1)]),
        "bytes=",
        "bytes=a-b",
        "bytes=--5",
        "bytes=1",
        "bytes=5-2",
        "bytes=-",
        "bytes=0-1,,",
        "items=0-5",
        "bytes=0x10-0x20",
        "bytes=\u00b9-\u00b2",  # digits int() would take, but not ASCII (sent as latin-1)
        "=",
        "bytes",
    ],
)
def test_malformed_or_costly_ranges_give_the_whole_file(client: Client, header: str) -> None:
    response = client.get("/static/big.bin", headers={"Range": header})
    assert (response.status, len(response.body)) == (200, len(BIG))
    assert response.body == BIG


def test_if_range(client: Client) -> None:
    last_modified = client.get("/static/a.txt").headers["Last-Modified"]
    fresh = client.get("/static/a.txt", headers={"Range": "bytes=1-2", "If-Range": last_modified})
    assert (fresh.status, fresh.body) == (206, b"bc")
    stale = client.get(
        "/static/a.txt", headers={"Range": "bytes=1-2", "If-Range": "Sat, 01 Jan 2000 00:00:00 GMT"}
    )
    assert (stale.status, stale.body) == (200, b"abcdef")
    etag = client.get("/static/a.txt", headers={"Range": "bytes=1-2", "If-Range": '"xyz"'})
    assert (etag.status, etag.body) == (200, b"abcdef")


def test_conditional_requests(client: Client) -> None:
    last_modified = client.get("/static/a.txt").headers["Last-Modified"]
    response = client.get("/static/a.txt", headers={"If-Modified-Since": last_modified})
    assert (response.status, response.body) == (304, b"")
    assert "Last-Modified" not in response.headers
    response = client.get(
        "/static/a.txt", headers={"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}
    )
    assert response.status == 412
    response = client.get("/static/a.txt", headers={"If-Unmodified-Since": last_modified})
    assert (response.status, response.body) == (200, b"abcdef")


# -- paths that try to leave the directory -------------------------------


@pytest.mark.parametrize(
    "path, status",
    [
        ("/static/../outside/secret.txt", 403),
        ("/static/%2e%2e/outside/secret.txt", 403),
        ("/static/%2E%2E/outside/secret.txt", 403),
        ("/static/%252e%252e/outside/secret.txt", 403),
        ("/static/%25252e%25252e/outside/secret.txt", 404),  # unquoted twice, not three times
        ("/static/sub/../../outside/secret.txt", 403),
        ("/static/..%2Foutside%2Fsecret.txt", 403),
        ("/static/%2e%2e%2f%2e%2e%2foutside/secret.txt", 403),
        ("/static/%2F" + "%2F".join(str(Path(__file__).resolve()).split("/")[1:]), 403),
        ("/static//" + str(Path(__file__).resolve()).lstrip("/"), 404),
        ("/static/..\\outside\\secret.txt", 404),  # "\" is no separator on POSIX
        ("/static/%5c..%5coutside%5csecret.txt", 404),
        ("/static/a.txt%00", 404),
        ("/static/%00../outside/secret.txt", 404),
        ("/static/%2500", 404),
        ("/static/" + "a" * 5000, 404),  # too long a name for the file system
        ("/static/" + "../" * 500 + "etc/passwd", 403),
        ("/static/%ff%fe", 404),  # not UTF-8
        # A sibling whose name starts like the directory's. CherryPy compares
        # string prefixes ("…/static-private".startswith("…/static")) and
        # serves the file; morello compares whole path components.
        ("/static/../static-private/secret.txt", 403),
        ("/static/..%2Fstatic-private%2Fsecret.txt", 403),
        # Symlinks that lead out of the directory. CherryPy checks the path
        # as written only, and serves the target.
        ("/static/link_out", 403),
        ("/static/relative_out", 403),
        ("/static/dir_out/secret.txt", 403),
        # ".." after a symlink climbs from the link's target, as the kernel
        # resolves it: static/dir_out/.. is the site, not static.
        ("/static/dir_out/../static-private/secret.txt", 403),
        # A directory, a symlink loop and a FIFO are no files (CherryPy would
        # block a thread forever opening the FIFO).
        ("/static/sub", 404),
        ("/static/loop", 404),
        ("/static/fifo", 404),
    ],
)
def test_paths_out_of_the_directory(client: Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status == status
    assert SECRET not in response.body
    assert b"import " not in response.body  # nor this test file


@pytest.mark.parametrize("target", [b"/static/../../../../etc/passwd", b"/static/a.txt\\..\\.."])
def test_raw_targets(client: Client, target: bytes) -> None:
    # Sent byte for byte: no client normalises the dots away.
    with socket.create_connection((client.host, client.port), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert raw.split(b" ", 2)[1] in (b"403", b"404")
    assert b"root:" not in raw


def test_symlinks_inside_the_directory_are_followed(client: Client) -> None:
    assert client.get("/static/link_in").body == b"abcdef"
    # The served directory may itself be a symlink.
    assert client.get("/linked/a.txt").body == b"abcdef"
    assert client.get("/linked/../outside/secret.txt").status == 403


def test_unreadable_file_is_forbidden(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # (Simulated: the tests may run as root, who reads any file.)
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(static, "open", refuse, raising=False)
    response = client.get("/static/a.txt")
    assert response.status == 403 and b"abcdef" not in response.body
