"""The master's listening sockets, on real loopback and UNIX sockets.

Socket activation and the re-exec hand-over run a real child Python
process (``fork`` + ``execve``) that receives the descriptors the way
systemd or the old master passes them, and serves one connection on each.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import textwrap
import threading

import pytest
from morello.master import sockets
from morello.master.sockets import BindError, BindSpec, parse_bind


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")


@pytest.fixture
def short_dir():
    """A directory with a short path: UNIX socket paths are limited to 107 bytes."""
    directory = tempfile.mkdtemp(prefix="ms-", dir="/tmp")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def opened():
    """Collects ListenSockets and closes them after the test."""
    items: list[sockets.ListenSocket] = []
    yield items
    for item in items:
        item.close(unlink=True)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (sockets.INHERIT_ENV, *sockets.SYSTEMD_ENV):
        monkeypatch.delenv(name, raising=False)


def _bind(opened, texts, backlog=16, unix_mode=None, inherited=()):
    items = sockets.bind_all([parse_bind(t) for t in texts], backlog, unix_mode, inherited)
    opened.extend(items)
    return items


def _exchange(address, payload=b"ping"):
    """Connect to a TCP (host, port) or UNIX path; send ``payload``; return the reply."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    if isinstance(address, tuple) and ":" in address[0]:
        family = socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(address)
        client.sendall(payload)
        return client.recv(4096)


def _serve_one(listener):
    conn, _ = listener.socket.accept()
    with conn:
        conn.settimeout(10)
        conn.sendall(b"pong:" + conn.recv(4096))


# --- parse_bind ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("127.0.0.1:8080", BindSpec("tcp", host="127.0.0.1", port=8080), "127.0.0.1:8080"),
        ("localhost:80", BindSpec("tcp", host="localhost", port=80), "localhost:80"),
        ("0.0.0.0:0", BindSpec("tcp", host="0.0.0.0", port=0), "0.0.0.0:0"),
        (":8080", BindSpec("tcp", host="127.0.0.1", port=8080), "127.0.0.1:8080"),
        ("8080", BindSpec("tcp", host="127.0.0.1", port=8080), "127.0.0.1:8080"),
        (" web-1.example.org:65535 ", BindSpec("tcp", host="web-1.example.org", port=65535), None),
        ("[::1]:8080", BindSpec("tcp", host="::1", port=8080), "[::1]:8080"),
        ("[::]:443", BindSpec("tcp", host="::", port=443), "[::]:443"),
        ("unix:/run/app.sock", BindSpec("unix", path="/run/app.sock"), "unix:/run/app.sock"),
        ("fd://3", BindSpec("fd", fd=3), "fd://3"),
    ],
)
def test_parse_bind(text, expected, canonical):
    spec = parse_bind(text)
    assert spec == expected
    assert str(spec) == (canonical or text.strip())
    assert parse_bind(str(spec)) == spec


def test_relative_unix_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_bind("unix:run/app.sock").path == str(tmp_path / "run" / "app.sock")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty bind address"),
        ("   ", "empty bind address"),
        ("127.0.0.1:65536", "port 65536 is out of range"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:", "port '' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("localhost", "missing ':PORT'"),
        ("::1:8080", "put IPv6 addresses in brackets"),
        ("[::1:8080", r"missing '\]'"),
        ("[::1]8080", "missing ':PORT' after"),
        ("[::1]", "missing ':PORT' after"),
        ("[1.2.3.4]:80", "is not an IPv6 address"),
        ("999.1.1.1:80", "is not an IPv4 address"),
        ("bad_host!:80", "is not a valid host name"),
        ("-leading.dash:80", "is not a valid host name"),
        ("*:80", r"use 0\.0\.0\.0"),
        ("http://example.org:80", "unknown scheme"),
        ("unix:", "needs a path"),
        ("unix:@abstract", "abstract UNIX sockets are not supported"),
        ("unix:/run/dir/", "names a directory"),
        ("unix:/" + "a" * 120, "longer than 107 bytes"),
        ("fd://", "needs a file descriptor number"),
        ("fd://x", "needs a file descriptor number"),
        ("fd://-1", "needs a file descriptor number"),
    ],
)
def test_parse_bind_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bind(text)


# --- TCP -------------------------------------------------------------------------------------


def test_tcp_ipv4(opened):
    (item,) = _bind(opened, ["127.0.0.1:0"])
    host, port = item.socket.getsockname()
    assert (host, item.address) == ("127.0.0.1", f"127.0.0.1:{port}")
    assert port > 0
    assert str(item.spec) == "127.0.0.1:0"
    assert item.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert not item.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    assert item.socket.get_inheritable() is False
    assert not item.is_unix and not item.owns_path
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn, _ = item.socket.accept()
    conn.close()
    client.close()


