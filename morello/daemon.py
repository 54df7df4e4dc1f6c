"""``python -m morello``: CherryPy's ``cherryd``, one process serving what modules mount.

::

    python -m morello -c site.conf -i myapp.site [-d] [-p site.pid] [-e production] [-P DIR]

imports the ``-i`` modules (which mount their applications on
``morello.tree``), applies every ``-c`` config file as global config (and
to the application too when exactly one is mounted), then runs the engine in
this process with its signal handlers: SIGTERM stops, SIGHUP restarts a
daemon and stops a process attached to a terminal, SIGUSR1 reloads
gracefully, and the autoreloader restarts the process when a module's file
changes (unless the config turns ``engine.autoreload.on`` off). ``-d``
detaches from the terminal, ``-p`` writes the process id to a file for as
long as the process runs. For several worker processes use ``morello serve``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import morello
from morello.process import plugins

__all__ = ["main", "start"]

PROG = "python -m morello"
#: Exit status for bad options, modules or config files; a failed start is 1.
EXIT_USAGE = 2


class StartupError(Exception):
    """A one-line reason why the modules or the config cannot be used."""


def start(
    configfiles: Sequence[str] | None = None,
    daemonize: bool = False,
    environment: str | None = None,
    fastcgi: bool = False,
    scgi: bool = False,
    pidfile: str | None = None,
    imports: Sequence[str] | None = None,
    cgi: bool = False,
) -> None:
    """Import, configure, subscribe the process plugins, start the engine and block.

    The signature is ``cherrypy.daemon.start``'s. Raises :class:`StartupError`
    for a module that cannot be imported, a config file that cannot be read
    and the gateways morello does not have (FastCGI, SCGI, CGI); a failing
    engine start exits with status 1.
    """
    from morello.worker.app_loading import BootError, import_module

    refused = [name for name, on in (("FastCGI", fastcgi), ("SCGI", scgi), ("CGI", cgi)) if on]
    if refused:
        raise StartupError(
            f"{' and '.join(refused)} serving is not supported: morello speaks HTTP; "
            "put a proxy such as nginx in front of it"
        )
    for name in imports or ():
        try:
            import_module(name)
        except BootError as exc:
            raise StartupError(str(exc)) from (exc.__cause__ if exc.show_traceback else None)
    for path in configfiles or ():
        try:
            morello.config.update(path)
            # One application: the file is its config as well, as in cherryd
            # (a grafted WSGI application has no config to merge into).
            apps = list(morello.tree.apps.values())
            if len(apps) == 1 and isinstance(apps[0], morello.Application):
                apps[0].merge(path)
        except (OSError, ValueError) as exc:
            raise StartupError(f"bad config file {path!r}: {type(exc).__name__}: {exc}") from None
    if environment is not None:
        try:
            morello.config.update({"environment": environment})
        except ValueError as exc:
            raise StartupError(str(exc)) from None

    engine = morello.engine
    if daemonize:
        # A daemon has no terminal to write to.
        morello.config.update({"log.screen": False})
        plugins.Daemonizer(engine).subscribe()
    if pidfile:
        plugins.PIDFile(engine, pidfile).subscribe()
    engine.signal_handler.subscribe()
    try:
        engine.start()
    except Exception:
        sys.exit(1)  # the bus has logged the error and exited
    engine.block()


def parser() -> argparse.ArgumentParser:
    """cherryd's options."""
    from morello.master.cli import Parser

    parser = Parser(
        prog=PROG,
        description="Serve the applications that the imported modules mount, in one process "
        "(CherryPy's cherryd). For a prefork server use 'morello serve'.",
    )
    add = parser.add_argument
    add("-c", "--config", action="append", default=[], metavar="FILE",
        help="a config file, applied as global config (and as the application's when only one "
        "is mounted); repeatable")
    add("-d", dest="daemonize", action="store_true", help="run as a daemon")
    add("-e", "--environment", help="apply the given config environment (e.g. production)")
    add("-f", dest="fastcgi", action="store_true", help="FastCGI: not supported")
    add("-s", dest="scgi", action="store_true", help="SCGI: not supported")
    add("-x", dest="cgi", action="store_true", help="CGI: not supported")
    add("-i", "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="a module to import (it mounts the applications); repeatable")
    add("-p", "--pidfile", help="write the process id to this file while running")
    add("-P", "--Path", dest="paths", action="append", default=[], metavar="DIR",
        help="a directory to put first on sys.path; repeatable")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run cherryd with ``argv`` (default: the command line)."""
    options = parser().parse_args(argv)
    for path in options.paths:
        sys.path.insert(0, path)
    try:
        start(options.config, options.daemonize, options.environment, options.fastcgi,
              options.scgi, options.pidfile, options.imports, options.cgi)  # fmt: skip
    except StartupError as exc:
        if exc.__cause__ is not None:
            # An error inside the application's own code: its traceback helps.
            import traceback

            traceback.print_exception(exc.__cause__)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


#: cherryd's name for :func:`main`.
run = main
