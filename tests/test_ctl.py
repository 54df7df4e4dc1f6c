"""``morello ctl`` against a real control endpoint and a real child process for signals."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from control_support import (
    DEADLINE,
    Endpoint,
)
from morello.master import ctl
from prefork_support import running_master, write_app

# --- morello ctl: HTTP commands ------------------------------------------------


def test_ctl_status_table(endpoint: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["status", "--control", endpoint.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("master 4242  state running  uptime 1h02m  generation 3")
    assert "workers 1/2 ready" in lines[0] and "restarts 5" in lines[0]
    assert lines[1].split() == ["ID", "PID", "STATE", "GEN", "AGE", "REQUESTS", "BUSY", "RSS"]
    assert lines[2].split() == ["7", "5001", "ready", "3", "2m05s", "1234", "2/10", "47.7M"]
    assert lines[3].split() == ["8", "5002", "booting", "3", "1s", "0", "0/0", "-"]


def test_ctl_status_shows_the_rollout_under_way_or_the_last_one(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    master = endpoint.app.document["master"]
    master["rollout"] = {"from_generation": 2, "ready": 1, "target": 2,
                         "canary": {"state": "judging"}}  # fmt: skip
    assert ctl.main(["status", "--control", endpoint.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "rollout from generation 2 to 3: 1/2 new workers ready; canary judging"
    assert lines[2].split()[0] == "ID"
    master["rollout"] = None
    master["last_rollout"] = {"from_generation": 3, "to_generation": 4,
                              "state": "rolled back: the canary answered 5xx",
                              "time": 1_796_000_000.5}  # fmt: skip
    assert ctl.main(["status", "--control", endpoint.address]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "last rollout from generation 3 to 4: rolled back: the canary answered 5xx "
        "at 2026-11-30 00:53:20 UTC"
    )


def test_ctl_status_json_and_options_before_the_command(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["--control", endpoint.address, "--timeout", "3", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == endpoint.app.document


@pytest.mark.parametrize("document", [{"workers": []}, {"master": 1, "workers": 5}, {}])
def test_ctl_status_without_workers(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], document: dict[str, Any]
) -> None:
    endpoint.app.document = document
    assert ctl.main(["status", "--control", endpoint.address]) == 0
    out = capsys.readouterr().out
    assert out.startswith("master -  state -") and "(no workers)" in out


def test_ctl_status_reports_server_errors(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.app.fail = True
    assert ctl.main(["status", "--control", endpoint.address]) == 1
    assert capsys.readouterr().err.strip() == (
        "morello ctl: error: status failed: HTTP 500: internal error: RuntimeError"
    )


def test_ctl_scale(endpoint: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["scale", "6", "--control", endpoint.address]) == 0
    assert capsys.readouterr().out == "scaling to 6 worker(s)\n"
    assert endpoint.app.scaled == [6]
    assert ctl.main(["scale", "64", "--control", endpoint.address]) == 1
    err = capsys.readouterr().err
    assert err.startswith("morello ctl: error: scale refused: HTTP 400: cannot scale to 64")
    assert "from 1 to 32" in err
    assert endpoint.app.scaled == [6]


@pytest.mark.parametrize("value", ["abc", "1.5", "", "-3", "\u00b2"])
def test_ctl_scale_rejects_invalid_numbers_locally(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert ctl.main(["scale", value, "--control", endpoint.address]) == 2
    assert "error" in capsys.readouterr().err
    assert endpoint.app.scaled == []


def test_ctl_unreachable_endpoint(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    for address in (f"127.0.0.1:{port}", f"unix:{short_dir}/missing.sock"):
        assert ctl.main(["status", "--control", address]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"morello ctl: error: cannot reach the control endpoint at {address}")
        assert err.count("\n") == 1


def test_ctl_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["status"]) == 2
    assert "--control ADDR" in capsys.readouterr().err
    assert ctl.main(["status", "--control", "nowhere"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert ctl.main(["frobnicate"]) == 2
    assert ctl.main([]) == 2
    assert ctl.main(["reload"]) == 2
    assert "--pidfile PATH" in capsys.readouterr().err
    assert ctl.main(["stop", "--pidfile", "x", "--timeout", "0"]) == 2


# --- morello ctl: signals ----------------------------------------------------

CHILD = r"""
import signal, sys
import setproctitle
# What "morello ctl" recognizes a master by.
setproctitle.setproctitle("morello: master [ctl-test]")
exit_on_term = sys.argv[1] == "exit"

