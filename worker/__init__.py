"""The prefork worker process: serves the application on sockets its master opened.

The master forks, then calls in the child::

    from morello.worker import WorkerOptions, run
    run(WorkerOptions(number=1, app="myapp:root", sockets=[...], channel=..., master_pid=...))

:func:`run` never returns; see :mod:`morello.worker.process` for the life of
a worker and :mod:`morello.master.channel` for what it tells the master.
"""

from .app_loading import BootError, load_app, prepare_app
from .options import (
    EXIT_ABORTED,
    EXIT_BOOT_FAILURE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_ORPHANED,
    WorkerOptions,
)
from .process import run

__all__ = [
    "EXIT_ABORTED",
    "EXIT_BOOT_FAILURE",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_ORPHANED",
    "BootError",
    "WorkerOptions",
    "load_app",
    "prepare_app",
    "run",
]
