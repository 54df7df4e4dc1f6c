"""``python -m loadtests``: serve the demo app with prefork workers and load it with locust.

What it starts, all on 127.0.0.1 and all stopped again (also on error,
Ctrl-C or SIGTERM):

1. the session store: a temp directory (``file``), or its own
   ``redis-server`` / ``memcached`` on a free port (the launchers of
   ``tests/store_servers.py``);
2. ``morello serve loadtests.app:Root`` with ``--workers N`` and a config
   file for that store, until its control endpoint says all workers are ready;
3. ``locust`` headless for ``--duration`` seconds (killed if it overruns),
   writing its CSV files and HTML report to ``--out``;
4. with ``--rolling-restart``, meanwhile: SIGHUP (rolling restart), then
   SIGTTIN (one worker more), then SIGTTOU (one fewer) to the master, and
   again in turn while the run lasts, each once the previous one has
   settled. A *window* runs from the signal until ``/status`` shows the
   change done (every worker ready and of the new generation, as many as
   targeted); a failed request that was in flight during a window counts
   for that window.

It prints a summary parsed from locust's CSV files (the request table, the
restart windows) and writes it to ``OUT/summary.txt``; its last line is::

    requests=N rps=X p50_ms=A p99_ms=B failures=F session_mismatches=M

``failures`` counts every failed request (mismatches included);
``session_mismatches`` those where a session held another value than the
client expected. Exit status: 0 when both are 0, 1 otherwise (or when no
request was made, or a restart never settled), 2 when something could not
be started, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morello.master.ctl import CtlError
from morello.master.ctl import request as control_request

from morello.testing import free_port

from .checks import EVENTS_ENV, MISMATCH

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: Seconds the master gets to have all its workers ready.
READY_TIMEOUT = 60.0
#: Seconds a restart window may stay open before it is reported as unfinished.
WINDOW_TIMEOUT = 60.0
#: Seconds locust may run past ``--duration`` (start-up, ramp-up, stopping) before it is killed.
LOCUST_GRACE = 60.0
STOP_TIMEOUT = 15.0
POLL = 0.1
STORES = ("file", "memcached", "redis")
LOCKING = ("implicit", "early", "explicit", "optimistic")
#: The app's env var that injects lost updates (see ``loadtests/app.py``).
DROP_ENV = "LOADTESTS_DROP_SESSION_EVERY"
CSV_FILES = ("stats", "failures", "exceptions", "stats_history")
INSTALL = "pip install -e '.[test,redis,memcached]'"


class SetupError(Exception):
    """Something the load test needs could not be started; the message says what."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT: stop everything and exit."""


# --- options ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests",
        description="Serve loadtests/app.py with morello's prefork server and a session "
        "store, load it with locust, and report.",
    )
    add = parser.add_argument
    add("--store", choices=STORES, default="file", help="session store (default: file)")
    add("--workers", type=_positive, default=2, help="worker processes (default: 2)")
    add("--threads", type=_positive, default=10, help="threads per worker (default: 10)")
    add("--users", type=_positive, default=20, help="simulated users (default: 20)")
    add("--spawn-rate", type=float, default=10.0, help="users started per second (default: 10)")
    add("--duration", type=_positive, default=30, help="seconds of load (default: 30)")
    add("--out", help="directory for the report, CSV files and logs (default: a new temp dir)")
    add("--locking", choices=LOCKING, help="tools.sessions.locking (default: the store's)")
    add(
        "--rolling-restart",
        action="store_true",
        help="during the run, send HUP, TTIN, TTOU (and again, in turn) to the master "
        "and report the failures inside those windows separately",
    )
    add(
        "--inject-session-loss",
        type=_positive,
        metavar="EVERY",
        help="(to test the checks) every EVERY-th counter increment of each worker "
        "loses the session's counter",
    )
    args = parser.parse_args(argv)
    if args.spawn_rate <= 0:
        parser.error("--spawn-rate must be > 0")
    return args


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# --- the session store -----------------------------------------------------------


def _store_servers() -> Any:
    """``tests/store_servers.py``, the launcher of private redis-server and memcached."""
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        import store_servers
    except ImportError as exc:
        raise SetupError(f"{exc}: install the test extras ({INSTALL})") from None
    return store_servers


@contextlib.contextmanager
def session_store(kind: str, rundir: Path, out: Path) -> Iterator[dict[str, Any]]:
    """Run the store; yield its ``tools.sessions.*`` settings (without the prefix)."""
    if kind == "file":
        path = rundir / "sessions"
        path.mkdir()
        yield {"storage_type": "file", "storage_path": str(path)}
        return
    servers = _store_servers()
    server = servers.RedisServer() if kind == "redis" else servers.MemcachedServer()
    try:
        server.start()
    except servers.ServerStartError as exc:
        raise SetupError(str(exc)) from None
    try:
        if kind == "redis":
            yield {"storage_type": "redis", "url": server.url}
        else:
            yield {"storage_type": "memcached", "servers": [f"127.0.0.1:{server.port}"]}
    finally:
        with contextlib.suppress(OSError):
            shutil.copyfile(server.log_path, out / f"{server.name}.log")
        server.stop()


