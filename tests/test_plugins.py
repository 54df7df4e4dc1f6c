"""Tests for the bus plugins (morello.process.plugins)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from bus_support import (
    DEADLINE,
    fork,
    messages,
    python_env,
    run_forked_reporting,
    wait_for_exit,
    wait_until,
)

from morello.process import plugins
from morello.process.bus import Bus, states
from morello.process.plugins import (
    Autoreloader,
    BackgroundTask,
    Daemonizer,
    DropPrivileges,
    Monitor,
    PIDFile,
    SignalHandler,
    SimplePlugin,
    ThreadManager,
)


def append_line(path: Path, line: str) -> None:
    with path.open("a") as file:
        file.write(line + "\n")


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaps counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- SimplePlugin ------------------------------------------------------------


class Recorder(SimplePlugin):
    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def custom(self, value: int) -> None:
        self.calls.append(f"custom {value}")

    def not_a_channel(self) -> None:
        self.calls.append("wrong")


def test_simple_plugin_subscribes_methods_named_after_channels(bus: Bus) -> None:
    bus.listeners["custom"] = set()
    plugin = Recorder(bus)
    plugin.subscribe()
    bus.start()
    bus.publish("custom", 7)
    bus.stop()
    assert plugin.calls == ["start", "custom 7", "stop"]
    assert "not_a_channel" not in bus.listeners

    plugin.unsubscribe()
    bus.start()
    bus.exit()
    assert plugin.calls == ["start", "custom 7", "stop"]
    assert not any(bus.listeners.values())


# -- SignalHandler -----------------------------------------------------------


def test_signal_handler_maps_default_signals(bus: Bus) -> None:
    handler = SignalHandler(bus)
    assert handler.handlers == {
        "SIGTERM": bus.exit,
        "SIGHUP": handler.handle_SIGHUP,
        "SIGUSR1": bus.graceful,
    }
    assert handler.signals[signal.SIGTERM] == "SIGTERM"
    assert handler.signals[signal.SIGHUP] == "SIGHUP"


def test_sigusr1_publishes_graceful_and_unsubscribe_restores(bus: Bus, log) -> None:
    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
    }
    graceful = threading.Event()
    bus.subscribe("graceful", graceful.set)
    handler = SignalHandler(bus)
    handler.subscribe()
    try:
        assert signal.getsignal(signal.SIGUSR1) == handler._handle_signal
        os.kill(os.getpid(), signal.SIGUSR1)
        assert graceful.wait(DEADLINE)
        assert "Caught signal SIGUSR1." in messages(log)
        assert bus.state is states.STOPPED  # graceful does not change the state
    finally:
        handler.unsubscribe()
    for sig, original in previous.items():
        assert signal.getsignal(sig) == original


def test_subscribing_twice_still_restores_the_original_handler(bus: Bus) -> None:
    original = signal.getsignal(signal.SIGUSR1)
    handler = SignalHandler(bus)
    handler.subscribe()
    handler.subscribe()
    handler.unsubscribe()
    assert signal.getsignal(signal.SIGUSR1) == original


def test_set_handler_by_number_alias_and_unknown(bus: Bus) -> None:
    handler = SignalHandler(bus)
    calls: list[str] = []
    original_usr2 = signal.getsignal(signal.SIGUSR2)
    original_chld = signal.getsignal(signal.SIGCHLD)
    try:
        handler.set_handler(int(signal.SIGUSR2), lambda: calls.append("usr2"))
        handler.set_handler("SIGCLD", lambda: calls.append("chld"))  # alias of SIGCHLD
        os.kill(os.getpid(), signal.SIGUSR2)
        wait_until(lambda: "usr2" in calls)
        assert bus.listeners["SIGCHLD"]
        with pytest.raises(ValueError):
            handler.set_handler("SIGNOPE")
        with pytest.raises(ValueError):
            handler.set_handler(9999)
    finally:
        handler.unsubscribe()
    assert signal.getsignal(signal.SIGUSR2) == original_usr2
    assert signal.getsignal(signal.SIGCHLD) == original_chld


def test_subscribe_outside_main_thread_is_harmless(bus: Bus, log) -> None:
    original = signal.getsignal(signal.SIGTERM)
    errors: list[BaseException] = []

    def subscribe() -> None:
        try:
            SignalHandler(bus).subscribe()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=subscribe)
    thread.start()
    thread.join(DEADLINE)
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) == original
    assert not bus.listeners.get("SIGTERM")
    assert any("main thread" in m for m in messages(log))


def test_sighup_exits_when_not_daemonized(bus: Bus, monkeypatch) -> None:
    handler = SignalHandler(bus)
    calls: list[str] = []
    monkeypatch.setattr(bus, "exit", lambda: calls.append("exit"))
    monkeypatch.setattr(bus, "restart", lambda: calls.append("restart"))
    handler.handle_SIGHUP()  # same pid as at construction: not a daemon
    assert calls == ["exit"]


def test_sighup_restarts_when_daemonized(bus: Bus, monkeypatch) -> None:
    handler = SignalHandler(bus)
    calls: list[str] = []
    monkeypatch.setattr(bus, "exit", lambda: calls.append("exit"))
    monkeypatch.setattr(bus, "restart", lambda: calls.append("restart"))
    monkeypatch.setattr(handler, "_original_pid", os.getpid() + 1)  # as if forked away

    monkeypatch.setattr(plugins, "_stdin_is_tty", lambda: False)
    handler.handle_SIGHUP()
    monkeypatch.setattr(plugins, "_stdin_is_tty", lambda: True)  # still on a terminal
    handler.handle_SIGHUP()
    assert calls == ["restart", "exit"]


def test_sigterm_stops_a_blocked_bus_and_removes_pid_file(tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    marker = tmp_path / "events"

    def child() -> None:
        bus = Bus()
        SignalHandler(bus).subscribe()
        PIDFile(bus, str(pidfile)).subscribe()
        bus.subscribe("stop", lambda: append_line(marker, "stop"))
        bus.subscribe("exit", lambda: append_line(marker, "exit"))
        bus.start()
        bus.block(interval=0.05)
        append_line(marker, "block returned")

    pid = fork(child)
    wait_until(pidfile.exists)
    wait_until(lambda: pidfile.read_text().endswith("\n"))
    assert int(pidfile.read_text()) == pid
    os.kill(pid, signal.SIGTERM)
    assert wait_for_exit(pid) == 0
    assert marker.read_text().splitlines() == ["stop", "exit", "block returned"]
    assert not pidfile.exists()


# -- PIDFile -----------------------------------------------------------------


def test_pid_file_written_once_and_removed_on_exit(bus: Bus, tmp_path: Path, log) -> None:
    path = tmp_path / "server.pid"
    plugin = PIDFile(bus, str(path))
    plugin.subscribe()
    bus.start()
    assert path.read_text() == f"{os.getpid()}\n"
    plugin.start()
    assert any("already written" in m for m in messages(log))
    bus.exit()
    assert not path.exists()
    assert any(m.startswith("PID file removed") for m in messages(log))


def test_pid_file_not_removed_by_a_forked_child(bus: Bus, tmp_path: Path) -> None:
    path = tmp_path / "server.pid"
    plugin = PIDFile(bus, str(path))
    plugin.start()
    assert wait_for_exit(fork(plugin.exit)) == 0
    assert path.read_text() == f"{os.getpid()}\n"
    plugin.exit()
    assert not path.exists()


# -- Daemonizer --------------------------------------------------------------


DAEMON_APP = """
import os, sys
from morello.process.bus import Bus
from morello.process.plugins import Daemonizer, PIDFile, SignalHandler

