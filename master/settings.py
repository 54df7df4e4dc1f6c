"""The master's settings: defaults, ``master.*`` keys of a config file, command-line flags.

Flags override the config file, which overrides the defaults. In a
CherryPy-format config file the settings live in ``[global]`` under the
``master`` namespace, spelled like the flags with underscores::

    [global]
    master.workers = 4
    master.bind = ["127.0.0.1:8080", "unix:/run/app.sock"]
    master.max_rss = "512M"
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from morello.configfile import load as load_config
from morello.logs import LogManager, check_access_format

from .sockets import BindSpec

#: Start of the master's process title, ``morello: master [NAME]``.
MASTER_TITLE = "morello: master"
#: Values of ``log_level``.
LOG_LEVELS = ("debug", "info", "warning", "error")

_SIZE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


#: What each kind of value looks like, for error messages.
EXPECTED = {
    "int": "a whole number like 4",
    "float": "a number of seconds like 30 or 2.5",
    "size": "a size like 512M (bytes, or a K, M, G or T suffix)",
    "bool": "True or False",
    "mode": "an octal mode like 660",
    "paths": "a list of request paths like ['/', '/api/health']",
}

#: ``source`` of :meth:`Settings.updated` for flags: errors then name the flag.
COMMAND_LINE = "command line"


def _expected(kind: str, value: Any) -> ValueError:
    return ValueError(f"expected {EXPECTED[kind]}, got {value!r}")


def parse_size(value: int | str | None) -> int | None:
    """Bytes from ``512M``, ``1.5G``, ``1048576``...; None stays None."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    match = _SIZE.fullmatch(str(value)) if isinstance(value, str) else None
    if not match:
        raise _expected("size", value)
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Settings:
    """Everything the master needs to know; see README for each key."""

    #: ``module:object`` (or ``module``) that names the application.
    app: str = ""
    workers: int = field(default_factory=default_workers)
    #: Most workers TTIN or ``/scale`` may reach; None: derived from CPUs and memory.
    max_workers: int | None = None
    #: Most request threads per worker (and per socket).
    threads: int = 10
    #: Request threads a worker keeps however idle; it adds more, up to ``threads``,
    #: while requests wait for one and the CPU has room.
    min_threads: int = 1
    bind: list[str] = field(default_factory=lambda: ["127.0.0.1:8080"])
    backlog: int = 2048
    #: Permission bits for UNIX socket binds.
    unix_mode: int | None = None
    config: str | None = None
    preload: bool = False
    max_requests: int = 0
    max_requests_jitter: int = 0
    #: Liveness: seconds without a heartbeat before a worker is aborted.
    timeout: float = 30.0
    boot_timeout: float = 60.0
    request_timeout: float | None = None
    graceful_timeout: float = 30.0
    max_rss: int | None = None
    pidfile: str | None = None
    daemon: bool = False
    user: str | None = None
    group: str | None = None
    control_bind: str | None = None
    #: Secret every POST to the control endpoint must present (``Authorization: Bearer``).
    control_token: str | None = None
    #: Where to serve only ``/healthz`` and ``/readyz`` (read-only: any address).
    health_bind: str | None = None
    reload: bool = False
    heartbeat_interval: float = 1.0
    #: Distinct handlers the per-handler latency metrics keep apart; later ones are ``other``.
    metrics_max_handlers: int = 100
    #: Workers trace allocations this many frames deep and log, when they drain, where
    #: their memory grew (0: off; tracing slows every allocation).
    tracemalloc: int = 0
    #: New workers started ahead of retiring old ones during a rollout.
    max_surge: int = 1
    #: Consecutive boot failures after which the master stops starting workers.
    max_boot_failures: int = 5
    #: First pause after a boot failure; it doubles up to ``boot_backoff_max``.
    boot_backoff: float = 0.5
    boot_backoff_max: float = 30.0
    #: Paths every new worker GETs from its app in-process before it is ready;
    #: an answer that is not 2xx is a boot failure.
    warmup: list[str] = field(default_factory=list)
    #: Seconds the first new worker of a rollout serves beside the old ones and
    #: is compared with them before the rollout goes on (0: no canary).
    canary_seconds: float = 0.0
    #: How far the canary's 5xx rate may exceed the old workers' (0.01: one point).
    canary_max_5xx_rate: float = 0.01
    #: How many times the old workers' p99 latency the canary's may reach.
    canary_max_p99_ratio: float = 2.0
    #: Requests the canary must serve before it is judged.
    canary_min_requests: int = 100
    #: Name shown in process titles; defaults to the app spec.
    name: str = ""
    #: Where master and workers log (``-``: standard error).
    error_logfile: str = "-"
    #: Where workers write one line per request (``-``: standard output; None: nowhere).
    access_logfile: str | None = None
    access_log_format: str = LogManager.access_log_format
    log_level: str = "info"

    def check(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        if not self.app:
            raise ValueError("no application given: morello serve MODULE:OBJECT")
        self.check_logs()
        if not self.bind:
            raise ValueError("no bind address given")
        for name in (
            "workers", "threads", "min_threads", "backlog", "max_surge", "max_boot_failures",
            "metrics_max_handlers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.min_threads > self.threads:
            raise ValueError(
                f"min_threads ({self.min_threads}) is above threads ({self.threads}), "
                "the most threads a worker runs; raise threads or lower min_threads"
            )
        if self.max_workers is not None and self.max_workers < self.workers:
            raise ValueError(
                f"max_workers ({self.max_workers}) is below workers ({self.workers}); "
                "raise max_workers or start fewer workers"
            )
        if self.health_bind is not None:
            from .control.address import parse_address

            try:
                parse_address(self.health_bind)
            except ValueError as exc:
                raise ValueError(f"health_bind: {exc}") from None
        if self.control_token is not None and not self.control_token.strip():
            raise ValueError("control_token must not be empty")
        for name in ("max_requests", "max_requests_jitter", "tracemalloc"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)!r}")
        for name in ("timeout", "boot_timeout", "graceful_timeout", "heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.request_timeout is not None and self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, not {self.request_timeout!r}")
        self.check_rollout()
        if self.heartbeat_interval * 2 > self.timeout:
            raise ValueError(
                f"timeout ({self.timeout}s) must be at least twice heartbeat_interval "
                f"({self.heartbeat_interval}s), or healthy workers would be aborted"
            )

    def check_rollout(self) -> None:
        """Raise ValueError when the warm-up or canary settings cannot work."""
        from morello.worker.warmup import check_paths

        check_paths(self.warmup)
        if self.canary_seconds < 0:
            raise ValueError(f"canary_seconds must not be negative, not {self.canary_seconds!r}")
        if not 0 <= self.canary_max_5xx_rate <= 1:
            raise ValueError("canary_max_5xx_rate must be a fraction from 0 to 1 (0.01 is 1%), "
                             f"not {self.canary_max_5xx_rate!r}")  # fmt: skip
        if self.canary_max_p99_ratio < 1:
            raise ValueError(
                f"canary_max_p99_ratio must be at least 1, not {self.canary_max_p99_ratio!r}"
            )
        if 0 < self.canary_seconds < 2 * self.heartbeat_interval:
            raise ValueError(
                f"canary_seconds ({self.canary_seconds}s) must be 0 or at least twice "
                f"heartbeat_interval ({self.heartbeat_interval}s): the canary is judged on the "
                "counters its heartbeats bring"
            )
        if self.canary_min_requests < 1:
            raise ValueError(
                f"canary_min_requests must be at least 1, not {self.canary_min_requests!r}"
            )

    def check_logs(self) -> None:
        """Raise ValueError when the log settings cannot work."""
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not "
                             f"{self.log_level!r}")  # fmt: skip
        check_access_format(self.access_log_format)
        # A daemon's standard streams go to /dev/null: its logs need files.
        if self.daemon and self.error_logfile in ("-", "", None):
            raise ValueError("--daemon needs --error-logfile FILE (its stderr is /dev/null)")
        if self.daemon and self.access_logfile == "-":
            raise ValueError("--daemon needs --access-logfile FILE, not - (its stdout is "
                             "/dev/null)")  # fmt: skip

    @property
    def title_name(self) -> str:
        return self.name or self.app

    @property
    def master_title(self) -> str:
        """The master's process title, by which ``morello ctl`` recognizes it."""
        return f"{MASTER_TITLE} [{self.title_name}]"

    def updated(self, values: dict[str, Any], source: str) -> Settings:
        """A copy with ``values`` applied, each converted to the field's type.

        Errors name ``source`` and the setting as it is spelled there.
        """
        known = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"{source}: unknown master setting {key!r}")
            try:
                changes[key] = convert(key, value)
            except ValueError as exc:
                if source == COMMAND_LINE:
                    raise ValueError(f"--{key.replace('_', '-')}: {exc}") from None
                raise ValueError(f"{source}: master.{key}: {exc}") from None
        return dataclasses.replace(self, **changes)


