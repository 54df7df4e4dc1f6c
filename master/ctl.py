"""``morello ctl``: inspect and steer a running morello master.

::

    morello ctl status --control 127.0.0.1:9100 [--json]
    morello ctl scale 8 --control unix:/run/morello.sock
    morello ctl reload --pidfile /run/morello.pid
    morello ctl stop --pidfile /run/morello.pid [--wait] [--timeout 30]

``status`` and ``scale`` talk HTTP to the master's control endpoint
(:mod:`morello.master.control`); ``reload`` (SIGHUP: rolling restart) and
``stop`` (SIGTERM: graceful shutdown) signal the pid in the pid file.

Exit status: 0 on success, 1 when the operation failed (endpoint
unreachable or refusing, pid file missing or stale, ``--wait`` timed out),
2 for invalid usage (bad arguments, invalid worker count).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from .control import parse_address

PROG = "morello ctl"
DEFAULT_TIMEOUT = 10.0
#: Largest pid accepted from a pid file (pid_t is 32-bit).
MAX_PID = 2**31 - 1
_PID = re.compile(r"[0-9]{1,10}")
_WORKERS = re.compile(r"[0-9]+")


class CtlError(Exception):
    """A failure to report on one line, with the exit status to return."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- talking to the control endpoint ---------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a UNIX stream socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def request(control: str, method: str, path: str, timeout: float) -> tuple[int, str]:
    """Send one request to the control endpoint; return (status, body)."""
    try:
        family, where = parse_address(control)
    except ValueError as exc:
        raise CtlError(str(exc), 2) from exc
    if family == socket.AF_UNIX:
        connection: http.client.HTTPConnection = UnixHTTPConnection(where, timeout)
    else:
        connection = http.client.HTTPConnection(where[0], where[1], timeout=timeout)
    try:
        connection.request(method, path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise CtlError(f"cannot reach the control endpoint at {control}: {reason}") from exc
    finally:
        connection.close()


def _control(args: argparse.Namespace) -> str:
    if not args.control:
        raise CtlError(f"{args.command} needs the control endpoint: --control ADDR", 2)
    return args.control


# --- signalling the master --------------------------------------------------


def read_pid(pidfile: str | None) -> int:
    """The pid in ``pidfile``, checked to be a running process."""
    if not pidfile:
        raise CtlError("this command needs the master's pid file: --pidfile PATH", 2)
    try:
        with open(pidfile, encoding="ascii", errors="replace") as handle:
            text = handle.read(64).strip()
    except FileNotFoundError:
        raise CtlError(f"pid file {pidfile} does not exist (is the server running?)") from None
    except OSError as exc:
        raise CtlError(f"cannot read pid file {pidfile}: {exc.strerror}") from exc
    # A pid of 0 or below would signal a whole process group: never accept one.
    if not _PID.fullmatch(text) or not 0 < int(text) <= MAX_PID:
        raise CtlError(f"pid file {pidfile} does not hold a pid: {text[:20]!r}")
    pid = int(text)
    if process_gone(pid):
        raise CtlError(f"stale pid file {pidfile}: process {pid} is not running")
    return pid


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, it belongs to someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            # "pid (comm) state ...": comm may hold spaces and parentheses.
            return handle.read().rpartition(")")[2].split()[:1] == ["Z"]
    except OSError:
        return False  # no /proc here: the kill() probe is all we know


def send_signal(pid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to ``pid``, with one-line errors."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise CtlError(f"process {pid} is not running (stale pid file?)") from None
    except PermissionError:
        raise CtlError(f"not allowed to signal process {pid} (another user's?)") from None


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not process_gone(pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # Not our child, so there is nothing to block on: poll, backing off.
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.2)
    return True


# --- commands ----------------------------------------------------------------


def _duration(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        return "-"
    seconds = int(value)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}{seconds % size // smaller_size:02d}{smaller}"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _size(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return "-"
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value}B"


def _field(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    return "-" if value is None else str(value)


def format_status(status: dict[str, Any]) -> str:
    """The ``/status`` document as a short human-readable table."""
    master = status.get("master") if isinstance(status.get("master"), dict) else {}
    listed = status.get("workers")
    workers = [w for w in listed if isinstance(w, dict)] if isinstance(listed, list) else []
    ready = sum(1 for worker in workers if worker.get("state") == "ready")
    lines = [
        f"master {_field(master, 'pid')}  state {_field(master, 'state')}  "
        f"uptime {_duration(master.get('uptime'))}  generation {_field(master, 'generation')}  "
        f"workers {ready}/{_field(master, 'target_workers')} ready  "
        f"restarts {_field(master, 'restarts')}"
    ]
    rows = [("ID", "PID", "STATE", "GEN", "AGE", "REQUESTS", "BUSY", "RSS")]
    for worker in workers:
        busy = f"{_field(worker, 'busy_threads')}/{_field(worker, 'threads')}"
        rows.append(
            (
                _field(worker, "id"),
                _field(worker, "pid"),
                _field(worker, "state"),
                _field(worker, "generation"),
                _duration(worker.get("age")),
                _field(worker, "requests"),
                busy,
                _size(worker.get("rss")),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    if not workers:
        lines.append("(no workers)")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    code, body = request(_control(args), "GET", "/status", args.timeout)
    if code != 200:
        raise CtlError(f"status failed: HTTP {code}: {body.strip()[:200]}")
    if args.json:
        print(body.rstrip())
        return 0
    try:
        status = json.loads(body)
    except ValueError as exc:
        raise CtlError(f"status failed: the endpoint sent invalid JSON ({exc})") from exc
    if not isinstance(status, dict):
        raise CtlError("status failed: the endpoint sent JSON that is not an object")
    print(format_status(status))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    workers = args.workers
    if not _WORKERS.fullmatch(workers):
        raise CtlError(f"invalid worker count {workers!r}: expected a whole number", 2)
    code, body = request(_control(args), "POST", f"/scale?workers={workers}", args.timeout)
    if code != 200:
        raise CtlError(f"scale refused: HTTP {code}: {body.strip()[:200]}")
    print(f"scaling to {workers} worker(s)")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    pid = read_pid(args.pidfile)
    send_signal(pid, signal.SIGHUP)
    print(f"sent SIGHUP to master {pid}: rolling restart")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    pid = read_pid(args.pidfile)
    send_signal(pid, signal.SIGTERM)
    if not args.wait:
        print(f"sent SIGTERM to master {pid}: graceful stop")
        return 0
    if not wait_gone(pid, args.timeout):
        raise CtlError(f"master {pid} still running after {args.timeout:g}s")
    print(f"master {pid} stopped")
    return 0


def _add_common_options(parser: argparse.ArgumentParser, main: bool) -> None:
    # After the command, an option not given must not reset the value given
    # before it, hence SUPPRESS defaults on the command parsers.
    def default(value: Any) -> Any:
        return value if main else argparse.SUPPRESS

    parser.add_argument(
        "--control",
        metavar="ADDR",
        default=default(None),
        help="control endpoint: HOST:PORT, [IPV6]:PORT or unix:PATH",
    )
    parser.add_argument(
        "--pidfile", metavar="PATH", default=default(None), help="the master's pid file"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default(DEFAULT_TIMEOUT),
        help=f"network and --wait timeout (default {DEFAULT_TIMEOUT:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``morello ctl`` argument parser; options go before or after the command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect and steer a running morello master."
    )
    _add_common_options(parser, main=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        _add_common_options(sub, main=False)
        sub.set_defaults(handler=handler)
        return sub

    add("status", cmd_status, "show the master and its workers").add_argument(
        "--json", action="store_true", help="print the raw /status document"
    )
    add("scale", cmd_scale, "set the number of workers").add_argument(
        "workers", metavar="N", help="number of workers"
    )
    add("reload", cmd_reload, "rolling restart of the workers (SIGHUP)")
    add("stop", cmd_stop, "stop the server gracefully (SIGTERM)").add_argument(
        "--wait", action="store_true", help="wait until the master exited"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``morello ctl`` with ``argv`` (default: the command line); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    if args.timeout <= 0:
        print(f"{PROG}: error: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except CtlError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
