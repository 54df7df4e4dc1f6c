"""``morello ctl``: inspect and steer a running morello master.

::

    morello ctl -c site.conf status [--json]
    morello ctl -c site.conf scale 8
    morello ctl -c site.conf reload
    morello ctl -c site.conf stop [--wait] [--timeout 30]

Every command finds the master the same way: ``--control ADDR`` and
``--pidfile PATH``, else the ``master.control_bind`` and ``master.pidfile``
keys of the config file given with ``-c``. ``status`` and ``scale`` talk
HTTP to the control endpoint (:mod:`morello.master.control`); ``reload``
(SIGHUP: rolling restart) and ``stop`` (SIGTERM: graceful shutdown) signal
the master, whose pid comes from the control endpoint when there is one,
else from the pid file. A pid is signalled only once it is known to be a
morello master: a stale pid file may name an unrelated process.

POST requests carry ``Authorization: Bearer TOKEN`` when a token is known:
``master.control_token`` of the ``-c`` file, else ``$MORELLO_CONTROL_TOKEN``.

Exit status: 0 on success, 1 when the operation failed (endpoint
unreachable or refusing, pid file missing or stale, pid not a morello
master, ``--wait`` timed out), 2 for invalid usage (bad arguments, invalid
worker count, unreadable config file).
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
from dataclasses import dataclass
from typing import Any

import psutil

from .cli import Parser
from .control import parse_address
from .settings import MASTER_TITLE, convert, from_config_file

PROG = "morello ctl"
DEFAULT_TIMEOUT = 10.0
#: Environment variable holding the control token when no ``-c`` file gives one.
TOKEN_ENV = "MORELLO_CONTROL_TOKEN"
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


def request(
    control: str, method: str, path: str, timeout: float, token: str | None = None
) -> tuple[int, str]:
    """Send one request to the control endpoint; return (status, body).

    ``token`` goes in an ``Authorization: Bearer`` header of POST requests.
    """
    headers = {"Connection": "close"}
    if token and method == "POST":
        headers["Authorization"] = f"Bearer {token}"
    try:
        family, where = parse_address(control)
    except ValueError as exc:
        raise CtlError(str(exc), 2) from exc
    if family == socket.AF_UNIX:
        connection: http.client.HTTPConnection = UnixHTTPConnection(where, timeout)
    else:
        connection = http.client.HTTPConnection(where[0], where[1], timeout=timeout)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise CtlError(f"cannot reach the control endpoint at {control}: {reason}") from exc
    finally:
        connection.close()


@dataclass
class Master:
    """How to reach the master: its control endpoint, its pid file, the control token."""

    control: str | None = None
    pidfile: str | None = None
    token: str | None = None


def find_master(args: argparse.Namespace) -> Master:
    """The flags, completed by the ``master.*`` keys of the ``-c`` config file."""
    master = Master(args.control, args.pidfile)
    if args.config:
        try:
            settings = from_config_file(args.config)
        except (OSError, ValueError) as exc:
            raise CtlError(f"cannot use config file {args.config}: {exc}", 2) from exc
        master.control = master.control or settings.control_bind
        master.pidfile = master.pidfile or settings.pidfile
        master.token = settings.control_token
    master.token = master.token or os.environ.get(TOKEN_ENV) or None
    return master


def _control(args: argparse.Namespace, master: Master) -> str:
    if not master.control:
        raise CtlError(
            f"{args.command} needs the control endpoint: --control ADDR, "
            "or -c FILE with master.control_bind",
            2,
        )
    return master.control


# --- signalling the master --------------------------------------------------


def read_pid(pidfile: str) -> int:
    """The pid in ``pidfile``, checked to be a running process."""
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


def check_master(pid: int, origin: str) -> None:
    """Refuse ``pid`` unless it is a morello master: its title, else its command line says so."""
    try:
        words = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        raise CtlError(f"process {pid} (from {origin}) is not running") from None
    except psutil.Error as exc:
        raise CtlError(f"cannot tell whether process {pid} is a morello master: {exc}") from exc
    # setproctitle leaves the title in the first word and blanks the others.
    command = " ".join(word for word in words if word)
    started_as_master = "serve" in words and any(
        word == "morello.master" or os.path.basename(word) == "morello" for word in words
    )
    if not (command.startswith(f"{MASTER_TITLE} [") or started_as_master):
        raise CtlError(
            f"process {pid} (from {origin}) is not a morello master "
            f"({command[:60] or 'no command line'!r}); not signalling it"
        )


def master_pid(args: argparse.Namespace, master: Master) -> int:
    """The master's pid, from the control endpoint if known, else from the pid file; verified."""
    if master.control:
        pid, origin = pid_from_status(master.control, args.timeout), master.control
    elif master.pidfile:
        pid, origin = read_pid(master.pidfile), f"pid file {master.pidfile}"
    else:
        raise CtlError(
            f"{args.command} needs the master: --pidfile PATH, --control ADDR, or -c FILE "
            "with master.pidfile or master.control_bind",
            2,
        )
    check_master(pid, origin)
    return pid