@needs_ipv6
def test_tcp_ipv6_is_v6_only(opened):
    (item,) = _bind(opened, ["[::1]:0"])
    assert item.socket.family == socket.AF_INET6
    assert item.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    port = item.socket.getsockname()[1]
    assert item.address == f"[::1]:{port}"
    # v6-only: the same port is still free on IPv4.
    (v4,) = _bind(opened, [f"127.0.0.1:{port}"])
    assert v4.socket.getsockname()[1] == port


def test_host_name_is_resolved(opened):
    (item,) = _bind(opened, ["localhost:0"])
    assert item.socket.getsockname()[0] in ("127.0.0.1", "::1")


def test_port_in_use_is_a_clear_error(opened):
    (first,) = _bind(opened, ["127.0.0.1:0"])
    port = first.socket.getsockname()[1]
    with pytest.raises(BindError, match=f"cannot listen on 127.0.0.1:{port}: .*in use"):
        _bind(opened, [f"127.0.0.1:{port}"])


def test_unresolvable_host():
    with pytest.raises(BindError, match="cannot resolve 'no-such-host.invalid'"):
        sockets.bind_all([parse_bind("no-such-host.invalid:0")], 16)


def test_failure_closes_what_was_opened(opened, short_dir):
    (busy,) = _bind(opened, ["127.0.0.1:0"])
    port = busy.socket.getsockname()[1]
    path = os.path.join(short_dir, "first.socket")
    with pytest.raises(BindError, match="in use"):
        sockets.bind_all([parse_bind(f"unix:{path}"), parse_bind(f"127.0.0.1:{port}")], 16)
    assert not os.path.exists(path)


def test_same_bind_twice_is_refused():
    with pytest.raises(BindError, match="given twice"):
        sockets.bind_all([parse_bind(":0"), parse_bind("127.0.0.1:0")], 16)


def test_backlog_is_passed_to_listen(opened, monkeypatch):
    backlogs = []
    real_listen = socket.socket.listen
    monkeypatch.setattr(
        socket.socket, "listen", lambda self, n: (backlogs.append(n), real_listen(self, n))
    )
    _bind(opened, ["127.0.0.1:0"], backlog=77)
    assert backlogs == [77]


# --- UNIX sockets ----------------------------------------------------------------------------


def test_unix_socket_mode_and_serving(opened, short_dir):
    path = os.path.join(short_dir, "app.sock")
    (item,) = _bind(opened, [f"unix:{path}"], unix_mode=0o660)
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert item.is_unix and item.owns_path
    assert item.address == f"unix:{path}"
    assert item.socket.get_inheritable() is False
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    item.socket.accept()[0].close()
    client.close()


