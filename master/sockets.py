"""The master's listening sockets: parse ``--bind``, bind, adopt, hand over.

The master opens every listening socket before it forks a worker; workers
inherit them through ``fork`` and all accept from the same kernel queue.

Bind addresses (:func:`parse_bind`)
    ``HOST:PORT``
        An IPv4 address or a host name. A name is resolved once, at bind
        time, and the first address the resolver returns is used.
    ``[IPV6]:PORT``
        An IPv6 address, in brackets. The socket is IPv6-only: to serve
        IPv4 too, add a second bind such as ``0.0.0.0:PORT``.
    ``:PORT`` or ``PORT``
        ``127.0.0.1:PORT``. Only loopback, like CherryPy's default
        ``server.socket_host``: serving every interface must be asked for
        (``0.0.0.0:PORT``, ``[::]:PORT``), never happen by omission.
    ``unix:PATH``
        A UNIX stream socket. A relative path is made absolute against the
        current directory when parsed, so a later ``chdir`` does not move
        it. Its mode is the separate ``unix_mode`` argument of
        :func:`bind_all`.
    ``fd://N``
        An already-open listening stream socket on file descriptor ``N``
        (left open by whoever started the master).

Port ``0`` asks the kernel for a free port (mostly useful in tests).

Where the sockets come from (:func:`open_listeners`), first match wins:

1. Socket activation by systemd (``LISTEN_FDS``/``LISTEN_PID``, see
   :func:`systemd_sockets`): the activated sockets *replace* the binds,
   which are ignored (logged). The socket unit decides what is listened on.
2. A re-exec by the previous master (:func:`inherited_sockets`): each bind
   that the previous master also had reuses its socket, so no connection is
   refused during the upgrade; binds it did not have are opened; inherited
   sockets no bind asks for any more are closed.
3. Otherwise every bind is opened (:func:`bind_all`).

Re-exec hand-over (``SIGUSR2``): the old master calls
:func:`export_for_exec` and execs the new master with the returned
variable in its environment::

    MORELLO_INHERITED_FDS=3=unix:/run/app.sock,4=127.0.0.1:8080,5=systemd

Entries are separated by ``,``; each is ``FD=SOURCE``, where ``FD`` is the
descriptor number (``exec`` keeps numbers) and ``SOURCE`` is the bind text
the socket was opened for, percent-encoded (``%`` and ``,`` and any
non-printable byte; paths are encoded from their file-system bytes), or
``systemd`` for a socket that came from socket activation.

Who removes a UNIX socket file: only a :class:`ListenSocket` whose
``owns_path`` is true, and only if the file is still the one it bound
(same device and inode). Sockets bound here own their path; inherited and
adopted ones do not. While both masters run, neither may remove it: the
old master stops with ``close(unlink=False)`` once a new master has taken
over, and the new master sets ``owns_path = True`` on its sockets once the
old master has exited (if the new master is abandoned instead, it exits
without touching the path the old master still serves).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import re
import socket
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_from_bytes, unquote_to_bytes

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
INHERIT_ENV = "MORELLO_INHERITED_FDS"
SYSTEMD_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: systemd passes activated sockets from this descriptor on.
SYSTEMD_FIRST_FD = 3
#: ``sun_path`` holds 108 bytes on Linux; keep one for the terminating NUL.
MAX_UNIX_PATH = 107

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# Bytes kept as they are in MORELLO_INHERITED_FDS (besides letters, digits, "_.-~").
_EXPORT_SAFE = "/:[]@=+"


class BindError(OSError):
    """A listening socket could not be opened, adopted or inherited.

    An ``OSError``, so callers that report start-up errors show its message.
    """


@dataclass(frozen=True)
class BindSpec:
    """One parsed bind address; ``str()`` gives it back in canonical form."""

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_bind(text: str) -> BindSpec:
    """Parse one bind address (see the module docstring); ``ValueError`` if invalid.

    ``:PORT`` and ``PORT`` mean ``127.0.0.1:PORT`` (loopback only).
    """
    text = text.strip()
    if not text:
        raise ValueError("empty bind address")
    if text.startswith("unix:"):
        return BindSpec("unix", path=_parse_unix_path(text[len("unix:") :], text))
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not (number.isascii() and number.isdigit()):
            raise ValueError(f"{text!r}: fd:// needs a file descriptor number, like fd://3")
        return BindSpec("fd", fd=int(number))
    if "://" in text:
        raise ValueError(f"{text!r}: unknown scheme (use HOST:PORT, unix:PATH or fd://N)")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: missing ':PORT' after ']'")
        return BindSpec("tcp", host=host, port=_parse_port(rest[1:], text))
    if text.count(":") > 1:
        raise ValueError(f"{text!r}: put IPv6 addresses in brackets, like [::1]:8080")
    host, colon, port_text = text.rpartition(":")
    if not colon:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{text!r}: missing ':PORT' (like {text}:8080)")
        host, port_text = "", text
    return BindSpec(
        "tcp", host=_check_host(host or DEFAULT_HOST, text), port=_parse_port(port_text, text)
    )


def _parse_port(port_text: str, text: str) -> int:
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is out of range (0-65535)")
    return port


def _check_host(host: str, text: str) -> str:
    if host == "*":
        raise ValueError(f"{text!r}: use 0.0.0.0 (IPv4) or [::] (IPv6) for every interface")
    if re.fullmatch(r"[0-9.]+", host):
        # All digits and dots is meant as an IPv4 address, never a name.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv4 address") from None
    elif not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise ValueError(f"{text!r}: {host!r} is not a valid host name or address")
    return host


def _parse_unix_path(path: str, text: str) -> str:
    if not path:
        raise ValueError(f"{text!r}: unix: needs a path, like unix:/run/morello.sock")
    if "\0" in path:
        raise ValueError(f"{text!r}: the path contains a NUL byte")
    if path.startswith("@"):
        raise ValueError(f"{text!r}: abstract UNIX sockets are not supported; give a file path")
    if path.endswith("/"):
        raise ValueError(f"{text!r}: the path names a directory, not a socket file")
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ValueError(f"{text!r}: the path is longer than {MAX_UNIX_PATH} bytes")
    return path


@dataclass(eq=False)
class ListenSocket:
    """A listening socket of the master, with what it was opened for.

    ``address`` is what it actually listens on (the real port when the bind
    said ``0``), for logs and ``/status``. ``owns_path``: closing with
    ``unlink=True`` removes the UNIX socket file. ``activated``: the socket
    came from systemd socket activation. ``path_id`` is the ``(st_dev,
    st_ino)`` of the socket file, so a file that replaced it is left alone.
    """

    socket: socket.socket
    spec: BindSpec
    address: str
    owns_path: bool = False
    activated: bool = False
    path_id: tuple[int, int] | None = None

    @property
    def is_unix(self) -> bool:
        """True for a UNIX-domain socket."""
        return self.socket.family == socket.AF_UNIX

    def fileno(self) -> int:
        """The file descriptor (-1 once closed)."""
        return self.socket.fileno()

    def close(self, unlink: bool) -> None:
        """Close the socket; with ``unlink``, remove the socket file if this socket owns it.

        Never raises: this runs while the master stops.
        """
        self.socket.close()
        if not (unlink and self.owns_path and self.spec.kind == "unix" and self.path_id):
            return
        try:
            current = os.lstat(self.spec.path)
            if (current.st_dev, current.st_ino) == self.path_id:
                os.unlink(self.spec.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", self.spec.path, exc.strerror or exc)


def bind_all(
    specs: Iterable[BindSpec],
    backlog: int,
    unix_mode: int | None = None,
    inherited: Iterable[ListenSocket] = (),
) -> list[ListenSocket]:
    """Open a listening socket for each spec, in order; ``BindError`` if one fails.

    A spec matching one of the ``inherited`` sockets (same canonical text)
    reuses it; inherited sockets left over are closed (without removing
    any file). ``unix_mode`` is applied to the UNIX socket files created
    here. On failure every socket opened so far is closed again.

    The sockets are not inheritable across ``exec`` (workers are forked and
    get them anyway); a program a worker runs must not keep the port bound
    after the server stops. :func:`export_for_exec` makes them inheritable
    for a re-exec.
    """
    specs = list(specs)
    seen: set[str] = set()
    for spec in specs:
        if str(spec) in seen:
            raise BindError(f"{spec} is given twice")
        seen.add(str(spec))
    pool = {str(item.spec): item for item in inherited}
    opened: list[ListenSocket] = []
    try:
        for spec in specs:
            reused = pool.pop(str(spec), None)
            if reused is not None:
                # listen() again only updates the backlog of a listening socket.
                reused.socket.listen(backlog)
                opened.append(reused)
            elif spec.kind == "fd":
                opened.append(adopt_fd(spec.fd))
            elif spec.kind == "unix":
                opened.append(_bind_unix(spec, backlog, unix_mode))
            else:
                opened.append(_bind_tcp(spec, backlog))
    except BaseException:
        for item in opened:
            item.close(unlink=True)
        raise
    for item in pool.values():
        log.info("closing inherited socket %s: no bind asks for it any more", item.address)
        item.close(unlink=False)
    return opened


def _bind_tcp(spec: BindSpec, backlog: int) -> ListenSocket:
    try:
        infos = socket.getaddrinfo(
            spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(
            f"cannot listen on {spec}: cannot resolve {spec.host!r}: {exc.strerror}"
        ) from exc
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Restarting right after a stop must not fail on connections still in TIME_WAIT.
        # Not SO_REUSEPORT: it would let another server share the port silently.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Predictable on every system: [::] is IPv6 only, 0.0.0.0 is bound separately.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {spec}: {exc.strerror or exc}") from exc
    return ListenSocket(sock, spec, _address_text(sock))


def _bind_unix(spec: BindSpec, backlog: int, unix_mode: int | None) -> ListenSocket:
    path = spec.path
    _remove_stale(spec)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {spec}: {exc.strerror or exc}") from exc
    try:
        info = os.stat(path)
        # chmod before listen(): until then nobody can connect, whatever the umask gave.
        if unix_mode is not None:
            os.chmod(path, unix_mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise BindError(f"cannot listen on {spec}: {exc.strerror or exc}") from exc
    return ListenSocket(sock, spec, str(spec), owns_path=True, path_id=(info.st_dev, info.st_ino))


def _remove_stale(spec: BindSpec) -> None:
    """Remove a socket file nothing listens on; refuse anything else at the path."""
    path = spec.path
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise BindError(
            f"cannot listen on {spec}: {path} exists and is not a socket; not removing it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Non-blocking: a live server with a full accept queue must not hang the master.
    probe.setblocking(False)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        log.info("removing stale socket file %s", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    except FileNotFoundError:
        return
    except BlockingIOError:
        pass
    except OSError as exc:
        raise BindError(
            f"cannot listen on {spec}: cannot tell whether {path} is in use ({exc.strerror}); "
            "remove it by hand if nothing uses it"
        ) from exc
    finally:
        probe.close()
    raise BindError(f"cannot listen on {spec}: another process is listening on {path}")


def _address_text(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = os.fsdecode(name) if isinstance(name, bytes) else name
        return f"unix:{path}" if path else "unix:(unnamed)"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_INET:
        return f"{name[0]}:{name[1]}"
    return str(name)


def _listening_socket(fd: int, what: str) -> socket.socket:
    """Wrap open descriptor ``fd``, checking it is a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise BindError(f"{what}: file descriptor {fd} is not open") from exc
        if exc.errno == errno.ENOTSOCK:
            raise BindError(f"{what}: file descriptor {fd} is not a socket") from exc
        raise BindError(f"{what}: file descriptor {fd}: {exc.strerror or exc}") from exc
    problem = ""
    if sock.type != socket.SOCK_STREAM:
        problem = "is a socket but not a stream (TCP or UNIX stream) socket"
    elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = "is a stream socket but not listening"
    if problem:
        # detach(): the descriptor is not ours to close on a refusal.
        sock.detach()
        raise BindError(f"{what}: file descriptor {fd} {problem}")
    return sock


