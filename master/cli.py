"""The ``morello`` command: ``morello serve MODULE:OBJECT`` and ``morello ctl ...``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .settings import COMMAND_LINE, LOG_LEVELS, Settings, config_file_socket, config_file_values

logger = logging.getLogger("morello.master")

#: Environment variable naming the master that re-executed us (USR2).
REEXEC_FROM = "MORELLO_REEXEC_FROM"
#: The flag that checks the settings and the app instead of serving.
CHECK_CONFIG = "--check-config"


USAGE = """\
usage: morello serve MODULE[:OBJECT] [options]   serve an application with a prefork master
       morello ctl COMMAND [options]             status, scale, reload or stop a running master
       morello serve --help, morello ctl --help  the options of each
       morello --version"""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors fit on one line."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("morello")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def serve_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="morello serve",
        description="Serve a morello (CherryPy-style) or WSGI application with a prefork master.",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the file
    )
    add = parser.add_argument
    add("app", metavar="MODULE[:OBJECT]",
        help="the application: a root handler class or instance, an Application, a WSGI "
             "callable or a factory; MODULE alone serves what it mounted on morello.tree")
    # Values stay text here: Settings.updated converts flags and config keys alike.
    add("-w", "--workers", help="worker processes (default: one per CPU)")
    add("--max-workers", help="most workers TTIN or 'ctl scale' may reach (default: "
        "4 per CPU, fewer on small memory, never below --workers)")
    add("--threads", help="most request threads per worker (default 10)")
    add("--min-threads", help="request threads a worker keeps when idle; it adds more, up to "
        "--threads, while requests wait for one and the CPU has room (default 1)")
    add("-b", "--bind", action="append",
        help="HOST:PORT, [V6ADDR]:PORT, unix:PATH or fd://N; repeatable (default "
             "127.0.0.1:8080)")
    add("--backlog", help="listen queue length (default 2048)")
    add("--unix-mode", help="permissions of UNIX sockets, octal (e.g. 660)")
    add("-c", "--config", help="CherryPy-format config file (app config and master.* keys)")
    add("--preload", action="store_true", help="import the app once in the master, before forking")
    add("--max-requests", help="recycle a worker after this many requests (0: never)")
    add("--max-requests-jitter", help="random extra requests added to --max-requests")
    add("-t", "--timeout", help="seconds without heartbeat before a worker is aborted")
    add("--boot-timeout", help="seconds a new worker may take to get ready")
    add("--request-timeout", help="seconds after which a request is logged with its "
        "stack and its worker recycled")
    add("--graceful-timeout", help="seconds a draining worker gets to finish")
    add("--max-rss", help="recycle a worker above this memory (e.g. 512M)")
    add("--max-boot-failures",
        help="boot failures in a row after which no more workers are started (default 5)")
    add("--max-surge", help="extra workers started at once during a rollout")
    add("--warmup", action="append", metavar="PATH",
        help="GET PATH from the app in each new worker before it is ready; an answer "
             "that is not 2xx is a boot failure (repeatable)")
    add("--canary-seconds", help="during a rollout, the first new worker serves this long "
        "beside the old ones and is compared with them first (default 0: no canary)")
    add("--canary-max-5xx-rate", help="how far the canary's 5xx rate may exceed the old "
        "workers' (default 0.01)")
    add("--canary-max-p99-ratio", help="how many times the old workers' p99 latency the "
        "canary's may reach (default 2)")
    add("--canary-min-requests", help="requests the canary serves before it is judged "
        "(default 100)")
    add("-p", "--pidfile", help="write the master's pid to this file")
    add("-D", "--daemon", action="store_true", help="detach into the background")
    add("-u", "--user", help="switch to this user after binding")
    add("-g", "--group", help="switch to this group after binding")
    add("--control-bind", help="serve /healthz, /readyz, /status, /metrics here "
        "(loopback HOST:PORT or unix:PATH)")
    add("--health-bind", help="serve only GET /healthz and /readyz here, for probes and "
        "load balancers (HOST:PORT on any address, or unix:PATH)")
    add("--reload", action="store_true",
        help="rolling restart when a .py file changes (development)")
    add("-n", "--name", help="name shown in process titles")
    add("--error-logfile", metavar="FILE",
        help="where the master and the workers log; - for stderr (default)")
    add("--access-logfile", metavar="FILE",
        help="where workers write one line per request; - for stdout (default: nowhere)")
    add("--access-log-format", metavar="FORMAT",
        help="str.format template of access lines, fields {h} {l} {u} {t} {r} {s} {b} {f} "
             "{a} {o} {i} {z} (default: Apache's combined format)")
    add("--log-level", choices=LOG_LEVELS, help="least severe message logged (default info)")
    add("--print-config", action="store_true",
        help="print every setting, its value and where it came from, then exit")
    add(CHECK_CONFIG, action="store_true",
        help="load the settings and the app in a child process, say whether they are fine "
             "and exit (0, or 2 with the reason), without binding or serving")
    return parser  # fmt: skip


def settings_with_sources(argv: Sequence[str]) -> tuple[Settings, dict[str, str], bool]:
    """Parse ``serve`` arguments: the settings (flags over the config file over the
    defaults), where each setting not at its default came from, and ``--print-config``."""
    args = vars(serve_parser().parse_args(argv))
    print_config = args.pop("print_config", False)
    settings, sources = Settings(), {}
    if args.get("config"):
        values = config_file_values(args["config"])
        # CherryPy's own keys give the address when master.bind does not.
        socket = None if "bind" in values else config_file_socket(args["config"])
        if socket:
            values["bind"] = [socket[0]]
        settings = settings.updated(values, f"config file {args['config']!r}")
        sources.update(dict.fromkeys(values, f"config file {args['config']}"))
        if socket:
            sources["bind"] = f"{socket[1]} in {args['config']}"
    settings = settings.updated(args, COMMAND_LINE)
    sources.update(dict.fromkeys(args, COMMAND_LINE))
    settings.check()
    return settings, sources, print_config


def settings_from_args(argv: Sequence[str]) -> tuple[Settings, str]:
    """Parse ``serve`` arguments into settings and the log level they set."""
    settings, _, _ = settings_with_sources(argv)
    return settings, settings.log_level


#: Settings --print-config does not show.
SECRET_SETTINGS = ("control_token",)


def format_config(settings: Settings, sources: dict[str, str]) -> str:
    """Every setting as a config-file line, with where its value came from."""
    lines = []
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        shown = "'<hidden>'" if item.name in SECRET_SETTINGS and value else repr(value)
        lines.append(f"master.{item.name} = {shown}  # {sources.get(item.name, 'default')}")
    return "\n".join(lines)


def serve(argv: Sequence[str]) -> int:
    """``morello serve``: bind, fork the workers and supervise them until stopped."""
    from .launch import Launch
    from .preflight import preflight

    # A mode of the command, not a setting: it never reaches Settings.
    check_only = CHECK_CONFIG in argv
    argv = [arg for arg in argv if arg != CHECK_CONFIG]
    try:
        settings, sources, print_config = settings_with_sources(argv)
    except (OSError, ValueError) as exc:
        reason = str(exc)
        if isinstance(exc, OSError) and exc.filename:
            reason = f"cannot read config file {exc.filename!r}: {exc.strerror}"
        print(f"morello serve: error: {reason}", file=sys.stderr)
        return 2
    if print_config:
        print(format_config(settings, sources))
        return 0
    checked = preflight(settings, check_only=check_only)
    if isinstance(checked, int):
        return checked
    launch = Launch(settings, argv)
    launch.checked = checked
    if sources.get("bind", "").startswith("server."):
        launch.bind_origin = sources["bind"]
    return launch.run()


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point of the ``morello`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    if argv[:1] == ["ctl"]:
        from .ctl import main as ctl_main

        return ctl_main(argv[1:])
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if argv == ["--version"]:
        print(f"morello {version()}")
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main", "serve", "settings_from_args", "REEXEC_FROM"]
