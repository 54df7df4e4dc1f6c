"""What ``morello serve`` checks before it binds a socket or forks a worker.

A broken app must not cost a round of worker boots, back-offs and a page
of log: the master checks the app spec and the bind addresses itself, then
has a short-lived forked child load the app exactly as a worker would
(config file, import, mount, RAM sessions, strict config check). The
master itself never imports the app (unless ``--preload``). Any problem is
one line on stderr, after the traceback when the app's own code raised,
and exit status 2.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import select
import signal
import sys
import traceback
from typing import Any

from . import server_logs
from .settings import Settings
from .sockets import parse_bind

#: Exit status of a start refused for a bad app or config.
EXIT_BAD_CONFIG = 2
#: Longest message the child hands back.
_MAX_MESSAGE = 4096


class PreflightError(ValueError):
    """The app or its config cannot be served; ``str()`` is one line."""


@dataclasses.dataclass(frozen=True)
class Checked:
    """What the pre-flight check learnt from loading the app."""

    #: What is served, in a few words.
    description: str
    #: Where the app keeps state other worker processes cannot see (RAM
    #: sessions), or None: the master then refuses to scale it above one worker
    #: from the start, not only once a worker has reported it.
    single_process: str | None = None


def preflight(settings: Settings, *, check_only: bool = False) -> int | Checked:
    """Check ``settings`` before serving: the exit status to end with, or what was learnt.

    With ``check_only`` (``--check-config``) say what would be served and
    return 0 when everything is fine.
    """
    try:
        check_spec(settings.app)
        for bind in settings.bind:
            parse_bind(bind)
        checked = load_in_child(settings)
    except ValueError as exc:
        print(f"morello serve: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    if check_only:
        print(f"config OK: {checked.description}; {settings.workers} worker(s) on "
              f"{', '.join(settings.bind)}", flush=True)  # fmt: skip
        return 0
    return checked


# -- the spec -------------------------------------------------------------------


def check_spec(spec: str) -> None:
    """Refuse a file path given as ``MODULE[:OBJECT]``, naming the spec to use instead."""
    module, _, attribute = spec.strip().partition(":")
    if not (module.endswith(".py") or os.sep in module or "/" in module):
        return
    path = module if module.endswith(".py") else module + ".py"
    if not os.path.isfile(path):
        raise PreflightError(
            f"bad application {spec!r}: expected MODULE or MODULE:OBJECT (a module "
            "name such as 'package.module', not a file path)"
        )
    suggestion = spec_for(path, attribute)
    raise PreflightError(f"{spec!r} is a file, not a module: did you mean {suggestion}?")


def spec_for(path: str, attribute: str = "") -> str:
    """The ``MODULE:OBJECT`` that serves the Python file ``path`` from the current directory."""
    absolute = os.path.abspath(path)
    name = attribute or root_candidate(absolute) or "OBJECT"
    relative = os.path.relpath(absolute, os.getcwd())
    if relative.startswith(os.pardir + os.sep):
        directory, file = os.path.split(absolute)
        return f"'cd {directory} && morello serve {file[:-3]}:{name}'"
    module = relative[:-3].replace(os.sep, ".").removesuffix(".__init__")
    return f"{module}:{name}"


def root_candidate(path: str) -> str | None:
    """The name of the application object the file ``path`` defines, read without importing it.

    A class with exposed methods, preferring the one the file itself passes
    to ``quickstart()`` or ``tree.mount()``; else a module-level ``app`` or
    ``application`` (a WSGI callable).
    """
    try:
        with open(path, encoding="utf-8") as file:
            module = ast.parse(file.read(), path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    handlers = [
        node.name for node in module.body if isinstance(node, ast.ClassDef) and _exposes(node)
    ]
    for call in ast.walk(module):
        if (
            isinstance(call, ast.Call)
            and _name(call.func) in ("quickstart", "mount")
            and call.args
            and isinstance(call.args[0], ast.Call)
            and _name(call.args[0].func) in handlers
        ):
            return _name(call.args[0].func)
    if handlers:
        return handlers[0]
    names = set()
    for node in module.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return next((name for name in ("application", "app") if name in names), None)


def _exposes(node: ast.ClassDef) -> bool:
    for item in [node, *node.body]:
        decorators = getattr(item, "decorator_list", [])
        if any(_name(d.func if isinstance(d, ast.Call) else d) == "expose" for d in decorators):
            return True
        if isinstance(item, ast.Assign) and any(
            _name(target) in ("exposed", "_cp_config") for target in item.targets
        ):
            return True
    return False


def _name(node: ast.AST) -> str | None:
    """``name`` of ``name`` or ``something.name``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


