"""The control endpoint's status page (``GET /``), what it shows, and the probe port.

The page is checked as HTML against a fake master (escaping, one row per
worker, links), against a real master (rates, the oldest request, events),
and in headless Chromium against a real master on loopback TCP.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from bus_support import REPO_ROOT
from control_support import Endpoint, fetch
from morello.master import status_page
from morello.master.cli import settings_from_args
from morello.master.control import ProbeServer
from prefork_support import MasterProcess, running_master, wait_for, write_app

from morello.testing import free_port

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def load_screenshot_script() -> Any:
    """examples/status_screenshot.py, whose Chromium helpers the browser test uses."""
    path = REPO_ROOT / "examples" / "status_screenshot.py"
    spec = importlib.util.spec_from_file_location("status_screenshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = load_screenshot_script()


class Cells(HTMLParser):
    """The text of each table row's cells, and every link's target."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []
        elif tag == "a":
            self.links.extend(value or "" for name, value in attrs if name == "href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def page_of(address: str) -> tuple[str, Cells]:
    status, headers, body = fetch(address, "GET", "/", BROWSER)
    assert status == 200, body
    assert headers["content-type"] == "text/html; charset=utf-8"
    text = body.decode()
    cells = Cells()
    cells.feed(text)
    return text, cells


# --- the page, against a fake master ----------------------------------------------


def test_page_has_a_row_per_worker_and_links_to_the_data(endpoint: Endpoint) -> None:
    text, cells = page_of(endpoint.address)
    workers = endpoint.app.document["workers"]
    rows = [row for row in cells.rows if row]  # the header row has no <td>
    assert [row[1] for row in rows] == [str(w["pid"]) for w in workers]
    assert [row[3] for row in rows] == [w["state"] for w in workers]
    assert {"/status", "/metrics"} <= set(cells.links)
    # Self-contained, readable on a phone, and it refreshes itself.
    assert not {"script", "link", "img", "iframe"} & cells.tags
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert '<meta http-equiv="refresh"' in text
    assert "http://" not in text and "https://" not in text
    # HEAD gets the headers only.
    assert fetch(endpoint.address, "HEAD", "/", BROWSER)[::2] == (200, b"")


def test_page_escapes_what_the_master_reports(endpoint: Endpoint) -> None:
    hostile = "<script>alert('x')</script>"
    document = endpoint.app.document
    document["master"]["halted"] = f"halted by {hostile}"
    document["workers"][0]["oldest_request"] = {"age": 2.5, "path": f"/{hostile}"}
    document["events"] = [{"time": 1_700_000_000.0, "text": f"retiring {hostile}"}]
    text, cells = page_of(endpoint.address)
    assert "<script" not in text
    assert text.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 3
    assert any(f"/{hostile}" in cell for row in cells.rows for cell in row)


def test_page_shows_a_rollout_and_its_progress(endpoint: Endpoint) -> None:
    master = endpoint.app.document["master"]
    master["rollout"] = {"from_generation": 2, "ready": 1, "target": 2}
    text, _ = page_of(endpoint.address)
    assert "from generation 2 to 3: 1 of 2 new workers ready" in text
    master["rollout"] = None
    assert "Rolling restart" not in page_of(endpoint.address)[0]


def test_event_times_carry_their_date_unless_it_is_today() -> None:
    now = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC
    document = {"master": {"pid": 1}, "workers": [], "events": [
        {"time": now - 60, "text": "today's event"},
        {"time": now - 86_400, "text": "yesterday's event"},
    ]}  # fmt: skip
    text = status_page.render(document, now=now)
    assert "<time>00:52:20</time>today&#x27;s event" in text
    assert "<time>2026-11-29 00:53:20</time>yesterday&#x27;s event" in text
    assert "Updated 2026-11-30 00:53:20 UTC" in text


# --- the status document of a real master -----------------------------------------


def test_status_reports_rates_the_oldest_request_and_events(tmp_path: Path) -> None:
    write_app(tmp_path)
    with running_master(tmp_path, "--threads", "4") as master:
        with requests.Session() as client:
            for _ in range(20):
                assert client.get(master.url + "/", timeout=10).ok
        with requests.Session() as slow:
            future = _in_thread(lambda: slow.get(master.url + "/slow?seconds=3", timeout=20))

            def busy_worker() -> dict[str, Any] | None:
                found = [w for w in master.status()["workers"] if w["oldest_request"]]
                return found[0] if found else None

            worker = wait_for(busy_worker, what="a heartbeat naming the slow request")
            assert worker["oldest_request"]["path"] == "/slow"
            assert worker["oldest_request"]["age"] >= 0
            assert future().status_code == 200
        # Two heartbeats give a rate; the requests were served before both.
        rates = wait_for(
            lambda: [w["requests_per_second"] for w in master.status()["workers"]
                     if w["requests_per_second"] is not None] or None,  # fmt: skip
            what="request rates",
        )
        assert all(rate >= 0 for rate in rates)

        assert master.control("POST", "/scale?workers=1")[0] == 200
        wait_for(lambda: len(master.status()["workers"]) == 1, what="scaled down")
        master.send(signal.SIGHUP)
        wait_for(lambda: master.status()["master"]["generation"] == 2, what="HUP handled")
        wait_for(
            lambda: any("generation 2 complete" in e["text"] for e in master.status()["events"]),
            what=f"the rollout to complete\n{master.log()[-2000:]}",
        )
        status = master.status()
        events = [event["text"] for event in status["events"]]
        assert status["master"]["rollout"] is None
        assert status["master"]["version"]
        for expected in ("all 2 worker(s) ready", "scaling from 2 to 1 worker(s)",
                         "scaled down", "rolling restart to generation 2"):  # fmt: skip
            assert any(expected in text for text in events), (expected, events)
        times = [event["time"] for event in status["events"]]
        assert times == sorted(times)


def _in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``call`` on a thread; the returned function waits for its result."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return lambda: future.result(timeout=30)


# --- in a real browser --------------------------------------------------------------


needs_chromium = pytest.mark.skipif(
    screenshots.chromium() is None,
    reason="Chromium is not installed (apt-get install chromium; ./dev test installs it)",
)


@needs_chromium
def test_chromium_shows_both_workers(tmp_path: Path) -> None:
    write_app(tmp_path)
    with running_master(tmp_path, control_tcp=True) as master:
        pids = master.wait_ready(2)
        url = f"http://{master.control_address}/"
        dom = screenshots.dump_dom(url)
        cells = Cells()
        cells.feed(dom)
        shown = {row[1] for row in cells.rows if row}
        assert {str(pid) for pid in pids} <= shown, dom[-3000:]
        path = tmp_path / "status.png"
        screenshots.screenshot(url, path, "1280,900")
    assert path.stat().st_size > 10_000
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1280, 900)
        low, high = zip(*image.convert("RGB").getextrema(), strict=True)
        # Not blank: some channel spans dark text to a light background.
        assert max(high) - min(low) > 128, image.getextrema()