workdir = sys.argv[1]
bus = Bus()
bus.subscribe("log", lambda msg, level: print(msg, flush=True))
Daemonizer(bus, stdout=workdir + "/out.log", stderr=workdir + "/err.log").subscribe()
PIDFile(bus, workdir + "/daemon.pid").subscribe()
SignalHandler(bus).subscribe()

def mark_exited():
    with open(workdir + "/exited", "w") as f:
        f.write(str(os.getpid()))

bus.subscribe("exit", mark_exited)
bus.start()
bus.block(interval=0.05)
"""


def test_daemonizer_detaches_and_still_answers_signals(tmp_path: Path) -> None:
    script = tmp_path / "daemon_app.py"
    script.write_text(textwrap.dedent(DAEMON_APP))
    launcher = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env=python_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, err
    assert "Forking once." in out

    pidfile = tmp_path / "daemon.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"))
    daemon_pid = int(pidfile.read_text())
    try:
        assert daemon_pid != launcher.pid
        # setsid() put it in a new session, and the second fork means it does
        # not lead that session (so it can never regain a terminal).
        assert os.getsid(daemon_pid) != os.getsid(0)
        assert os.getsid(daemon_pid) != daemon_pid
        wait_until(lambda: "Daemonized to PID" in (tmp_path / "out.log").read_text())
        assert f"Daemonized to PID: {daemon_pid}" in (tmp_path / "out.log").read_text()
    finally:
        os.kill(daemon_pid, signal.SIGTERM)
    exited = tmp_path / "exited"
    wait_until(lambda: exited.exists() and exited.read_text() == str(daemon_pid))
    wait_until(lambda: not pidfile.exists())
    wait_until(lambda: process_gone(daemon_pid))


def test_daemonizer_warns_about_threads_and_runs_once(bus: Bus, log, monkeypatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(Daemonizer, "daemonize", staticmethod(lambda *a: calls.append(a)))
    plugin = Daemonizer(bus, stdout="/tmp/out")
    release = threading.Event()
    extra = threading.Thread(target=release.wait, args=(DEADLINE,))
    extra.start()
    try:
        plugin.start()
    finally:
        release.set()
        extra.join(DEADLINE)
    plugin.start()

    assert len(calls) == 1
    assert calls[0][:3] == ("/dev/null", "/tmp/out", "/dev/null")
    warnings = [msg for msg, level in log if level == 30]
    assert any("Daemonizing now may cause strange failures" in m for m in warnings)
    assert "Already daemonized." in messages(log)


def test_daemonizer_refuses_a_started_bus(bus: Bus, monkeypatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(Daemonizer, "daemonize", staticmethod(lambda *a: calls.append(a)))
    bus.start()
    try:
        with pytest.raises(RuntimeError, match="while the bus is starting"):
            Daemonizer(bus).start()
    finally:
        bus.exit()
    assert calls == []


def test_daemonizer_start_priority() -> None:
    assert Daemonizer.start.priority == 65  # type: ignore[attr-defined]
    assert PIDFile.start.priority == 70  # type: ignore[attr-defined]
    assert DropPrivileges.start.priority == 77  # type: ignore[attr-defined]


# -- DropPrivileges ----------------------------------------------------------


def nobody_ids() -> tuple[int, int, str]:
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    return user.pw_uid, user.pw_gid, grp.getgrgid(user.pw_gid).gr_name


def test_drop_privileges_resolves_names(bus: Bus) -> None:
    uid, gid, group = nobody_ids()
    plugin = DropPrivileges(bus, uid="nobody", gid=group, umask=0o027)
    assert (plugin.uid, plugin.gid, plugin.umask) == (uid, gid, 0o027)
    with pytest.raises(KeyError):
        DropPrivileges(bus, uid="no-such-user-here")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
@pytest.mark.parametrize("by_name", [True, False])
def test_drop_privileges_switches_user_in_child(by_name: bool) -> None:
    uid, gid, group = nobody_ids()

    def child(write_fd: int) -> None:  # reports back without needing a writable path
        bus = Bus()
        logged: list[str] = []
        bus.subscribe("log", lambda msg, level: logged.append(msg))
        if by_name:
            DropPrivileges(bus, uid="nobody", gid=group, umask=0o027).subscribe()
        else:
            DropPrivileges(bus, uid=uid, gid=gid, umask=0o027).subscribe()
        bus.start()
        current_umask = os.umask(0o027)
        report = {
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "gid": os.getgid(),
            "groups": os.getgroups(),
            "umask": current_umask,
            "log": logged,
        }
        with os.fdopen(write_fd, "w") as pipe:
            json.dump(report, pipe)
        bus.exit()

    code, output = run_forked_reporting(child)
    assert code == 0
    result = json.loads(output)
    assert (result["uid"], result["euid"], result["gid"]) == (uid, uid, gid)
    assert result["groups"] in ([], [gid])
    assert result["umask"] == 0o027
    assert any(m.startswith("Started as uid: 'root'") for m in result["log"])
    assert any(m.startswith("Running as uid: 'nobody'") for m in result["log"])
    assert any(m.startswith("umask old:") for m in result["log"])


def test_drop_privileges_without_ids_only_warns(bus: Bus, log) -> None:
    plugin = DropPrivileges(bus)
    uid_before = os.getuid()
    plugin.start()
    assert os.getuid() == uid_before
    assert ("uid/gid not set", 30) in log
    assert ("umask not set", 30) in log
    assert plugin.finalized


# -- BackgroundTask and Monitor ----------------------------------------------


def test_background_task_repeats_until_cancelled() -> None:
    calls: list[tuple] = []
    enough = threading.Event()

    def work(*args, **kwargs) -> None:
        calls.append((args, kwargs))
        if len(calls) >= 3:
            enough.set()

    task = BackgroundTask(0.01, work, args=[1], kwargs={"k": 2})
    assert task.daemon
    task.start()
    assert enough.wait(DEADLINE)
    assert task.running
    task.cancel()
    task.join(DEADLINE)
    assert not task.is_alive()
    assert not task.running
    assert calls[0] == ((1,), {"k": 2})


def test_background_task_cancel_does_not_wait_for_the_interval() -> None:
    task = BackgroundTask(60, lambda: None)
    task.start()
    task.cancel()
    task.join(5)
    assert not task.is_alive()


def test_background_task_logs_error_and_stops(bus: Bus, log) -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("oops")

    task = BackgroundTask(0.01, broken, bus=bus)
    task.start()
    task.join(DEADLINE)
    assert not task.is_alive()
    assert calls == [1]
    msg, level = log[-1]
    assert level == 40 and "ValueError: oops" in msg


def test_monitor_follows_bus_lifecycle(bus: Bus) -> None:
    ticks = threading.Event()
    monitor = Monitor(bus, ticks.set, frequency=0.01, name="ticker")
    monitor.subscribe()
    bus.start()
    try:
        first = monitor.thread
        assert first is not None and first.name == "ticker"
        assert ticks.wait(DEADLINE)

        bus.graceful()
        second = monitor.thread
        assert second is not None and second is not first
        first.join(DEADLINE)
        assert not first.is_alive()
        assert second.is_alive()
    finally:
        bus.exit()
    assert monitor.thread is None
    second.join(DEADLINE)
    assert not second.is_alive()


def test_monitor_with_zero_frequency_never_starts(bus: Bus, log) -> None:
    monitor = Monitor(bus, lambda: None, frequency=0)
    monitor.start()
    assert monitor.thread is None
    monitor.stop()
    assert "No thread running for Monitor." in messages(log)


def test_monitor_callback_can_stop_the_bus(bus: Bus) -> None:
    stopped = threading.Event()
    monitor = Monitor(bus, lambda: bus.exit(), frequency=0.01)
    monitor.subscribe()
    bus.subscribe("exit", stopped.set)
    bus.start()
    assert stopped.wait(DEADLINE)
    assert bus.state is states.EXITING
    assert monitor.thread is None


# -- Autoreloader ------------------------------------------------------------


def test_autoreloader_sysfiles_follow_match(bus: Bus, tmp_path: Path, monkeypatch) -> None:
    module_file = tmp_path / "reload_target_mod.py"
    module_file.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("reload_target_mod")
    try:
        reloader = Autoreloader(bus)
        assert str(module_file) in reloader.sysfiles()
        reloader.match = r"^(?!reload_target_mod)"
        assert str(module_file) not in reloader.sysfiles()
        assert reloader.frequency == 1
        assert reloader.files == set()
    finally:
        sys.modules.pop("reload_target_mod", None)


def test_autoreloader_file_for_module_without_file() -> None:
    class NoFile:
        __file__ = None

    assert Autoreloader._file_for_module(NoFile) is None  # type: ignore[arg-type]


def test_autoreloader_file_for_file_module_under_cherrypys_name() -> None:
    # CherryPy's own tests call this step of _file_for_module by its name.
    class NoFile:
        __file__ = None

    class Relative:
        __file__ = os.path.join("pkg", "mod.py")

    assert Autoreloader._file_for_file_module(NoFile) is None  # type: ignore[arg-type]
    found = Autoreloader._file_for_file_module(Relative)  # type: ignore[arg-type]
    assert found == os.path.join(plugins.IMPORT_CWD, "pkg", "mod.py")


def touch_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize("change", ["touch", "delete"])
def test_autoreloader_restarts_on_change(
    bus: Bus, tmp_path: Path, monkeypatch, log, change: str
) -> None:
    watched = tmp_path / "settings.conf"
    watched.write_text("a = 1\n")
    restarted = threading.Event()
    monkeypatch.setattr(bus, "restart", restarted.set)

    reloader = Autoreloader(bus, frequency=0.02, match=r"^$")  # no modules, just our file
    reloader.files.add(str(watched))
    reloader.subscribe()
    bus.start()
    try:
        wait_until(lambda: str(watched) in reloader.mtimes)
        assert not restarted.is_set()
        if change == "touch":
            touch_later(watched)
        else:
            watched.unlink()
        assert restarted.wait(DEADLINE)
        assert f"Restarting because {watched} changed." in messages(log)
    finally:
        bus.exit()


def test_autoreloader_watches_imported_module(bus: Bus, tmp_path: Path, monkeypatch) -> None:
    module_file = tmp_path / "reload_watched_mod.py"
    module_file.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("reload_watched_mod")
    restarted = threading.Event()
    monkeypatch.setattr(bus, "restart", restarted.set)
    reloader = Autoreloader(bus, frequency=0.02, match=r"^reload_watched_mod$")
    try:
        reloader.start()
        wait_until(lambda: str(module_file) in reloader.mtimes)
        touch_later(module_file)
        assert restarted.wait(DEADLINE)
    finally:
        reloader.stop()
        sys.modules.pop("reload_watched_mod", None)


# -- ThreadManager -----------------------------------------------------------


def test_thread_manager_numbers_threads_once(bus: Bus) -> None:
    manager = ThreadManager(bus)
    manager.subscribe()
    started: list[int] = []
    stopped: list[int] = []
    bus.subscribe("start_thread", started.append)
    bus.subscribe("stop_thread", stopped.append)

    barrier = threading.Barrier(4)

    def serve() -> None:
        barrier.wait(DEADLINE)
        bus.publish("acquire_thread")
        bus.publish("acquire_thread")  # second time: already known

    workers = [threading.Thread(target=serve) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE)

    assert sorted(started) == [1, 2, 3, 4]
    assert sorted(manager.threads.values()) == [1, 2, 3, 4]

    bus.publish("acquire_thread")
    bus.publish("release_thread")
    bus.publish("release_thread")  # unknown by now: nothing published
    assert stopped == [5]

    bus.stop()
    assert sorted(stopped) == [1, 2, 3, 4, 5]
    assert manager.threads == {}
    assert ThreadManager.graceful is ThreadManager.stop
