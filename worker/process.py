"""The life of a worker process, from fork to ``os._exit``.

::

    forked by the master
      -> reset inherited signals, install ours, watch the master
      -> "booting"   load the application, start the engine, run the warm-up
                     requests, start the servers
      -> "ready"     serve; heartbeats; maybe "recycle"
      -> "draining"  (SIGTERM, the master is gone, or the engine stopped
                     under us) stop accepting, finish what is in flight
      -> "exiting"   os._exit()

Signal handlers only queue work: the main thread (or, for the immediate
exits, a dedicated thread) does it. A handler that wrote to the channel
itself could interrupt the main thread in the middle of a send and
deadlock on the channel's lock. The one exception is a stop that comes
while booting, before the servers accept: the handler raises
:class:`BootCancelled` in the main thread, so the boot ends where it is.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from morello.master import server_logs
from morello.master.channel import WorkerChannel
from morello.sessions.prefork import ram_session_users

import morello
from morello.log_files import reopen_log_files

from . import signal_handling
from .allocations import AllocationTrace
from .app_loading import BootError, prepare_app
from .options import (
    EXIT_ABORTED,
    EXIT_BOOT_FAILURE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_ORPHANED,
    WorkerOptions,
)
from .servers import build_servers, prepare_engine, start_servers, thread_count
from .stats import RequestStats, StatsMiddleware
from .warmup import warm_up
from .watchdog import Watchdog

#: How often the main thread wakes up to publish the engine's ``main`` channel
#: (as ``engine.block()`` would) while serving.
MAIN_INTERVAL = 0.1
#: How often a draining worker checks whether its last connection is gone.
DRAIN_POLL = 0.02
#: Seconds the engine's stop and exit listeners get once draining is over.
ENGINE_EXIT_TIMEOUT = 5.0
#: Seconds to wait for a heartbeat being sent before the last message.
WATCHDOG_STOP_TIMEOUT = 0.5
#: Drain reason when the engine stopped without the master asking.
ENGINE_STOPPED = "engine_stopped"


def _start(what: str, start: Callable[[], object]) -> None:
    """Call ``start``; what it raises becomes a :class:`BootError` naming ``what``."""
    try:
        start()
    except Exception as exc:
        # The bus gathers its listeners' errors into one ChannelFailures.
        get_instances = getattr(exc, "get_instances", None)
        errors = (get_instances() if get_instances else None) or [exc]
        reasons = "; ".join(f"{type(error).__name__}: {error}" for error in errors)
        raise BootError(f"{what} did not start: {reasons}", show_traceback=True) from errors[0]


def run(options: WorkerOptions) -> NoReturn:
    """Be a worker until told to stop; never returns (ends with ``os._exit``)."""
    try:
        worker = Worker(options)
        try:
            code = worker.run()
        except BaseException:
            code = worker.crashed()
        worker.exit(code)
    finally:
        # Whatever happened, never return into the master's code in this child.
        os._exit(EXIT_ERROR)


class BootCancelled(BaseException):
    """Raised in the main thread by a stop that comes before the worker accepts.

    It ends the boot wherever the boot is, so nothing after that point runs.
    Exiting from another thread instead would race the main thread, which
    could meanwhile start the servers and accept connections, then drop them
    with the process. (Not an ``Exception``: the application code being
    imported or started must not catch it.)
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Worker:
    """One worker process's state; :meth:`run` is its main thread."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.channel = WorkerChannel(options.channel)
        self.stats = RequestStats(max_handlers=options.metrics_max_handlers)
        self.servers: list[Any] = []
        self.watchdog: Watchdog | None = None
        #: Work for the main thread: ("drain", reason) or ("reopen", signal name).
        self.requests: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        #: Immediate exits (SIGINT, SIGQUIT, SIGABRT), (reason, exit code), for the exit thread.
        self.exits: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        #: Set once "ready" is sent.
        self.ready = threading.Event()
        #: Set once the servers may accept connections: from then on, requests
        #: may be in flight, so stopping means draining.
        self.accepting = threading.Event()
        #: Why another thread asked the main thread to stop the boot.
        self._cancel_reason: str | None = None

    # -- the main thread ---------------------------------------------------

    def run(self) -> int:
        """Boot, serve, drain; return the exit code."""
        try:
            self._take_over_process()
            self.channel.send("booting", number=self.options.number)
            self._boot()
        except BootError as exc:
            return self._boot_failed(exc)
        except BootCancelled as exc:
            self._send_exiting(exc.reason)
            return EXIT_OK
        self.ready.set()
        # The master must not scale an app that keeps its sessions in RAM.
        alone = next(iter(ram_session_users(morello.tree)), None)
        self.channel.send("ready", number=self.options.number, single_process=alone)
        trace = AllocationTrace(self.options.tracemalloc) if self.options.tracemalloc else None
        reason = self._serve()
        if trace is not None:
            trace.log(self._log)
        return self._drain(reason)

    def _take_over_process(self) -> None:
        """Make the forked process a worker: signals, master watch, title."""
        # The master forks with every signal blocked (so is any fork that calls
        # us, from here on): one sent to us meanwhile (SIGTERM from a quick HUP)
        # waits until our own handlers can take it.
        signal_handling.block_all()
        signal_handling.reset_inherited()
        threading.Thread(target=self._exit_thread, name="morello worker exit", daemon=True).start()
        self._install_signal_handlers()
        signal_handling.die_with_parent(signal.SIGTERM)
        # The master may have died between fork() and prctl(): then no signal
        # comes, and our parent is already init (or a subreaper).
        if not signal_handling.parent_is(self.options.master_pid):
            self._say(f"master {self.options.master_pid} is gone before the worker started")
            self.exit(EXIT_ORPHANED, "orphaned")
        watch = threading.Thread(target=self._watch_master, name="morello master watch")
        watch.daemon = True
        watch.start()
        # Only now, so that our helper threads keep every signal blocked: the
        # kernel then always wakes the main thread, which runs Python's handlers.
        # A signal taken by another thread would wait until the main thread's
        # current call (a slow import, say) returned.
        signal_handling.unblock_all()
        try:
            import setproctitle

            setproctitle.setproctitle(self.options.title)
        except ImportError:
            pass

    def _install_signal_handlers(self) -> None:
        signal_handling.install(
            {
                signal.SIGTERM: self._on_sigterm,
                signal.SIGINT: self._on_fast_exit,
                signal.SIGQUIT: self._on_fast_exit,
                signal.SIGUSR1: self._on_sigusr1,
                signal.SIGABRT: self._on_sigabrt,
                # A closing terminal must not kill workers behind the master's
                # back: the master decides what a hangup means.
                signal.SIGHUP: signal.SIG_IGN,
            }
        )

    def _boot(self) -> None:
        """Load the application and start the engine with one server per socket."""
        options = self.options
        morello.checker.quiet = options.startup_checked
        app = prepare_app(options.app, options.config_file, options.workers)
        # The config and the app may have turned the screen on; the master's logs say it all.
        server_logs.take_over_screen()
        self.servers = build_servers(options, StatsMiddleware(app, self.stats), self._log)
        prepare_engine()
        _start("the engine", morello.engine.start)
        # The app's own start listeners ran; the workers already serving keep
        # taking the connections until this one answered its warm-up requests.
        scheme = "https" if morello.server.ssl_context or morello.server.ssl_certificate else "http"
        warm_up(app, options.warmup, options.sockets[0], scheme)
        self.accepting.set()
        _start("the servers", lambda: start_servers(self.servers))
        # Application code may have installed handlers of its own meanwhile.
        self._install_signal_handlers()
        self.watchdog = Watchdog(
            self.channel,
            self.stats,
            threads=lambda: thread_count(self.servers),
            heartbeat_interval=options.heartbeat_interval,
            request_timeout=options.request_timeout,
            max_requests=options.max_requests,
            report=self._report,
        )
        self.watchdog.start()

    def _serve(self) -> str:
        """Wait for the order to drain (handling log reopening meanwhile); return its reason."""
        engine = morello.engine
        while True:
            try:
                what, detail = self.requests.get(timeout=MAIN_INTERVAL)
            except queue.Empty:
                if engine.state is not engine.states.STARTED:
                    # Application code exited the engine, or a server thread
                    # crashed (which exits it): nothing is accepting any more.
                    return ENGINE_STOPPED
                engine.publish("main")
                continue
            if what == "drain":
                return detail
            self._reopen_logs(detail)

    def _drain(self, reason: str) -> int:
        """Stop accepting, let in-flight requests finish, stop the engine; return the exit code."""
        if self.watchdog is not None:
            self.watchdog.draining = True
        for server in self.servers:
            server.httpserver.stop_accepting()
        # Let go of the inherited listening sockets too: once the master and
        # every other worker do the same (a graceful stop), the kernel refuses
        # new connections at once instead of queueing them for nobody.
        for sock in self.options.sockets:
            sock.close()
        self.channel.send("draining", reason=reason)
        self._log(f"Draining ({reason}): {self._open_connections()} connection(s) open")
        deadline = time.monotonic() + self.options.graceful_timeout
        while (left := self._open_connections()) and time.monotonic() < deadline:
            try:
                what, detail = self.requests.get(timeout=DRAIN_POLL)
            except queue.Empty:
                continue
            if what == "reopen":
                self._reopen_logs(detail)
        if left:
            self._log(
                f"graceful_timeout ({self.options.graceful_timeout}s) reached with "
                f"{left} connection(s) still open; closing them",
                logging.WARNING,
            )
        else:
            self._log("Drained: no connection left")
        self._stop_engine()
        self._send_exiting(reason, unfinished=left)
        return EXIT_ERROR if reason == ENGINE_STOPPED else EXIT_OK

    def _open_connections(self) -> int:
        return sum(server.httpserver.open_connections for server in self.servers)

    def _stop_engine(self) -> None:
        """Run the engine's stop and exit listeners, without waiting forever for them."""
        engine = morello.engine
        deadline = time.monotonic() + ENGINE_EXIT_TIMEOUT
        # Application code may be stopping it right now: let that finish first.
        while engine.state is engine.states.STOPPING and time.monotonic() < deadline:
            time.sleep(DRAIN_POLL)
        if engine.state is engine.states.EXITING:
            return
        stopper = threading.Thread(target=morello.engine.exit, name="morello engine exit")
        stopper.daemon = True
        stopper.start()
        stopper.join(ENGINE_EXIT_TIMEOUT)
        if stopper.is_alive():
            self._log("the engine's stop listeners did not finish in time", logging.WARNING)

    # -- signals and the master ----------------------------------------------

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._drain_or_exit(self._cancel_reason or "SIGTERM")

    def _on_fast_exit(self, signum: int, frame: Any) -> None:
        self.exits.put((signal.Signals(signum).name, EXIT_OK))

    def _on_sigusr1(self, signum: int, frame: Any) -> None:
        self.requests.put(("reopen", "SIGUSR1"))

    def _on_sigabrt(self, signum: int, frame: Any) -> None:
        # The master sends SIGABRT to a worker it considers stuck: say where.
        signal_handling.dump_stacks(signum)
        self.exits.put(("SIGABRT", EXIT_ABORTED))

    def _watch_master(self) -> None:
        self.channel.wait_for_master_exit()
        self._drain_or_exit("master_gone")

    def _drain_or_exit(self, reason: str) -> None:
        # Before accepting there is no request to finish: a booting worker just goes.
        # (Drained later, once booted, if it has begun accepting.)
        if self.accepting.is_set():
            self.requests.put(("drain", reason))
        elif threading.current_thread() is threading.main_thread():
            raise BootCancelled(reason)
        else:
            # Only the main thread can stop the boot where it is (see BootCancelled).
            self._cancel_reason = reason
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    def _exit_thread(self) -> None:
        reason, code = self.exits.get()
        self._send_exiting(reason)
        self.exit(code)

    # -- endings --------------------------------------------------------------

    def _boot_failed(self, exc: BootError) -> int:
        if exc.show_traceback and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        self._say(f"cannot boot: {exc}")
        self._send_exiting("boot_failure", error=str(exc))
        return EXIT_BOOT_FAILURE

    def crashed(self) -> int:
        """Report an unexpected error in the main thread; return the exit code."""
        traceback.print_exc(file=sys.stderr)
        if not self.ready.is_set():
            self._say("cannot boot: unexpected error (see the traceback above)")
            self._send_exiting("boot_failure", error="unexpected error")
            return EXIT_BOOT_FAILURE
        self._send_exiting("error")
        return EXIT_ERROR

    def _send_exiting(self, reason: str, **fields: Any) -> None:
        """Send the final counters, then the last message: no heartbeat may follow it."""
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog.stop()
            if watchdog is not threading.current_thread():
                watchdog.join(WATCHDOG_STOP_TIMEOUT)
            # Everything served since the last heartbeat, so /metrics loses nothing.
            watchdog.send_heartbeat()
        self.channel.send("exiting", reason=reason, **fields)

    def exit(self, code: int, reason: str | None = None) -> NoReturn:
        """Flush what Python buffers and end the process now (no atexit, no cleanup)."""
        if reason is not None:
            self._send_exiting(reason)
        signal_handling.exit_now(code)

    # -- logging ----------------------------------------------------------------

    def _say(self, message: str) -> None:
        """One line in the master's error log, else on stderr (where the master collects it)."""
        if server_logs.active():
            logging.getLogger("morello.worker").error(message)
            return
        try:
            prefix = f"morello worker {self.options.number} (pid {os.getpid()})"
            sys.stderr.write(f"{prefix}: {message}\n")
            sys.stderr.flush()
        except Exception:
            pass

    def _log(self, message: str, level: int = logging.INFO) -> None:
        morello.log.error(message, "WORKER", severity=level)

    def _report(self, message: str) -> None:
        """A problem the operator must see: the error log, and stderr if that is elsewhere."""
        self._log(message, logging.ERROR)
        if not (morello.log.screen or server_logs.active()):
            self._say(message)

    def _reopen_logs(self, why: str) -> None:
        count = reopen_log_files()
        self._log(f"{why}: reopened {count} log file(s)")
