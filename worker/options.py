"""What the master tells a worker when it forks it, and how a worker ends.

The master fills in a :class:`WorkerOptions` in the forked child and calls
:func:`morello.worker.run` with it; nothing is passed on the command line or
through the environment, so the options are plain Python objects (sockets,
even an already imported application).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

#: Exit statuses of a worker process. The master reads them with ``waitpid``;
#: only :data:`EXIT_BOOT_FAILURE` changes what it does (a worker that cannot
#: even load the application is not restarted in a loop).
EXIT_OK = 0
#: Something unexpected went wrong after the worker was ready.
EXIT_ERROR = 1
#: The application could not be imported, mounted or started (before ``ready``).
EXIT_BOOT_FAILURE = 3
#: The process that forked us is not (any more) the master we were given.
EXIT_ORPHANED = 4
#: Ended by SIGABRT after dumping every thread's stack (128 + 6, as a shell reports it).
EXIT_ABORTED = 134


@dataclass(kw_only=True)
class WorkerOptions:
    """Everything one worker needs; built by the master in the forked child."""

    #: 1-based worker number, shown in the process title.
    number: int
    #: ``"module:object"`` or ``"module"`` to import in the worker, or an object
    #: the master already imported (preloading): see :func:`.app_loading.load_app`.
    app: str | object
    #: Bound, listening sockets inherited from the master; never closed by the worker.
    sockets: list[socket.socket]
    #: The worker's end of the master/worker ``socketpair``.
    channel: socket.socket
    #: PID of the master; the worker exits at once if that is not its parent.
    master_pid: int
    #: Most request threads per socket.
    threads: int = 10
    #: Request threads per socket kept however idle (the pool grows from there).
    min_threads: int = 1
    #: How many workers the master runs (RAM sessions are refused when above one).
    workers: int = 1
    #: A CherryPy-format config file: its ``[global]`` section is applied, and it
    #: is the application config when the worker mounts a root handler itself.
    config_file: str | None = None
    #: Seconds between ``heartbeat`` messages.
    heartbeat_interval: float = 1.0
    #: Distinct handlers the per-handler latency metrics keep apart (later ones: ``other``).
    metrics_max_handlers: int = 100
    #: Frames ``tracemalloc`` keeps per allocation, to log where memory grew (0: off).
    tracemalloc: int = 0
    #: Seconds a request may run before the worker asks to be recycled (None: no limit).
    request_timeout: float | None = None
    #: Requests after which the worker asks to be recycled (0: never).
    max_requests: int = 0
    #: Seconds a draining worker waits for in-flight requests before it exits anyway.
    graceful_timeout: float = 30.0
    #: Name shown in the process title (``morello: worker 2 [shop]``).
    app_name: str = ""
    #: Seconds a keep-alive connection may stay idle once draining started.
    idle_grace: float = 1.0
    #: The master's pre-flight check already showed the start-up warnings for
    #: this code (``morello.checker.quiet``): every worker need not repeat them.
    startup_checked: bool = False
    #: Extra attributes set on every :class:`morello.httpserver.Server` the worker
    #: builds (``socket_timeout``, ``max_request_body_size``...), after the config file.
    server_settings: dict[str, Any] = field(default_factory=dict)
    #: Paths (``/health?full=1``) GET from the application in-process before the
    #: worker is ready; any answer but 2xx is a boot failure (see :mod:`.warmup`).
    warmup: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ValueError(f"worker number must be 1 or more, not {self.number}")
        if not self.sockets:
            raise ValueError("a worker needs at least one listening socket")
        if self.threads < 1:
            raise ValueError(f"threads must be 1 or more, not {self.threads}")
        if not 1 <= self.min_threads <= self.threads:
            raise ValueError(
                f"min_threads must be between 1 and threads ({self.threads}), "
                f"not {self.min_threads}"
            )
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if self.request_timeout is not None and self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive (or None)")
        if self.max_requests < 0:
            raise ValueError("max_requests must be 0 (never) or positive")

    @property
    def title(self) -> str:
        """The process title: ``morello: worker N [app_name]``."""
        title = f"morello: worker {self.number}"
        return f"{title} [{self.app_name}]" if self.app_name else title
