"""Where a worker's memory went: allocation growth by call site, traced by ``tracemalloc``.

Off by default: tracing slows every allocation. With ``master.tracemalloc = N``
each worker starts tracing, ``N`` frames deep, once it is ready; when it is
told to drain (recycled for ``max_rss``, rolled, scaled down), it logs the
call sites whose memory grew most while it served, next to the master's line
saying why it was recycled.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

#: Call sites a report lists.
TOP_SITES = 10
# Memory the tracing and the import machinery allocate is not the application's.
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
)


class AllocationTrace:
    """Traces allocations from now on; :meth:`report` says which call sites grew."""

    def __init__(self, frames: int) -> None:
        tracemalloc.start(frames)
        self._baseline = tracemalloc.take_snapshot().filter_traces(_IGNORED)

    def report(self, sites: int = TOP_SITES) -> list[str]:
        """The ``sites`` call sites whose allocated memory grew most, one line each."""
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        grown = [
            stat for stat in snapshot.compare_to(self._baseline, "traceback")
            if stat.size_diff > 0
        ][:sites]  # fmt: skip
        return [
            f"{_size(stat.size_diff)} in {stat.count_diff:+d} block(s) at "
            + " <- ".join(f"{frame.filename}:{frame.lineno}" for frame in reversed(stat.traceback))
            for stat in grown
        ]

    def log(self, log: Callable[[str], None]) -> None:
        """Log the report through ``log``, one line per call site, and stop tracing."""
        lines = self.report()
        log(f"memory grown while serving, by call site ({len(lines)} largest):")
        for line in lines:
            log("  " + line)
        tracemalloc.stop()


def _size(size: int) -> str:
    return f"{size / 2**20:+.1f} MiB" if abs(size) >= 2**20 else f"{size / 2**10:+.1f} KiB"