def test_stale_socket_file_is_replaced(opened, short_dir, caplog):
    path = os.path.join(short_dir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays behind, nothing listens: a crashed server
    with caplog.at_level("INFO", logger="morello.master.sockets"):
        (item,) = _bind(opened, [f"unix:{path}"])
    assert f"removing stale socket file {path}" in caplog.text
    assert item.path_id == (os.stat(path).st_dev, os.stat(path).st_ino)
    assert _exchange_in_thread(item, path) == b"pong:ping"


def test_live_socket_file_is_refused(short_dir):
    path = os.path.join(short_dir, "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen(1)
        with pytest.raises(BindError, match=f"another process is listening on {path}"):
            sockets.bind_all([parse_bind(f"unix:{path}")], 16)
        assert os.path.exists(path)


def test_regular_file_is_refused(short_dir):
    path = os.path.join(short_dir, "data")
    with open(path, "w") as file:
        file.write("precious")
    with pytest.raises(BindError, match="exists and is not a socket; not removing it"):
        sockets.bind_all([parse_bind(f"unix:{path}")], 16)
    with open(path) as file:
        assert file.read() == "precious"


def test_symlink_is_refused(short_dir):
    target = os.path.join(short_dir, "target")
    path = os.path.join(short_dir, "link.sock")
    os.symlink(target, path)
    with pytest.raises(BindError, match="not a socket"):
        sockets.bind_all([parse_bind(f"unix:{path}")], 16)
    assert os.path.islink(path)


def test_missing_directory_is_a_clear_error(short_dir):
    path = os.path.join(short_dir, "nope", "app.sock")
    with pytest.raises(BindError, match=f"cannot listen on unix:{path}: No such file"):
        sockets.bind_all([parse_bind(f"unix:{path}")], 16)


def test_close_unlink(short_dir):
    kept = os.path.join(short_dir, "kept.sock")
    removed = os.path.join(short_dir, "removed.sock")
    keep, remove = sockets.bind_all([parse_bind(f"unix:{kept}"), parse_bind(f"unix:{removed}")], 4)
    keep.close(unlink=False)
    remove.close(unlink=True)
    assert keep.fileno() == -1 and remove.fileno() == -1
    assert os.path.exists(kept)
    assert not os.path.exists(removed)
    remove.close(unlink=True)  # twice is harmless


def test_close_leaves_a_replacement_file_alone(short_dir):
    path = os.path.join(short_dir, "app.sock")
    (item,) = sockets.bind_all([parse_bind(f"unix:{path}")], 4)
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)  # another server took the path meanwhile
        item.close(unlink=True)
        assert os.path.exists(path)


# --- fd://N ----------------------------------------------------------------------------------


def test_fd_adopts_a_listening_socket(opened):
    original = socket.create_server(("127.0.0.1", 0))
    fd = original.detach()
    (item,) = _bind(opened, [f"fd://{fd}"])
    assert item.fileno() == fd
    assert item.address == f"127.0.0.1:{item.socket.getsockname()[1]}"
    assert str(item.spec) == f"fd://{fd}"
    assert item.socket.get_inheritable() is False
    assert _exchange_in_thread(item, item.socket.getsockname()) == b"pong:ping"


def _exchange_in_thread(item, address):
    server = threading.Thread(target=_serve_one, args=(item,))
    server.start()
    try:
        return _exchange(address)
    finally:
        server.join(10)


def test_fd_that_is_not_a_socket(tmp_path):
    with open(tmp_path / "file", "w") as file:
        fd = file.fileno()
        with pytest.raises(BindError, match=f"fd://{fd}: file descriptor {fd} is not a socket"):
            sockets.bind_all([parse_bind(f"fd://{fd}")], 16)
        os.fstat(fd)  # still open: a refusal does not close the caller's descriptor


def test_fd_that_is_not_listening():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unconnected:
        fd = unconnected.fileno()
        with pytest.raises(BindError, match="is a stream socket but not listening"):
            sockets.adopt_fd(fd)
        assert unconnected.getsockname()  # still open


def test_fd_that_is_a_datagram_socket():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(BindError, match="not a stream"):
            sockets.adopt_fd(udp.fileno())
        assert udp.fileno() >= 0


def test_fd_that_is_not_open():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(BindError, match=f"file descriptor {read_fd} is not open"):
        sockets.adopt_fd(read_fd)


# --- systemd socket activation ---------------------------------------------------------------


def test_systemd_variables_for_another_process_are_ignored_and_removed(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "web")
    assert sockets.systemd_sockets() == []
    assert not any(name in os.environ for name in sockets.SYSTEMD_ENV)


def test_systemd_without_variables():
    assert sockets.systemd_sockets() == []


def test_systemd_bad_count(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "many")
    with pytest.raises(BindError, match="LISTEN_FDS='many' is not a number"):
        sockets.systemd_sockets()


SYSTEMD_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from morello.master import sockets

    if sys.argv[1] == "raw":
        found = sockets.systemd_sockets()
        report = {"fds": [s.fileno() for s in found],
                  "inheritable": [s.get_inheritable() for s in found]}
        listener = found[0]
    else:
        items = sockets.open_listeners([sockets.parse_bind(sys.argv[2])], 16)
        report = {"fds": [i.fileno() for i in items], "activated": [i.activated for i in items],
                  "addresses": [i.address for i in items]}
        listener = items[0].socket
    report["left"] = [n for n in sockets.SYSTEMD_ENV if n in os.environ]
    print(json.dumps(report), flush=True)
    conn, _ = listener.accept()
    conn.sendall(b"activated " + conn.recv(100))
    conn.close()
    """
)


def _fork_exec(code, args, env, dup_to=None, listen_pid=False):
    """Start ``python -c code args`` with fork + execve; return (pid, its stdout as a file).

    ``dup_to`` maps a descriptor here to the number it gets in the child;
    ``listen_pid`` sets LISTEN_PID to the child's own pid, as systemd does.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_fd, 1)
            for source, target in (dup_to or {}).items():
                os.dup2(source, target)
            if listen_pid:
                env = {**env, "LISTEN_PID": str(os.getpid())}
            os.execve(sys.executable, [sys.executable, "-c", code, *args], env)
        finally:
            os._exit(127)
    os.close(write_fd)
    return pid, os.fdopen(read_fd, "rb")


def _wait(pid, output):
    output.close()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in sockets.SYSTEMD_ENV}
    env.pop(sockets.INHERIT_ENV, None)
    return {**env, **extra}


