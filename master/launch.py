"""Everything ``morello serve`` does around the arbiter, in order.

Daemonize, take the listening sockets (inherited from an old master,
handed over by systemd, or bound here), import the app when preloading,
drop privileges, write the pid file, set the title, open the control
endpoint, then run the :class:`~morello.master.arbiter.Arbiter`. On the
way out, release the sockets and the pid file unless a new master took them.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import Any

from morello.worker.app_loading import check_mounted
from setproctitle import setproctitle

from morello.log_files import stderr_to_file
from morello.process.daemon_plugins import write_pid_file

from . import server_logs
from . import sockets as listen
from .arbiter import Arbiter
from .cli import REEXEC_FROM
from .preflight import Checked
from .settings import Settings
from .workers import Worker

logger = logging.getLogger("morello.master")

#: Exit status when the settings cannot work: an address in use, an unknown user...
EXIT_CANNOT_START = 2
#: Exit status when the app cannot be imported in the master (``preload``).
EXIT_PRELOAD_FAILED = 3


class Launch:
    """One run of the master with ``settings``.

    ``argv`` (the ``morello serve`` arguments) makes re-exec (USR2) possible;
    ``app`` is an application already loaded in this process (``quickstart``).
    """

    def __init__(self, settings: Settings, argv: list[str] | None, app: Any = None) -> None:
        self.settings = settings
        self.argv = argv
        self.sockets: list[Any] = []
        self.app: Any = app
        self.pidfile_written = False
        self.target_workers = lambda: settings.workers
        #: What :func:`~morello.master.preflight.preflight` learnt, once it ran
        #: (it also showed the start-up warnings).
        self.checked: Checked | None = None
        #: Which config keys gave the bind addresses, when no flag or master.bind did.
        self.bind_origin: str | None = None

    def run(self) -> int:
        settings = self.settings
        try:
            server_logs.configure(settings)
        except OSError as exc:
            print(f"morello: error: cannot open log file: {exc}", file=sys.stderr)
            return EXIT_CANNOT_START
        if settings.daemon and REEXEC_FROM not in os.environ:
            from morello.process.daemon_plugins import Daemonizer

            Daemonizer.daemonize()
            # Tracebacks and other raw stderr output go to the error log too.
            stderr_to_file(settings.error_logfile)
        try:
            self.sockets = self.take_sockets()
        except (OSError, ValueError) as exc:
            logger.error("cannot listen: %s", exc)
            return EXIT_CANNOT_START
        if self.bind_origin:
            logger.info("binding %s from %s", ", ".join(settings.bind), self.bind_origin)
        if settings.preload:
            try:
                if self.app is None:
                    self.app = self.load_app()
                check_mounted(settings.workers)
            except Exception as exc:  # the user's import: anything may fail
                logger.error("cannot preload %s: %s: %s", settings.app, type(exc).__name__, exc)
                self.close_sockets()
                return EXIT_PRELOAD_FAILED
        try:
            control, probe = self.open_control(), self.open_probe()
            self.drop_privileges()
        except (OSError, ValueError, KeyError) as exc:
            logger.error("cannot start: %s", exc)
            self.close_sockets()
            return EXIT_CANNOT_START
        self.write_pidfile()
        setproctitle(settings.master_title)
        arbiter = Arbiter(settings, self.sockets, self.spawn_worker, control, self.remove_pidfile,
                          probe=probe)  # fmt: skip
        if self.checked is not None:
            arbiter.single_process = self.checked.single_process
        self.target_workers = lambda: arbiter.target
        if control is None and settings.control_bind:
            arbiter.endpoints.pending.append(self.open_control)
        if probe is None and settings.health_bind:
            arbiter.endpoints.pending.append(self.open_probe)
        if self.argv is not None:
            arbiter.reexec_command = self.reexec
        return arbiter.run()

    # -- steps ---------------------------------------------------------------

    def take_sockets(self) -> list[Any]:
        """Sockets from systemd, else from the master that re-executed us plus new binds."""
        specs = [listen.parse_bind(text) for text in self.settings.bind]
        return listen.open_listeners(specs, self.settings.backlog, self.settings.unix_mode)

    def load_app(self) -> Any:
        from morello.worker import load_app

        return load_app(self.settings.app, self.settings.config)

    def open_control(self) -> Any:
        """The control endpoint, or None; after USR2 the old master may still hold it."""
        from .control import ControlServer

        return self._open_endpoint(ControlServer, self.settings.control_bind)

    def open_probe(self) -> Any:
        """The probe port (``health_bind``), or None, like :meth:`open_control`."""
        from .control import ProbeServer

        # Read-only, so any address will do: a kubelet probes the pod's IP.
        return self._open_endpoint(ProbeServer, self.settings.health_bind, allow_remote=True)

    def _open_endpoint(self, kind: Any, address: str | None, allow_remote: bool = False) -> Any:
        if not address:
            return None
        from .control import control_socket

        try:
            return kind(control_socket(address, allow_remote=allow_remote), None)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or REEXEC_FROM not in os.environ:
                raise
            logger.info("%s %s still held by the old master; retrying", kind.name, address)
            return None

    def drop_privileges(self) -> None:
        if self.settings.user is None and self.settings.group is None:
            return
        from morello.process.daemon_plugins import switch_user

        switch_user(self.settings.user, self.settings.group)

    def write_pidfile(self) -> None:
        if not self.settings.pidfile:
            return
        write_pid_file(self.settings.pidfile)
        self.pidfile_written = True

    def close_sockets(self) -> None:
        """Close the sockets when start-up fails (no worker or new master has them yet)."""
        for sock in self.sockets:
            sock.close(unlink=True)

    def remove_pidfile(self) -> None:
        """Remove the pid file, unless a new master (USR2) rewrote it with its own pid."""
        if self.pidfile_written and _pid_in(self.settings.pidfile) == os.getpid():
            os.unlink(self.settings.pidfile)

    # -- in children -----------------------------------------------------------

    def spawn_worker(self, worker: Worker, settings: Settings, max_requests: int) -> None:
        """Run a worker in this (forked) process; never returns."""
        from morello.worker import WorkerOptions, run

        run(
            WorkerOptions(
                number=worker.id,
                app=self.app if self.app is not None else settings.app,
                sockets=[s.socket for s in self.sockets],
                channel=worker.channel,
                threads=settings.threads,
                min_threads=settings.min_threads,
                workers=self.target_workers(),
                config_file=settings.config,
                heartbeat_interval=settings.heartbeat_interval,
                metrics_max_handlers=settings.metrics_max_handlers,
                tracemalloc=settings.tracemalloc,
                request_timeout=settings.request_timeout,
                max_requests=max_requests,
                graceful_timeout=settings.graceful_timeout,
                warmup=tuple(settings.warmup),
                app_name=settings.title_name,
                master_pid=os.getppid(),
                # Pre-flight ran the current code, not what a HUP brings later.
                startup_checked=self.checked is not None and worker.generation == 1,
            )
        )

    def reexec(self) -> None:
        """Replace this (forked) process with a new master that inherits the sockets."""
        env = dict(os.environ)
        env.update(listen.export_for_exec(self.sockets))
        env[REEXEC_FROM] = str(os.getppid())
        args = [sys.executable, "-m", "morello.master", "serve", *(self.argv or ())]
        os.execve(sys.executable, args, env)


def _pid_in(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None
