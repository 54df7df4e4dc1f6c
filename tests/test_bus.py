"""Tests for the engine bus (morello.process.bus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from bus_support import DEADLINE, messages, python_env, run_forked_reporting, wait_until

from morello.process import bus as bus_module
from morello.process import wspbus
from morello.process.bus import Bus, ChannelFailures, states

# -- states and channels ---------------------------------------------------


def test_states_are_distinct_with_readable_repr(bus: Bus) -> None:
    all_states = [states.STOPPED, states.STARTING, states.STARTED, states.STOPPING, states.EXITING]
    assert len(set(all_states)) == 5
    assert repr(states.STARTED) == "states.STARTED"
    assert bus.states is states
    assert bus.state is states.STOPPED


def test_compat_module_alias() -> None:
    assert wspbus is bus_module
    assert wspbus.Bus is Bus


def test_default_channels_exist(bus: Bus) -> None:
    for channel in ("start", "stop", "exit", "graceful", "log", "main"):
        assert bus.listeners[channel] == set()
    for channel in ("start_thread", "stop_thread", "acquire_thread", "release_thread"):
        assert channel in bus.listeners


# -- subscribe / publish -----------------------------------------------------


def test_lower_priority_runs_first_and_ties_keep_subscription_order(bus: Bus) -> None:
    calls: list[str] = []
    for name, priority in [("a", 100), ("b", 50), ("c", 0), ("d", 51), ("e", 50)]:
        bus.subscribe("custom", lambda n=name: calls.append(n), priority)
    bus.publish("custom")
    assert calls == ["c", "b", "e", "d", "a"]


def test_priority_defaults_to_callback_attribute_then_50(bus: Bus) -> None:
    calls: list[str] = []

    def early() -> None:
        calls.append("early")

    early.priority = 10  # type: ignore[attr-defined]
    bus.subscribe("start", lambda: calls.append("default"))
    bus.subscribe("start", lambda: calls.append("late"), priority=60)
    bus.subscribe("start", early)
    bus.publish("start")
    assert calls == ["early", "default", "late"]


def test_subscribe_as_decorator_returns_function(bus: Bus) -> None:
    @bus.subscribe("custom", priority=5)
    def listener(value: int) -> int:
        return value * 2

    assert callable(listener)
    assert bus.listeners["custom"] == {listener}
    assert bus.publish("custom", 21) == [42]


def test_publish_passes_arguments_and_returns_results(bus: Bus) -> None:
    bus.subscribe("calc", lambda a, b=0: a + b, priority=1)
    bus.subscribe("calc", lambda a, b=0: a * b, priority=2)
    assert bus.publish("calc", 3, b=4) == [7, 12]


def test_publish_without_listeners_returns_empty_list(bus: Bus) -> None:
    assert bus.publish("nobody-listens") == []
    assert bus.publish("start") == []
    assert "nobody-listens" not in bus.listeners


def test_publish_on_empty_channel_is_cheap(bus: Bus) -> None:
    bus.listeners["before_request"] = set()
    publish = bus.publish
    started = time.perf_counter()
    for _ in range(100_000):
        publish("before_request")
    # A few dozen ns per call in practice; the bound only catches gross regressions.
    assert time.perf_counter() - started < 1.0


def test_unsubscribe(bus: Bus) -> None:
    calls: list[int] = []

    def listener() -> None:
        calls.append(1)

    bus.subscribe("start", listener)
    bus.unsubscribe("start", listener)
    bus.unsubscribe("start", listener)  # already gone: no error
    bus.unsubscribe("no-such-channel", listener)
    bus.publish("start")
    assert calls == []
    assert bus.listeners["start"] == set()


def test_listener_added_directly_to_listeners_set_still_runs(bus: Bus) -> None:
    calls: list[str] = []
    bus.listeners["after_request"] = set()
    bus.listeners["after_request"].add(lambda: calls.append("direct"))
    bus.publish("after_request")
    assert calls == ["direct"]


def test_failures_are_collected_after_all_listeners_ran(bus: Bus, log) -> None:
    calls: list[str] = []

    def broken() -> None:
        raise ValueError("boom")

    def also_broken() -> None:
        raise KeyError("bang")

    bus.subscribe("stop", broken, priority=10)
    bus.subscribe("stop", lambda: calls.append("ran"), priority=20)
    bus.subscribe("stop", also_broken, priority=30)
    with pytest.raises(ChannelFailures) as info:
        bus.publish("stop")

    assert calls == ["ran"]
    failures = info.value
    assert bool(failures)
    assert [type(e) for e in failures.get_instances()] == [ValueError, KeyError]
    assert "ValueError('boom')" in str(failures)
    errors = [msg for msg, level in log if level == 40]
    assert len(errors) == 2
    assert errors[0].startswith("Error in 'stop' listener")
    assert "Traceback" in errors[0] and "ValueError: boom" in errors[0]


def test_channel_failures_is_falsy_when_empty() -> None:
    failures = ChannelFailures()
    assert not failures
    assert failures.get_instances() == []
    try:
        raise RuntimeError("x")
    except RuntimeError:
        failures.handle_exception()
    assert failures
    assert isinstance(failures.get_instances()[0], RuntimeError)


def test_log_channel_never_raises(bus: Bus, capsys) -> None:
    received: list[str] = []

    def broken_logger(msg: str, level: int) -> None:
        raise OSError("disk full")

    bus.subscribe("log", broken_logger, priority=1)
    bus.subscribe("log", lambda msg, level: received.append(msg), priority=2)
    bus.log("hello")
    assert received == ["hello"]
    assert "disk full" in capsys.readouterr().err


def test_keyboard_interrupt_propagates_immediately(bus: Bus) -> None:
    calls: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    bus.subscribe("main", interrupt, priority=1)
    bus.subscribe("main", lambda: calls.append("later"), priority=2)
    with pytest.raises(KeyboardInterrupt):
        bus.publish("main")
    assert calls == []


def test_system_exit_after_failure_gets_non_zero_code(bus: Bus) -> None:
    def broken() -> None:
        raise ValueError("first")

    def leave() -> None:
        sys.exit(0)

    bus.subscribe("stop", broken, priority=1)
    bus.subscribe("stop", leave, priority=2)
    with pytest.raises(SystemExit) as info:
        bus.publish("stop")
    assert info.value.code == 1


def test_system_exit_alone_keeps_its_code(bus: Bus) -> None:
    bus.subscribe("stop", lambda: sys.exit(3))
    with pytest.raises(SystemExit) as info:
        bus.publish("stop")
    assert info.value.code == 3


def test_log_appends_current_traceback(bus: Bus, log) -> None:
    bus.log("plain")
    try:
        {}["missing"]
    except KeyError:
        bus.log("lost", level=40, traceback=True)
    bus.log("no exception active", traceback=True)
    assert log[0] == ("plain", 20)
    msg, level = log[1]
    assert level == 40
    assert msg.startswith("lost\n") and "Traceback" in msg and "KeyError" in msg
    assert log[2] == ("no exception active", 20)


def test_concurrent_subscribe_and_publish(bus: Bus) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(worker: int) -> None:
        try:
            for i in range(300):
                callback = lambda: None  # noqa: E731 - a fresh object each time
                bus.subscribe("busy", callback, priority=i % 7)
                bus.unsubscribe("busy", callback)
            bus.subscribe("busy", lambda w=worker: w)
        except BaseException as exc:
            errors.append(exc)

    def publisher() -> None:
        try:
            while not stop.is_set():
                bus.publish("busy")
        except BaseException as exc:
            errors.append(exc)

    publishers = [threading.Thread(target=publisher) for _ in range(2)]
    workers = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in publishers + workers:
        thread.start()
    for thread in workers:
        thread.join(DEADLINE)
    stop.set()
    for thread in publishers:
        thread.join(DEADLINE)

    assert errors == []
    assert sorted(bus.publish("busy")) == [0, 1, 2, 3]


# -- state transitions -------------------------------------------------------


def test_start_stop_graceful_exit_sequence(bus: Bus, log) -> None:
    calls: list[str] = []
    for channel in ("start", "stop", "graceful", "exit"):
        bus.subscribe(channel, lambda c=channel: calls.append(c))

    bus.start()
    assert bus.state is states.STARTED
    bus.graceful()
    bus.stop()
    assert bus.state is states.STOPPED
    bus.exit()
    assert bus.state is states.EXITING

    assert calls == ["start", "graceful", "stop", "stop", "exit"]
    assert messages(log) == [
        "Bus STARTING",
        "Bus STARTED",
        "Bus graceful",
        "Bus STOPPING",
        "Bus STOPPED",
        "Bus STOPPING",
        "Bus STOPPED",
        "Bus EXITING",
        "Bus EXITED",
    ]


def test_start_listener_sees_starting_state(bus: Bus) -> None:
    seen: list[states] = []
    bus.subscribe("start", lambda: seen.append(bus.state))
    bus.subscribe("stop", lambda: seen.append(bus.state))
    bus.start()
    bus.exit()
    assert seen == [states.STARTING, states.STOPPING]


def test_failed_start_exits_bus_and_reraises(bus: Bus, log) -> None:
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("cannot bind")

    bus.subscribe("start", broken)
    bus.subscribe("stop", lambda: calls.append("stop"))
    bus.subscribe("exit", lambda: calls.append("exit"))

    with pytest.raises(ChannelFailures) as info:
        bus.start()

    assert isinstance(info.value.get_instances()[0], RuntimeError)
    assert bus.state is states.EXITING
    assert calls == ["stop", "exit"]
    assert any(m.startswith("Shutting down due to error in start listener") for m in messages(log))


def test_exit_listener_failure_kills_process_with_70() -> None:
    def child(write_fd: int) -> None:
        bus = Bus()

        def broken() -> None:
            raise RuntimeError("exit failed")

        bus.subscribe("exit", broken, priority=1)
        bus.subscribe("exit", lambda: os.write(write_fd, b"other exit listener ran"), priority=2)
        bus.exit()
        os.write(write_fd, b" - and exit() returned")

    code, output = run_forked_reporting(child)
    assert code == 70
    assert output == b"other exit listener ran"


def test_exit_while_starting_kills_process_with_70() -> None:
    def child(write_fd: int) -> None:
        bus = Bus()
        never = threading.Event()
        bus.subscribe("start", lambda: never.wait(DEADLINE))  # a stuck start listener
        bus.subscribe("exit", lambda: os.write(write_fd, b"exit ran"))

        def interrupt() -> None:
            bus.wait(states.STARTING)
            bus.exit()

        threading.Thread(target=interrupt, daemon=True).start()
        bus.start()

    code, output = run_forked_reporting(child)
    assert code == 70
    assert output == b"exit ran"


def test_restart_sets_execv_and_exits(bus: Bus) -> None:
    bus.start()
    bus.restart()
    assert bus.execv is True
    assert bus.state is states.EXITING


# -- wait / block ------------------------------------------------------------


def test_wait_accepts_one_state_or_several(bus: Bus) -> None:
    done: list[states] = []

    def waiter() -> None:
        bus.wait(states.STARTED)
        done.append(bus.state)
        bus.wait([states.STOPPED, states.EXITING])
        done.append(bus.state)

    thread = threading.Thread(target=waiter)
    thread.start()
    bus.start()
    wait_until(lambda: len(done) == 1)
    bus.exit()
    thread.join(DEADLINE)
    assert done[0] is states.STARTED
    assert done[1] in (states.STOPPED, states.EXITING)


def test_wait_wakes_up_on_state_change_not_on_interval(bus: Bus) -> None:
    returned = threading.Event()

    def waiter() -> None:
        bus.wait(states.STARTED, interval=30)
        returned.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    bus.start()
    try:
        assert returned.wait(5), "wait() did not notice the state change"
    finally:
        bus.exit()


def test_wait_publishes_channel_once_per_interval(bus: Bus) -> None:
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 5:
            bus.state = states.EXITING

    bus.subscribe("main", tick)
    bus.wait(states.EXITING, interval=0.05, channel="main")
    assert len(ticks) == 5
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert min(gaps) >= 0.04, gaps  # waited each interval instead of spinning


def test_block_waits_for_exit_and_non_daemon_threads(bus: Bus, log) -> None:
    release_worker = threading.Event()
    worker_finished = threading.Event()

    def worker() -> None:
        release_worker.wait(DEADLINE)
        worker_finished.set()

    def stopper() -> None:
        bus.exit()
        release_worker.set()

    worker_thread = threading.Thread(target=worker, name="slow-worker")
    worker_thread.start()
    bus.start()
    threading.Thread(target=stopper).start()
    bus.block(interval=0.01)

    assert bus.state is states.EXITING
    assert worker_finished.is_set()
    assert not worker_thread.is_alive()
    assert "Waiting for child threads to terminate..." in messages(log)


def test_block_turns_keyboard_interrupt_into_exit(bus: Bus, log) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    bus.start()
    bus.subscribe("main", interrupt)
    bus.block(interval=0.01)
    assert bus.state is states.EXITING
    assert "Keyboard Interrupt: shutting down bus" in messages(log)


def test_block_exits_and_reraises_system_exit(bus: Bus, log) -> None:
    def leave() -> None:
        raise SystemExit(4)

    bus.start()
    bus.subscribe("main", leave)
    with pytest.raises(SystemExit) as info:
        bus.block(interval=0.01)
    assert info.value.code == 4
    assert bus.state is states.EXITING
    assert "SystemExit raised: shutting down bus" in messages(log)


@pytest.mark.parametrize(("ending", "reexecs"), [("restart", [True]), ("exit", [])])
def test_block_reexecs_after_restart_not_after_plain_exit(
    bus: Bus, monkeypatch, ending: str, reexecs: list[bool]
) -> None:
    execs: list[bool] = []
    monkeypatch.setattr(bus, "_do_execv", lambda: execs.append(True))
    bus.start()
    bus.subscribe("main", getattr(bus, ending))
    bus.block(interval=0.01)
    assert execs == reexecs


def test_start_with_callback_runs_after_start_listeners(bus: Bus) -> None:
    events: list[object] = []
    bus.subscribe("start", lambda: events.append("start listener"))
    thread = bus.start_with_callback(
        lambda *a, **kw: events.append((a, kw)), args=(1, 2), kwargs={"x": 3}
    )
    thread.join(DEADLINE)
    try:
        assert not thread.is_alive()
        assert thread.name.startswith("Bus Callback")
        assert events == ["start listener", ((1, 2), {"x": 3})]
    finally:
        bus.exit()


def test_start_with_callback_skips_func_when_start_fails(bus: Bus) -> None:
    called: list[bool] = []

    def broken() -> None:
        raise RuntimeError("no")

    bus.subscribe("start", broken)
    with pytest.raises(ChannelFailures):
        bus.start_with_callback(lambda: called.append(True))
    callback_threads = [t for t in threading.enumerate() if t.name.startswith("Bus Callback")]
    for thread in callback_threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()
    assert called == []


# -- process management ------------------------------------------------------


def test_reexec_argv_keeps_interpreter_options_and_module(monkeypatch) -> None:
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "dev", "-m", "app.main", "--port=80"])
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python3")
    assert Bus._reexec_argv() == [
        "/opt/venv/bin/python3",
        "-X",
        "dev",
        "-m",
        "app.main",
        "--port=80",
    ]


def test_set_cloexec_marks_inheritable_descriptors(bus: Bus) -> None:
    read_fd, write_fd = os.pipe()
    stdin_before = os.get_inheritable(0)
    try:
        os.set_inheritable(write_fd, True)
        bus._set_cloexec()
        assert not os.get_inheritable(write_fd)
        assert os.get_inheritable(0) == stdin_before  # std streams are left alone
    finally:
        os.close(read_fd)
        os.close(write_fd)


RESTART_APP = """
import json, os, sys
from morello.process.bus import Bus

