"""Standard services that plug into a :class:`~morello.process.bus.Bus`.

Each plugin is an object whose methods are named after bus channels
(``start``, ``stop``, ``exit``, ``graceful``...); ``plugin.subscribe()``
attaches them. The plugins that change the identity of the process
(PID file, daemonizing, dropping privileges) live in
:mod:`morello.process.daemon_plugins` and are re-exported here.
"""

from __future__ import annotations

import os
import re
import signal as signal_module
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from itertools import count
from types import FrameType, ModuleType
from typing import Any

from .bus import Bus, SimplePlugin
from .daemon_plugins import Daemonizer, DropPrivileges, PIDFile

__all__ = [
    "Autoreloader",
    "BackgroundTask",
    "Daemonizer",
    "DropPrivileges",
    "Monitor",
    "PIDFile",
    "SignalHandler",
    "SimplePlugin",
    "ThreadManager",
]

# Relative module paths in sys.modules (typically the startup script) are
# resolved against the directory current at import time, so a later chdir
# by the application does not look like the file vanished.
IMPORT_CWD = os.getcwd()


class SignalHandler:
    """Turn POSIX signals into bus channels named after them.

    :attr:`handlers` maps signal names to the listener subscribed on that
    signal's channel; by default SIGTERM exits, SIGUSR1 reloads gracefully
    and SIGHUP restarts a daemon but exits a terminal-attached process
    (closing a terminal window sends SIGHUP). Signals missing on the
    platform are skipped.
    """

    #: Signal number -> canonical name, e.g. ``{15: 'SIGTERM'}``.
    signals: dict[int, str] = {sig.value: sig.name for sig in signal_module.Signals}

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        #: Signal name -> listener to subscribe on the channel of that name.
        self.handlers: dict[str, Callable[[], Any]] = {
            "SIGTERM": bus.exit,
            "SIGHUP": self.handle_SIGHUP,
            "SIGUSR1": bus.graceful,
        }
        self._previous_handlers: dict[int, Any] = {}
        # A daemon has forked away from the pid that created this plugin.
        self._original_pid = os.getpid()

    def subscribe(self) -> None:
        """Install the handlers; a no-op outside the main thread, where Python forbids it."""
        if threading.current_thread() is not threading.main_thread():
            self.bus.log("Signal handlers can only be installed from the main thread.", level=30)
            return
        for sig, listener in self.handlers.items():
            try:
                self.set_handler(sig, listener)
            except ValueError:
                pass  # not available on this platform

    def unsubscribe(self) -> None:
        """Put back the signal handlers that were active before :meth:`subscribe`."""
        previous, self._previous_handlers = self._previous_handlers, {}
        for signum, handler in previous.items():
            name = self.signals.get(signum, str(signum))
            if handler is None:
                # Installed outside Python; the default is the closest we can restore.
                handler = signal_module.SIG_DFL
            self.bus.log(f"Restoring {name} handler {handler!r}.")
            try:
                signal_module.signal(signum, handler)
            except (ValueError, OSError):
                self.bus.log(
                    f"Unable to restore {name} handler {handler!r}.", level=40, traceback=True
                )

    def set_handler(self, signal: int | str, listener: Callable[[], Any] | None = None) -> None:
        """Route ``signal`` (a name or number) to the bus channel of its name.

        ``listener``, when given, is subscribed to that channel. Raises
        ValueError for signals this platform does not have.
        """
        try:
            sig = (
                signal_module.Signals[signal]
                if isinstance(signal, str)
                else signal_module.Signals(signal)
            )
        except (KeyError, ValueError):
            raise ValueError(f"No such signal: {signal!r}") from None
        # Aliases such as SIGCLD resolve to the canonical name that
        # _handle_signal publishes on.
        signum, name = sig.value, sig.name

        previous = signal_module.signal(signum, self._handle_signal)
        # Subscribing twice must not make our own handler the one to restore.
        if previous != self._handle_signal:
            self._previous_handlers[signum] = previous

        if listener is not None:
            self.bus.log(f"Listening for {name}.")
            self.bus.subscribe(name, listener)

    def _handle_signal(self, signum: int, frame: FrameType | None = None) -> None:
        name = self.signals.get(signum, str(signum))
        self.bus.log(f"Caught signal {name}.")
        self.bus.publish(name)

    def _is_daemonized(self) -> bool:
        # Forked away from the original process *and* detached from any
        # terminal; either one alone also happens under CI runners and shells.
        return self._original_pid != os.getpid() and not _stdin_is_tty()

    def handle_SIGHUP(self) -> None:
        """Restart if daemonized, otherwise exit."""
        if self._is_daemonized():
            self.bus.log("SIGHUP caught while daemonized. Restarting.")
            self.bus.restart()
        else:
            self.bus.log("SIGHUP caught but not daemonized. Exiting.")
            self.bus.exit()


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False  # no stdin at all, or it was closed


