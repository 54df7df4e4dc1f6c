"""Warm-up requests (``--warmup PATH``, ``master.warmup``): a new worker GETs them from its
own application before it is ready; a bad answer is a boot failure that aborts a rollout."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from control_support import fetch
from morello.worker.warmup import MAX_WARMUP_REQUESTS, USER_AGENT
from prefork_support import DEADLINE, Load, MasterProcess, running_master, wait_for
from test_status_page import BROWSER

pytestmark = pytest.mark.timeout(120)

APP = '''
import os
import time

import morello

HEALTH = {health}


class Api:
    @morello.expose
    def health(self, **params):
        # Slow enough that a worker taking connections during its warm-up would get some.
        time.sleep(0.3)
        headers = morello.request.headers
        with open("warmups.log", "a") as log:
            log.write(f"{{os.getpid()}} {{headers.get('Host')}} {{headers.get('User-Agent')}} "
                      f"{{morello.request.query_string}}\\n")
        morello.response.status = HEALTH
        return "fine" if HEALTH == 200 else "the database is gone"


class Root:
    api = Api()

    @morello.expose
    def index(self):
        # A new connection for every request: any worker accepting one would get some.
        morello.response.headers["Connection"] = "close"
        # What the health check says applies to every page.
        morello.response.status = HEALTH
        return f"hello from {{os.getpid()}} health {{HEALTH}}"
'''


def write_app(directory: Path, health: int = 200) -> None:
    (directory / "warm.py").write_text(APP.format(health=health))


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def serve(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", "warm:Root", *args],
        cwd=directory, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip


def test_workers_get_ready_once_their_warm_up_answered(app_dir: Path) -> None:
    with running_master(app_dir, "--warmup", "/api/health?deep=1", "--warmup", "/",
                        app="warm:Root") as master:  # fmt: skip
        pids = master.worker_pids()
        lines = (app_dir / "warmups.log").read_text().splitlines()
        # Each worker asked once, as if on the bind address, and said who it is.
        assert sorted(line.split()[0] for line in lines) == sorted(map(str, pids))
        assert {tuple(line.split()[1:]) for line in lines} == {
            (f"127.0.0.1:{master.port}", USER_AGENT, "deep=1")
        }
        # Warm-up requests are not the clients': they are not counted.
        assert all(w["requests"] == 0 for w in master.status()["workers"])


def test_a_release_failing_its_warm_up_is_not_rolled_out(app_dir: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(app_dir / "notify.sock"))
    notify.settimeout(DEADLINE)
    master = MasterProcess(app_dir, "--warmup", "/api/health", app="warm:Root")
    master.start(env={"NOTIFY_SOCKET": str(app_dir / "notify.sock")})
    try:
        old = master.wait_ready(2)
        assert notify.recv(4096).startswith(b"READY=1")
        with Load(master.url) as load:
            write_app(app_dir, health=500)
            master.send(signal.SIGHUP)
            assert notify.recv(4096).startswith(b"RELOADING=1")
            reason = "warm-up GET /api/health answered 500"
            # systemd hears that the reload is over, and how it ended.
            done = notify.recv(4096).decode()
            assert done.startswith("READY=1\nSTATUS=generation 1; last rollout aborted")
            assert reason in done
            wait_for(load.served_more(100), what="load after the aborted rollout")
            assert master.worker_pids() == old
            assert "health 200" in load_body(master)
        assert load.failures == []
        status = master.status()["master"]
        assert status["generation"] == 1 and status["rollout"] is None
        assert status["last_rollout"]["to_generation"] == 2
        assert status["last_rollout"]["state"].startswith("aborted: worker 3 failed to boot")
        assert reason in status["last_rollout"]["state"]
        page = fetch(master.control_address, "GET", "/", BROWSER)[2].decode()
        assert "Last rolling restart" in page and reason in page
        assert f"failed to boot: {reason}" in master.log()
    finally:
        master.stop()
        notify.close()


def load_body(master: MasterProcess) -> str:
    status, _, body = fetch(f"{master.host}:{master.port}", "GET", "/")
    assert status == 200
    return body.decode()


@pytest.mark.parametrize(
    "args, config, message",
    [
        (["--warmup", "api/health"], None, "warmup: each path must start with '/'"),
        (["--warmup", "/a b"], None, "is not a request path"),
        ([], "master.warmup = ['/', 7]", "master.warmup: expected a list of request paths"),
        ([], f"master.warmup = {['/'] * (MAX_WARMUP_REQUESTS + 1)}",
         f"warmup: at most {MAX_WARMUP_REQUESTS} paths"),
    ],
)  # fmt: skip
def test_bad_warm_up_settings_stop_the_start_in_one_line(
    app_dir: Path, args: list[str], config: str | None, message: str
) -> None:
    if config is not None:
        (app_dir / "site.conf").write_text(f"[global]\n{config}\n")
        args = [*args, "-c", "site.conf"]
    result = serve(app_dir, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_warm_up_paths_come_from_the_config_file(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text("[global]\nmaster.warmup = ['/api/health', '/']\n")
    result = serve(app_dir, "-c", "site.conf", "--print-config")
    assert "master.warmup = ['/api/health', '/']  # config file site.conf" in result.stdout
    result = serve(app_dir, "-c", "site.conf", "--warmup", "/", "--print-config")
    assert "master.warmup = ['/']  # command line" in result.stdout
