"""Take a screenshot of the control endpoint's status page, as README shows it.

    python examples/status_screenshot.py docs/status.png

Starts ``morello serve`` on this module's :class:`Shop` with two workers and
the control endpoint on loopback TCP, keeps it busy (a few clients, one slow
request in flight, a scale up and down for the event list), then has headless
Chromium (``apt-get install chromium``) load ``GET /`` and save a PNG. The
Chromium helpers here also serve tests/test_status_page.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import morello
from morello.testing import free_port

#: Seconds any one step (start-up, a page load) may take.
DEADLINE = 60.0


class Shop:
    """A small application with a fast page and a slow one."""

    @morello.expose
    def index(self) -> str:
        return "welcome"

    @morello.expose
    def report(self, seconds: str = "8") -> str:
        time.sleep(min(float(seconds), 30.0))
        return "report ready"


# -- Chromium ---------------------------------------------------------------------


def chromium() -> str | None:
    """The Chromium program, or None when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(url: str, *options: str) -> str:
    """Run headless Chromium on ``url`` with ``options``; return its standard output."""
    program = chromium()
    if program is None:
        raise RuntimeError("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="morello-chromium-") as profile:
        command = [
            program, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *options, url,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited with {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def dump_dom(url: str) -> str:
    """The page at ``url`` as Chromium's DOM serialises it."""
    return run_chromium(url, "--dump-dom")


def screenshot(url: str, path: Path, size: str = "1280,900") -> None:
    """Save a PNG of the page at ``url``, in a window of ``size`` (``W,H``) pixels."""
    run_chromium(url, f"--screenshot={path}", f"--window-size={size}")
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot at {path}")


# -- the scene --------------------------------------------------------------------


def get(url: str, method: str = "GET") -> int:
    """The status of one request (an error's status too; 0 when there is no answer)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:  # refused, or cut short when the master stops
        return 0


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"not within {DEADLINE}s: {what}")


def load(url: str, stop: threading.Event) -> None:
    """Request ``url`` again and again until ``stop`` (bounded by DEADLINE)."""
    deadline = time.monotonic() + DEADLINE
    while not stop.is_set() and time.monotonic() < deadline:
        get(url)
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the PNG")
    parser.add_argument("--size", default="1200,560", help="window size W,H (default 1200,560)")
    args = parser.parse_args(argv)
    port, control_port = free_port(), free_port()
    site, control = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{control_port}"
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), str(here.parent)]))
    master = subprocess.Popen(
        [sys.executable, "-m", "morello.master", "serve", "status_screenshot:Shop",
         "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}",
         "--control-bind", f"127.0.0.1:{control_port}", "--name", "shop"],
        cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stop = threading.Event()
    try:
        wait_until(lambda: get(control + "/readyz") == 200, "the master to be ready")
        # Events for the list: scale up, then back down.
        assert get(control + "/scale?workers=3", "POST") == 200
        wait_until(lambda: get(control + "/readyz") == 200, "the third worker")
        time.sleep(1.5)  # the third worker gets a heartbeat or two
        assert get(control + "/scale?workers=2", "POST") == 200
        clients = [threading.Thread(target=load, args=(site + "/", stop), daemon=True)
                   for _ in range(3)]  # fmt: skip
        clients.append(threading.Thread(target=get, args=(site + "/report",), daemon=True))
        for thread in clients:
            thread.start()
        time.sleep(3)  # two heartbeats under load: the request rates are known
        screenshot(control + "/", args.output, args.size)
    finally:
        stop.set()
        master.send_signal(signal.SIGINT)  # a fast stop: the slow request need not finish
        master.wait(DEADLINE)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