class BackgroundTask(threading.Thread):
    """A daemon thread calling ``function`` every ``interval`` seconds until cancelled.

    If ``function`` raises, the error is logged to ``bus`` (or re-raised
    when there is none) and the task stops, rather than flooding the log.
    """

    def __init__(
        self,
        interval: float,
        function: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        bus: Bus | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.function = function
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.bus = bus
        self._cancelled = threading.Event()

    @property
    def running(self) -> bool:
        """Whether the task is started and not cancelled."""
        return self.is_alive() and not self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop repeating; the thread ends right away unless ``function`` is running."""
        self._cancelled.set()

    def run(self) -> None:
        while not self._cancelled.wait(self.interval):
            try:
                self.function(*self.args, **self.kwargs)
            except Exception:
                if self.bus is None:
                    raise
                self.bus.log(
                    f"Error in background task thread function {self.function!r}.",
                    level=40,
                    traceback=True,
                )
                return


class Monitor(SimplePlugin):
    """Run ``callback`` every ``frequency`` seconds in a background thread while started.

    A ``frequency`` of 0 or less disables the monitor.
    """

    def __init__(
        self,
        bus: Bus,
        callback: Callable[[], Any],
        frequency: float = 60,
        name: str | None = None,
    ) -> None:
        super().__init__(bus)
        self.callback = callback
        self.frequency = frequency
        self.name = name
        #: The running :class:`BackgroundTask`, or None.
        self.thread: BackgroundTask | None = None

    @property
    def _thread_name(self) -> str:
        return self.name or type(self).__name__

    def start(self) -> None:
        """Start the background thread (unless it is already running)."""
        if self.frequency <= 0:
            return
        if self.thread is not None:
            self.bus.log(f"Monitor thread {self._thread_name!r} already started.")
            return
        self.thread = BackgroundTask(self.frequency, self.callback, bus=self.bus)
        self.thread.name = self._thread_name
        self.thread.start()
        self.bus.log(f"Started monitor thread {self._thread_name!r}.")

    start.priority = 70  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Cancel the background thread."""
        thread, self.thread = self.thread, None
        if thread is None:
            self.bus.log(f"No thread running for {self._thread_name}.")
            return
        thread.cancel()
        # The callback itself may be stopping the bus: never join ourselves.
        if thread is not threading.current_thread() and not thread.daemon:
            self.bus.log(f"Joining {thread.name!r}")
            thread.join()
        self.bus.log(f"Stopped thread {thread.name!r}.")

    def graceful(self) -> None:
        """Restart the background thread."""
        self.stop()
        self.start()


class Autoreloader(Monitor):
    """Restart the process when an imported module's file (or one of :attr:`files`) changes.

    Modules are watched when their name matches the :attr:`match` regular
    expression. A deleted file counts as a change.
    """

    def __init__(self, bus: Bus, frequency: float = 1, match: str = ".*") -> None:
        #: Extra files to watch besides the imported modules.
        self.files: set[str] = set()
        #: Regular expression selecting the module names to watch.
        self.match = match
        # filename -> last seen mtime; None marks a module without a source file.
        self.mtimes: dict[str, float | None] = {}
        super().__init__(bus, self.run, frequency)

    def start(self) -> None:
        """Start watching, forgetting old mtimes unless already running."""
        if self.thread is None:
            self.mtimes = {}
        super().start()

    start.priority = 70  # type: ignore[attr-defined]

    def sysfiles(self) -> set[str]:
        """Return the files of the imported modules whose name matches :attr:`match`."""
        pattern = re.compile(self.match)
        files = set()
        for name, module in list(sys.modules.items()):
            if module is not None and pattern.match(name):
                filename = self._file_for_module(module)
                if filename:
                    files.add(filename)
        return files

    @classmethod
    def _file_for_module(cls, module: ModuleType) -> str | None:
        # Modules imported from a zip archive are watched through the archive.
        archive = getattr(getattr(module, "__loader__", None), "archive", None)
        return archive or cls._file_for_file_module(module)

    @staticmethod
    def _file_for_file_module(module: ModuleType) -> str | None:
        # The absolute path of the module's own file (None for a module
        # without one), under CherryPy's name for this step.
        filename = getattr(module, "__file__", None)
        if not filename:
            return None
        return os.path.normpath(os.path.join(IMPORT_CWD, filename))

    def run(self) -> None:
        """Check every watched file once; restart the bus on the first change."""
        for filename in self.sysfiles() | self.files:
            if filename.endswith(".pyc"):
                filename = filename[:-1]
            if filename in self.mtimes and self.mtimes[filename] is None:
                continue  # no source file to watch
            try:
                mtime: float | None = os.stat(filename).st_mtime
            except OSError:
                mtime = None
            if filename not in self.mtimes:
                self.mtimes[filename] = mtime
            elif mtime != self.mtimes[filename]:
                self.bus.log(f"Restarting because {filename} changed.")
                thread = self.thread
                if thread is not None:
                    thread.cancel()
                    self.bus.log(f"Stopped thread {thread.name!r}.")
                self.bus.restart()
                return


class ThreadManager(SimplePlugin):
    """Tell ``start_thread``/``stop_thread`` listeners about request threads.

    Servers publish ``acquire_thread`` when a thread starts serving and
    ``release_thread`` when it is done; listeners get a per-thread index.
    Threads that never release are reported to ``stop_thread`` when the
    bus stops.
    """

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        #: Thread ident -> index given to ``start_thread`` listeners.
        self.threads: dict[int, int] = {}
        self._lock = threading.Lock()
        self._indexes = count(1)

    def acquire_thread(self) -> None:
        """Publish ``start_thread`` the first time the current thread is seen."""
        ident = threading.get_ident()
        if ident in self.threads:  # every request after the first: no lock needed
            return
        with self._lock:
            if ident in self.threads:
                return
            index = self.threads[ident] = next(self._indexes)
        self.bus.publish("start_thread", index)

    def release_thread(self) -> None:
        """Forget the current thread and publish ``stop_thread`` for it."""
        with self._lock:
            index = self.threads.pop(threading.get_ident(), None)
        if index is not None:
            self.bus.publish("stop_thread", index)

    def stop(self) -> None:
        """Publish ``stop_thread`` for every known thread and forget them all."""
        with self._lock:
            indexes = list(self.threads.values())
            self.threads.clear()
            self._indexes = count(1)
        for index in indexes:
            self.bus.publish("stop_thread", index)

    graceful = stop