state_file = os.environ["RESTART_STATE"]
if not os.path.exists(state_file):
    fd = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(fd, True)  # must not leak into the new process
    with open(state_file, "w") as f:
        json.dump({"pid": os.getpid(), "leaked_fd": fd}, f)
    os.chdir("/")  # the re-exec must still find the program
    bus = Bus()
    bus.start_with_callback(bus.restart)
    bus.block(interval=0.01)
    raise SystemExit("block() returned instead of re-executing")

with open(state_file) as f:
    first = json.load(f)
try:
    os.fstat(first["leaked_fd"])
    leaked = True
except OSError:
    leaked = False
with open(state_file + ".second", "w") as f:
    json.dump({
        "first_pid": first["pid"],
        "pid": os.getpid(),
        "argv": sys.argv[1:],
        "xoptions": sys._xoptions,
        "leaked": leaked,
    }, f)
"""


@pytest.mark.parametrize("launch", [["-m", "restartapp"], ["restartapp.py"]])
def test_restart_reexecs_same_command_line(tmp_path: Path, launch: list[str]) -> None:
    (tmp_path / "restartapp.py").write_text(textwrap.dedent(RESTART_APP))
    state = tmp_path / "state.json"
    env = python_env()
    env["RESTART_STATE"] = str(state)
    result = subprocess.run(
        [sys.executable, "-X", "morello_marker=1", *launch, "alpha", "--beta"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    second = json.loads((tmp_path / "state.json.second").read_text())
    assert second["pid"] == second["first_pid"]  # execv replaces the process in place
    assert second["argv"] == ["alpha", "--beta"]
    assert second["xoptions"].get("morello_marker") == "1"
    assert second["leaked"] is False


def test_atexit_exits_a_bus_left_running(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from morello.process.bus import Bus
        bus = Bus()
        bus.subscribe("exit", lambda: print("exit listener ran", flush=True))
        bus.start()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "exit listener ran" in result.stdout
    assert "RuntimeWarning" in result.stderr
