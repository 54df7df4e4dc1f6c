"""The ``morello`` command line: help, version, settings errors, start-up failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import requests
from prefork_support import DEADLINE, REPO_ROOT, wait_for, write_app

from morello.testing import free_port


def morello(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``morello`` command (as ``python -m morello.master``) to its end."""
    return subprocess.run(
        [sys.executable, "-m", "morello.master", *args],
        cwd=cwd, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag: str) -> None:
    result = morello(flag)
    assert result.returncode == 0
    assert "morello serve MODULE[:OBJECT]" in result.stdout and "morello ctl" in result.stdout


def test_version() -> None:
    result = morello("--version")
    assert result.returncode == 0
    assert result.stdout == f"morello {version('morello')}\n"


def test_no_command_is_a_usage_error() -> None:
    result = morello()
    assert result.returncode == 2
    assert "usage: morello serve" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-rss", "lots"], "--max-rss: expected a size like 512M"),
        (["--workers", "two"], "--workers: expected a whole number like 4, got 'two'"),
        (["--threads", "2.5"], "--threads: expected a whole number like 4"),
        (["--min-threads", "12"], "min_threads (12) is above threads (10)"),
        (["--timeout", "soon"], "--timeout: expected a number of seconds like 30 or 2.5"),
        (["--graceful-timeout", "nan"], "--graceful-timeout: expected a number of seconds"),
        (["--unix-mode", "rw"], "--unix-mode: expected an octal mode like 660"),
        (["--bogus"], "unrecognized arguments: --bogus (see morello serve --help)"),
    ],
)
def test_bad_flags_say_what_is_expected(app_dir: Path, args: list[str], message: str) -> None:
    result = morello("serve", "app:Root", *args, cwd=app_dir)
    assert result.returncode == 2
    assert result.stderr.startswith("morello serve: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("master.max_rss = 'lots'", "master.max_rss: expected a size like 512M"),
        ("master.workers = 'many'", "master.workers: expected a whole number like 4"),
        ("master.workers = 2.5", "master.workers: expected a whole number like 4"),
        ("master.preload = 'yes'", "master.preload: expected True or False"),
        ("master.timeout = [1]", "master.timeout: expected a number of seconds"),
    ],
)
def test_bad_config_values_say_what_is_expected(app_dir: Path, line: str, message: str) -> None:
    (app_dir / "site.conf").write_text(f"[global]\n{line}\n")
    result = morello("serve", "app:Root", "-c", "site.conf", cwd=app_dir)
    assert result.returncode == 2
    assert message in result.stderr and "site.conf" in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_address_in_use_stops_the_start_with_status_2(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = morello("serve", "app:Root", "-w", "1", "-b", f"127.0.0.1:{port}", cwd=app_dir)
    assert result.returncode == 2
    assert f"cannot listen: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_remote_control_address_is_refused_with_what_to_do(app_dir: Path) -> None:
    # Refused before any bind: 192.0.2.1 (TEST-NET-1) is never touched.
    result = morello(
        "serve", "app:Root", "-w", "1", "-b", f"127.0.0.1:{free_port()}",
        "--control-bind", "192.0.2.1:9100", cwd=app_dir,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert result.stderr.rstrip().endswith("bind it to 127.0.0.1, [::1] or a unix: socket")
    assert result.stderr.count("\n") == 1


def test_print_config_shows_each_setting_and_where_it_came_from(app_dir: Path) -> None:
    (app_dir / "site.conf").write_text(
        "[global]\nmaster.workers = 3\nmaster.max_rss = '512M'\nmaster.control_token = 'x1'\n"
    )
    result = morello(
        "serve", "app:Root", "-c", "site.conf", "--threads", "4", "--print-config", cwd=app_dir
    )
    assert result.returncode == 0, result.stderr
    shown = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert shown["master.workers"] == "3  # config file site.conf"
    assert shown["master.max_rss"] == f"{512 << 20}  # config file site.conf"
    assert shown["master.threads"] == "4  # command line"
    assert shown["master.backlog"] == "2048  # default"
    assert shown["master.access_logfile"] == "None  # default"
    assert "x1" not in result.stdout  # a secret stays one
    assert shown["master.control_token"].endswith("# config file site.conf")


# --- ./dev demo ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["flags", "environment"])
def test_dev_demo_serves_on_the_port_it_is_given(tmp_path: Path, how: str) -> None:
    port = free_port()
    command, env = [str(REPO_ROOT / "dev"), "demo"], dict(os.environ)
    if how == "flags":
        command += ["--port", str(port), "--workers", "1"]
    else:
        env.update(PORT=str(port), WORKERS="1")
    with open(tmp_path / "demo.log", "wb") as log:
        demo = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        page = wait_for(
            lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=5),
            what=f"the demo on port {port}\n{(tmp_path / 'demo.log').read_text()[-2000:]}",
        )
        assert page.status_code == 200 and "morello demo" in page.text
        demo.send_signal(signal.SIGTERM)  # ./dev execs the demo: this is its master
        assert demo.wait(DEADLINE) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(DEADLINE)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "eighty"], {}, "--port needs a whole number, like --port 8081; got 'eighty'"),
        (["--port"], {}, "--port needs a number"),
        ([], {"PORT": "http"}, "--port needs a whole number"),
        (["--colour"], {}, "unknown option '--colour'"),
    ],
)
def test_dev_demo_refuses_bad_options(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "dev"), "demo", *args], env=dict(os.environ, **env),
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("dev: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
