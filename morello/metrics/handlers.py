"""Which handler the request on this thread was dispatched to (for per-handler metrics).

The dispatcher stores ``(script_name, handler_path)`` in :data:`current`
once it found the handler; the worker's request statistics read it when the
request ends, on the same thread, and clear it. One attribute store per
request, no lock and no formatting: the key is a tuple of strings the
dispatcher already has.

The handler path is the dispatched object's path (``/orders/default``,
``/orders/index``), never the raw URL, so ``/orders/1`` and ``/orders/2`` count
under one handler.
"""

from __future__ import annotations

import threading

#: Handler label of requests no handler was found for (404s, requests refused before dispatch).
NO_HANDLER = "none"
#: Label value that stands for every value past a cardinality limit.
OTHER = "other"


class _Slot(threading.local):
    #: ``(script_name, handler_path)`` of this thread's request, or None.
    key: tuple[str, str] | None = None


#: Per thread: the dispatched handler of the request being served.
current = _Slot()


def dispatched(script_name: str | None, path: str | None) -> None:
    """Record that this thread's request was dispatched to ``path`` (None: no handler)."""
    current.key = (script_name or "", path or NO_HANDLER)
