"""Reopening log files after they were rotated (SIGUSR1 in the master and its workers).

logrotate (or the operator) renames the files and signals the processes;
a :class:`logging.FileHandler` keeps writing to the renamed file until it
opens its path again. morello's error and access logs are such handlers
(``log.error_file``, ``log.access_file``, per application too), and so are
``morello serve``'s ``--error-logfile`` and ``--access-logfile`` and any the
application attached itself: every one reachable from the logging tree is
reopened, and so is the file a daemon's standard error goes to.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable


def file_handlers() -> list[logging.FileHandler]:
    """Every file handler attached to any logger, each once."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):  # not a PlaceHolder
            loggers.append(logger)
    seen: dict[int, logging.FileHandler] = {}
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                seen.setdefault(id(handler), handler)
    return list(seen.values())


def reopen_log_files() -> int:
    """Reopen every log file of this process; return how many were reopened.

    That is the file of every file handler, and the file standard error was
    sent to by :func:`stderr_to_file`.
    """
    reopened = reopen_handlers(file_handlers())
    if _stderr_file is not None:
        try:
            stderr_to_file(_stderr_file)
            reopened += 1
        except OSError:
            pass  # stderr keeps the old file rather than none
    return reopened


def reopen_handlers(handlers: Iterable[logging.Handler]) -> int:
    """Close and reopen the file of each file handler in ``handlers``; return how many.

    A handler that has not opened its file yet (``delay=True``) is left
    alone: it opens the current path on first use anyway.
    """
    reopened = 0
    for handler in handlers:
        if not isinstance(handler, logging.FileHandler):
            continue
        handler.acquire()
        try:
            if handler.stream is None:
                continue
            handler.stream.close()
            try:
                # Same path, mode and encoding as the handler was created
                # with; "a" (the usual mode) creates the file after a rename.
                handler.stream = handler._open()
            except OSError:
                # A None stream makes the handler try again on its next record.
                handler.stream = None  # type: ignore[assignment]
                continue
            reopened += 1
        finally:
            handler.release()
    return reopened


#: Where :func:`stderr_to_file` sent file descriptor 2, for reopening.
_stderr_file: str | None = None


def stderr_to_file(path: str) -> None:
    """Send file descriptor 2 to ``path`` (appending), now and after each reopening.

    For a daemon: tracebacks and anything else written to stderr land in the
    error log instead of ``/dev/null``.
    """
    global _stderr_file
    path = os.path.abspath(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    _stderr_file = path