def adopt_fd(fd: int) -> ListenSocket:
    """Take over open descriptor ``fd`` (``fd://N``); ``BindError`` unless it is listening."""
    spec = BindSpec("fd", fd=fd)
    sock = _listening_socket(fd, str(spec))
    sock.set_inheritable(False)
    return ListenSocket(sock, spec, _address_text(sock))


def systemd_sockets() -> list[socket.socket]:
    """The sockets systemd passed to this process (socket activation), else ``[]``.

    They are descriptors ``3 .. 3+LISTEN_FDS-1``, and only meant for us when
    ``LISTEN_PID`` is our pid (the variables may have been left for a parent).
    ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed from the
    environment in every case, so that no child takes them for its own.
    ``BindError`` if a passed descriptor is not a listening stream socket.
    """
    values = {name: os.environ.pop(name, None) for name in SYSTEMD_ENV}
    pid_text, count_text = values["LISTEN_PID"], values["LISTEN_FDS"]
    if not pid_text or not count_text or pid_text.strip() != str(os.getpid()):
        return []
    if not (count_text.isascii() and count_text.isdigit()):
        raise BindError(f"LISTEN_FDS={count_text!r} is not a number")
    sockets = []
    for fd in range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + int(count_text)):
        sock = _listening_socket(fd, "socket activation")
        # systemd leaves them inheritable; programs the workers run must not get them.
        sock.set_inheritable(False)
        sockets.append(sock)
    return sockets


