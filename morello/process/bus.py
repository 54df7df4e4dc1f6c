"""The engine bus: a process-wide state machine with publish/subscribe channels.

A :class:`Bus` models the life of the whole process (start, stop, exit,
graceful reload, re-exec) and lets servers, plugins and applications hook
into those transitions by subscribing callbacks to named channels::

    STOPPED --start()--> STARTING --> STARTED
    STARTED --stop()---> STOPPING --> STOPPED
    any     --exit()---> (stop) ----> EXITING

Every listener of a channel runs even when an earlier one fails; failures
are logged and then raised together as one :class:`ChannelFailures`.

This module depends on the standard library only: it is the lowest layer of
morello and must stay importable on its own.
"""

from __future__ import annotations

import atexit
import enum
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from traceback import format_exc
from typing import Any

__all__ = ["Bus", "ChannelFailures", "SimplePlugin", "states"]

#: The directory the process was started from, captured at import time so a
#: re-exec runs from the same place even if the application has chdir'd since.
STARTUP_CWD = os.getcwd()

#: Exit status used when shutting down itself fails (sysexits.h EX_SOFTWARE).
EX_SOFTWARE = 70

DEFAULT_PRIORITY = 50

DEFAULT_CHANNELS = (
    "start",
    "stop",
    "exit",
    "graceful",
    "log",
    "main",
    "start_thread",
    "stop_thread",
    "acquire_thread",
    "release_thread",
)

Listener = Callable[..., Any]


class ChannelFailures(Exception):
    """The exceptions raised by the listeners of one :meth:`Bus.publish` call."""

    delimiter = "\n"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._exceptions: list[BaseException] = []

    def handle_exception(self) -> None:
        """Record the exception currently being handled."""
        exc = sys.exc_info()[1]
        if exc is not None:
            self._exceptions.append(exc)

    def get_instances(self) -> list[BaseException]:
        """Return a copy of the recorded exception instances."""
        return list(self._exceptions)

    def __str__(self) -> str:
        return self.delimiter.join(repr(exc) for exc in self._exceptions)

    __repr__ = __str__

    def __bool__(self) -> bool:
        return bool(self._exceptions)


class states(enum.Enum):
    """The states a :class:`Bus` moves through (lower case name kept for compatibility)."""

    STOPPED = "stopped"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    EXITING = "exiting"

    def __repr__(self) -> str:
        return f"states.{self.name}"

    __str__ = __repr__


def _default_max_files() -> int:
    if os.name != "posix":
        return 0
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (AttributeError, ValueError, OSError):
        return 1024


