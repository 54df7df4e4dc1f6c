"""Helpers shared by morello and its applications (``cherrypy.lib``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, BinaryIO


def is_iterator(obj: Any) -> bool:
    """True for iterators and generators (not for lists, str or bytes)."""
    if isinstance(obj, (list, tuple, str, bytes, dict)):
        return False
    if inspect.isgenerator(obj):
        return True
    return hasattr(obj, "__next__") and hasattr(obj, "__iter__")


def is_closable_iterator(obj: Any) -> bool:
    """True for iterators that have a ``close()`` worth calling."""
    return inspect.isgenerator(obj) or (is_iterator(obj) and callable(getattr(obj, "close", None)))


class file_generator:  # noqa: N801 - CherryPy's public name
    """Iterate over a file in chunks, closing it at the end."""

    def __init__(self, input: BinaryIO, chunk_size: int = 65536) -> None:
        self.input = input
        self.chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self.input.read(self.chunk_size)
        if chunk:
            return chunk
        self.close()
        raise StopIteration()

    def close(self) -> None:
        close = getattr(self.input, "close", None)
        if close is not None:
            close()


def file_generator_limited(
    fileobj: BinaryIO, count: int, chunk_size: int = 65536
) -> Iterator[bytes]:
    """Yield at most ``count`` bytes of ``fileobj`` in chunks."""
    remaining = count
    while remaining > 0:
        chunk = fileobj.read(min(chunk_size, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def set_vary_header(response: Any, header_name: str) -> None:
    """Add ``header_name`` to the response's Vary header (once)."""
    varies = response.headers.get("Vary", "")
    names = [v.strip() for v in varies.split(",") if v.strip()]
    if header_name not in names:
        names.append(header_name)
    response.headers["Vary"] = ", ".join(names)
