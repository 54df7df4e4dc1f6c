"""``--reload``: notice changed source files so the master can roll the workers.

Without ``preload`` each new worker imports the app afresh, so a rolling
restart is all it takes to serve the new code. The master never imports the
app itself, so it cannot ask ``sys.modules`` which files matter: it watches
the ``.py`` files under the working directory (and the config file).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

#: Directories never worth watching (virtual environments, caches, VCS).
SKIPPED_DIRS = frozenset({".venv", "venv", "__pycache__", ".git", "node_modules", ".tox"})
#: Stop scanning after this many files: a huge tree must not stall the master.
MAX_FILES = 5000
INTERVAL = 1.0


class FileWatcher:
    """Remembers modification times; :meth:`changed` says whether any moved since."""

    def __init__(self, root: str, extra: list[str] | None = None) -> None:
        self.root = root
        self.extra = [path for path in extra or [] if path]
        self._next_check = 0.0
        self._mtimes = self._scan()

    def _files(self) -> Iterator[str]:
        count = 0
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith(".")]
            for name in files:
                if name.endswith(".py"):
                    count += 1
                    if count > MAX_FILES:
                        return
                    yield os.path.join(directory, name)
        yield from self.extra

    def _scan(self) -> dict[str, float]:
        mtimes = {}
        for path in self._files():
            try:
                mtimes[path] = os.stat(path).st_mtime
            except OSError:
                continue  # vanished while we looked
        return mtimes

    def changed(self) -> bool:
        """At most once per :data:`INTERVAL`: whether a file was added, removed or modified."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + INTERVAL
        mtimes = self._scan()
        if mtimes == self._mtimes:
            return False
        self._mtimes = mtimes
        return True