def pid_from_status(control: str, timeout: float) -> int:
    """The master's pid as its control endpoint's ``/status`` reports it."""
    status = get_status(control, timeout)
    pid = status.get("master", {}).get("pid") if isinstance(status.get("master"), dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        raise CtlError(f"the control endpoint at {control} reported no master pid")
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


def _timestamp(when: Any) -> str:
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _rollout_line(master: dict[str, Any]) -> str | None:
    """The rolling restart under way, else how the last one ended (None: none yet)."""
    rollout, last = master.get("rollout"), master.get("last_rollout")
    if isinstance(rollout, dict):
        canary = rollout.get("canary")
        judged = f"; canary {_field(canary, 'state')}" if isinstance(canary, dict) else ""
        return (
            f"rollout from generation {_field(rollout, 'from_generation')} to "
            f"{_field(master, 'generation')}: {_field(rollout, 'ready')}/"
            f"{_field(rollout, 'target')} new workers ready{judged}"
        )
    if isinstance(last, dict):
        return (
            f"last rollout from generation {_field(last, 'from_generation')} to "
            f"{_field(last, 'to_generation')}: {_field(last, 'state')} at "
            f"{_timestamp(last.get('time'))}"
        )
    return None


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
    rollout = _rollout_line(master)
    if rollout:
        lines.append(rollout)
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


def status_body(control: str, timeout: float) -> str:
    """The raw ``/status`` document."""
    code, body = request(control, "GET", "/status", timeout)
    if code != 200:
        raise CtlError(f"status failed: HTTP {code}: {body.strip()[:200]}")
    return body


def get_status(control: str, timeout: float) -> dict[str, Any]:
    """The ``/status`` document, parsed."""
    body = status_body(control, timeout)
    try:
        status = json.loads(body)
    except ValueError as exc:
        raise CtlError(f"status failed: the endpoint sent invalid JSON ({exc})") from exc
    if not isinstance(status, dict):
        raise CtlError("status failed: the endpoint sent JSON that is not an object")
    return status


def cmd_status(args: argparse.Namespace, master: Master) -> int:
    control = _control(args, master)
    if args.json:
        print(status_body(control, args.timeout).rstrip())
    else:
        print(format_status(get_status(control, args.timeout)))
    return 0


def cmd_scale(args: argparse.Namespace, master: Master) -> int:
    workers = args.workers
    if not _WORKERS.fullmatch(workers):
        raise CtlError(f"invalid worker count {workers!r}: expected a whole number", 2)
    control = _control(args, master)
    code, body = request(control, "POST", f"/scale?workers={workers}", args.timeout, master.token)
    if code != 200:
        raise CtlError(f"scale refused: HTTP {code}: {body.strip()[:200]}")
    print(f"scaling to {workers} worker(s)")
    return 0


def cmd_reload(args: argparse.Namespace, master: Master) -> int:
    pid = master_pid(args, master)
    send_signal(pid, signal.SIGHUP)
    print(f"sent SIGHUP to master {pid}: rolling restart")
    return 0


def cmd_stop(args: argparse.Namespace, master: Master) -> int:
    pid = master_pid(args, master)
    send_signal(pid, signal.SIGTERM)
    if not args.wait:
        print(f"sent SIGTERM to master {pid}: graceful stop")
        return 0
    if not wait_gone(pid, args.timeout):
        raise CtlError(f"master {pid} still running after {args.timeout:g}s")
    print(f"master {pid} stopped")
    return 0


def _seconds(text: str) -> float:
    """``--timeout``: read like the master's own timeouts, and positive."""
    try:
        seconds = convert("timeout", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _add_common_options(parser: argparse.ArgumentParser, main: bool) -> None:
    # After the command, an option not given must not reset the value given
    # before it, hence SUPPRESS defaults on the command parsers.
    def default(value: Any) -> Any:
        return value if main else argparse.SUPPRESS

    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default(None),
        help="the master's config file: its master.control_bind, master.pidfile and "
        "master.control_token keys say where the master is",
    )
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
        type=_seconds,
        metavar="SECONDS",
        default=default(DEFAULT_TIMEOUT),
        help=f"network and --wait timeout (default {DEFAULT_TIMEOUT:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``morello ctl`` argument parser; options go before or after the command."""
    parser = Parser(prog=PROG, description="Inspect and steer a running morello master.")
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
    try:
        return args.handler(args, find_master(args))
    except CtlError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