class Bus:
    """Process state machine and message bus.

    Listeners subscribe to channels with a priority (lower runs first); the
    state-changing methods publish to the channel of the same name.
    """

    states = states

    #: File descriptors below this number are marked close-on-exec before a
    #: re-exec so they do not leak into the new process; 0 disables it.
    max_cloexec_files: int = _default_max_files()

    def __init__(self) -> None:
        #: Set by :meth:`restart`; :meth:`block` then re-executes the process.
        self.execv = False
        #: Channel name -> set of listeners. Publishing to a missing channel is a no-op.
        self.listeners: dict[str, set[Listener]] = {name: set() for name in DEFAULT_CHANNELS}
        # (channel, listener) -> (priority, subscription sequence); the sequence
        # keeps equal-priority listeners in subscription order.
        self._priorities: dict[tuple[str, Listener], tuple[int, int]] = {}
        self._sequence = 0
        # Re-entrant because signal handlers run on the main thread and may
        # publish or change state while it already holds the lock.
        self._lock = threading.RLock()
        self._state_changed = threading.Condition(self._lock)
        self._state = states.STOPPED
        self._atexit_registered = False

    # -- state -------------------------------------------------------------

    @property
    def state(self) -> states:
        """The current state; setting it wakes up every :meth:`wait` call."""
        return self._state

    @state.setter
    def state(self, value: states) -> None:
        with self._state_changed:
            self._state = value
            self._state_changed.notify_all()

    # -- publish / subscribe ----------------------------------------------

    def subscribe(
        self, channel: str, callback: Listener | None = None, priority: int | None = None
    ) -> Any:
        """Add ``callback`` to ``channel``; without a callback, return a decorator.

        ``priority`` defaults to the callback's ``priority`` attribute, or 50.
        The decorator form returns the decorated function unchanged.
        """
        if callback is None:

            def decorator(func: Listener) -> Listener:
                self.subscribe(channel, func, priority)
                return func

            return decorator

        if priority is None:
            priority = getattr(callback, "priority", DEFAULT_PRIORITY)
        with self._lock:
            key = (channel, callback)
            previous = self._priorities.get(key)
            if previous is None:
                self._sequence += 1
                sequence = self._sequence
            else:
                sequence = previous[1]
            self._priorities[key] = (priority, sequence)
            self.listeners.setdefault(channel, set()).add(callback)
        return None

    def unsubscribe(self, channel: str, callback: Listener) -> None:
        """Remove ``callback`` from ``channel`` if it is subscribed there."""
        with self._lock:
            listeners = self.listeners.get(channel)
            if listeners is not None:
                listeners.discard(callback)
            self._priorities.pop((channel, callback), None)

    def publish(self, channel: str | None, *args: Any, **kwargs: Any) -> list[Any]:
        """Call every listener of ``channel`` and return their results in call order.

        Listener errors are logged and raised afterwards as a single
        :class:`ChannelFailures`, except on the ``log`` channel, which never
        raises. ``KeyboardInterrupt`` and ``SystemExit`` propagate at once.
        """
        listeners = self.listeners.get(channel)  # type: ignore[arg-type]
        if not listeners:
            return []

        # tuple() copies a set atomically under the GIL, so concurrent
        # (un)subscribes cannot break the iteration below.
        snapshot = tuple(listeners)
        if len(snapshot) > 1:
            fallback = (DEFAULT_PRIORITY, 0)
            snapshot = tuple(
                sorted(snapshot, key=lambda cb: self._priorities.get((channel, cb), fallback))
            )

        results: list[Any] = []
        failures: ChannelFailures | None = None  # created on the first error only
        for listener in snapshot:
            try:
                results.append(listener(*args, **kwargs))
            except KeyboardInterrupt:
                raise
            except SystemExit as exc:
                # A clean exit must not hide failures that already happened.
                if failures and exc.code in (None, 0):
                    exc.code = 1
                raise
            except Exception:
                if failures is None:
                    failures = ChannelFailures()
                failures.handle_exception()
                if channel == "log":
                    self._report_log_failure(listener)
                else:
                    self.log(
                        f"Error in {channel!r} listener {listener!r}", level=40, traceback=True
                    )
        if failures is not None and channel != "log":
            raise failures from failures.get_instances()[0]
        return results

    @staticmethod
    def _report_log_failure(listener: Listener) -> None:
        # Logging is broken, so stderr is the only place left to say so.
        try:
            sys.stderr.write(f"Error in 'log' listener {listener!r}:\n{format_exc()}")
        except Exception:
            pass

    def log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        """Publish ``msg`` to the ``log`` channel, with the current traceback if asked."""
        if traceback and sys.exc_info()[0] is not None:
            msg += "\n" + format_exc()
        self.publish("log", msg, level)

    # -- transitions -------------------------------------------------------

    def start(self) -> None:
        """Move to STARTED, running the ``start`` listeners.

        If a listener fails, the bus is exited and the error re-raised.
        """
        self._register_atexit()
        self.state = states.STARTING
        self.log("Bus STARTING")
        try:
            self.publish("start")
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            self.log("Shutting down due to error in start listener:", level=40, traceback=True)
            self._shut_down()
            raise
        self.state = states.STARTED
        self.log("Bus STARTED")

    def stop(self) -> None:
        """Move to STOPPED, running the ``stop`` listeners."""
        self.state = states.STOPPING
        self.log("Bus STOPPING")
        self.publish("stop")
        self.state = states.STOPPED
        self.log("Bus STOPPED")

    def exit(self) -> None:
        """Stop, then move to EXITING, running the ``exit`` listeners.

        Failures here end the process with ``os._exit(70)``: exit() usually
        runs from a signal handler, another thread or atexit, where nobody
        could handle the error.
        """
        interrupted_start = self.state is states.STARTING
        self._shut_down()
        if interrupted_start:
            # Exit requested (e.g. Ctrl-C or SIGTERM) while a start listener
            # was still running: it may never return, so don't wait for it.
            os._exit(EX_SOFTWARE)

    def _shut_down(self) -> None:
        try:
            self.stop()
            self.state = states.EXITING
            self.log("Bus EXITING")
            self.publish("exit")
            self.log("Bus EXITED")
        except Exception:
            os._exit(EX_SOFTWARE)

    def graceful(self) -> None:
        """Ask every service to reload by publishing to ``graceful``."""
        self.log("Bus graceful")
        self.publish("graceful")

    def restart(self) -> None:
        """Exit the bus and have :meth:`block` re-execute the process.

        The re-exec happens in the thread running :meth:`block` (normally
        the main thread), not in the caller's.
        """
        self.execv = True
        self.exit()

    # -- waiting -----------------------------------------------------------

    def wait(
        self,
        state: states | Iterable[states],
        interval: float = 0.1,
        channel: str | None = None,
    ) -> None:
        """Block until the bus is in ``state`` (one state or a list of them).

        Wakes up at least every ``interval`` seconds to publish to
        ``channel`` when one is given.
        """
        if isinstance(state, (list, tuple, set, frozenset)):
            wanted = frozenset(state)
        else:
            wanted = frozenset((state,))
        while True:
            with self._state_changed:
                if self._state in wanted:
                    return
                self._state_changed.wait(interval)
                if self._state in wanted:
                    return
            if channel is not None:
                self.publish(channel)

    def block(self, interval: float = 0.1) -> None:
        """Wait until the bus exits, then for other threads, then re-exec if asked.

        Meant for the main thread: it publishes to ``main`` every
        ``interval`` seconds, turns Ctrl-C into :meth:`exit`, and performs
        the re-exec requested by :meth:`restart`.
        """
        try:
            self.wait(states.EXITING, interval=interval, channel="main")
        except KeyboardInterrupt:
            self.log("Keyboard Interrupt: shutting down bus")
            self.exit()
        except SystemExit:
            self.log("SystemExit raised: shutting down bus")
            self.exit()
            raise

        # Let every worker thread finish before re-exec or interpreter
        # shutdown. Dummy (foreign) threads are always daemonic, so the
        # daemon check skips them.
        self.log("Waiting for child threads to terminate...")
        current, main = threading.current_thread(), threading.main_thread()
        for thread in threading.enumerate():
            if thread is current or thread is main or thread.daemon:
                continue
            self.log(f"Waiting for thread {thread.name}.")
            thread.join()

        if self.execv:
            self._do_execv()

    def start_with_callback(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> threading.Thread:
        """Start the bus and call ``func`` in a new thread once it is STARTED.

        Returns the thread. If the bus exits without ever starting, ``func``
        is not called.
        """
        call_args = tuple(args or ())
        call_kwargs = dict(kwargs or {})

        def run_when_started() -> None:
            self.wait([states.STARTED, states.EXITING])
            if self.state is states.STARTED:
                func(*call_args, **call_kwargs)

        thread = threading.Thread(target=run_when_started)
        thread.name = f"Bus Callback {thread.name}"
        thread.start()
        self.start()
        return thread

    # -- process management -----------------------------------------------

    def _register_atexit(self) -> None:
        with self._lock:
            if not self._atexit_registered:
                atexit.register(self._clean_exit)
                self._atexit_registered = True

    def _clean_exit(self) -> None:
        """Exit the bus at interpreter shutdown if the application forgot to."""
        if self.state is not states.EXITING:
            warnings.warn(
                f"The main thread is exiting while the bus is in the {self.state!r} state; "
                "exiting the bus now. Call bus.block() after bus.start(), or bus.exit() "
                "before the main thread ends.",
                RuntimeWarning,
                stacklevel=1,
            )
            self.exit()

    def _do_execv(self) -> None:
        """Replace the current process with a fresh run of the same command line."""
        args = self._reexec_argv()
        self.log(f"Re-spawning {' '.join(args)}")
        os.chdir(STARTUP_CWD)
        if self.max_cloexec_files:
            self._set_cloexec()
        os.execv(args[0], args)

    @staticmethod
    def _reexec_argv() -> list[str]:
        """The argv that starts this program again, interpreter options included.

        ``sys.orig_argv`` (3.10+) keeps ``-m module``, ``-c code`` and ``-X``/``-W``
        options exactly as given, which ``sys.argv`` loses. The program path
        becomes ``sys.executable`` so a relative or PATH-resolved launcher
        (and with it a virtualenv) is found again.
        """
        # orig_argv is empty when Python is embedded; argv is the best left then.
        original = list(sys.orig_argv) or [sys.executable, *sys.argv]
        return [sys.executable or original[0], *original[1:]]

    def _set_cloexec(self) -> None:
        """Make every descriptor from 3 up to ``max_cloexec_files`` close on exec."""
        for fd in _open_fds(self.max_cloexec_files):
            if 3 <= fd < self.max_cloexec_files:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    continue  # closed meanwhile, e.g. the fd used to list the directory


def _open_fds(limit: int) -> Iterable[int]:
    # Listing the open descriptors is much cheaper than probing up to
    # SC_OPEN_MAX, which is often a million inside containers.
    for fd_dir in ("/proc/self/fd", "/dev/fd"):
        try:
            return [int(name) for name in os.listdir(fd_dir)]
        except (OSError, ValueError):
            continue
    return range(3, limit)


class SimplePlugin:
    """Base class for plugins whose methods are named after the channels they serve.

    It lives here, beside :class:`Bus`, because it is the bus's listener
    protocol; :mod:`morello.process.plugins` re-exports it.
    """

    def __init__(self, bus: Bus) -> None:
        #: The bus this plugin is attached to.
        self.bus = bus

    def _channel_methods(self) -> list[tuple[str, Callable[..., Any]]]:
        pairs = []
        for channel in list(self.bus.listeners):
            method = getattr(self, channel, None)
            if callable(method):
                pairs.append((channel, method))
        return pairs

    def subscribe(self) -> None:
        """Subscribe each method named after an existing bus channel to that channel."""
        for channel, method in self._channel_methods():
            self.bus.subscribe(channel, method)

    def unsubscribe(self) -> None:
        """Undo :meth:`subscribe`."""
        for channel, method in self._channel_methods():
            self.bus.unsubscribe(channel, method)
