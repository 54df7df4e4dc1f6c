"""sd_notify messages, received on real AF_UNIX datagram sockets."""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import time
import uuid

import pytest
from morello.master import systemd


@pytest.fixture(autouse=True)
def fresh_failure_log(monkeypatch):
    monkeypatch.setattr(systemd, "_failure_logged", False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


@pytest.fixture
def receiver(monkeypatch):
    """A datagram socket at a file path, announced in NOTIFY_SOCKET."""
    with tempfile.TemporaryDirectory(prefix="morello-notify-") as directory:
        path = os.path.join(directory, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield sock
        sock.close()


def test_ready_sends_ready(receiver):
    assert systemd.ready() is True
    assert receiver.recv(4096) == b"READY=1"


def test_ready_with_status(receiver):
    assert systemd.ready("2 workers\nserving")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=2 workers serving"


def test_each_helper_sends_its_message(receiver):
    systemd.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"
    systemd.status("booting workers")
    assert receiver.recv(4096) == b"STATUS=booting workers"
    systemd.mainpid(4242)
    assert receiver.recv(4096) == b"MAINPID=4242"
    systemd.notify(WATCHDOG=1, STATUS="x=y")
    assert receiver.recv(4096) == b"WATCHDOG=1\nSTATUS=x=y"


def test_reloading_carries_monotonic_usec(receiver):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    match = re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=(\d+)", receiver.recv(4096))
    assert match
    assert before <= int(match.group(1)) <= after


def test_abstract_socket(monkeypatch):
    name = f"morello-test-{os.getpid()}-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert sock.recv(4096) == b"READY=1"


def test_unset_is_a_no_op(monkeypatch):
    def no_socket(*args, **kwargs):
        raise AssertionError("no socket may be created without NOTIFY_SOCKET")

    monkeypatch.setattr(socket, "socket", no_socket)
    assert systemd.ready() is False
    assert systemd.reloading() is False
    assert systemd.stopping() is False


def test_missing_socket_logs_once_and_never_raises(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="morello.master.systemd"):
        assert systemd.ready() is False
        assert systemd.stopping() is False
    warnings = [r for r in caplog.records if r.name == "morello.master.systemd"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_not_a_unix_socket_address(monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with caplog.at_level(logging.WARNING, logger="morello.master.systemd"):
        assert systemd.ready() is False
    assert "not a UNIX socket" in caplog.text


def test_newline_in_a_field_is_refused(receiver):
    with pytest.raises(ValueError, match="invalid notification field"):
        systemd.notify(STATUS="a\nREADY=1")
    with pytest.raises(ValueError):
        systemd.notify(**{"A=B": 1})