# -- loading the app in a child -------------------------------------------------------


def load_in_child(settings: Settings) -> Checked:
    """Load the app as a worker would, in a forked child; say what it serves.

    Raise :class:`PreflightError` with the child's one-line reason (the child
    printed the traceback, if any, itself).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit
        os.close(read_end)
        _child(settings, write_end)
    os.close(write_end)
    try:
        code, message = _wait_for_child(pid, read_end, settings.boot_timeout, settings.app)
    finally:
        os.close(read_end)
    if code == 0:
        return Checked(**json.loads(message))
    if code == EXIT_BAD_CONFIG:
        raise PreflightError(message)
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    reason = f": {message}" if message else ""
    raise PreflightError(f"loading {settings.app!r} ended with {how}{reason}")


def _wait_for_child(pid: int, read_end: int, timeout: float, app: str) -> tuple[int, str]:
    """The child's exit status and message; it is killed after ``timeout`` seconds."""
    pidfd = os.pidfd_open(pid)
    try:
        finished = select.select([pidfd], [], [], timeout)[0]
    except BaseException:  # Ctrl-C: no child may outlive us
        finished = []
        raise
    finally:
        os.close(pidfd)
        if not finished:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if not finished:
        raise PreflightError(f"loading {app!r} took more than boot_timeout={timeout}s")
    _, status = os.waitpid(pid, 0)
    os.set_blocking(read_end, False)
    try:
        data = os.read(read_end, _MAX_MESSAGE)
    except BlockingIOError:
        data = b""
    return os.waitstatus_to_exitcode(status), data.decode(errors="replace").strip()


def _child(settings: Settings, write_end: int) -> None:  # pragma: no cover - forked
    """Load the app, write what it is as JSON (or why not, as text), and end with 0 or 2."""
    from morello.sessions.prefork import ram_session_users
    from morello.worker.app_loading import BootError, prepare_app
    from morello.worker.signal_handling import die_with_parent, exit_now

    import morello

    code, message = 1, "unexpected error"
    try:
        die_with_parent(signal.SIGKILL)
        # The start-up warnings are shown here, once for every worker, where
        # the server's logs go. A log file that cannot be opened is reported
        # by the master itself, right after this check.
        with contextlib.suppress(OSError):
            server_logs.configure(settings)
        try:
            app = prepare_app(settings.app, settings.config, settings.workers)
            server_logs.take_over_screen()
            morello.checker()
            alone = next(iter(ram_session_users(morello.tree)), None)
            checked = Checked(f"{settings.app} ({describe(app)})", alone)
            code, message = 0, json.dumps(dataclasses.asdict(checked))
        except BootError as exc:
            if exc.show_traceback and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__)
            code, message = EXIT_BAD_CONFIG, str(exc)
        except BaseException as exc:  # the app's code: anything, even SystemExit
            traceback.print_exc()
            code = EXIT_BAD_CONFIG
            message = f"loading {settings.app!r} failed: {type(exc).__name__}: {exc}"
        os.write(write_end, message.encode(errors="replace")[:_MAX_MESSAGE])
    finally:
        exit_now(code)


def describe(app: Any) -> str:
    """What a loaded app is, in a few words."""
    import morello

    if app is morello.tree:
        mounts = ", ".join(repr(name) for name in sorted(app.apps)) or "nothing"
        return f"morello.tree with applications at {mounts}"
    return f"a WSGI callable, {type(app).__name__}"
