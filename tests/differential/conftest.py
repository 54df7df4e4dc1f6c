"""Serve an app module under morello and CherryPy 18 and compare their answers.

A test module names its app with ``APP = "<module in apps/>"``; the
``compare`` fixture starts both servers once for the module and sends each
request to both::

    APP = "hello"

    def test_index(compare):
        assert compare("GET", "/").status == 200
"""

from __future__ import annotations

import dataclasses
import gzip
import html
import http.client
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
RUNNER = HERE / "runner.py"
HOST = "127.0.0.1"
#: Sent unless a test says otherwise, so that URLs built from it match.
HOST_HEADER = "www.example.com"
START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
REQUEST_TIMEOUT = 10.0

#: Headers whose values legitimately differ between the two servers.
IGNORED_HEADERS = {"date", "server"}

# CherryPy pads short error pages for old Internet Explorers; morello does not
# on purpose (README, "What differs from CherryPy on purpose").
IE_PADDED_SIZES = {
    400: 512, 403: 256, 404: 512, 405: 256, 406: 512, 408: 512,
    409: 512, 410: 256, 500: 512, 501: 512, 505: 512,
}  # fmt: skip


# -- servers -------------------------------------------------------------


class Server:
    """One framework serving one app module in a subprocess."""

    def __init__(self, framework: str, app: str, log_dir: Path) -> None:
        self.framework = framework
        self.log_path = log_dir / f"{app}.{framework}.log"
        self.port = 0
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(RUNNER), framework, str(APPS / f"{app}.py")],
                cwd=APPS,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )

    def wait_ready(self, deadline: float) -> None:
        """Read the ``PORT`` line, then check that the port answers."""
        line = _readline(self.process, deadline)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"{self.framework} did not start:\n{self.log_tail()}")
        self.port = int(line.split()[1])
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.framework} does not answer on {self.port}") from None
                time.sleep(0.05)

    def stop(self, deadline: float) -> None:
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_DEADLINE)
        self.process.stdout.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _readline(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    """One line from the process's stdout, or b'' at EOF or the deadline."""
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
    return line


def _start_pair(app: str, log_dir: Path) -> dict[str, Server]:
    servers = {fw: Server(fw, app, log_dir) for fw in ("morello", "cherrypy")}
    try:
        deadline = time.monotonic() + START_DEADLINE
        for server in servers.values():
            server.wait_ready(deadline)
    except BaseException:
        _stop_pair(servers)
        raise
    return servers


def _stop_pair(servers: dict[str, Server]) -> None:
    for server in servers.values():
        if server.process.poll() is None:
            server.process.terminate()
    deadline = time.monotonic() + STOP_DEADLINE
    for server in servers.values():
        server.stop(deadline)


# -- requests ------------------------------------------------------------


@dataclass
class Reply:
    """What one server answered (``error``: the client-side exception, if any)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    error: str | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def brief(self) -> str:
        return f"{self.status} {self.reason} {self.error or ''} {self.headers} {self.body[:400]!r}"

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class RawConnection(http.client.HTTPConnection):
    """http.client that sends the request target exactly as given.

    Malformed and non-ASCII targets are the point of some tests, so the
    target is neither validated nor required to be ASCII (str characters
    U+0000-U+00FF go out as those bytes).
    """

    def _validate_path(self, url: str) -> None:
        pass

    def _encode_request(self, request: str) -> bytes:
        return request.encode("latin-1")


def send(
    port: int,
    method: str,
    path: str | bytes,
    headers: dict[str, str | None] | None = None,
    body: bytes | str | None = None,
    protocol: str = "HTTP/1.1",
    kept: RawConnection | None = None,
) -> Reply:
    """Send one request on a new connection, or on ``kept`` (left open); a header
    set to None is not sent."""
    conn = kept or RawConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    if protocol == "HTTP/1.0":
        conn._http_vsn, conn._http_vsn_str = 10, protocol
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    if isinstance(body, str):
        body = body.encode("utf-8")
    all_headers = {"Host": HOST_HEADER, **(headers or {})}
    if body is not None and not {"content-length", "transfer-encoding"} & {
        name.lower() for name in all_headers
    }:
        all_headers["Content-Length"] = str(len(body))
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in all_headers.items():
            if value is not None:
                conn.putheader(name, value)
        conn.endheaders(body)
        return _receive(conn.getresponse)
    except (http.client.HTTPException, OSError) as exc:
        return Reply(0, "", [], b"", type(exc).__name__)
    finally:
        if kept is None:
            conn.close()


def send_raw(port: int, data: bytes, method: str = "GET", count: int = 1) -> list[Reply]:
    """Send ``data`` as it is (requests, however malformed) and read ``count`` answers."""
    with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT) as sock:
        try:
            sock.sendall(data)
        except OSError as exc:
            return [Reply(0, "", [], b"", type(exc).__name__)]
        # One buffered reader for all answers: each may be read ahead into it.
        shared = _SharedReader(sock.makefile("rb"))
        return [
            _receive(lambda: _begin(http.client.HTTPResponse(shared, method=method)))
            for _ in range(count)
        ]


class _SharedReader:
    """Hands one socket file to each HTTPResponse, which may not close it."""

    def __init__(self, fp: Any) -> None:
        self.fp = fp

    def makefile(self, *args: Any) -> _SharedReader:
        return self

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fp, name)


def _begin(response: http.client.HTTPResponse) -> http.client.HTTPResponse:
    response.begin()
    return response


def _receive(get_response: Callable[[], http.client.HTTPResponse]) -> Reply:
    """Read a whole response; a failure at any point is recorded, not raised."""
    reply = Reply(0, "", [], b"")
    try:
        response = get_response()
        reply = Reply(response.status, response.reason, response.getheaders(), b"")
        reply.body = response.read()
    except (http.client.HTTPException, OSError) as exc:
        reply.error = type(exc).__name__
    return reply


# -- comparing -----------------------------------------------------------

# Messages of pages the framework writes itself, which morello words its own
# way (README: pages morello writes itself use its own wording): the default
# messages CherryPy does not take from the standard library, and its own
# error messages. CherryPy's text -> morello's text.
REWORDED_MESSAGES = {
    "The server encountered an unexpected condition which prevented it from fulfilling "
    "the request.": "The server hit an unexpected condition and could not complete the request.",
    "The server is currently unable to handle the request due to a temporary overloading "
    "or maintenance of the server.": "The server cannot handle the request right now because "
    "it is overloaded or down for maintenance.",
    # The 404 for a query string that does not decode.
    "The given query string could not be processed. Query strings for this resource must be "
    "encoded with 'utf8'.": "The query string could not be decoded: this resource expects it "
    "encoded as 'utf8'.",
    # The built-in tools' own messages (json_in, gzip, accept, etags).
    "Invalid JSON document": "The request body is not valid JSON.",
    "Expected an entity of content type ": "This resource only takes request bodies of type ",
    "identity, gzip": "Your client accepts neither identity nor gzip content coding.",
    "Your client sent this Accept header: ": "None of the media types this resource emits "
    "matches the Accept header: ",
    ". But this resource only emits these media types: ": ". It offers: ",
    "If-Match failed: ETag ": "The ETag ",
    " did not match [": " is not in If-Match [",
    "If-None-Match failed: ETag ": "The ETag ",
    " matched [": " is in If-None-Match [",
    # The 416 of the static-file tools.
    "Invalid Range (first-byte-pos greater than Content-Length)": "None of the requested byte "
    "ranges starts inside the content.",
}


def reword(text: str) -> str:
    """``text`` with CherryPy's wording of framework messages swapped for morello's."""
    for theirs, mine in REWORDED_MESSAGES.items():
        text = text.replace(theirs, mine)
    return text


_ERROR_PAGE = re.compile(rb'<p>(.*?)</p>\s*<pre id="traceback">(.*?)</pre>', re.DOTALL)
_LINK = re.compile(rb"<a href=(\"[^\"]*\"|'[^']*')>")
TRACEBACK = "Traceback (most recent call last)"


def framework_page(reply: Reply) -> str | None:
    """Which page CherryPy wrote itself: 'error', 'redirect', 'bare' or None."""
    body = reply.body
    if b'<div id="powered_by">' in body and b"Powered by" in body and _ERROR_PAGE.search(body):
        return "error"
    if 300 <= reply.status < 400 and body.startswith(b"This resource "):
        return "redirect"
    if reply.status == 500 and body.startswith(b"Unrecoverable error in the server."):
        return "bare"
    return None


def comparable_headers(reply: Reply, framework_written: bool) -> list[tuple[str, str]]:
    ignored = IGNORED_HEADERS | ({"content-length"} if framework_written else set())
    return sorted((k.lower(), v) for k, v in reply.headers if k.lower() not in ignored)


def normalize_reference(ref: Reply, ours: Reply, framework_written: bool) -> Reply:
    """CherryPy's reply with its deliberate differences from morello undone.

    In error responses, its wording of framework messages (which custom error
    pages show too) becomes morello's. Short error pages lose the spaces
    CherryPy pads them with for old Internet Explorers (README: morello does
    not pad); that padding step also buffers the page and sets Content-Length,
    so where morello streams such a page chunked, CherryPy's is taken as such.
    A request the HTTP server itself refuses (a bare reply, without Date)
    closes the connection on both; morello also says ``Connection: close``.
    """
    if ref.status < 400:
        return ref
    body, headers = ref.body, ref.headers
    if ref.header("Date") is None and ref.header("Connection") is None:
        headers = [*headers, ("Connection", "close")]
    size = IE_PADDED_SIZES.get(ref.status)
    if not framework_written:
        body = reword(body.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        padded = size is not None and len(ref.body) == size + 1
        if padded and ours.body and body.startswith(ours.body):
            body = ours.body + body[len(ours.body) :].rstrip(b" ")
        if body != ref.body:
            length = str(len(body))
            headers = [(k, length if k.lower() == "content-length" else v) for k, v in headers]
    chunked = ours.header("Transfer-Encoding") == "chunked"
    if size is not None and chunked and ref.header("Transfer-Encoding") is None:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Transfer-Encoding", "chunked"))
    return Reply(ref.status, ref.reason, headers, body, ref.error)


def _traceback_tail(text: str) -> str | None:
    """The exception line of a traceback, or None when there is none.

    The exception's module is dropped: framework exceptions live in
    ``cherrypy._cperror`` on one side and in ``morello.errors`` on the other.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines or TRACEBACK not in text:
        return None
    name, sep, message = lines[-1].strip().partition(":")
    return name.rpartition(".")[2] + sep + message


def assert_same_page(kind: str, ours: Reply, ref: Reply) -> None:
    """morello wrote its own page where CherryPy did: same message, same links."""
    ours_text = html.unescape(ours.text)
    ref_text = html.unescape(ref.text)
    if kind == "error":
        groups = _ERROR_PAGE.search(ref.body).groups()
        message, traceback = (reword(html.unescape(group.decode())) for group in groups)
        assert message in ours_text, f"message {message!r} missing from morello's page"
    elif kind == "redirect":
        urls = [html.unescape(u[1:-1].decode()) for u in _LINK.findall(ref.body)]
        assert ours_text.count("href=") == len(urls), ours_text
        for url in urls:
            assert url in ours_text, f"link {url!r} missing from morello's redirect note"
        traceback = ""
    else:
        traceback = ref_text.partition("\n")[2]
    tail = _traceback_tail(traceback)
    if tail is None:
        assert TRACEBACK not in ours_text, "morello shows a traceback, CherryPy does not"
    else:
        assert TRACEBACK in ours_text and tail in ours_text, f"traceback ending {tail!r} missing"


def gunzipped(reply: Reply) -> Reply:
    """``reply`` with a gzip-encoded body decompressed (headers untouched).

    A gzip stream records when it was made, so the compressed bytes of the
    two servers differ even when their content and length are the same.
    """
    if (reply.header("Content-Encoding") or "").lower() != "gzip" or not reply.body:
        return reply
    return dataclasses.replace(reply, body=gzip.decompress(reply.body))


def assert_same(ours: Reply, ref: Reply, framework_written: bool | None = None) -> None:
    """Assert morello's reply ``ours`` is equivalent to CherryPy's ``ref``.

    Pages CherryPy writes itself (error pages, redirect notes, the bare
    500) have morello's own wording: for those only the status, headers
    (but Content-Length), message, links and traceback are compared.
    ``framework_written`` forces that mode (for HEAD, which has no body to
    recognise such a page by). Gzipped bodies are compared decompressed.
    """
    ours, ref = gunzipped(ours), gunzipped(ref)
    kind = framework_page(ref)
    written = bool(kind) if framework_written is None else framework_written
    ref = normalize_reference(ref, ours, written)
    assert (ours.status, ours.reason, ours.error) == (ref.status, ref.reason, ref.error)
    assert comparable_headers(ours, written) == comparable_headers(ref, written)
    if kind:
        assert_same_page(kind, ours, ref)
    elif not written:
        assert ours.body == ref.body


class Pair:
    """Both servers of one app; calling it compares one request on both."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.morello = servers["morello"]
        self.cherrypy = servers["cherrypy"]
        self._kept: dict[int, RawConnection] = {}

    def both(
        self,
        method: str,
        path: str | bytes,
        headers: dict[str, str | None] | None = None,
        body: bytes | str | None = None,
        protocol: str = "HTTP/1.1",
        keep_alive: bool = False,
    ) -> tuple[Reply, Reply]:
        """morello's and CherryPy's replies, for tests of known differences.

        ``keep_alive`` sends on one connection per server, kept between
        calls: a server reads the next request only once it has finished
        the previous one, work after the last byte included (CherryPy's
        cache stores a response then).
        """
        replies = []
        for port in (self.morello.port, self.cherrypy.port):
            kept = None
            if keep_alive:
                kept = self._kept.setdefault(
                    port, RawConnection(HOST, port, timeout=REQUEST_TIMEOUT)
                )
            replies.append(send(port, method, path, headers, body, protocol, kept))
        return replies[0], replies[1]

    def raw_both(self, data: bytes, method: str = "GET") -> tuple[Reply, Reply]:
        """morello's and CherryPy's replies to the raw request ``data``."""
        ours = send_raw(self.morello.port, data, method)[0]
        return ours, send_raw(self.cherrypy.port, data, method)[0]

    def raw(self, data: bytes, method: str = "GET", count: int = 1) -> list[Reply]:
        """Send raw requests to both servers, compare the ``count`` answers (see ``__call__``)."""
        ours = send_raw(self.morello.port, data, method, count)
        refs = send_raw(self.cherrypy.port, data, method, count)
        for i, (mine, ref) in enumerate(zip(ours, refs, strict=True)):
            self._assert_same(mine, ref, None, f"raw request (answer {i + 1}) {data[:300]!r}")
        return refs

    def _assert_same(
        self, ours: Reply, ref: Reply, framework_written: bool | None, request: str
    ) -> None:
        try:
            assert_same(ours, ref, framework_written)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n\nrequest: {request}"
                f"\nmorello:  {ours.brief()}\ncherrypy: {ref.brief()}"
                f"\nserver logs: {self.morello.log_path} {self.cherrypy.log_path}"
            ) from None

    def __call__(
        self,
        method: str,
        path: str | bytes,
        headers: dict[str, str | None] | None = None,
        body: bytes | str | None = None,
        *,
        protocol: str = "HTTP/1.1",
        framework_written: bool | None = None,
    ) -> Reply:
        """Send the request to both servers, assert equivalence, return CherryPy's reply."""
        ours, ref = self.both(method, path, headers, body, protocol)
        request = f"{method} {path!r} {protocol} headers={headers!r} body={body!r}"
        self._assert_same(ours, ref, framework_written, request)
        return ref


@pytest.fixture(scope="module")
def compare(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """A :class:`Pair` serving the test module's ``APP`` (started once per module)."""
    app: str = request.module.APP
    servers = _start_pair(app, tmp_path_factory.mktemp(f"differential-{app}"))
    pair = Pair(servers)
    try:
        yield pair
    finally:
        for conn in pair._kept.values():
            conn.close()
        _stop_pair(servers)
