"""Operating a real master: systemd notifications, ``morello ctl``, USR1, a frozen worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from prefork_support import REPO_ROOT, MasterProcess, running_master, wait_for, write_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "morello.master", "ctl", *args],
        capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )  # fmt: skip


def test_systemd_hears_ready_reloading_and_stopping(app_dir: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(app_dir / "notify.sock"))
    notify.settimeout(30)
    master = MasterProcess(app_dir, workers=2)
    master.start(env={"NOTIFY_SOCKET": str(app_dir / "notify.sock")})
    try:
        heard = []

        def next_state() -> str:
            message = notify.recv(4096).decode()
            heard.append(message)
            return message

        assert next_state().startswith("READY=1")
        # Both workers were ready when READY=1 came.
        assert len(master.worker_pids()) == 2
        master.send(signal.SIGHUP)
        assert next_state().startswith("RELOADING=1")
        assert next_state().startswith("READY=1")
        master.send(signal.SIGTERM)
        assert next_state().startswith("STOPPING=1")
        assert master.wait_exit() == 0
    finally:
        master.stop()
        notify.close()


def test_ctl_status_scale_reload_and_stop(app_dir: Path) -> None:
    with running_master(app_dir, workers=1) as master:
        control = f"unix:{master.control_path}"
        status = ctl("--control", control, "status")
        assert status.returncode == 0, status.stderr
        assert str(master.worker_pids().pop()) in status.stdout
        scaled = ctl("--control", control, "scale", "2")
        assert scaled.returncode == 0, scaled.stderr
        master.wait_ready(2)
        refused = ctl("--control", control, "scale", "0")
        assert refused.returncode != 0 and "whole number >= 1" in refused.stderr
        old = master.worker_pids()
        assert ctl("--pidfile", master.pidfile, "reload").returncode == 0
        master.wait_ready(2, exclude=old)
        stopped = ctl("--pidfile", master.pidfile, "stop", "--wait")
        assert stopped.returncode == 0, stopped.stderr
        assert master.wait_exit() == 0


def test_scaling_an_app_with_ram_sessions_is_refused_before_a_worker_is_ready(
    tmp_path: Path,
) -> None:
    # The worker takes seconds to start; the pre-flight check already knows.
    write_app(tmp_path, extra="import time\nmorello.engine.subscribe('start', "
                              "lambda: time.sleep(3))\n")  # fmt: skip
    (tmp_path / "site.conf").write_text("[/]\ntools.sessions.on = True\n")
    master = MasterProcess(tmp_path, "-c", "site.conf", workers=1).start()
    try:
        wait_for(lambda: os.path.exists(master.control_path), what="the control endpoint")
        assert master.status()["workers"][0]["state"] == "booting"
        code, body = master.control("POST", "/scale?workers=2", {"Host": "localhost"})
        assert code == 409 and "RAM" in body, (code, body)
        assert master.status()["master"]["target_workers"] == 1
    finally:
        master.stop()


def test_ctl_scale_refuses_an_app_with_ram_sessions(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text("[/]\ntools.sessions.on = True\n")
    with running_master(app_dir, "-c", "site.conf", workers=1) as master:
        scaled = ctl("--control", f"unix:{master.control_path}", "scale", "2")
        assert scaled.returncode != 0
        assert "409" in scaled.stderr and "RAM" in scaled.stderr
        status = master.status()
        assert status["master"]["target_workers"] == 1 and len(status["workers"]) == 1
        assert "failed to boot" not in master.log()


def test_usr1_reopens_the_workers_log_files(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text("[global]\nlog.access_file = 'access.log'\n")
    with running_master(app_dir, "-c", "site.conf", workers=2) as master:
        requests.get(master.url, timeout=10)
        access = app_dir / "access.log"
        wait_for(lambda: "GET / " in access.read_text(), what="first access line")
        access.rename(app_dir / "access.log.1")
        master.send(signal.SIGUSR1)
        # Each worker reopens the path when the signal reaches it; find a request
        # that each of them logged in the new file.
        reopened: set[str] = set()
        attempt = iter(range(10_000))

        def both_reopened() -> bool:
            n = next(attempt)
            pid = requests.get(f"{master.url}/pid?n={n}", timeout=10).text
            if f"/pid?n={n} " in access.read_text():
                reopened.add(pid)
            return len(reopened) == 2

        wait_for(both_reopened, what="both workers logging to the reopened file")
        before = (app_dir / "access.log.1").read_text()
        for n in range(10):
            requests.get(f"{master.url}/pid?after={n}", timeout=10)
        wait_for(lambda: access.read_text().count("/pid?after=") == 10, what="later requests")
        assert (app_dir / "access.log.1").read_text() == before


def test_a_frozen_worker_is_aborted_and_replaced(app_dir: Path) -> None:
    with running_master(app_dir, "--timeout", "2", workers=2) as master:
        before = master.worker_pids()

        def freeze() -> None:
            try:
                requests.get(master.url + "/freeze", timeout=8)
            except requests.RequestException:
                pass  # its worker is gone: this one request cannot succeed

        thread = threading.Thread(target=freeze)
        thread.start()
        after = wait_for(
            lambda: (pids := master.wait_ready(2)) != before and pids, what="a replacement"
        )
        thread.join(15)
        frozen = before - after
        assert len(frozen) == 1
        log = master.log()
        assert "silent for" in log and "aborting it" in log
        assert requests.get(master.url, timeout=10).status_code == 200