def _start_activated_child(mode, *args):
    listener = socket.create_server(("127.0.0.1", 0))
    env = _child_env(LISTEN_FDS="1", LISTEN_FDNAMES="web")
    pid, output = _fork_exec(
        SYSTEMD_CHILD, [mode, *args], env, dup_to={listener.fileno(): 3}, listen_pid=True
    )
    return listener, pid, output


def test_systemd_activation_in_a_real_child():
    listener, pid, output = _start_activated_child("raw")
    with listener:
        try:
            report = json.loads(output.readline())
            assert report == {"fds": [3], "inheritable": [False], "left": []}
            assert _exchange(listener.getsockname()) == b"activated ping"
        finally:
            assert _wait(pid, output) == 0


def test_activated_sockets_replace_the_binds():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        # Binding this address would fail: the child must not try.
        bind = f"127.0.0.1:{busy.getsockname()[1]}"
        listener, pid, output = _start_activated_child("policy", bind)
        with listener:
            try:
                report = json.loads(output.readline())
                port = listener.getsockname()[1]
                assert report["addresses"] == [f"127.0.0.1:{port}"]
                assert report["activated"] == [True]
                assert report["left"] == []
                assert _exchange(listener.getsockname()) == b"activated ping"
            finally:
                assert _wait(pid, output) == 0


# --- re-exec hand-over -----------------------------------------------------------------------


