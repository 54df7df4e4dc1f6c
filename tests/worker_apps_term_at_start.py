"""An application whose engine start signals its own worker with SIGTERM, mid-boot.

A later start listener records, in the file named by ``$MORELLO_TEST_MARKER``,
that the boot went on after the signal.
"""

import os
import signal
from pathlib import Path

import worker_apps

import morello


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _record_boot_went_on() -> None:
    Path(os.environ["MORELLO_TEST_MARKER"]).write_text("the boot went on after SIGTERM")


morello.engine.subscribe("start", _terminate_self, priority=10)
morello.engine.subscribe("start", _record_boot_went_on, priority=90)

root = worker_apps.Root()