def export_for_exec(sockets: Sequence[ListenSocket]) -> dict[str, str]:
    """Prepare ``sockets`` for a re-exec: make them inheritable; return the environment to add.

    Call it right before ``exec``-ing the new master with ``os.environ``
    updated by the returned mapping (format in the module docstring).
    """
    entries = []
    for item in sockets:
        item.socket.set_inheritable(True)
        source = "systemd" if item.activated else str(item.spec)
        entries.append(f"{item.fileno()}={quote_from_bytes(os.fsencode(source), _EXPORT_SAFE)}")
    return {INHERIT_ENV: ",".join(entries)}


def inherited_sockets() -> list[ListenSocket]:
    """The sockets the previous master handed over (``MORELLO_INHERITED_FDS``), else ``[]``.

    The variable is removed from the environment. The sockets do not own
    their UNIX socket files (the old master still serves them): set
    ``owns_path`` once the old master has exited. ``BindError`` if the
    variable is malformed or a descriptor is not a listening socket.
    """
    value = os.environ.pop(INHERIT_ENV, "")
    result = []
    for entry in filter(None, value.split(",")):
        fd_text, equals, quoted = entry.partition("=")
        if not (equals and fd_text.isascii() and fd_text.isdigit() and quoted):
            raise BindError(f"{INHERIT_ENV}: malformed entry {entry!r} (expected FD=SOURCE)")
        fd = int(fd_text)
        source = os.fsdecode(unquote_to_bytes(quoted))
        if source == "systemd":
            spec = BindSpec("fd", fd=fd)
        else:
            try:
                spec = parse_bind(source)
            except ValueError as exc:
                raise BindError(f"{INHERIT_ENV}: {exc}") from exc
        sock = _listening_socket(fd, f"inherited {source}")
        sock.set_inheritable(False)
        item = ListenSocket(sock, spec, _address_text(sock), activated=source == "systemd")
        if spec.kind == "unix":
            item.path_id = _socket_file_id(spec.path)
        result.append(item)
    return result


def _socket_file_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISSOCK(info.st_mode) else None


def open_listeners(
    specs: Sequence[BindSpec], backlog: int, unix_mode: int | None = None
) -> list[ListenSocket]:
    """The master's listening sockets: activated, else inherited and bound, else bound.

    The policy is in the module docstring. ``BindError`` when a socket
    cannot be opened or there is nothing to listen on.
    """
    inherited = inherited_sockets()
    activated = [item for item in inherited if item.activated]
    for sock in systemd_sockets():
        spec = BindSpec("fd", fd=sock.fileno())
        activated.append(ListenSocket(sock, spec, _address_text(sock), activated=True))
    if activated:
        for item in inherited:
            if not item.activated:
                item.close(unlink=False)
        if specs:
            log.info(
                "socket activation: listening on %s; ignoring binds %s",
                ", ".join(item.address for item in activated),
                ", ".join(str(spec) for spec in specs),
            )
        return activated
    listeners = bind_all(specs, backlog, unix_mode, inherited)
    if not listeners:
        raise BindError("nothing to listen on: no bind given and no socket from systemd")
    return listeners
