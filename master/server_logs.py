"""The error and access logs of ``morello serve``, set up once in the master.

The master attaches the handlers before it forks, so every worker inherits
them: master and workers write the same files in the same format::

    [2026-12-07 10:42:01,123] [4242] [INFO] morello.master: worker 1 (pid 4243) ready in 0.05s
    [2026-12-07 10:42:01,131] [4243] [INFO] morello.error: ENGINE Bus STARTED

The error log takes every ``morello.*`` logger but the access ones: the
master's messages, the workers', and the framework's error log
(``morello.log(...)``, application logs included). The access log takes the
framework's access lines, formatted by ``access_log_format``. In a worker
these replace the framework's ``log.screen`` output, which would say the
same things twice; ``log.error_file`` and ``log.access_file`` still add
their own files. Files are reopened on SIGUSR1 with every other log file
(:mod:`morello.log_files`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import morello
from morello.logs import LogManager, decline_access

from .settings import Settings

#: The one format of the error log, in the master and in the workers.
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

#: Loggers the handlers are attached to.
ERROR_LOGGER = "morello"
ACCESS_LOGGER = "morello.access"

#: The handlers attached by :func:`configure`, which :func:`take_over_screen` looks for.
_installed: list[tuple[logging.Logger, logging.Handler]] = []


class ServerFormatter(logging.Formatter):
    """:data:`LOG_FORMAT`; a framework error-log record without the timestamp it carries."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        unstamped = getattr(record, "unstamped", None)
        if unstamped is None:
            return super().formatMessage(record)
        copy = logging.makeLogRecord(record.__dict__)
        copy.message = unstamped
        return super().formatMessage(copy)


def _not_access(record: logging.LogRecord) -> bool:
    return not (record.name == ACCESS_LOGGER or record.name.startswith(ACCESS_LOGGER + "."))


def open_handler(target: str, stream: Any) -> logging.Handler:
    """A handler writing to ``stream`` for ``-``, else appending to the file ``target``."""
    if target == "-":
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, encoding="utf-8")


def configure(settings: Settings) -> None:
    """Attach the error and access log handlers ``settings`` ask for.

    Raises OSError when a log file cannot be opened.
    """
    error = open_handler(settings.error_logfile, sys.stderr)
    error.setFormatter(ServerFormatter(LOG_FORMAT))
    error.setLevel(settings.log_level.upper())
    error.addFilter(_not_access)
    decline_access(error)  # without an access log, access lines are not even formatted
    handlers = [(logging.getLogger(ERROR_LOGGER), error)]
    if settings.access_logfile:
        try:
            access = open_handler(settings.access_logfile, sys.stdout)
        except OSError:
            error.close()
            raise
        access.setFormatter(logging.Formatter("%(message)s"))
        handlers.append((logging.getLogger(ACCESS_LOGGER), access))
    for logger, handler in handlers:
        logger.addHandler(handler)
    logging.getLogger("morello.master").setLevel(settings.log_level.upper())
    # Every LogManager (the site's and each application's) formats with it.
    LogManager.access_log_format = settings.access_log_format
    _installed.extend(handlers)
    take_over_screen()


def take_over_screen() -> None:
    """Silence the framework's screen output once the server's logs carry its records.

    Called in the master and, after the app's config is loaded, in each worker.
    """
    if active():
        morello.log.screen = False


def active() -> bool:
    """Whether the server's logs are set up in this process (the master or one of its workers)."""
    return bool(_installed)
