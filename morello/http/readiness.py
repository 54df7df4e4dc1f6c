"""The connection manager's registry of sockets, each armed for one readiness report at a time.

cheroot's selector unregisters a connection when it hands it to a thread
and registers it again when the thread gives it back: two ``epoll_ctl``
calls, and a ``SelectorKey`` built and dropped under a lock, per request.
:class:`ArmedSelector` keeps a connection in the kernel's epoll set for
its whole life, armed with ``EPOLLONESHOT``: the kernel disarms it when
it reports it, so no other poll sees it while a thread serves it, and the
thread re-arms it (:meth:`ArmedSelector.rearm`, one ``epoll_ctl``) when it
gives it back. A connection the thread closes leaves the epoll set with
its descriptor.

Only armed connections are *registered* (listed by
:attr:`~ArmedSelector.connections`, counted by ``len()``): once reported,
a connection belongs to whoever took it, as it did with cheroot's
selector. The listening socket and the manager's alarm are registered for
good (``persistent``). Where epoll is missing, a :mod:`selectors`
selector plays the same part by unregistering what it reports.
"""

from __future__ import annotations

import select
import selectors
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["ArmedSelector"]

_HAS_EPOLL = hasattr(select, "epoll")


class ArmedSelector:
    """Sockets by descriptor, each reported once per arming (see the module)."""

    def __init__(self) -> None:
        #: Armed and persistent sockets: descriptor -> what ``select`` returns with it.
        self._registered: dict[int, Any] = {}
        self._persistent: set[int] = set()
        if _HAS_EPOLL:
            self._epoll: Any = select.epoll()
        else:
            self._fallback = selectors.DefaultSelector()
            self._lock = threading.Lock()  # selectors' maps are not thread-safe

    def __len__(self) -> int:
        return len(self._registered)

    @property
    def connections(self) -> Iterator[tuple[int, Any]]:
        """``(descriptor, data)`` of every registered socket (a snapshot)."""
        return iter(self._registered.copy().items())

    def register(self, fd: int, data: Any, persistent: bool = False) -> None:
        """Watch a socket new to this selector; armed once unless ``persistent``."""
        # In the map before the kernel can report it: the poll looks it up there.
        self._registered[fd] = data
        if persistent:
            self._persistent.add(fd)
        if _HAS_EPOLL:
            self._epoll.register(fd, select.EPOLLIN | (0 if persistent else select.EPOLLONESHOT))
        else:
            with self._lock:
                self._fallback.register(fd, selectors.EVENT_READ)

    def rearm(self, fd: int, data: Any) -> None:
        """Arm again a socket this selector reported (and registers it if it never watched it)."""
        if not _HAS_EPOLL:
            self.register(fd, data)
            return
        self._registered[fd] = data
        try:
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        except FileNotFoundError:  # handed to a thread without passing through a poll
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def unregister(self, fd: int) -> None:
        """Stop watching a socket, armed or not (before closing it)."""
        self._registered.pop(fd, None)
        self._persistent.discard(fd)
        try:
            if _HAS_EPOLL:
                self._epoll.unregister(fd)
            else:
                with self._lock:
                    self._fallback.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass  # not watched (any more), or closed already

    def select(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """Wait up to ``timeout`` seconds; return ``(descriptor, data)`` of the sockets
        reported. Those not persistent are no longer registered: the caller owns them."""
        if _HAS_EPOLL:
            ready = [fd for fd, _ in self._epoll.poll(-1 if timeout is None else timeout)]
        else:
            ready = [key.fd for key, _ in self._fallback.select(timeout)]
            with self._lock:
                for fd in ready:
                    if fd not in self._persistent:
                        self._fallback.unregister(fd)
        reported = []
        for fd in ready:
            data = (
                self._registered.get(fd)
                if fd in self._persistent
                else self._registered.pop(fd, None)
            )
            if data is not None:
                reported.append((fd, data))
        return reported

    def has_events(self) -> bool:
        """Whether a socket is ready to be reported, without reporting (and so disarming) it."""
        try:
            if _HAS_EPOLL:
                # An epoll descriptor is readable while it has events to report.
                return bool(select.select([self._epoll.fileno()], [], [], 0)[0])
            return bool(self._fallback.select(0))
        except (OSError, ValueError):  # closed meanwhile
            return False

    def close(self) -> None:
        """Stop watching everything."""
        self._registered.clear()
        if _HAS_EPOLL:
            self._epoll.close()
        else:
            self._fallback.close()
