"""``morello serve`` refuses a broken app or config at once: one line, exit status 2.

Every test runs the real command. A failure must come before any socket is
bound or worker forked, in about the time Python takes to start, with one
line saying what is wrong and how to fix it (plus the traceback, once, when
the app's own code raised).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from bus_support import python_env
from prefork_support import DEADLINE, MasterProcess, running_master, write_app

import morello
from morello.checker import ConfigError
from morello.testing import free_port

pytestmark = pytest.mark.timeout(120)

#: What a check may take beyond starting Python and importing the master.
CHECK_BUDGET = 1.0

HELLO = '''
import morello


class HelloWorld:
    @morello.expose
    def index(self):
        return "Hello world!"
'''


def startup_seconds() -> float:
    """How long this machine takes to start Python and import the master, right now."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import morello.master.launch"], env=python_env(),
                   check=True, timeout=DEADLINE)  # fmt: skip
    return time.monotonic() - started


def serve(directory: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``morello serve ARGS`` in ``directory`` to its end; return it and its duration."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", *args],
        cwd=directory, capture_output=True, text=True, timeout=DEADLINE, env=python_env(),
    )  # fmt: skip
    return result, time.monotonic() - started


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_refused(directory: Path, *args: str, traceback: bool = False) -> str:
    """``serve ARGS`` exits 2 quickly, binding and forking nothing; return its error line."""
    port = free_port()
    # The machine may be busy: compare with Python's start-up just before and after.
    before = startup_seconds()
    result, seconds = serve(directory, *args, "--bind", f"127.0.0.1:{port}", "--workers", "2")
    startup = max(before, startup_seconds())
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    # The check forks a child that imports the app: on a loaded machine that
    # costs about one more start-up; the old way took several seconds more.
    assert seconds < 2 * startup + CHECK_BUDGET, (seconds, startup, output)
    assert "started worker" not in output and "serving" not in output, output
    errors = [line for line in lines(result.stderr) if line.startswith("morello serve: error:")]
    assert len(errors) == 1, output
    if traceback:
        assert output.count("Traceback (most recent call last)") == 1, output
        # The traceback, then the one line; nothing else.
        assert lines(result.stderr)[-1] == errors[0], output
    else:
        assert lines(output) == errors, output
    return errors[0]


# -- 1. the app spec, the import, the config file ------------------------------------


def test_a_file_path_is_refused_with_the_module_spec_to_use(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "hello.py").write_text(HELLO + "\nmorello.quickstart(HelloWorld())\n")
    line = assert_refused(tmp_path, "examples/hello.py")
    assert "did you mean examples.hello:HelloWorld?" in line
    # A file of the current directory, with or without an object named.
    (tmp_path / "hello.py").write_text(HELLO)
    for spec in ("hello.py", "hello.py:HelloWorld"):
        line = assert_refused(tmp_path, spec)
        assert "did you mean hello:HelloWorld?" in line


def test_a_misspelt_module_or_object_gets_the_close_name(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO)
    line = assert_refused(tmp_path, "helo:HelloWorld")
    assert "no module named 'helo'" in line and "did you mean 'hello'?" in line
    line = assert_refused(tmp_path, "hello:Helloworld")
    assert "'Helloworld'" in line and "did you mean 'HelloWorld'?" in line


def test_an_import_error_is_one_line_and_one_traceback(tmp_path: Path) -> None:
    write_app(tmp_path, extra="import morello_no_such_dependency")
    line = assert_refused(tmp_path, "app:Root", traceback=True)
    assert "morello_no_such_dependency" in line


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    write_app(tmp_path)
    line = assert_refused(tmp_path, "app:Root", "-c", "nosuch.conf")
    assert "nosuch.conf" in line and "No such file" in line