# --- the probe port ----------------------------------------------------------------


def test_probe_port_answers_health_and_readiness_only(start: Callable[..., Endpoint]) -> None:
    probe = start(server=ProbeServer)
    assert fetch(probe.address, "GET", "/healthz")[::2] == (200, b"ok")
    assert fetch(probe.address, "GET", "/readyz")[::2] == (200, b"ready")
    assert fetch(probe.address, "HEAD", "/readyz")[::2] == (200, b"")
    probe.app.is_ready = False
    assert fetch(probe.address, "GET", "/readyz")[0] == 503
    # A kubelet names the pod's address, which the probe port need not check.
    assert fetch(probe.address, "GET", "/healthz", {"Host": "10.1.2.3:9101"})[0] == 200
    for path in ("/", "/routes", "/status", "/metrics", "/scale?workers=3", "/healthz/"):
        assert fetch(probe.address, "GET", path)[0] == 404, path
    assert fetch(probe.address, "POST", "/scale?workers=3")[0] == 404
    status, headers, _ = fetch(probe.address, "POST", "/healthz")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert probe.app.scaled == []


def test_health_bind_serves_probes_next_to_the_control_endpoint(tmp_path: Path) -> None:
    write_app(tmp_path)
    port = free_port()
    with running_master(tmp_path, "--health-bind", f"127.0.0.1:{port}") as master:
        probe = f"127.0.0.1:{port}"
        assert fetch(probe, "GET", "/readyz")[::2] == (200, b"ready")
        assert fetch(probe, "GET", "/healthz")[::2] == (200, b"ok")
        assert fetch(probe, "GET", "/status")[0] == 404
        assert fetch(probe, "POST", "/scale?workers=1")[0] == 404
        assert len(master.status()["workers"]) == 2  # nothing changed
    # The master closed the port on its way out.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 5):
        pass


def test_after_usr2_the_new_master_takes_the_endpoints_over(tmp_path: Path) -> None:
    """The old master holds both addresses until it exits; the new one then opens them."""
    write_app(tmp_path)
    port = free_port()
    master = MasterProcess(tmp_path, "--health-bind", f"127.0.0.1:{port}", workers=1).start()
    new_pid = None
    try:
        master.wait_ready(1)
        master.send(signal.SIGUSR2)

        def new_master() -> int | None:
            pid = int(Path(master.pidfile).read_text())
            return pid if pid != master.pid else None

        new_pid = wait_for(new_master, what="the new master's pid file")
        wait_for(lambda: "probe port 127.0.0.1:" in master.log(),
                 what=f"the new master waiting for the port\n{master.log()[-2000:]}")  # fmt: skip
        master.send(signal.SIGTERM)
        assert master.wait_exit() == 0
        wait_for(lambda: master.status()["master"]["pid"] == new_pid, what="new control endpoint")
        wait_for(lambda: fetch(f"127.0.0.1:{port}", "GET", "/readyz")[0] == 200,
                 what=f"the new probe port\n{master.log()[-2000:]}")  # fmt: skip
    finally:
        master.stop()
        if new_pid is not None and psutil.pid_exists(new_pid):
            os.kill(new_pid, signal.SIGINT)
            wait_for(lambda: not psutil.pid_exists(new_pid) or
                     psutil.Process(new_pid).status() == psutil.STATUS_ZOMBIE,
                     what="the new master gone")  # fmt: skip


def test_health_bind_may_be_any_address_but_must_be_one() -> None:
    settings, _ = settings_from_args(["app:Root", "--health-bind", "0.0.0.0:9101"])
    assert settings.health_bind == "0.0.0.0:9101"
    with pytest.raises(ValueError, match="health_bind: .*HOST:PORT"):
        settings_from_args(["app:Root", "--health-bind", "9101"])
