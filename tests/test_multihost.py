"""Two hosts, one session store: two ``morello serve`` masters on 127.0.0.2 and
127.0.0.3 behind a round-robin balancer, sharing Redis or memcached.

A session made through one host is read and updated through the other; many
concurrent increments through the balancer lose nothing; one host stopped
gracefully in the middle of the load costs no request.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from balancer import Balancer
from prefork_support import MasterProcess, wait_for

pytestmark = pytest.mark.timeout(180)

APP = '''
import os

import morello


class Root:
    @morello.expose
    def inc(self):
        count = morello.session["count"] = morello.session.get("count", 0) + 1
        return f"{count} {os.getpid()}"

    @morello.expose
    def count(self):
        return str(morello.session.get("count", 0))
'''
HOSTS = ("127.0.0.2", "127.0.0.3")


def store_config(store: str, server: object) -> str:
    if store == "redis":
        return f"tools.sessions.storage_type = 'redis'\ntools.sessions.url = {server.url!r}\n"
    host, port = server.servers[0]
    return (
        f"tools.sessions.storage_type = 'memcached'\ntools.sessions.servers = ['{host}:{port}']\n"
    )


@pytest.fixture(params=["redis", "memcached"])
def hosts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[MasterProcess]]:
    server = request.getfixturevalue(f"{request.param}_store")
    masters = []
    for number, host in enumerate(HOSTS):
        directory = tmp_path / f"host{number}"
        directory.mkdir()
        (directory / "app.py").write_text(APP)
        (directory / "site.conf").write_text(
            "[/]\ntools.sessions.on = True\n" + store_config(request.param, server)
        )
        masters.append(MasterProcess(directory, "-c", "site.conf", workers=2, host=host))
    try:
        for master in masters:
            master.start()
        for master in masters:
            master.wait_ready(2)
        yield masters
    finally:
        for master in masters:
            master.stop()


@contextlib.contextmanager
def balancer_for(masters: list[MasterProcess]) -> Iterator[Balancer]:
    balancer = Balancer([(m.host, m.port) for m in masters])
    try:
        yield balancer
    finally:
        balancer.close()


def get(url: str, cookies: dict[str, str]) -> requests.Response:
    response = requests.get(url, cookies=cookies, timeout=20)
    assert response.status_code == 200, response.text
    return response


class Incrementer:
    """Threads incrementing one session's counter through ``url`` until stopped."""

    def __init__(self, url: str, cookies: dict[str, str], threads: int, limit: int) -> None:
        self.url, self.cookies, self.limit = url + "/inc", cookies, limit
        self.done = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            session.cookies.update(self.cookies)
            while not self._stop.is_set():
                with self._lock:
                    if self.done + len(self.failures) >= self.limit:
                        return
                try:
                    response = session.get(self.url, timeout=20)
                    failure = None if response.status_code == 200 else response.text[:200]
                except requests.RequestException as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if failure is None:
                        self.done += 1
                    else:
                        self.failures.append(failure)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        self._stop.set()
        self.wait()


def test_a_session_follows_the_visitor_across_hosts(hosts: list[MasterProcess]) -> None:
    first, second = hosts
    created = get(first.url + "/inc", {})
    cookies = {"session_id": created.cookies["session_id"]}
    assert created.text.split()[0] == "1"
    assert get(second.url + "/count", cookies).text == "1"
    assert get(second.url + "/inc", cookies).text.split()[0] == "2"
    assert get(first.url + "/count", cookies).text == "2"


def test_no_lost_updates_through_the_balancer(hosts: list[MasterProcess]) -> None:
    with balancer_for(hosts) as balancer:
        cookies = {"session_id": get(balancer.url + "/inc", {}).cookies["session_id"]}
        incrementer = Incrementer(balancer.url, cookies, threads=8, limit=300)
        incrementer.wait()
        assert incrementer.failures == []
        assert incrementer.done >= 300  # threads already in flight may add a few
        assert get(balancer.url + "/count", cookies).text == str(1 + incrementer.done)
        # Both hosts really took part.
        assert all(balancer.connections[(m.host, m.port)] for m in hosts)


def test_one_host_stops_gracefully_under_load(hosts: list[MasterProcess]) -> None:
    leaving, staying = hosts
    with balancer_for(hosts) as balancer:
        cookies = {"session_id": get(balancer.url + "/inc", {}).cookies["session_id"]}
        incrementer = Incrementer(balancer.url, cookies, threads=6, limit=100_000)
        try:
            wait_for(lambda: incrementer.done >= 100, what="load under way")
            leaving.send(signal.SIGTERM)
            assert leaving.wait_exit() == 0
            after_stop = incrementer.done
            wait_for(lambda: incrementer.done >= after_stop + 100, what="load after the stop")
        finally:
            incrementer.stop()
        assert incrementer.failures == []
        # Every acknowledged increment is in the store, none twice.
        assert get(staying.url + "/count", cookies).text == str(1 + incrementer.done)