def test_a_broken_config_file_is_one_line(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text("[/]\ntools.encode.on = Tru e\n")
    line = assert_refused(tmp_path, "app:Root", "-c", "site.conf")
    assert "site.conf" in line


# -- 2. quickstart() in the module that morello serve imports ---------------------


@pytest.mark.parametrize("extra", [[], ["--preload"]])
def test_readme_hello_world_serves_as_written(tmp_path: Path, extra: list[str]) -> None:
    (tmp_path / "hello.py").write_text(HELLO + "\nmorello.quickstart(HelloWorld())\n")
    master = MasterProcess(tmp_path, *extra, app="hello:HelloWorld", workers=1).start()
    try:
        (pid,) = master.wait_ready(1, timeout=15)
        assert requests.get(master.url, timeout=10).text == "Hello world!"
        # quickstart started no server of its own in the worker (nor in the master).
        for process in (psutil.Process(pid), psutil.Process(master.pid)):
            ports = {c.laddr.port for c in process.net_connections("tcp") if c.status == "LISTEN"}
            assert ports <= {master.port}, ports
    finally:
        master.stop()


def test_quickstart_config_applies_when_the_module_is_served(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(
        HELLO + "\nmorello.quickstart(HelloWorld(), '/hi', {'/': {'tools.gzip.on': True}})\n"
    )
    with running_master(tmp_path, app="hello", workers=1) as master:
        response = requests.get(master.url + "/hi/", headers={"Accept-Encoding": "gzip"},
                                timeout=10)  # fmt: skip
        assert response.text == "Hello world!"
        assert response.headers.get("Content-Encoding") == "gzip"


# -- 3. config mistakes ----------------------------------------------------------


@pytest.mark.parametrize(
    "conf, key, closest",
    [
        ("[/]\ntools.sesions.on = True\n", "tools.sesions.on", "sessions"),
        ("[global]\ntools.sesions.on = True\n", "tools.sesions.on", "sessions"),
        ("[global]\nlgo.screen = False\n", "lgo.screen", "log"),
        ("[/]\nrequets.show_tracebacks = False\n", "requets.show_tracebacks", "request"),
        ("[/]\nrequest.show_tracebacks = 'no'\n", "request.show_tracebacks", "bool"),
        ("[global]\nlog.screen = 'False'\n", "log.screen", "bool"),
    ],
)
def test_config_mistakes_stop_the_start(tmp_path: Path, conf: str, key: str, closest: str) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text(conf)
    line = assert_refused(tmp_path, "app:Root", "-c", "site.conf")
    assert repr(key) in line and repr(closest) in line


def test_a_mistake_in_cp_config_stops_the_start(tmp_path: Path) -> None:
    write_app(tmp_path, extra=(
        "class Admin:\n    _cp_config = {'tools.gzpi.on': True}\n\n"
        "    @morello.expose\n    def index(self):\n        return 'admin'\n"
    ))  # fmt: skip
    source = (tmp_path / "app.py").read_text() + "\nRoot.admin = Admin()\n"
    (tmp_path / "app.py").write_text(source)
    line = assert_refused(tmp_path, "app:Root")
    assert "'tools.gzpi.on'" in line and "'gzip'" in line and "Admin" in line


def test_tools_and_namespaces_of_the_app_are_valid(tmp_path: Path) -> None:
    write_app(tmp_path, extra=(
        "def stamp():\n    morello.response.headers['X-Stamp'] = 'yes'\n\n"
        "morello.tools.stamp = morello.Tool('before_finalize', stamp)\n"
        "SEEN = {}\n"
        "morello.config.namespaces['shop'] = SEEN.__setitem__\n"
    ))  # fmt: skip
    (tmp_path / "site.conf").write_text(
        "[global]\nshop.currency = 'EUR'\n[/]\ntools.stamp.on = True\n"
    )
    with running_master(tmp_path, "-c", "site.conf", workers=1) as master:
        assert requests.get(master.url, timeout=10).headers.get("X-Stamp") == "yes"


# -- 4. server.socket_host / socket_port of the config file -------------------------


def without_bind(master: MasterProcess) -> MasterProcess:
    """``master`` with its ``--bind`` flag left out (the config file gives the address)."""
    index = master.command.index("--bind")
    del master.command[index : index + 2]
    return master


def test_the_config_file_socket_host_and_port_are_the_bind(tmp_path: Path) -> None:
    write_app(tmp_path)
    master = without_bind(MasterProcess(tmp_path, "-c", "site.conf", workers=1))
    (tmp_path / "site.conf").write_text(
        f"[global]\nserver.socket_host = '127.0.0.1'\nserver.socket_port = {master.port}\n"
    )
    master.start()
    try:
        master.wait_ready(1)
        assert "hello from" in requests.get(master.url, timeout=10).text
        assert (
            f"binding 127.0.0.1:{master.port} from server.socket_host/socket_port in site.conf"
            in master.log()
        )
    finally:
        master.stop()


def test_a_bind_flag_wins_over_the_config_file_socket(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text(f"[global]\nserver.socket_port = {free_port()}\n")
    with running_master(tmp_path, "-c", "site.conf", workers=1) as master:
        assert "hello from" in requests.get(master.url, timeout=10).text
        assert "from server.socket_host" not in master.log()


# -- 5. --check-config --------------------------------------------------------------


def test_check_config_loads_the_app_without_binding(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text("[/]\ntools.gzip.on = True\n")
    with socket.socket() as taken:
        # Serving on this address would fail: checking must not even try.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        result, _ = serve(tmp_path, "app:Root", "-c", "site.conf", "--bind", bind, "--check-config")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[-1].startswith("config OK: app:Root")
    assert bind in result.stdout


def test_check_config_reports_what_is_wrong(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text("[/]\ntools.sesions.on = True\n")
    result, _ = serve(tmp_path, "app:Root", "-c", "site.conf", "--check-config")
    assert result.returncode == 2
    assert "'tools.sesions.on'" in result.stderr and "config OK" not in result.stdout


# -- the strict check itself, in this process -----------------------------------------


@pytest.fixture
def mounted() -> Iterator[Callable[..., Any]]:
    """``mount(root, config)`` on a clean tree and global config, cleaned up afterwards."""
    yield lambda root, config=None: morello.tree.mount(root, "", config)
    morello.tree.apps.clear()
    morello.config.reset()


class Shop:
    _cp_config = {"tools.gzip.on": True, "request.methods_with_bodies": ["POST", "PUT"]}

    @morello.expose
    @morello.config(**{"tools.encode.encoding": "utf-8"})
    def index(self) -> str:
        return "shop"


def test_the_strict_check_accepts_what_requests_accept(mounted: Callable[..., Any]) -> None:
    class Root:
        shop = Shop()

        @morello.expose
        def index(self) -> str:
            return "root"

    app = mounted(Root(), {"/": {"tools.mine.on": True, "db.url": "x",
                                 "response.timeout": 30.5, "request.show_tracebacks": False}})
    # Registered after mounting, before the check: as valid as the built-in ones.
    morello.tools.mine = morello.Tool("before_handler", lambda: None)
    app.namespaces["db"] = lambda key, value: None
    try:
        # (Keys whose namespaces change nothing in this process until a request.)
        morello.config.update({"master.workers": 2, "response.timeout": 30})
        assert list(morello.checker.mistakes()) == []
    finally:
        del morello.tools.mine


def test_the_strict_check_names_each_mistake_once(mounted: Callable[..., Any]) -> None:
    class BrokenShop(Shop):
        @staticmethod
        @morello.config(**{"tools.gzpi.on": True})
        def helper() -> None:
            pass

    class Root:
        shop = BrokenShop()
        hidden = property(lambda self: pytest.fail("the check ran a property"))

        @morello.expose
        def index(self) -> str:
            return "root"

    mounted(Root(), {"/shop": {"tools.sesions.on": True, "tools.gzip": True}})
    morello.config.update({"db.url": "x", "request.show_tracebacks": "no"})
    mistakes = list(morello.checker.mistakes())
    expected = ["'db.url'", "'request.show_tracebacks'", "'tools.sesions.on'", "'tools.gzip'",
                "'tools.gzpi.on'"]  # fmt: skip
    assert [[key for key in expected if key in m] for m in mistakes] == [[k] for k in expected]
    assert "morello.config.namespaces['db']" in mistakes[0]
    assert "BrokenShop.helper" in mistakes[-1] and "'/shop/helper'" in mistakes[-1]
    with pytest.raises(ConfigError, match="'db.url'"):
        morello.checker.check_strictly()
