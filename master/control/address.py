"""Control endpoint addresses, and the listening socket bound to one.

An address is ``host:port``, ``[ipv6]:port`` or ``unix:/path``. TCP
addresses must be loopback unless the caller allows otherwise: anyone who
can reach the endpoint can scale the server. A UNIX socket is created with
mode 0600.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import stat
from typing import Any

#: The text of a port number (its range is checked where it matters).
PORT_DIGITS = re.compile(r"[0-9]{1,5}")


def parse_address(address: str) -> tuple[socket.AddressFamily, Any]:
    """Split a control address into a socket family and a ``bind``/``connect`` address.

    ``unix:/path`` gives ``(AF_UNIX, "/path")``; ``host:port`` and
    ``[ipv6]:port`` give ``(AF_INET or AF_INET6, (host, port))``. Raises
    ValueError with a message naming the problem.
    """
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ValueError(f"control address {address!r}: empty socket path")
        return socket.AF_UNIX, path
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(
            f"control address {address!r}: expected HOST:PORT, [IPV6]:PORT or unix:/PATH"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"control address {address!r}: write IPv6 addresses as [ADDR]:PORT")
    if not PORT_DIGITS.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"control address {address!r}: port must be a number from 0 to 65535")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name, resolved by bind/connect
    return family, (host, int(port_text))


def control_socket(address: str, *, allow_remote: bool = False, backlog: int = 16) -> socket.socket:
    """A listening, non-blocking socket for :class:`ControlServer` on ``address``.

    TCP addresses must be loopback (``127.0.0.1:9100``, ``[::1]:9100``,
    ``localhost:9100``) unless ``allow_remote``: anyone who can reach the
    endpoint can scale the server. A stale UNIX socket file is replaced; a
    live one (another master answers) raises ``OSError(EADDRINUSE)``.
    """
    family, where = parse_address(address)
    if family == socket.AF_UNIX:
        sock = _bind_unix(where)
    else:
        host, port = where
        if host == "localhost":
            host = "127.0.0.1"
        if not allow_remote and not _is_loopback(host):
            raise ValueError(
                f"control address {address!r} is not a loopback address; the control "
                "endpoint can scale and inspect the server, so bind it to 127.0.0.1, "
                "[::1] or a unix: socket"
            )
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere


def _bind_unix(path: str) -> socket.socket:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise ValueError(f"control socket path {path!r} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Non-blocking: a live listener with a full backlog must not hang us.
        probe.setblocking(False)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # left behind by a master that died
        except BlockingIOError:
            raise OSError(errno.EADDRINUSE, f"another process listens on {path!r}") from None
        else:
            raise OSError(errno.EADDRINUSE, f"another process listens on {path!r}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # umask rather than chmod after bind, so the socket is never reachable by
    # others even briefly; the master is single-threaded, so this is safe.
    previous_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(previous_umask)
    return sock
