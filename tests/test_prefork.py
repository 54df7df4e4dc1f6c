"""The prefork master for real: ``morello serve`` subprocesses, signals, continuous load.

Every test that changes the set of workers does it under load from
:class:`prefork_support.Load` and asserts that no request failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import requests
from morello.master.ctl import process_gone
from prefork_support import (
    DEADLINE,
    Load,
    MasterProcess,
    UnixHTTPConnection,
    running_master,
    wait_for,
    write_app,
)

pytestmark = pytest.mark.timeout(120)


def alive(pid: int) -> bool:
    return not process_gone(pid)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def body(url: str) -> str:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def test_workers_serve_and_report(app_dir: Path) -> None:
    with running_master(app_dir, workers=2) as master:
        pids = master.worker_pids()
        assert len(pids) == 2
        seen = {int(body(master.url + "/pid")) for _ in range(40)}
        assert seen <= pids and seen  # answered by our workers only
        assert master.control("GET", "/healthz")[0] == 200
        assert master.control("GET", "/readyz") == (200, "ready")
        status = master.status()
        assert status["master"]["pid"] == master.pid
        assert {w["pid"] for w in status["workers"]} == pids
        assert all(w["generation"] == 1 for w in status["workers"])
        # Counters reach /metrics through the workers' heartbeats.
        wait_for(
            lambda: "morello_requests_total 4" in master.control("GET", "/metrics")[1]
            or _metric(master, "morello_requests_total") >= 40,
            what="requests counted in /metrics",
        )
        for line in master.control("GET", "/metrics")[1].splitlines():
            if line.startswith('morello_workers{state="ready"}'):
                assert line.split()[-1] in ("2", "2.0")
        titles = {psutil.Process(pid).cmdline()[0] for pid in pids}
        assert all(title.startswith("morello: worker") for title in titles), titles
        assert psutil.Process(master.pid).cmdline()[0].startswith("morello: master [app:Root]")


def _metric(master: MasterProcess, name: str) -> float:
    for line in master.control("GET", "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_hup_rolls_every_worker_without_a_failed_request(app_dir: Path) -> None:
    with running_master(app_dir, workers=2) as master, Load(master.url) as load:
        old = master.worker_pids()
        write_app(app_dir, version="2")
        master.send(signal.SIGHUP)
        new = master.wait_ready(2, exclude=old)
        wait_for(load.served_more(50), what="load after the rollout")
        assert "v2" in body(master.url)
        assert master.status()["master"]["generation"] == 2
    load.assert_none_failed(master)
    assert not new & old
    assert "rolling restart to generation 2 complete" in master.log()


def signal_and_wait(master: MasterProcess, sig: int, target: int) -> None:
    """Send ``sig`` once and wait until the master handled it: its target is ``target``
    and it logged the signal one more time (so a no-op is waited for too)."""
    name = signal.Signals(sig).name
    handled = master.log().count(f"master got {name}") + 1
    master.send(sig)
    wait_for(
        lambda: master.check_alive() is None
        and master.log().count(f"master got {name}") >= handled
        and master.status()["master"]["target_workers"] == target,
        what=f"{name} handled, target {target}",
    )


def test_ttin_and_ttou_change_capacity_without_failures(app_dir: Path) -> None:
    with running_master(app_dir, workers=1) as master, Load(master.url) as load:
        first = master.worker_pids()
        signal_and_wait(master, signal.SIGTTIN, 2)
        master.wait_ready(2)
        signal_and_wait(master, signal.SIGTTIN, 3)
        master.wait_ready(3)
        signal_and_wait(master, signal.SIGTTOU, 2)
        master.wait_ready(2)
        wait_for(load.served_more(30))
        signal_and_wait(master, signal.SIGTTOU, 1)
        master.wait_ready(1)
        # At one worker, TTOU is a logged no-op, however often it comes.
        for _ in range(2):
            signal_and_wait(master, signal.SIGTTOU, 1)
        remaining = master.wait_ready(1)
        wait_for(load.served_more(30))
        master.check_alive()
    load.assert_none_failed(master)
    assert len(remaining) == 1 and len(first) == 1
    assert master.log().count("TTOU ignored: already at 1 worker") == 2


def test_scaling_stops_at_max_workers(app_dir: Path) -> None:
    with running_master(app_dir, "--max-workers", "3", workers=2) as master:
        code, text = master.control("POST", "/scale?workers=999999")
        assert code == 400 and "max_workers=3" in text and text.count("\n") == 1
        assert master.control("POST", "/scale?workers=3")[0] == 200
        master.wait_ready(3)
        signal_and_wait(master, signal.SIGTTIN, 3)  # at the cap: a logged no-op
        assert "TTIN ignored: 4 is above max_workers=3" in master.log()
        assert len(master.status()["workers"]) == 3
        assert master.status()["master"]["max_workers"] == 3


def test_control_token_guards_post_requests(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text("[global]\nmaster.control_token = 'T0ken'\n")
    with running_master(app_dir, "-c", "site.conf", workers=1) as master:
        code, text = master.control("POST", "/scale?workers=2")
        assert code == 401 and "Bearer" in text
        code, _ = master.control("POST", "/scale?workers=2", {"Authorization": "Bearer nope"})
        assert code == 401
        assert master.status()["master"]["target_workers"] == 1
        code, _ = master.control("POST", "/scale?workers=2", {"Authorization": "Bearer T0ken"})
        assert code == 200
        master.wait_ready(2)


def test_max_requests_recycles_gracefully(app_dir: Path) -> None:
    with running_master(app_dir, "--max-requests", "60", workers=2) as master:
        first = master.worker_pids()
        with Load(master.url) as load:
            master.wait_ready(2, exclude=first)
            wait_for(load.served_more(30))
    load.assert_none_failed(master)
    assert "asks to be recycled (max_requests)" in master.log()


def test_max_rss_recycles_gracefully(app_dir: Path) -> None:
    with running_master(app_dir, "--max-rss", "150M", workers=1) as master:
        first = master.worker_pids()
        with Load(master.url) as load:
            assert body(master.url + "/grow?mb=200") == "1"
            master.wait_ready(1, exclude=first)
            wait_for(load.served_more(30))
    load.assert_none_failed(master)
    assert "max_rss" in master.log()


def test_term_lets_in_flight_requests_finish(app_dir: Path) -> None:
    master = MasterProcess(app_dir, workers=1).start()
    try:
        master.wait_ready(1)
        result: dict[str, object] = {}

        def slow_request() -> None:
            response = requests.get(master.url + "/slow?seconds=2", timeout=20)
            result["status"], result["text"] = response.status_code, response.text

        thread = threading.Thread(target=slow_request)
        thread.start()
        wait_for(lambda: any(w["in_flight"] for w in master.status()["workers"]),
                 what="the slow request in flight")  # fmt: skip
        master.send(signal.SIGTERM)
        assert master.wait_exit() == 0
        thread.join(DEADLINE)
        assert result.get("status") == 200 and "slept 2" in str(result["text"])
        assert not os.path.exists(master.pidfile)
    finally:
        master.stop()


def test_killed_worker_is_replaced_and_others_keep_serving(app_dir: Path) -> None:
    with running_master(app_dir, workers=2) as master, Load(master.url, clients=4) as load:
        victim, survivor = sorted(master.worker_pids())
        os.kill(victim, signal.SIGKILL)
        pids = master.wait_ready(2, exclude={victim})
        assert survivor in pids
        wait_for(load.served_more(50))
    # Only requests the killed worker was serving at that moment may fail.
    assert len(load.failures) <= load.clients
    assert "died unexpectedly: killed by SIGKILL" in master.log()


def test_a_burst_of_hups_loses_no_request_and_keeps_supervising(app_dir: Path) -> None:
    hups = 20
    with running_master(app_dir, workers=2) as master, Load(master.url) as load:
        for n in range(1, hups + 1):
            # Each one handled before the next (so none merge), as fast as that goes.
            master.send(signal.SIGHUP)
            wait_for(lambda n=n: master.log().count("master got SIGHUP") >= n, what=f"HUP {n}")

        def rolled_out() -> bool:
            master.check_alive()
            workers = master.status()["workers"]
            return len(workers) == 2 and all(
                w["state"] == "ready" and w["generation"] == hups + 1 for w in workers
            )

        wait_for(rolled_out, what=f"2 ready workers of generation {hups + 1}")
        wait_for(load.served_more(50))
        assert master.status()["master"]["state"] == "running"
        load.assert_none_failed(master)
        log = master.log()
        assert "failed to boot" not in log and "did not exit in time" not in log
        victim = min(master.worker_pids())
        os.kill(victim, signal.SIGKILL)
        master.wait_ready(2, exclude={victim})
        wait_for(load.served_more(50))
    # Only the requests the killed worker was serving may fail.
    assert len(load.failures) <= load.clients


def test_app_broken_during_hup_aborts_the_rollout(app_dir: Path) -> None:
    with running_master(app_dir, workers=2) as master, Load(master.url) as load:
        old = master.worker_pids()
        write_app(app_dir, version="2", extra="raise RuntimeError('broken release')")
        master.send(signal.SIGHUP)
        wait_for(lambda: "aborted" in master.log(), what="the rollout aborted")
        wait_for(load.served_more(50))
        assert master.worker_pids() == old
        assert master.status()["master"]["generation"] == 1
        assert "v1" in body(master.url)
    load.assert_none_failed(master)
    assert "broken release" in master.log()


def test_crash_looping_app_backs_off_and_gives_up(app_dir: Path) -> None:
    # It imports (so it passes the check before forking), but cannot start: the
    # database may come back, so workers are retried.
    write_app(app_dir, extra=(
        "@morello.engine.subscribe('start')\n"
        "def connect():\n    raise ConnectionRefusedError('database is down')\n"
    ))  # fmt: skip
    master = MasterProcess(app_dir, "--max-boot-failures", "3", workers=2).start()
    code = master.wait_exit()
    log = master.log()
    assert code == 1
    assert log.count("failed to boot: exit code") <= 3  # no fork storm
    assert "3 workers in a row failed to boot" in log
    assert "next worker start in" in log  # it backed off between tries


def test_halted_master_keeps_healthy_workers(app_dir: Path) -> None:
    with running_master(app_dir, "--max-boot-failures", "2", workers=2) as master:
        victim, survivor = sorted(master.worker_pids())
        write_app(app_dir, extra="raise ImportError('gone')")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "no more workers will be started" in master.log())
        assert master.worker_pids() == {survivor}
        assert master.control("GET", "/readyz")[0] == 200
        assert body(master.url + "/pid") == str(survivor)
        assert master.status()["master"]["state"] == "halted"
        # The release is fixed; generation 1 booted fine, so a worker of it that
        # dies is still replaced, halt or not.
        write_app(app_dir)
        os.kill(survivor, signal.SIGKILL)
        master.wait_ready(2, exclude={victim, survivor})
        assert master.status()["master"]["state"] == "running"


def test_workers_exit_when_the_master_is_killed(app_dir: Path) -> None:
    master = MasterProcess(app_dir, workers=2).start()
    try:
        pids = master.wait_ready(2)
        os.kill(master.pid, signal.SIGKILL)
        master.wait_exit()
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=2.0,
                 what="workers gone within 2 s")  # fmt: skip
    finally:
        for pid in pids if "pids" in locals() else ():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_request_deadline_logs_the_stack_and_recycles(app_dir: Path) -> None:
    with running_master(app_dir, "--request-timeout", "0.5", workers=1) as master:
        first = master.worker_pids()
        response = requests.get(master.url + "/slow?seconds=1.5", timeout=20)
        assert response.status_code == 200  # the slow request itself still completes
        master.wait_ready(1, exclude=first)
        log = master.log()
        assert "time.sleep(float(seconds))" in log  # its stack
        assert "request_timeout" in log


def test_unix_socket_bind(tmp_path: Path) -> None:
    write_app(tmp_path)
    path = tmp_path / "app.sock"
    master = MasterProcess(tmp_path, "--bind", f"unix:{path}", "--unix-mode", "660", workers=1)
    master.start()
    try:
        master.wait_ready(1)
        assert oct(path.stat().st_mode & 0o777) == oct(0o660)
        connection = UnixHTTPConnection(str(path), timeout=5.0)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200 and b"hello from" in response.read()
        connection.close()
        master.send(signal.SIGTERM)
        assert master.wait_exit() == 0
        assert not path.exists()  # removed on a clean stop
    finally:
        master.stop()


def test_usr2_starts_a_new_master_on_the_same_socket(app_dir: Path) -> None:
    master = MasterProcess(app_dir, workers=1).start()
    try:
        old_workers = master.wait_ready(1)
        with Load(master.url) as load:
            master.send(signal.SIGUSR2)
            new_pid = wait_for(lambda: _new_pid(master), what="the new master's pid file")
            wait_for(lambda: "all 1 worker(s) ready" in _log_of(master, new_pid))
            master.send(signal.SIGTERM)
            assert master.wait_exit() == 0
            wait_for(load.served_more(50))
            assert psutil.pid_exists(new_pid)
            assert not any(alive(pid) for pid in old_workers)
        load.assert_none_failed(master)
        assert int(Path(master.pidfile).read_text()) == new_pid
    finally:
        master.stop()
        if "new_pid" in locals() and alive(new_pid):
            os.kill(new_pid, signal.SIGTERM)
            wait_for(lambda: not alive(new_pid), what="new master gone")


def _new_pid(master: MasterProcess) -> int | None:
    pid = int(Path(master.pidfile).read_text())
    return pid if pid != master.pid else None


def _log_of(master: MasterProcess, pid: int) -> str:
    return "\n".join(line for line in master.log().splitlines() if f"[{pid}]" in line)


def test_systemd_socket_activation(app_dir: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    # LISTEN_PID must be the master's own pid, known only once it runs: a small
    # launcher moves the socket to fd 3 (where systemd puts it) and execs the master.
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
    )
    command = [
        sys.executable, "-c", launcher, str(listener.fileno()),
        "-m", "morello.master", "serve", "app:Root", "--workers", "1",
        "--bind", "127.0.0.1:1", "--control-bind", f"unix:{app_dir / 'control.sock'}",
    ]  # fmt: skip
    with open(app_dir / "master.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=app_dir, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        )  # fmt: skip
    listener.close()
    try:
        text = wait_for(lambda: body(f"http://127.0.0.1:{port}/"), what="activated socket served")
        assert "hello from" in text
        assert "socket activation" in (app_dir / "master.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(DEADLINE)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "workers must be at least 1"),
        (["--bind", "127.0.0.1:99999"], "99999"),
        (["--timeout", "1", "--max-requests", "-1"], "max_requests must not be negative"),
        (["--workers", "3", "--max-workers", "2"], "max_workers (2) is below workers (3)"),
    ],
)
def test_bad_settings_fail_clearly(app_dir: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", "app:Root", *args],
        cwd=app_dir, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr


def test_master_settings_come_from_the_config_file(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text(
        "[global]\nmaster.workers = 3\nmaster.max_rss = '1G'\nmaster.nonsense = 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", "app:Root", "-c", "site.conf"],
        cwd=app_dir, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown master setting 'nonsense'" in result.stderr
    (app_dir / "site.conf").write_text("[global]\nmaster.workers = 3\n")
    with running_master(app_dir, "-c", "site.conf", workers=1) as master:
        # The flag (--workers 1) wins over the file (3).
        assert len(master.worker_pids()) == 1
        assert json.loads(master.control("GET", "/status")[1])["master"]["target_workers"] == 1


def test_ram_sessions_with_several_workers_fail_at_startup(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text("[/]\ntools.sessions.on = True\n")
    for extra in ([], ["--preload"]):
        master = MasterProcess(app_dir, "-c", "site.conf", "--max-boot-failures", "1", *extra)
        assert master.start().wait_exit() != 0
        log = master.log()
        assert "RAM sessions cannot be shared by 2 worker processes" in log
        assert "'file'" in log and "'memcached'" in log and "'redis'" in log
        master.log_path.unlink()
    # One worker may keep its sessions in RAM.
    with running_master(app_dir, "-c", "site.conf", workers=1) as master:
        assert "Set-Cookie" in requests.get(master.url, timeout=10).headers


def test_keep_alive_requests_are_not_delayed_by_nagle(app_dir: Path) -> None:
    import http.client
    import time

    with running_master(app_dir, workers=1) as master:
        connection = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
        durations = []
        for _ in range(8):
            started = time.perf_counter()
            connection.request("GET", "/pid")
            connection.getresponse().read()
            durations.append(time.perf_counter() - started)
        connection.close()
        # Delayed ACK against Nagle costs ~40 ms per reused-connection request.
        assert sorted(durations)[4] < 0.02, durations


def test_root_cp_config_sessions_with_a_file_store_are_not_ram(app_dir: Path) -> None:
    write_app(app_dir, extra="")
    source = (app_dir / "app.py").read_text().replace(
        "class Root:\n", "class Root:\n    _cp_config = {'tools.sessions.on': True}\n"
    )
    (app_dir / "app.py").write_text(source)
    (app_dir / "sessions").mkdir()
    (app_dir / "site.conf").write_text(
        "[/]\ntools.sessions.storage_type = 'file'\n"
        f"tools.sessions.storage_path = {str(app_dir / 'sessions')!r}\n"
    )
    with running_master(app_dir, "-c", "site.conf", workers=2) as master:
        assert "Set-Cookie" in requests.get(master.url, timeout=10).headers
