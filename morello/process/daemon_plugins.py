"""Plugins that change the identity of the process: PID file, daemon, user."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from .bus import Bus, SimplePlugin, states

try:  # POSIX only
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows
    grp = pwd = None  # type: ignore[assignment]

__all__ = ["Daemonizer", "DropPrivileges", "PIDFile", "switch_user", "write_pid_file"]


class PIDFile(SimplePlugin):
    """Write the process id to ``pidfile`` on start and remove the file on exit."""

    def __init__(self, bus: Bus, pidfile: str) -> None:
        super().__init__(bus)
        self.pidfile = pidfile
        self.finalized = False
        self._written_by: int | None = None

    def start(self) -> None:
        """Write the pid file (once)."""
        pid = os.getpid()
        if self.finalized:
            self.bus.log(f"PID {pid!r} already written to {self.pidfile!r}.")
            return
        write_pid_file(self.pidfile)
        self._written_by = pid
        self.bus.log(f"PID {pid!r} written to {self.pidfile!r}.")
        self.finalized = True

    # After the Daemonizer (65) so the daemon's pid is the one written.
    start.priority = 70  # type: ignore[attr-defined]

    def exit(self) -> None:
        """Remove the pid file, unless a forked child is exiting."""
        if self._written_by != os.getpid():
            return  # the file belongs to another process (our parent)
        try:
            os.remove(self.pidfile)
        except OSError:
            return
        self.bus.log(f"PID file removed: {self.pidfile!r}.")


class Daemonizer(SimplePlugin):
    """Detach the process from its terminal with the classic double fork.

    Subscribe it before starting the bus: it runs as an early ``start``
    listener (priority 65), before servers and threads exist. The process
    that called ``bus.start()`` exits with status 0 as soon as the first
    fork succeeds, so its exit status says nothing about later start-up.
    """

    def __init__(
        self,
        bus: Bus,
        stdin: str = "/dev/null",
        stdout: str = "/dev/null",
        stderr: str = "/dev/null",
    ) -> None:
        super().__init__(bus)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.finalized = False

    def start(self) -> None:
        """Daemonize, once."""
        if self.finalized:
            self.bus.log("Already daemonized.")
            return
        if self.bus.state is states.STARTED:
            raise RuntimeError(
                "Daemonizer must run while the bus is starting; forking a started bus "
                "would leave its server and worker threads behind in the parent."
            )
        # Only the forking thread survives fork(); the others vanish, maybe holding locks.
        if threading.active_count() != 1:
            self.bus.log(
                f"There are {threading.active_count()!r} active threads "
                f"{threading.enumerate()!r}. Daemonizing now may cause strange failures.",
                level=30,
            )
        self.daemonize(self.stdin, self.stdout, self.stderr, self.bus.log)
        self.finalized = True

    start.priority = 65  # type: ignore[attr-defined]

    @staticmethod
    def daemonize(
        stdin: str = "/dev/null",
        stdout: str = "/dev/null",
        stderr: str = "/dev/null",
        logger: Callable[[str], Any] = lambda msg: None,
    ) -> None:
        """Double-fork into a session-less background process and redirect std streams.

        Only the final grandchild returns; both parents ``os._exit(0)``.
        """
        sys.stdout.flush()
        sys.stderr.flush()
        for attempt, message in enumerate(("Forking once.", "Forking twice."), start=1):
            try:
                pid = os.fork()
            except OSError as exc:
                sys.exit(f"{sys.argv[0]}: fork #{attempt} failed: ({exc.errno}) {exc.strerror}")
            if pid:
                logger(message)
                os._exit(0)
            if attempt == 1:
                # New session: no controlling terminal. The second fork makes
                # sure we are not a session leader that could acquire one.
                os.setsid()
        os.umask(0)
        for path, target, flags in (
            (stdin, 0, os.O_RDONLY),
            (stdout, 1, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
            (stderr, 2, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
        ):
            fd = os.open(path, flags, 0o644)
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        logger(f"Daemonized to PID: {os.getpid()}")


class DropPrivileges(SimplePlugin):
    """Switch to another user, group and/or umask once the bus has started.

    ``uid``/``gid`` are user/group names or numbers (POSIX only). This runs
    after the servers (priority 77), so they can bind privileged ports first.
    """

    def __init__(
        self,
        bus: Bus,
        umask: int | None = None,
        uid: int | str | None = None,
        gid: int | str | None = None,
    ) -> None:
        super().__init__(bus)
        self.finalized = False
        self.uid = uid
        self.gid = gid
        #: The file mode creation mask to set, e.g. ``0o022``.
        self.umask = umask

    @property
    def uid(self) -> int | None:
        """The numeric user id to run as (set it to a name or number)."""
        return self._uid

    @uid.setter
    def uid(self, value: int | str | None) -> None:
        if value is not None and pwd is None:
            self.bus.log("pwd module not available; ignoring uid.", level=30)
            value = None
        elif isinstance(value, str):
            value = pwd.getpwnam(value).pw_uid
        self._uid = value

    @property
    def gid(self) -> int | None:
        """The numeric group id to run as (set it to a name or number)."""
        return self._gid

    @gid.setter
    def gid(self, value: int | str | None) -> None:
        if value is not None and grp is None:
            self.bus.log("grp module not available; ignoring gid.", level=30)
            value = None
        elif isinstance(value, str):
            value = grp.getgrnam(value).gr_gid
        self._gid = value

    def _current_ids(self) -> tuple[str | None, str | None]:
        user = pwd.getpwuid(os.getuid()).pw_name if pwd else None
        group = grp.getgrgid(os.getgid()).gr_name if grp else None
        return user, group

    def start(self) -> None:
        """Drop to the configured uid/gid and set the umask (once per process)."""
        if self.finalized:
            if self.uid is not None or self.gid is not None:
                self.bus.log("Already running as uid: {!r} gid: {!r}".format(*self._current_ids()))
            if self.umask is not None:
                self.bus.log(f"umask already set to: {self.umask:03o}")
            return

        if self.uid is None and self.gid is None:
            if pwd or grp:
                self.bus.log("uid/gid not set", level=30)
        else:
            self.bus.log("Started as uid: {!r} gid: {!r}".format(*self._current_ids()))
            switch_user(self.uid, self.gid)
            self.bus.log("Running as uid: {!r} gid: {!r}".format(*self._current_ids()))

        if self.umask is None:
            self.bus.log("umask not set", level=30)
        else:
            old = os.umask(self.umask)
            self.bus.log(f"umask old: {old:03o}, new: {self.umask:03o}")
        self.finalized = True

    start.priority = 77  # type: ignore[attr-defined]


def switch_user(user: int | str | None, group: int | str | None) -> None:
    """Run as ``user`` and/or ``group`` (names or numbers) from now on (POSIX only)."""
    uid = pwd.getpwnam(user).pw_uid if isinstance(user, str) else user
    gid = grp.getgrnam(group).gr_gid if isinstance(group, str) else group
    if os.geteuid() == 0:
        # Root's supplementary groups (root, wheel...) must not survive the switch.
        os.setgroups([])
    # Group first: after setuid we would no longer be allowed to change it.
    if gid is not None:
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def write_pid_file(path: str) -> None:
    """Write this process's pid to ``path`` atomically (readers never see half a file)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{os.getpid()}\n")
    os.replace(temporary, path)