def record(signum, frame):
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM and exit_on_term:
        sys.exit(0)

signal.signal(signal.SIGHUP, record)
signal.signal(signal.SIGTERM, record)
print("ready", flush=True)
while True:
    signal.pause()
"""


class Child:
    """A python child that prints the name of each signal it gets."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, bufsize=0
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        assert readable, "the child said nothing in time"
        return self.proc.stdout.readline().decode().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def child(request: pytest.FixtureRequest) -> Iterator[Child]:
    spawned = Child(getattr(request, "param", "exit"))
    yield spawned
    spawned.stop()


@pytest.fixture
def pidfile(tmp_path: Path, child: Child) -> str:
    path = tmp_path / "morello.pid"
    path.write_text(f"{child.proc.pid}\n")
    return str(path)


def test_ctl_reload_sends_sighup(
    child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["reload", "--pidfile", pidfile]) == 0
    assert child.readline() == "SIGHUP"
    assert child.proc.poll() is None
    assert capsys.readouterr().out == f"sent SIGHUP to master {child.proc.pid}: rolling restart\n"


def test_ctl_stop_sends_sigterm(child: Child, pidfile: str) -> None:
    assert ctl.main(["stop", "--pidfile", pidfile]) == 0
    assert child.readline() == "SIGTERM"
    assert child.proc.wait(DEADLINE) == 0


def test_ctl_stop_wait_returns_once_the_process_is_gone(
    child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["stop", "--pidfile", pidfile, "--wait", "--timeout", str(DEADLINE)]) == 0
    assert capsys.readouterr().out == f"master {child.proc.pid} stopped\n"
    assert child.readline() == "SIGTERM"
    assert child.proc.wait(DEADLINE) == 0