def convert(key: str, value: Any) -> Any:
    """``value`` (from a flag or a config file) as setting ``key`` holds it.

    Raises ValueError saying what was expected.
    """
    # Annotations are strings here (postponed evaluation): "int", "float | None"...
    kind = Settings.__dataclass_fields__[key].type
    if key == "max_rss":
        return parse_size(value)
    if key == "bind":
        return [value] if isinstance(value, str) else [str(item) for item in value]
    if key == "warmup":
        return _paths(value)
    if value is None and kind.endswith("| None"):
        return None
    if key == "unix_mode":
        return _number(value, "mode", lambda v: int(v, 8) if isinstance(v, str) else int(v))
    if kind == "bool":
        if not isinstance(value, bool):
            raise _expected("bool", value)
        return value
    if kind.startswith("int"):
        if isinstance(value, float) and not value.is_integer():
            raise _expected("int", value)
        return _number(value, "int", int)
    if kind.startswith("float"):
        return _number(value, "float", float)
    return value


def _paths(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _expected("paths", value)


def _number(value: Any, kind: str, parse: Callable[[Any], Any]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _expected(kind, value)
    try:
        number = parse(value)
    except ValueError:
        raise _expected(kind, value) from None
    if not math.isfinite(number):
        raise _expected(kind, value)
    return number


def config_file_values(path: str) -> dict[str, Any]:
    """The ``master.*`` keys of ``path``'s [global] section, without the prefix."""
    global_section = load_config(path).get("global", {})
    return {
        key.split(".", 1)[1]: value
        for key, value in global_section.items()
        if key.startswith("master.")
    }


def socket_bind(host: str | None, port: Any, path: str | None = None) -> str:
    """The bind address of CherryPy's ``server.socket_host``/``socket_port`` or ``socket_file``."""
    if path:
        return str(BindSpec("unix", path=path))
    try:
        number = 8080 if port is None else int(port)
    except (TypeError, ValueError):
        raise ValueError(f"server.socket_port must be a port number, not {port!r}") from None
    return str(BindSpec("tcp", host=host or "127.0.0.1", port=number))


def config_file_socket(path: str) -> tuple[str, str] | None:
    """``(bind, keys)`` from the ``server.socket_*`` keys of ``path``'s [global], if any."""
    section = load_config(path).get("global", {})
    if section.get("server.socket_file"):
        return socket_bind(None, None, section["server.socket_file"]), "server.socket_file"
    host, port = section.get("server.socket_host"), section.get("server.socket_port")
    if host is None and port is None:
        return None
    try:
        return socket_bind(host, port), "server.socket_host/socket_port"
    except ValueError as exc:
        raise ValueError(f"config file {path!r}: {exc}") from None


def from_config_file(path: str, base: Settings | None = None) -> Settings:
    """``base`` (or the defaults) updated with the ``master.*`` keys of ``path``'s [global]."""
    settings = base or Settings()
    return settings.updated(config_file_values(path), f"config file {path!r}")
