"""The examples in examples/ run as documented and answer real requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from morello.testing import Client, free_port

ROOT = Path(__file__).resolve().parent.parent
# Serve a script on a port of our choosing: quickstart picks up the global config.
LAUNCH = (
    "import runpy, sys, morello;"
    "morello.config.update({'server.socket_host': '127.0.0.1',"
    " 'server.socket_port': int(sys.argv[2]), 'log.screen': False});"
    "runpy.run_path(sys.argv[1], run_name='__main__')"
)


def wait_until_answering(
    client: Client, proc: subprocess.Popen[bytes], timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"example exited early with {proc.returncode}")
        try:
            client.get("/")
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("example did not start answering")


@pytest.fixture
def example() -> Iterator[callable]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(script: str) -> Client:
        port = free_port()
        env = dict(os.environ, PORT=str(port))
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(ROOT / script), str(port)], env=env
        )
        procs.append(proc)
        client = Client("127.0.0.1", port)
        wait_until_answering(client, proc)
        return client

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0, "example did not exit cleanly on SIGTERM"
        finally:
            if proc.poll() is None:
                proc.kill()


def test_hello_world(example) -> None:
    client = example("examples/hello.py")
    response = client.get("/")
    assert response.status == 200
    assert response.body == b"Hello world!"
    assert response.headers["Content-Type"] == "text/html;charset=utf-8"


def test_demo_site_pages_form_json_and_static_files(example) -> None:
    client = example("examples/demo/site.py")
    assert b"morello demo" in client.get("/").body
    assert client.get("/about").status == 200
    assert b"Hello, Ada!" in client.get("/hello?name=Ada").body

    # The form: a bad post gets a clear 400, a good one shows up in the list of
    # this session, whichever of the two workers answers the next requests.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/guestbook/sign", "message=+", form).status == 400
    signed = client.post("/guestbook/sign", "message=first+entry", form)
    assert signed.status == 303
    cookie = {"Cookie": signed.headers["Set-Cookie"].split(";")[0]}
    pids = set()
    for visit in range(1, 21):
        home = client.get("/", cookie).body.decode()
        assert f"Visit {visit} in this session" in home
        pids.add(home.split("answered by process ")[1].split(".")[0])
        assert b"<li>first entry</li>" in client.get("/guestbook/", cookie).body
    assert len(pids) == 2  # both workers served the one session
    assert b"<li>first entry</li>" not in client.get("/guestbook/").body  # not another's
    assert client.get("/guestbook/sign").status == 405

    echoed = client.get("/api/echo?a=1&a=2")
    assert echoed.headers["Content-Type"] == "application/json"
    assert json.loads(echoed.body) == {"method": "GET", "params": {"a": ["1", "2"]}}
    assert "time" in json.loads(client.get("/api/time").body)

    css = client.get("/static/site.css")
    # staticdir serves files as they are: no charset is added, as in CherryPy.
    assert css.status == 200 and css.headers["Content-Type"] == "text/css"
    assert css.body == (ROOT / "examples/demo/static/site.css").read_bytes()
    # Static files never leave their directory.
    assert client.get("/static/..%2f..%2fsite.py").status in (403, 404)
    assert client.get("/static/../site.py").status in (301, 403, 404)
    assert client.get("/").status == 200