@pytest.mark.parametrize("child", ["ignore"], indirect=True)
def test_ctl_stop_wait_times_out(
    child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    assert ctl.main(["stop", "--pidfile", pidfile, "--wait", "--timeout", "0.3"]) == 1
    assert time.monotonic() - began >= 0.3
    assert child.readline() == "SIGTERM"
    assert child.proc.poll() is None
    assert capsys.readouterr().err == (
        f"morello ctl: error: master {child.proc.pid} still running after 0.3s\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist (is the server running?)"),
        ("", "does not hold a pid"),
        ("abc\n", "does not hold a pid"),
        ("0\n", "does not hold a pid"),
        ("-1\n", "does not hold a pid"),
        ("99999999999\n", "does not hold a pid"),
        ("\u00b2\n", "does not hold a pid"),
        ("gone", "stale pid file"),
    ],
)
@pytest.mark.parametrize("command", ["reload", "stop"])
def test_ctl_bad_pid_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "morello.pid"
    if content == "gone":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait(DEADLINE)  # reaped: its pid now names no process
        content = str(gone.pid)
    if content is not None:
        path.write_text(content)
    assert ctl.main([command, "--pidfile", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("morello ctl: error: ") and message in err
    assert err.count("\n") == 1


# --- morello ctl: which process it signals -------------------------------------


@pytest.fixture
def unrelated(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not a morello master (what a reused pid may name)."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait(DEADLINE)


@pytest.mark.parametrize("command", ["reload", "stop"])
def test_ctl_refuses_to_signal_a_process_that_is_not_a_master(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    unrelated: subprocess.Popen[bytes],
    command: str,
) -> None:
    path = tmp_path / "morello.pid"
    path.write_text(f"{unrelated.pid}\n")
    assert ctl.main([command, "--pidfile", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"morello ctl: error: process {unrelated.pid} (from pid file {path})")
    assert "is not a morello master" in err and err.count("\n") == 1
    # Both signals would have ended it: it is still there, untouched.
    with pytest.raises(subprocess.TimeoutExpired):
        unrelated.wait(0.2)


def test_ctl_refuses_a_pid_reported_by_the_control_endpoint_that_is_not_a_master(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], unrelated: subprocess.Popen[bytes]
) -> None:
    endpoint.app.document["master"]["pid"] = unrelated.pid
    assert ctl.main(["stop", "--control", endpoint.address]) == 1
    assert "is not a morello master" in capsys.readouterr().err
    with pytest.raises(subprocess.TimeoutExpired):
        unrelated.wait(0.2)


# --- morello ctl: one way to find the master -----------------------------------

ALL_FLAGS = ["-c", "site.conf", "--control", "127.0.0.1:1", "--pidfile", "m.pid", "--timeout", "3"]


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--json"], ["scale", "3"], ["reload"], ["stop", "--wait"]]
)
def test_every_command_takes_the_same_flags(command: list[str]) -> None:
    for argv in ([*command, *ALL_FLAGS], [*ALL_FLAGS, *command]):
        args = ctl.build_parser().parse_args(argv)
        assert (args.config, args.control, args.pidfile, args.timeout) == (
            "site.conf", "127.0.0.1:1", "m.pid", 3.0
        )  # fmt: skip


def write_config(tmp_path: Path, **master: str) -> str:
    path = tmp_path / "site.conf"
    lines = [f"master.{key} = {value!r}" for key, value in master.items()]
    path.write_text("[global]\n" + "\n".join(lines) + "\n")
    return str(path)


def test_ctl_reads_the_pidfile_from_the_config_file(
    tmp_path: Path, child: Child, pidfile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, pidfile=pidfile)
    assert ctl.main(["reload", "-c", config]) == 0
    assert child.readline() == "SIGHUP"
    assert ctl.main(["stop", "--config", config, "--wait"]) == 0
    assert child.readline() == "SIGTERM"
    assert child.proc.wait(DEADLINE) == 0


def test_ctl_reads_the_control_endpoint_from_the_config_file(
    tmp_path: Path, endpoint: Endpoint, child: Child, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, control_bind=endpoint.address)
    assert ctl.main(["-c", config, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == endpoint.app.document
    assert ctl.main(["scale", "4", "-c", config]) == 0
    assert endpoint.app.scaled == [4]
    # reload and stop signal the pid the endpoint reports.
    endpoint.app.document["master"]["pid"] = child.proc.pid
    assert ctl.main(["reload", "-c", config]) == 0
    assert child.readline() == "SIGHUP"


def test_ctl_flags_override_the_config_file(
    tmp_path: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, control_bind="unix:/nonexistent/control.sock")
    assert ctl.main(["status", "-c", config, "--control", endpoint.address]) == 0


def test_ctl_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.conf"
    assert ctl.main(["status", "-c", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"morello ctl: error: cannot use config file {missing}")
    assert err.count("\n") == 1
    config = write_config(tmp_path, workers="2")  # no endpoint, no pid file in it
    assert ctl.main(["status", "-c", config]) == 2
    assert "master.control_bind" in capsys.readouterr().err
    assert ctl.main(["stop", "-c", config]) == 2
    assert "master.pidfile" in capsys.readouterr().err


def test_ctl_sends_the_control_token(
    tmp_path: Path,
    start: Callable[..., Endpoint],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = start("tcp", token="s3cret")
    monkeypatch.delenv(ctl.TOKEN_ENV, raising=False)
    assert ctl.main(["scale", "2", "--control", endpoint.address]) == 1
    assert "Authorization: Bearer" in capsys.readouterr().err
    config = write_config(tmp_path, control_bind=endpoint.address, control_token="s3cret")
    assert ctl.main(["scale", "3", "-c", config]) == 0
    monkeypatch.setenv(ctl.TOKEN_ENV, "s3cret")
    assert ctl.main(["scale", "4", "--control", endpoint.address]) == 0
    monkeypatch.setenv(ctl.TOKEN_ENV, "wrong")
    assert ctl.main(["scale", "5", "-c", config]) == 0  # the master's own file wins
    assert endpoint.app.scaled == [3, 4, 5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "soon"], "--timeout: expected a number of seconds like 30 or 2.5"),
        (["--timeout", "0"], "--timeout: expected a positive number of seconds, got '0'"),
        (["--colour"], "unrecognized arguments: --colour (see morello ctl --help)"),
    ],
)
def test_ctl_usage_errors_say_what_is_expected(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert ctl.main(["stop", "--pidfile", "m.pid", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("morello ctl") and ": error: " in err and message in err
    assert err.count("\n") == 1


def test_ctl_drives_a_real_master_from_its_config_file(tmp_path: Path) -> None:
    write_app(tmp_path)
    config = write_config(
        tmp_path,
        control_bind=f"unix:{tmp_path / 'control.sock'}",
        pidfile=str(tmp_path / "master.pid"),
        control_token="t0ken",
    )
    with running_master(tmp_path, "-c", config, workers=1) as master:
        assert ctl.main(["scale", "2", "-c", config]) == 0
        first = master.wait_ready(2)
        assert ctl.main(["reload", "-c", config]) == 0
        master.wait_ready(2, exclude=first)
        assert ctl.main(["stop", "-c", config, "--wait"]) == 0
        assert master.wait_exit() == 0
