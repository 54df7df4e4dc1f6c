"""Signal dispositions of a freshly forked worker, and ties to its master.

A forked child inherits everything the master set up for itself: Python
signal handlers (which would run the master's code in the worker), a
wakeup fd (a pipe shared with the master, so the worker's signals would
wake the master up), blocked signals, and ignored ones such as SIGCHLD
(which would break ``subprocess`` in the application). :func:`reset_inherited`
puts the handlers and the wakeup fd back to what a new Python process has;
:func:`unblock_all` unblocks signals once the worker's own handlers are in
place (the master forks with signals blocked, so none is lost in between).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

SignalHandler = Callable[[int, FrameType | None], Any]

#: Dispositions a new CPython process starts with besides SIG_DFL.
_PYTHON_STARTUP = {signal.SIGPIPE: signal.SIG_IGN, signal.SIGXFSZ: signal.SIG_IGN}
#: Set by the kernel or unchangeable.
_UNTOUCHABLE = {signal.SIGKILL, signal.SIGSTOP}

#: ``prctl`` option asking for a signal when the parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def reset_inherited() -> None:
    """Drop the inherited wakeup fd and handlers (blocked signals stay blocked)."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if signum in _UNTOUCHABLE:
            continue
        wanted = _PYTHON_STARTUP.get(signum, signal.SIG_DFL)
        try:
            if signal.getsignal(signum) != wanted:
                signal.signal(signum, wanted)
        except (OSError, ValueError):
            continue  # real-time signals reserved by the C library, and the like


def block_all() -> None:
    """Block every signal in this thread, and in the threads it starts from now on."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def unblock_all() -> None:
    """Unblock every signal in this thread; pending ones are delivered now."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, set())


def install(handlers: dict[int, SignalHandler | int]) -> None:
    """Set each signal's handler (a callable, ``SIG_IGN`` or ``SIG_DFL``)."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def dump_stacks(signum: int, file: Any = None) -> None:
    """Write every thread's stack to ``file`` (stderr) with :mod:`faulthandler`.

    faulthandler writes straight to the file descriptor, without taking
    locks that the interrupted code may hold. (It cannot be *registered*
    for SIGABRT, which it reserves for ``faulthandler.enable()``; the
    worker's Python handler calls this instead.)
    """
    stream = file if file is not None else sys.stderr
    try:
        stream.write(f"Worker {os.getpid()} got {signal.Signals(signum).name}; its threads:\n")
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
    except (AttributeError, ValueError, OSError):
        pass  # no usable stderr: nowhere to write to


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``signum`` when our parent dies (Linux); False elsewhere.

    The kernel ties this to the parent *thread* that forked us: a master
    must fork from a thread that lives as long as it does (its main thread).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        result = libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return result == 0


def parent_is(pid: int) -> bool:
    """Whether ``pid`` is still our parent (else it died before we could watch it)."""
    return os.getppid() == pid


def exit_now(code: int) -> NoReturn:
    """End this forked process at once, after flushing what Python buffers.

    ``os._exit`` skips atexit handlers and finalizers, which belong to the
    master that forked us (its pid file, its sockets) and must not run here.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass  # a closed or broken stream must not keep us alive
    os._exit(code)
