"""The master's main loop: one state machine that keeps the right workers running.

Signal handlers only queue the signal; the loop handles each one in a plain
method (``on_hup``, ``on_term``...). Everything else is decided in
:meth:`Arbiter.supervise`, which compares what runs with what should run:

* ``target`` workers of the current ``generation`` should be active
  (booting or ready). A worker is *stale* when it belongs to an older
  generation (a rollout is under way) or asked to be recycled
  (``max_requests``, ``request_timeout``, ``max_rss``).
* Missing workers are started; while stale ones are still serving, at most
  ``max_surge`` extra workers run at once.
* A stale worker is retired (SIGTERM, it drains) only when the ready
  workers without it still reach ``target``: replace first, then retire.
* A worker that exits before it was ready (its warm-up requests included) is
  a boot failure: the next start waits (exponential backoff); during a
  rollout it aborts the rollout and the old workers stay; after
  ``max_boot_failures`` in a row the master stops starting workers, keeps the
  healthy ones, and says why.
* With ``canary_seconds``, a rollout starts one new worker and retires nobody
  until that canary passed (:mod:`.canary`); if it fails, it is retired and
  the rollout is rolled back.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from morello.log_files import reopen_log_files

from . import systemd
from .canary import Canary
from .channel import ChannelError
from .cli import REEXEC_FROM
from .ctl import process_gone
from .metrics import StatsBook
from .reloader import FileWatcher
from .settings import Settings
from .status import Endpoints, EventLog, MasterView
from .workers import (
    RESTART_REASONS,
    Channels,
    State,
    Worker,
    check_scale,
    default_max_workers,
    describe_exit,
    fork_worker,
)

logger = logging.getLogger("morello.master")

HANDLED_SIGNALS = ("SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT", "SIGTTIN", "SIGTTOU", "SIGUSR1",
                   "SIGUSR2", "SIGCHLD")  # fmt: skip
# How often RSS is sampled, and how long a fast stop or a SIGABRT'd worker gets.
RSS_INTERVAL = 2.0
FAST_STOP_GRACE = 2.0
ABORT_GRACE = 2.0
# Upper bound of one loop iteration's wait, so deadlines are checked often enough.
TICK = 0.2
#: Workers forked in one pass of the loop at most: scaling up by hundreds must
#: not keep signals and the control endpoint waiting until every fork is done.
SPAWNS_PER_PASS = 4


class Arbiter:
    """Runs and supervises the workers until told to stop; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        sockets: list[Any],
        spawn_worker: Callable[[Worker, Settings, int], None],
        control: Any = None,
        on_exit: Callable[[], None] | None = None,
        probe: Any = None,
    ) -> None:
        """``spawn_worker(worker, settings, max_requests)`` runs in the forked child and
        never returns; ``control`` is an optional ControlServer, ``probe`` an
        optional ProbeServer; ``on_exit()`` runs last (the pid file)."""
        self.settings = settings
        self.sockets = sockets
        self.spawn_worker = spawn_worker
        #: The HTTP endpoints served from the loop (control endpoint, probe port).
        self.endpoints = Endpoints(MasterView(self), [control, probe])
        self.on_exit = on_exit
        self.target = settings.workers
        self.max_workers = settings.max_workers or default_max_workers(settings.workers)
        #: Set when the current generation's workers say the app cannot share its
        #: state with other worker processes (RAM sessions): where it keeps it.
        self.single_process: str | None = None
        self.generation = 1
        self.workers: dict[int, Worker] = {}
        self.stats = StatsBook(max_handlers=settings.metrics_max_handlers)
        self.signals: collections.deque[int] = collections.deque(maxlen=64)
        self.selector = selectors.DefaultSelector()
        self.channels = Channels(self.selector, self.handle_message, self._garbled)
        self.started = time.monotonic()
        self.stopping: str | None = None  # "graceful" or "fast"
        self.boot_failures = 0
        self.spawn_not_before = 0.0
        self.halted: str | None = None
        #: Workers that ended while the master ran, by reason (see RESTART_REASONS).
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)
        self.announced_ready = False
        self.rollout_from: int | None = None  # generation being replaced
        self.canary: Canary | None = None
        #: How the last rolling restart ended (``state``: complete, aborted..., rolled back...).
        self.last_rollout: dict[str, Any] | None = None
        self.reexec_pid: int | None = None
        self.reexec_command: Callable[[], None] | None = None
        self._next_id = 1
        self._next_rss_check = 0.0
        self._sockets_closed = False
        self.watcher = None
        if settings.reload:
            self.watcher = FileWatcher(os.getcwd(), [settings.config or ""])
        self._wake_r, self._wake_w = socket.socketpair()
        #: What happened lately (rollouts, recycles, crashes, scaling), for the status page.
        self.events = EventLog()

    # -- the loop ------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until stopped; return the exit status."""
        self._install_signals()
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        self.endpoints.register(self.selector)
        logger.info(
            "master %d serving %s with %d worker(s)",
            os.getpid(), ", ".join(s.address for s in self.sockets), self.target,
        )
        status = 0
        try:
            while True:
                self.handle_signals()
                self.reap()
                if self.stopping and not self.workers:
                    break
                if self.halted and not self.workers and not self.stopping:
                    logger.error("no worker left and none can start (%s); exiting", self.halted)
                    status = 1
                    break
                self.supervise(time.monotonic())
                self.wait(TICK)
        finally:
            self._shutdown()
        return status

    def wait(self, timeout: float) -> None:
        """Wait for channel messages, control requests or a signal, up to ``timeout``."""
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            return
        for key, mask in events:
            key.data(key.fileobj, mask)
        self.endpoints.expire()

    def _drain_wakeups(self, sock: socket.socket, mask: int) -> None:
        try:
            while sock.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- signals -------------------------------------------------------------

    def _install_signals(self) -> None:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, name), self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        # Only queue: the loop handles it (set_wakeup_fd wakes the select).
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            name = signal.Signals(signum).name
            logger.info("master got %s", name)
            try:
                getattr(self, "on_" + name[3:].lower())()
            except Exception:  # one bad handler must not take the master and its workers down
                logger.exception("handling %s failed; the master carries on", name)

    def on_hup(self) -> None:
        """Rolling restart: new workers replace the current ones, one surge at a time."""
        if self.stopping:
            return
        if self.canary is not None and self.canary.judging:
            # Its release never became current: a rollback now goes back past it.
            judged = self.canary.serving(self.workers)
            if judged is not None:
                self.retire(judged, "a newer HUP came before its verdict", time.monotonic(),
                            "rollout")  # fmt: skip
        else:
            self.rollout_from = self.generation
        self.generation += 1
        self.halted = None
        self.boot_failures = 0
        self.spawn_not_before = 0.0
        self.canary = None
        if self.settings.canary_seconds and self.ready_count():
            self.canary = Canary(self.settings, self.generation, self.note)
        systemd.reloading()
        self.note(logging.INFO, "rolling restart to generation %d", self.generation)

    def on_term(self) -> None:
        self.stop("graceful")

    def on_int(self) -> None:
        self.stop("fast")

    on_quit = on_int

    def on_ttin(self) -> None:
        try:
            self.scale(self.target + 1)
        except ValueError as exc:
            logger.warning("TTIN ignored: %s", exc)

    def on_ttou(self) -> None:
        if self.target <= 1:
            logger.warning("TTOU ignored: already at 1 worker")
            return
        self.scale(self.target - 1)

    def on_usr1(self) -> None:
        """Reopen log files here and in every worker."""
        logger.info("reopened %d log file(s)", reopen_log_files())
        for worker in self.workers.values():
            worker.send_signal(signal.SIGUSR1)

    def on_usr2(self) -> None:
        """Start a new master (a new executable) that inherits the listening sockets."""
        if self.reexec_command is None or self.stopping:
            logger.warning("USR2 ignored: re-exec is not possible now")
            return
        if self.canary is not None and self.canary.judging:  # a new master would not wait for it
            logger.warning("USR2 ignored: a canary is being judged; retry after its verdict")
            return
        if self.reexec_pid is not None:
            logger.warning("USR2 ignored: new master %d is already running", self.reexec_pid)
            return
        pid = os.fork()
        if pid == 0:
            self._close_in_child()
            self.reexec_command()  # execs; only returns on failure
            os._exit(1)
        self.reexec_pid = pid
        # From now on systemd should follow the new master (and accept its READY=1).
        systemd.mainpid(pid)
        logger.info("started new master %d; send TERM to %d once it serves", pid, os.getpid())

    def scale(self, workers: int) -> None:
        """Run ``workers`` workers from now on; what is refused: :func:`.workers.check_scale`."""
        check_scale(workers, self.max_workers, self.single_process)
        if workers != self.target:
            self.note(logging.INFO, "scaling from %d to %d worker(s)", self.target, workers)
        self.target = workers

    def stop(self, mode: str) -> None:
        """Stop every worker: ``graceful`` lets them drain, ``fast`` does not."""
        if self.stopping == "fast" or self.stopping == mode:
            return
        self.stopping = mode
        systemd.stopping()
        now = time.monotonic()
        grace = self.settings.graceful_timeout + 1 if mode == "graceful" else FAST_STOP_GRACE
        sig = signal.SIGTERM if mode == "graceful" else signal.SIGQUIT
        logger.info("%s shutdown of %d worker(s)", mode, len(self.workers))
        for worker in self.workers.values():
            worker.state = State.RETIRING
            worker.kill_at = min(worker.kill_at or now + grace, now + grace)
            worker.send_signal(sig)
        # Nobody will accept new connections any more: close our copies so that,
        # once the draining workers close theirs, clients are refused at once (a
        # balancer then tries another host) instead of waiting in the backlog.
        self.close_sockets()

    # -- children ------------------------------------------------------------

    def spawn(self) -> Worker:
        """Fork one worker of the current generation."""
        max_requests = self.settings.max_requests
        if max_requests and self.settings.max_requests_jitter:
            # Jitter so workers started together are not all recycled together.
            max_requests += random.randint(0, self.settings.max_requests_jitter)
        worker_id, self._next_id = self._next_id, self._next_id + 1

        def run(worker: Worker) -> None:
            self._close_in_child()
            self.spawn_worker(worker, self.settings, max_requests)

        worker = fork_worker(worker_id, self.generation, run)
        self.workers[worker.pid] = worker
        self.channels.watch(worker)
        logger.info("started worker %d (pid %d, generation %d)", worker_id, worker.pid,
                    self.generation)  # fmt: skip
        return worker

    def _close_in_child(self) -> None:
        """Close what only the master may hold; a sibling's channel would hide master EOF."""
        signal.set_wakeup_fd(-1)
        for worker in self.workers.values():
            worker.channel.close()
        self.endpoints.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def reap(self) -> None:
        """Collect exited children and account for each worker that ended."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid == self.reexec_pid:
                logger.error("new master %d exited with %s", pid, describe_exit(code))
                self.reexec_pid = None
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self.worker_exited(worker, code)

    def worker_exited(self, worker: Worker, code: int) -> None:
        # reap() may come before the loop read the worker's last messages: its
        # final counters must reach the totals before they are closed.
        self.channels.drain(worker)
        self.stats.retire(worker.id)
        how = describe_exit(code)
        if not self.stopping:
            self.restarts[worker.retired_for or "crash"] += 1
        if worker.ready_at is None and not self.stopping and worker.retired_for is None:
            self.boot_failed(worker, f"{worker.exit_error} ({how})" if worker.exit_error else how)
            return
        if worker.state is State.RETIRING:
            self.note(logging.INFO, "worker %d (pid %d) exited (%s)", worker.id, worker.pid, how)
        else:
            self.note(logging.ERROR, "worker %d (pid %d) died unexpectedly: %s",
                      worker.id, worker.pid, how)  # fmt: skip
        crashed = worker.retired_for is None and not self.stopping
        if self.halted and crashed and worker.generation == self.generation:
            # This generation did boot: try a replacement (one at a time, and one
            # more boot failure halts again) rather than lose capacity for good.
            logger.warning("replacing worker %d despite the halt: its generation booted fine",
                           worker.id)  # fmt: skip
            self.halted = None
            self.spawn_not_before = 0.0

    def boot_failed(self, worker: Worker, how: str) -> None:
        self.boot_failures += 1
        self.note(
            logging.ERROR,
            "worker %d (pid %d) failed to boot: %s (%d in a row)",
            worker.id, worker.pid, how, self.boot_failures,
        )
        if self.rollout_from is not None and worker.generation == self.generation:
            self.end_rollout(f"aborted: worker {worker.id} failed to boot: {how}", time.monotonic())
        if self.halted:
            return
        if self.boot_failures >= self.settings.max_boot_failures:
            self.halted = (
                f"{self.boot_failures} workers in a row failed to boot; "
                "no more workers will be started until HUP"
            )
            self.note(logging.ERROR, "%s; %d healthy worker(s) keep serving",
                      self.halted, self.ready_count())  # fmt: skip
            return
        delay = min(
            self.settings.boot_backoff * 2 ** (self.boot_failures - 1),
            self.settings.boot_backoff_max,
        )
        self.spawn_not_before = time.monotonic() + delay
        logger.info("next worker start in %.1fs", delay)

    # -- messages ------------------------------------------------------------

    def handle_message(self, worker: Worker, message: dict[str, Any]) -> None:
        now = time.monotonic()
        worker.last_heartbeat = now
        kind = message["type"]
        if kind == "ready" and worker.state is State.BOOTING:
            worker.state, worker.ready_at = State.READY, now
            self.boot_failures = 0
            if worker.generation == self.generation:
                where = message.get("single_process")
                self.single_process = str(where)[:200] if where else None
            logger.info("worker %d (pid %d) ready in %.2fs", worker.id, worker.pid,
                        now - worker.started)  # fmt: skip
        elif kind == "heartbeat":
            worker.heartbeat(message, now)
            self.stats.update(worker.id, message)
        elif kind == "recycle" and worker.recycle_reason is None:
            worker.recycle_reason = str(message.get("reason", "requested"))
            self.note(logging.INFO, "worker %d (pid %d) asks to be recycled (%s)",
                        worker.id, worker.pid, worker.recycle_reason)  # fmt: skip
        elif kind == "draining" and worker.state is not State.RETIRING:
            self._mark_retiring(worker, now)
        elif kind == "exiting" and message.get("error"):
            worker.exit_error = str(message["error"])[:500]

    def _garbled(self, worker: Worker, error: ChannelError) -> None:
        logger.error("worker %d (pid %d) sent %s; killing it", worker.id, worker.pid, error)
        self._kill(worker)

    # -- supervision ---------------------------------------------------------

    def supervise(self, now: float) -> None:
        """Enforce deadlines, then start or retire workers to match the plan."""
        for worker in list(self.workers.values()):
            self.check_deadlines(worker, now)
        if self.stopping:
            return
        if now >= self._next_rss_check:
            self._next_rss_check = now + RSS_INTERVAL
            self.check_memory()
        self.endpoints.open_pending(self.selector)
        if self.watcher is not None and self.watcher.changed():
            logger.info("source files changed")
            self.on_hup()
        failure = self.canary.check(self.workers, now) if self.canary else None
        if failure:
            self.end_rollout(f"rolled back: {failure}", now)
        self.balance(now)
        self._announce(now)

    def check_deadlines(self, worker: Worker, now: float) -> None:
        if worker.kill_at is not None and now >= worker.kill_at:
            self.note(logging.ERROR, "worker %d (pid %d) did not exit in time; killing it",
                         worker.id, worker.pid)  # fmt: skip
            worker.kill_at = None
            self._kill(worker)
        elif worker.state is State.BOOTING and now - worker.started > self.settings.boot_timeout:
            self.note(
                logging.ERROR,
                "worker %d (pid %d) not ready after boot_timeout=%ss; killing it",
                worker.id, worker.pid, self.settings.boot_timeout,
            )
            worker.state = State.RETIRING
            self._kill(worker)
        elif (
            worker.state is State.READY
            and not worker.aborted
            and now - worker.last_heartbeat > self.settings.timeout
        ):
            self.note(
                logging.ERROR,
                "worker %d (pid %d) silent for %.1fs (timeout=%ss); aborting it, its "
                "threads' stacks follow on its stderr",
                worker.id, worker.pid, now - worker.last_heartbeat, self.settings.timeout,
            )
            worker.aborted = True
            worker.state = State.RETIRING
            worker.kill_at = now + ABORT_GRACE
            worker.send_signal(signal.SIGABRT)

    def check_memory(self) -> None:
        for worker in self.workers.values():
            if not worker.measure_rss():
                continue
            self.stats.note_rss(worker.id, worker.rss)
            limit = self.settings.max_rss
            if limit and worker.rss > limit and worker.active and worker.recycle_reason is None:
                worker.recycle_reason = "max_rss"
                self.note(logging.INFO, "worker %d (pid %d) uses %d bytes > max_rss=%d; recycling "
                          "(%s)", worker.id, worker.pid, worker.rss, limit,
                          self.stats.memory_report(worker.id, worker.rss))  # fmt: skip

    def balance(self, now: float) -> None:
        """Start missing workers and retire surplus or stale ones (replace first)."""
        active = [w for w in self.workers.values() if w.active]
        stale = [w for w in active if self._is_stale(w)]
        fresh = [w for w in active if not self._is_stale(w)]
        # Scaled down: retire the extra fresh workers, booting ones first, then the oldest.
        extra = len(fresh) - self.target
        if extra > 0:
            by_preference = sorted(fresh, key=lambda w: (w.state is State.READY, w.started))
            for worker in by_preference[:extra]:
                self.retire(worker, "scaled down", now, "scale")
        # A canary being judged is the only new worker, and the old ones all stay.
        judging = self.canary is not None and self.canary.judging
        missing = (1 if judging else self.target) - len(fresh)
        if missing > 0 and not self.halted and now >= self.spawn_not_before:
            room = missing
            if stale:
                room = min(missing, self.target + self.settings.max_surge - len(active))
            if self.boot_failures:
                # After a boot failure, probe with one worker at a time: no fork storm.
                room = min(room, 1 - sum(1 for w in active if w.state is State.BOOTING))
            for _ in range(min(room, SPAWNS_PER_PASS)):
                self.spawn()
        # While judging, only the old generation's ready workers make room to retire one.
        counted = [w for w in stale if w.generation < self.generation] if judging else active
        ready = sum(1 for w in counted if w.state is State.READY)
        for worker in sorted(stale, key=lambda w: w.started):
            cause = "rollout" if worker.recycle_reason is None else "recycle"
            if worker.state is State.BOOTING:
                self.retire(worker, "outdated before it was ready", now, cause)
            elif ready - 1 >= self.target:
                ready -= 1
                self.retire(worker, worker.recycle_reason or "rolling restart", now, cause)

    def _is_stale(self, worker: Worker) -> bool:
        return worker.generation < self.generation or worker.recycle_reason is not None

    def retire(self, worker: Worker, why: str, now: float, cause: str) -> None:
        """Ask ``worker`` to drain and exit; it is killed if it is not gone in time.

        ``cause`` (``scale``, ``rollout`` or ``recycle``) is counted when it exits.
        """
        self.note(logging.INFO, "retiring worker %d (pid %d): %s", worker.id, worker.pid, why)
        worker.retired_for = cause
        self._mark_retiring(worker, now)
        worker.send_signal(signal.SIGTERM)

    def _mark_retiring(self, worker: Worker, now: float) -> None:
        worker.state = State.RETIRING
        worker.kill_at = now + self.settings.graceful_timeout + 1

    def _announce(self, now: float) -> None:
        """Tell systemd (and the log) when start-up or a rollout has completed."""
        current_ready = sum(
            1 for w in self.workers.values()
            if w.state is State.READY and w.generation >= self.generation
        )  # fmt: skip
        if current_ready < self.target:
            return
        if not self.announced_ready:
            self.announced_ready = True
            systemd.ready()
            self.note(logging.INFO, "all %d worker(s) ready", self.target)
        elif self.rollout_from is not None and not any(
            w.generation <= self.rollout_from for w in self.workers.values()
        ):
            self.end_rollout("complete", now)

    def end_rollout(self, outcome: str, now: float) -> None:
        """The rolling restart is over: ``complete``, or not (then the generation it
        replaces is current again, its workers keep serving, and a canary is retired)."""
        self.last_rollout = {"from_generation": self.rollout_from, "to_generation": self.generation,
                             "state": outcome, "time": round(time.time(), 3)}  # fmt: skip
        if outcome == "complete":
            self.note(logging.INFO, "rolling restart to generation %d complete", self.generation)
        else:
            self.note(logging.ERROR, "rolling restart to generation %d %s; the workers of "
                      "generation %d keep serving", self.generation, outcome,
                      self.rollout_from)  # fmt: skip
            canary = self.canary.serving(self.workers) if self.canary else None
            if canary is not None:
                self.retire(canary, "the canary failed", now, "rollout")
            self.generation = self.rollout_from
        self.rollout_from = self.canary = None
        systemd.ready(f"generation {self.generation}; last rollout {outcome}")

    # -- helpers -------------------------------------------------------------

    def note(self, level: int, message: str, *args: Any) -> None:
        """Log an event worth showing on the status page, and keep it there."""
        logger.log(level, message, *args)
        self.events.add(message % args)

    def ready_count(self) -> int:
        """Workers ready to serve."""
        return sum(1 for w in self.workers.values() if w.state is State.READY)

    def _kill(self, worker: Worker) -> None:
        worker.state = State.RETIRING
        worker.send_signal(signal.SIGKILL)

    def close_sockets(self) -> None:
        """Close the listening sockets (once); UNIX socket files go unless a new master has them."""
        if self._sockets_closed:
            return
        self._sockets_closed = True
        handed_over = self.reexec_pid is not None
        old_master = os.environ.get(REEXEC_FROM)
        if old_master and not handed_over and process_gone(int(old_master)):
            # We outlived the master that handed us its UNIX sockets: their files are ours.
            for sock in self.sockets:
                sock.owns_path = sock.owns_path or sock.is_unix
        for sock in self.sockets:
            sock.close(unlink=not handed_over)

    def _shutdown(self) -> None:
        for worker in list(self.workers.values()):
            self._kill(worker)
        deadline = time.monotonic() + FAST_STOP_GRACE
        while self.workers and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        signal.set_wakeup_fd(-1)
        self.endpoints.close()
        self.close_sockets()
        if self.on_exit is not None:
            self.on_exit()
        logger.info(
            "master %d exiting; its workers served %d request(s)",
            os.getpid(), self.stats.totals()["requests"],
        )

