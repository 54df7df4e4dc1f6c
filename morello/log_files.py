"""Reopening log files after they were rotated (SIGUSR1 in the master and its workers).

logrotate (or the operator) renames the files and signals the processes;
a :class:`logging.FileHandler` keeps writing to the renamed file until it
opens its path again. morello's error and access logs are such handlers
(``log.error_file``, ``log.access_file``, per application too), and so are
any the application attached itself: every one reachable from the logging
tree is reopened.
"""

from __future__ import annotations

import logging


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
    """Close and reopen the file of every file handler; return how many were reopened.

    A handler that has not opened its file yet (``delay=True``) is left
    alone: it opens the current path on first use anyway.
    """
    reopened = 0
    for handler in file_handlers():
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
