"""Tell systemd how the master is doing (the ``sd_notify`` protocol).

With ``Type=notify`` (or ``Type=notify-reload``, systemd 253+) systemd
passes a datagram socket in ``NOTIFY_SOCKET``: a file path, or an abstract
socket written ``@name``. Each notification is one datagram of
``KEY=value`` lines. Without ``NOTIFY_SOCKET`` every function here does
nothing, so the master calls them unconditionally.

Only the master notifies: with the default ``NotifyAccess=main`` systemd
ignores messages from other processes, which is why workers (which inherit
the variable) must not call these. On a re-exec the old master, still the
main process, announces the new one with :func:`mainpid`.

Sending never raises for a missing or refusing socket: systemd being gone
must not take the server down. The first failure is logged, later ones are
not (a master notifies on every reload and worker change).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

_failure_logged = False


def _address(value: str) -> str | None:
    """The ``sendto`` address for ``NOTIFY_SOCKET``; None if it is not a UNIX socket."""
    if value.startswith("@"):
        # Abstract namespace: a leading NUL instead of the '@'.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _log_failure_once(message: str, *args: object) -> None:
    global _failure_logged
    if not _failure_logged:
        _failure_logged = True
        log.warning(message, *args)


def notify(**fields: object) -> bool:
    """Send one notification, ``notify(READY=1, STATUS="serving")``; True if it was sent.

    False (and nothing sent) when ``NOTIFY_SOCKET`` is unset or the socket
    cannot be reached. ``ValueError`` for a name or value with a newline
    (it would inject another field) or a name with ``=``.
    """
    lines = []
    for name, value in fields.items():
        text = str(value)
        if not name or "=" in name or "\n" in name or "\n" in text:
            raise ValueError(f"invalid notification field {name!r}={text!r}")
        lines.append(f"{name}={text}")
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not lines:
        return False
    address = _address(target)
    if address is None:
        _log_failure_once("NOTIFY_SOCKET=%r is not a UNIX socket; not notifying systemd", target)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(lines).encode(), address)
    except OSError as exc:
        _log_failure_once("cannot notify systemd at %s: %s", target, exc.strerror or exc)
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Startup or reload finished: the workers are serving."""
    if status_text is None:
        return notify(READY=1)
    return notify(READY=1, STATUS=_one_line(status_text))


def reloading() -> bool:
    """A reload started; :func:`ready` again when it is done.

    ``MONOTONIC_USEC`` (``CLOCK_MONOTONIC`` in microseconds) is required
    by ``Type=notify-reload`` to tell this reload from an earlier one.
    """
    return notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)


def stopping() -> bool:
    """The master is shutting down."""
    return notify(STOPPING=1)


def status(text: str) -> bool:
    """A one-line status for ``systemctl status`` (newlines become spaces)."""
    return notify(STATUS=_one_line(text))


def mainpid(pid: int) -> bool:
    """Tell systemd the main process is now ``pid`` (the new master after a re-exec)."""
    return notify(MAINPID=int(pid))


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())