def write_config(path: Path, sessions: dict[str, Any], out: Path) -> None:
    """The app's config file: quiet logs, sessions on with ``sessions`` settings."""
    lines = [
        "[global]",
        "log.screen = False",
        f"log.error_file = {str(out / 'app-error.log')!r}",
        "",
        "[/]",
        "tools.sessions.on = True",
        *(f"tools.sessions.{name} = {value!r}" for name, value in sessions.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


# --- the server --------------------------------------------------------------------


class Master:
    """``morello serve loadtests.app:Root`` as a subprocess in its own process group."""

    def __init__(self, args: argparse.Namespace, rundir: Path, out: Path, config: Path) -> None:
        self.control = f"unix:{rundir / 'control.sock'}"
        self.log_path = out / "master.log"
        self.port = 0
        self.workers = args.workers
        self.threads = args.threads
        self.config = config
        self.rundir = rundir
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        if args.inject_session_loss:
            self.env[DROP_ENV] = str(args.inject_session_loss)
        else:
            self.env.pop(DROP_ENV, None)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the master and wait for all its workers; a port taken meanwhile is retried."""
        for attempt in range(3):
            self.port = free_port()
            command = [
                sys.executable, "-m", "morello.master", "serve", "loadtests.app:Root",
                "--workers", str(self.workers), "--threads", str(self.threads),
                "--bind", f"127.0.0.1:{self.port}", "--control-bind", self.control,
                "--config", str(self.config), "--pidfile", str(self.rundir / "master.pid"),
                "--graceful-timeout", "15",
            ]  # fmt: skip
            with open(self.log_path, "ab") as log:
                log.write(f"--- {' '.join(command)}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    command, cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            try:
                self.wait_settled(lambda status: True, READY_TIMEOUT)
                return
            except SetupError:
                exited = self.process.poll() is not None
                if not (exited and "in use" in self.log()) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def status(self) -> dict[str, Any]:
        code, body = control_request(self.control, "GET", "/status", 5.0)
        if code != 200:
            raise CtlError(f"/status answered {code}")
        return json.loads(body)

    def ready(self) -> bool:
        code, _ = control_request(self.control, "GET", "/readyz", 5.0)
        return code == 200

    @staticmethod
    def settled(status: dict[str, Any]) -> bool:
        """Every worker ready, of the current generation, as many as targeted."""
        master, workers = status["master"], status["workers"]
        return len(workers) == master["target_workers"] and all(
            w["state"] == "ready" and w["generation"] == master["generation"] for w in workers
        )

    def wait_settled(self, condition: Any, timeout: float) -> dict[str, Any]:
        """Wait until ``/readyz`` is 200 and ``/status`` is settled and meets ``condition``."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SetupError(
                    f"the master exited with {self.process.returncode}; its log:\n"
                    + self.log()[-3000:]
                )
            try:
                if self.ready():
                    status = self.status()
                    if self.settled(status) and condition(status):
                        return status
                    last = json.dumps(status)[:1000]
            except (CtlError, ValueError, KeyError, TypeError) as exc:
                last = str(exc)
            time.sleep(POLL)
        raise SetupError(f"the master did not settle within {timeout:.0f}s (last: {last})")

    def send(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)


def stop_process(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal ``process`` (leader of its own group); kill its group if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # Whatever it left behind in its own process group (workers of a killed master).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT)


# --- rolling restarts -----------------------------------------------------------


@dataclass
class Window:
    """From a signal to the master until ``/status`` shows its effect complete."""

    action: str
    start: float
    end: float | None = None
    detail: str = ""
    error: str | None = None
    failures: int = 0
    mismatches: int = 0


@dataclass
class RestartPlan:
    """HUP, TTIN, TTOU, HUP... from ``first`` seconds on, ``gap`` seconds apart.

    Each step waits until the previous one has settled. The first HUP is
    always sent; later steps only begin before ``last_start`` seconds.
    """

    master: Master
    first: float
    gap: float
    last_start: float
    windows: list[Window] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    STEPS = (("HUP", signal.SIGHUP), ("TTIN", signal.SIGTTIN), ("TTOU", signal.SIGTTOU))

    def run(self) -> None:
        begun = time.monotonic()
        if self.stop.wait(self.first):
            return
        for index, (action, signum) in enumerate(itertools.cycle(self.STEPS)):
            if index and (self.stop.wait(self.gap) or time.monotonic() - begun > self.last_start):
                return
            window = self._window(action, signum)
            self.windows.append(window)
            if window.end is None:
                return  # not settled: later steps would overlap it

    def _window(self, action: str, signum: int) -> Window:
        try:
            before = self.master.status()["master"]
        except (CtlError, ValueError, KeyError) as exc:
            return Window(action, time.time(), error=f"no status before {action}: {exc}")
        generation, target = before["generation"], before["target_workers"]
        if action == "HUP":
            wanted = {"generation": generation + 1, "target_workers": target}
        else:
            wanted = {"generation": generation,
                      "target_workers": target + (1 if action == "TTIN" else -1)}  # fmt: skip
        window = Window(action, time.time())
        self.master.send(signum)
        deadline = time.monotonic() + WINDOW_TIMEOUT
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                status = self.master.status()
                now = time.time()
                if self.master.settled(status) and all(
                    status["master"][key] == value for key, value in wanted.items()
                ):
                    window.end = now
                    window.detail = (
                        f"generation {generation} -> {wanted['generation']}, "
                        f"workers {target} -> {wanted['target_workers']}"
                    )
                    return window
            except (CtlError, ValueError, KeyError, TypeError):
                pass
            time.sleep(POLL)
        window.error = "did not complete before the run ended" if self.stop.is_set() else (
            f"did not complete within {WINDOW_TIMEOUT:.0f}s"
        )  # fmt: skip
        return window


# --- locust ------------------------------------------------------------------------


def run_locust(args: argparse.Namespace, host: str, out: Path, plan: RestartPlan | None) -> int:
    """Run locust headless, bounded in time; return its exit status."""
    events = out / "failures.jsonl"
    events.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.duration}s",
        "--host", host, "--csv", str(out / "locust"), "--html", str(out / "report.html"),
        "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = dict(os.environ, **{EVENTS_ENV: str(events)})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    thread = None
    with open(out / "locust.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        if plan is not None:
            thread = threading.Thread(target=plan.run, name="rolling-restart", daemon=True)
            thread.start()
        try:
            return process.wait(args.duration + args.users / args.spawn_rate + LOCUST_GRACE)
        except subprocess.TimeoutExpired:
            raise SetupError(f"locust ran past its time; see {out / 'locust.log'}") from None
    finally:
        if plan is not None:
            plan.stop.set()
        if thread is not None:
            thread.join(WINDOW_TIMEOUT)
        stop_process(process, signal.SIGINT)


# --- results -----------------------------------------------------------------------


@dataclass
class Results:
    requests: int
    rps: float
    p50: float
    p95: float
    p99: float
    failures: int
    mismatches: int
    rows: list[dict[str, str]]
    errors: list[dict[str, str]]
    events: list[dict[str, Any]]


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def read_results(out: Path) -> Results:
    """Parse locust's ``locust_stats.csv`` and ``locust_failures.csv`` and the failure log."""
    try:
        with open(out / "locust_stats.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        with open(out / "locust_failures.csv", newline="") as handle:
            errors = list(csv.DictReader(handle))
    except OSError as exc:
        raise SetupError(
            f"locust wrote no statistics ({exc}); see {out / 'locust.log'}:\n"
            + _tail(out / "locust.log")
        ) from None
    total = next((row for row in rows if row.get("Name") == "Aggregated"), None)
    if total is None:
        raise SetupError(f"no Aggregated row in {out / 'locust_stats.csv'}")
    events = []
    with contextlib.suppress(FileNotFoundError), open(out / "failures.jsonl") as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    return Results(
        requests=int(_number(total["Request Count"])),
        rps=_number(total["Requests/s"]),
        p50=_number(total["50%"]),
        p95=_number(total["95%"]),
        p99=_number(total["99%"]),
        failures=int(_number(total["Failure Count"])),
        mismatches=sum(
            int(_number(row["Occurrences"])) for row in errors if MISMATCH in row["Error"]
        ),
        rows=[row for row in rows if row is not total],
        errors=errors,
        events=events,
    )


def attribute(
    windows: list[Window], events: list[dict[str, Any]], run_end: float
) -> tuple[int, int]:
    """Count each failure in every window it overlaps; return (failures, mismatches) outside."""
    outside = [0, 0]
    for event in events:
        inside = False
        for window in windows:
            end = window.end if window.end is not None else run_end
            if event["start"] <= end and event["time"] >= window.start:
                inside = True
                window.failures += 1
                window.mismatches += event["kind"] == "mismatch"
        if not inside:
            outside[0] += 1
            outside[1] += event["kind"] == "mismatch"
    return outside[0], outside[1]


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def _ms(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def report(
    results: Results, windows: list[Window] | None, started: float, run_end: float
) -> list[str]:
    """The summary lines; the last one is the machine-readable result line."""
    lines = ["", f"{'request':<34} {'count':>7} {'fails':>6} {'p50':>6} {'p95':>6} {'p99':>6}"]
    for row in sorted(results.rows, key=lambda r: -_number(r["Request Count"])):
        name = f"{row['Type']} {row['Name']}"[:34]
        lines.append(
            f"{name:<34} {row['Request Count']:>7} {row['Failure Count']:>6} "
            f"{_ms(_number(row['50%'])):>6} {_ms(_number(row['95%'])):>6} "
            f"{_ms(_number(row['99%'])):>6}"
        )
    lines += [
        "",
        f"requests: {results.requests} in total, {results.rps:.1f}/s; response times (ms): "
        f"p50 {_ms(results.p50)}, p95 {_ms(results.p95)}, p99 {_ms(results.p99)}",
        f"failures: {results.failures} (session mismatches among them: {results.mismatches})",
    ]
    for error in sorted(results.errors, key=lambda e: -_number(e["Occurrences"]))[:10]:
        lines.append(f"  {error['Occurrences']:>5} x {error['Method']} {error['Name']}: "
                     f"{error['Error'][:160]}")  # fmt: skip
    if len(results.events) != results.failures:
        lines.append(
            f"warning: the failure log has {len(results.events)} entries, locust counted "
            f"{results.failures} failures"
        )
    if windows is not None:
        outside, outside_mismatches = attribute(windows, results.events, run_end)
        lines.append("rolling restart windows (seconds since the load started):")
        if not windows:
            lines.append("  none: the run ended before the first signal")
        for window in windows:
            end = f"{window.end - started:.1f}" if window.end is not None else "?"
            what = window.detail if window.error is None else f"NOT SETTLED: {window.error}"
            lines.append(
                f"  {window.action:<4} {window.start - started:5.1f} .. {end:>5}  {what}: "
                f"failures {window.failures}, mismatches {window.mismatches}"
            )
        lines.append(f"  outside the windows: failures {outside}, mismatches {outside_mismatches}")
    lines.append(
        f"requests={results.requests} rps={results.rps:.1f} p50_ms={_ms(results.p50)} "
        f"p99_ms={_ms(results.p99)} failures={results.failures} "
        f"session_mismatches={results.mismatches}"
    )
    return lines


# --- main --------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    # Once: a second Ctrl-C must not cut the clean-up short (it is bounded in time).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("locust") is None:
        raise SetupError(f"locust is not installed: {INSTALL}")
    out = Path(args.out or tempfile.mkdtemp(prefix="morello-loadtests-out-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stale_files = (
        "master.log", "app-error.log", "locust.log", "failures.jsonl", "report.html", "summary.txt"
    )
    for stale in stale_files + tuple(f"locust_{name}.csv" for name in CSV_FILES):
        (out / stale).unlink(missing_ok=True)
    print(
        f"load test: store={args.store} workers={args.workers} users={args.users} "
        f"spawn_rate={args.spawn_rate:g} duration={args.duration}s"
        f"{' rolling-restart' if args.rolling_restart else ''}; output in {out}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        rundir = Path(tempfile.mkdtemp(prefix="morello-loadtests-"))
        stack.callback(shutil.rmtree, rundir, ignore_errors=True)
        sessions = stack.enter_context(session_store(args.store, rundir, out))
        if args.locking:
            sessions["locking"] = args.locking
        config = rundir / "app.conf"
        write_config(config, sessions, out)
        shutil.copyfile(config, out / "app.conf")
        master = Master(args, rundir, out, config)
        stack.callback(master.stop)
        master.start()
        print(f"serving on {master.url} with {args.workers} workers; locust running...",
              flush=True)  # fmt: skip
        plan = None
        if args.rolling_restart:
            ramp = args.users / args.spawn_rate
            first = max(ramp + 1.0, args.duration * 0.2)
            plan = RestartPlan(
                master,
                first=first,
                gap=max(1.0, args.duration * 0.1),
                last_start=args.duration - max(5.0, args.duration * 0.15),
            )
        started = time.time()
        run_locust(args, master.url, out, plan)
        run_end = time.time()
        results = read_results(out)
    lines = report(results, plan.windows if plan else None, started, run_end)
    summary = "\n".join(lines)
    print(summary, flush=True)
    # Kept beside locust's own files, so a run can be read again after the terminal is gone.
    (out / "summary.txt").write_text(summary.lstrip("\n") + "\n")
    unsettled = plan is not None and (not plan.windows or any(w.end is None for w in plan.windows))
    if results.requests == 0 or unsettled:
        return 1
    return 0 if results.failures == 0 and results.mismatches == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run(args)
    except SetupError as exc:
        print(f"load test failed: {exc}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as exc:
        print(f"load test interrupted ({exc}); everything it started is stopped",
              file=sys.stderr, flush=True)  # fmt: skip
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