INHERIT_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from morello.master import sockets

    items = sockets.inherited_sockets()
    open_sockets = []
    for n in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{n}")
        except FileNotFoundError:  # the descriptor listdir() itself used
            continue
        if target.startswith("socket:["):
            open_sockets.append(int(target[len("socket:["):-1]))
    print(json.dumps({
        "env_left": sockets.INHERIT_ENV in os.environ,
        "items": [[i.fileno(), str(i.spec), i.address, i.owns_path, i.is_unix,
                   i.socket.get_inheritable()] for i in items],
        "socket_inodes": open_sockets,
    }), flush=True)
    for item in items:
        conn, _ = item.socket.accept()
        conn.sendall(b"new master " + conn.recv(100))
        conn.close()
    # This new master never took ownership: its stop must leave the path to the old one.
    for item in items:
        item.close(unlink=True)
    """
)


def test_export_and_inherit_across_execve(short_dir):
    path = os.path.join(short_dir, "app.sock")
    exported = sockets.bind_all([parse_bind("127.0.0.1:0"), parse_bind(f"unix:{path}")], 16)
    (private,) = sockets.bind_all([parse_bind("127.0.0.1:0")], 16)
    try:
        env = sockets.export_for_exec(exported)
        tcp, unix = exported
        assert env == {
            sockets.INHERIT_ENV: f"{tcp.fileno()}=127.0.0.1:0,{unix.fileno()}=unix:{path}"
        }
        assert tcp.socket.get_inheritable() and unix.socket.get_inheritable()
        assert not private.socket.get_inheritable()

        pid, output = _fork_exec(INHERIT_CHILD, [], _child_env(**env))
        try:
            report = json.loads(output.readline())
            port = tcp.socket.getsockname()[1]
            assert report["env_left"] is False
            assert report["items"] == [
                [tcp.fileno(), "127.0.0.1:0", f"127.0.0.1:{port}", False, False, False],
                [unix.fileno(), f"unix:{path}", f"unix:{path}", False, True, False],
            ]
            inodes = set(report["socket_inodes"])
            assert os.fstat(tcp.fileno()).st_ino in inodes
            assert os.fstat(unix.fileno()).st_ino in inodes
            assert os.fstat(private.fileno()).st_ino not in inodes  # not inheritable
            assert _exchange(("127.0.0.1", port)) == b"new master ping"
            assert _exchange(path) == b"new master ping"
        finally:
            assert _wait(pid, output) == 0
        assert os.path.exists(path)  # the child did not own it
    finally:
        for item in (*exported, private):
            item.close(unlink=True)
    assert not os.path.exists(path)  # the old master did


def _reexec_in_process(items, monkeypatch):
    """What exec does, within this process: export, drop our objects, inherit."""
    env = sockets.export_for_exec(items)
    for item in items:
        item.socket.detach()  # the descriptor now belongs to the inheriting side
    monkeypatch.setenv(sockets.INHERIT_ENV, env[sockets.INHERIT_ENV])
    return env[sockets.INHERIT_ENV], sockets.inherited_sockets()


def test_export_format_encodes_awkward_paths(short_dir, monkeypatch, opened):
    path = os.path.join(short_dir, "a,b%c d.sock")
    (item,) = sockets.bind_all([parse_bind(f"unix:{path}")], 4)
    fd = item.fileno()
    value, (inherited,) = _reexec_in_process([item], monkeypatch)
    opened.append(inherited)
    assert value == f"{fd}=unix:{short_dir}/a%2Cb%25c%20d.sock"
    assert sockets.INHERIT_ENV not in os.environ
    assert inherited.spec == parse_bind(f"unix:{path}")
    assert inherited.fileno() == fd and not inherited.owns_path


def test_inherited_path_is_removed_only_once_claimed(short_dir, monkeypatch):
    path = os.path.join(short_dir, "app.sock")
    _, (first,) = _reexec_in_process(sockets.bind_all([parse_bind(f"unix:{path}")], 4), monkeypatch)
    first.close(unlink=True)
    assert os.path.exists(path)
    stale_free = sockets.bind_all([parse_bind(f"unix:{path}")], 4)  # the stale file is replaced
    _, (second,) = _reexec_in_process(stale_free, monkeypatch)
    second.owns_path = True  # the old master has exited: the new one owns the path
    second.close(unlink=True)
    assert not os.path.exists(path)


def test_bind_all_reuses_inherited_and_closes_the_rest(short_dir, monkeypatch, opened):
    dropped_path = os.path.join(short_dir, "dropped.sock")
    new_path = os.path.join(short_dir, "new.sock")
    old = sockets.bind_all([parse_bind("127.0.0.1:0"), parse_bind(f"unix:{dropped_path}")], 4)
    port = old[0].socket.getsockname()[1]
    tcp_fd = old[0].fileno()
    _, inherited = _reexec_in_process(old, monkeypatch)
    items = _bind(opened, ["127.0.0.1:0", f"unix:{new_path}"], inherited=inherited)
    assert items[0] is inherited[0]
    assert (items[0].fileno(), items[0].address) == (tcp_fd, f"127.0.0.1:{port}")
    assert items[1].owns_path and os.path.exists(new_path)
    assert inherited[1].fileno() == -1  # no bind asks for it any more
    assert os.path.exists(dropped_path)  # but its file is not this master's to remove


def test_exported_activated_sockets_stay_activated(monkeypatch, opened):
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    item = sockets.ListenSocket(listener, BindSpec("fd", fd=listener.fileno()), "x", activated=True)
    env = sockets.export_for_exec([item])
    assert env == {sockets.INHERIT_ENV: f"{item.spec.fd}=systemd"}
    listener.detach()
    monkeypatch.setenv(sockets.INHERIT_ENV, env[sockets.INHERIT_ENV])
    # Still activated after the re-exec: the binds stay ignored (binding port 1 would fail).
    (again,) = sockets.open_listeners([parse_bind("127.0.0.1:1")], 16)
    opened.append(again)
    assert again.activated and again.address == address


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3", "malformed entry '3'"),
        ("x=127.0.0.1:80", "malformed entry"),
        ("3=", "malformed entry"),
        ("3=bogus", "missing ':PORT'"),
    ],
)
def test_malformed_inherited_variable(monkeypatch, value, message):
    monkeypatch.setenv(sockets.INHERIT_ENV, value)
    with pytest.raises(BindError, match=message):
        sockets.inherited_sockets()


def test_inherited_descriptor_that_is_not_a_socket(monkeypatch, tmp_path):
    with open(tmp_path / "file", "w") as file:
        monkeypatch.setenv(sockets.INHERIT_ENV, f"{file.fileno()}=127.0.0.1:80")
        with pytest.raises(BindError, match="inherited 127.0.0.1:80: .* is not a socket"):
            sockets.inherited_sockets()


# --- open_listeners --------------------------------------------------------------------------


def test_open_listeners_binds_without_activation_or_inheritance(opened):
    items = sockets.open_listeners([parse_bind("127.0.0.1:0")], 16)
    opened.extend(items)
    assert len(items) == 1 and not items[0].activated


def test_open_listeners_with_nothing_to_listen_on():
    with pytest.raises(BindError, match="nothing to listen on"):
        sockets.open_listeners([], 16)
