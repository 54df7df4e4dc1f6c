"""The connection manager's epoll registry: one report per arming (morello.http.readiness)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from morello.http.readiness import ArmedSelector


@pytest.fixture
def selector() -> Iterator[ArmedSelector]:
    armed = ArmedSelector()
    yield armed
    armed.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_socket_is_reported_once_until_rearmed(selector, pair):
    ours, theirs = pair
    selector.register(ours.fileno(), "conn")
    theirs.send(b"GET / HTTP/1.1\r\n")
    assert selector.select(1) == [(ours.fileno(), "conn")]
    assert len(selector) == 0  # taken: no longer listed as waiting
    theirs.send(b"more bytes while a thread serves it\r\n")
    assert selector.select(0.05) == []
    selector.rearm(ours.fileno(), "conn")
    assert len(selector) == 1
    assert selector.select(1) == [(ours.fileno(), "conn")]


def test_a_persistent_socket_is_reported_every_time(selector, pair):
    ours, theirs = pair
    selector.register(ours.fileno(), "listener", persistent=True)
    theirs.send(b"x")
    assert selector.select(1) == [(ours.fileno(), "listener")]
    assert selector.select(1) == [(ours.fileno(), "listener")]
    assert dict(selector.connections) == {ours.fileno(): "listener"}


def test_has_events_looks_without_disarming(selector, pair):
    ours, theirs = pair
    selector.register(ours.fileno(), "conn")
    assert not selector.has_events()
    theirs.send(b"x")
    assert selector.has_events()
    assert selector.select(1) == [(ours.fileno(), "conn")]
    assert not selector.has_events()


def test_unregistered_sockets_are_not_reported(selector, pair):
    ours, theirs = pair
    selector.register(ours.fileno(), "conn")
    selector.unregister(ours.fileno())
    selector.unregister(ours.fileno())  # twice is harmless
    theirs.send(b"x")
    assert selector.select(0.05) == [] and len(selector) == 0


def test_rearm_watches_a_socket_it_never_reported(selector, pair):
    ours, theirs = pair
    selector.rearm(ours.fileno(), "handed over at accept")
    theirs.send(b"x")
    assert selector.select(1) == [(ours.fileno(), "handed over at accept")]


def test_a_descriptor_closed_while_taken_can_be_reused(selector):
    first, first_peer = socket.socketpair()
    selector.register(first.fileno(), "first")
    first_peer.send(b"x")
    assert selector.select(1) == [(first.fileno(), "first")]
    fd = first.fileno()
    first.close()  # the thread closes it: the kernel drops it from the epoll set
    first_peer.close()
    second, second_peer = socket.socketpair()
    try:
        assert fd in (second.fileno(), second_peer.fileno())
        reused = second if second.fileno() == fd else second_peer
        other = second_peer if reused is second else second
        selector.register(reused.fileno(), "second")
        other.send(b"x")
        assert selector.select(1) == [(fd, "second")]
    finally:
        second.close()
        second_peer.close()
