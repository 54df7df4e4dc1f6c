"""Error and access logs on top of :mod:`logging`.

Each :class:`LogManager` owns two loggers: ``<root>.error`` and
``<root>.access`` for the site-wide manager (``morello.log``), and
``<root>.error.<appid>`` / ``<root>.access.<appid>`` for an application.
Application loggers propagate to the site-wide ones, which propagate to the
root logger, so handlers attached anywhere up the chain see the records.

The ``screen``, ``error_file``, ``access_file`` and ``wsgi`` properties add
or remove ready-made handlers (the ``log.*`` config keys set them); anything
fancier is done by attaching ordinary handlers to ``error_log`` and
``access_log``.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import string
import sys
import time as _time
from collections.abc import Callable
from typing import Any, TextIO

from morello.log_files import reopen_handlers
from morello.serving import serving

__all__ = [
    "GlobalLogManager",
    "LazyRfc3339UtcTime",
    "LogManager",
    "WSGIErrorHandler",
    "check_access_format",
    "decline_access",
    "logfmt",
]

#: The formatter of the built-in handlers: the message alone (it already
#: carries its timestamp), plus a traceback when there is one.
logfmt = logging.Formatter("%(message)s")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# (second, formatted stamp): formatting once per second is enough for logs,
# and one tuple assignment keeps the cache consistent across threads.
_last_stamp: tuple[int, str] = (-1, "")


def _log_time() -> str:
    global _last_stamp
    second = int(_time.time())
    cached = _last_stamp
    if cached[0] == second:
        return cached[1]
    t = _time.localtime(second)
    stamp = (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}]"
    )
    _last_stamp = (second, stamp)
    return stamp


# CherryPy's escaping of log items (that of Python's bytes repr): '"' gets a
# backslash, tab, newline and carriage return their C notation, every other
# byte outside printable ASCII (including each byte of a UTF-8 sequence) a
# \xhh escape; a backslash stays as it is.
_SPECIAL_ESCAPES = {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x22: '\\"',
}
_BYTE_ESCAPES = tuple(
    _SPECIAL_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in range(256)
)


def _escape(value: str) -> str:
    # Nearly every atom is plain printable ASCII: check that in C first.
    if value.isascii() and value.isprintable() and '"' not in value:
        return value
    return "".join([_BYTE_ESCAPES[b] for b in value.encode("utf-8", "surrogatepass")])


class LazyRfc3339UtcTime:
    """The UTC time it is when formatted, in RFC 3339 form: ``2026-12-07T05:42:27.123456Z``.

    The fraction is left out at a whole second. The ``{z}`` access-log
    field formats a new one for each line.
    """

    def __str__(self) -> str:
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        return now.isoformat("T") + "Z"


def _status_code(response: Any) -> str:
    status = response.output_status
    return "-" if status is None else status.partition(" ")[0]


_AtomGetter = Callable[[Any, Any], object]

# Access-log atoms by format field name. Each takes (request, response); the
# headers maps are read with dict.get because the keys are stored title-cased.
_ATOMS: dict[str, _AtomGetter] = {
    "h": lambda rq, rs: rq.remote.name or rq.remote.ip,
    "l": lambda rq, rs: "-",
    "u": lambda rq, rs: rq.login or "-",
    "t": lambda rq, rs: _log_time(),
    "r": lambda rq, rs: rq.request_line,
    "s": lambda rq, rs: _status_code(rs),
    "b": lambda rq, rs: dict.get(rs.headers, "Content-Length", "") or "-",
    "f": lambda rq, rs: dict.get(rq.headers, "Referer", ""),
    "a": lambda rq, rs: dict.get(rq.headers, "User-Agent", ""),
    "o": lambda rq, rs: dict.get(rq.headers, "Host", "-"),
    "i": lambda rq, rs: rq.unique_id,
    "z": lambda rq, rs: LazyRfc3339UtcTime(),
}

_FIELD_ROOT = re.compile(r"[.\[]")


def _used_atoms(fmt: str) -> tuple[tuple[str, _AtomGetter], ...]:
    """The (name, getter) pairs of the atoms ``fmt`` refers to."""
    names = {
        _FIELD_ROOT.split(field, 1)[0] for _, field, _, _ in string.Formatter().parse(fmt) if field
    }
    # Unknown names are left out; str.format then raises, and access()
    # reports that in the error log.
    return tuple((name, _ATOMS[name]) for name in names if name in _ATOMS)


def check_access_format(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` is a valid access-log format of known atoms."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(fmt) if field is not None]
    except ValueError as exc:
        raise ValueError(f"access log format {fmt!r}: {exc}") from None
    unknown = sorted({_FIELD_ROOT.split(field, 1)[0] for field in fields} - _ATOMS.keys())
    if unknown:
        raise ValueError(
            f"access log format {fmt!r}: unknown field(s) "
            f"{', '.join(f'{{{name}}}' for name in unknown)}; "
            f"the fields are {{{'}, {'.join(_ATOMS)}}}"
        )


def decline_access(handler: logging.Handler) -> logging.Handler:
    """Mark ``handler`` as one that drops access lines (it filters them out).

    :meth:`LogManager.access` formats no line that only such handlers would
    see. Returns ``handler``.
    """
    handler.declines_access = True  # type: ignore[attr-defined]
    return handler


def _access_heard(log: logging.Logger) -> bool:
    """Whether an INFO record of ``log`` reaches a handler that may write access lines."""
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if not getattr(handler, "declines_access", False):
                return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


class _ScreenHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``LogManager.screen`` manages."""


class _FileHandler(logging.FileHandler):
    """The handler ``LogManager.error_file`` / ``access_file`` manage."""


class WSGIErrorHandler(logging.Handler):
    """Write records to ``wsgi.errors`` of the request being served."""

    def emit(self, record: logging.LogRecord) -> None:
        environ = getattr(serving.request, "wsgi_environ", None)
        stream = environ.get("wsgi.errors") if environ else None
        if stream is None:
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _file_property(kind: str) -> property:
    """The ``<kind>_file`` property of :class:`LogManager`: the file its ``<kind>_log`` writes."""
    attr = f"{kind}_log"

    def get_path(self: LogManager) -> str:
        handler = self._find(getattr(self, attr), _FileHandler)
        return handler.baseFilename if handler else ""

    def set_path(self: LogManager, filename: str | os.PathLike[str] | None) -> None:
        self._set_file(getattr(self, attr), filename)

    doc = f"Path of the {kind} log file; set to a path to log there, '' or None to stop."
    return property(get_path, set_path, doc=doc)


class LogManager:
    """The error and access logs of the whole site or of one application.

    Calling the manager (or :meth:`error`) writes to the error log, which is
    for any message, not just errors; :meth:`access` writes one line per
    request in Apache's combined log format.
    """

    #: ``str.format`` template of access lines; the fields are single-letter
    #: atoms: h (remote host), l ('-'), u (login), t (time), r (request line),
    #: s (status code), b (Content-Length), f (Referer), a (User-Agent),
    #: o (Host), i (request unique id), z (UTC timestamp, RFC 3339).
    access_log_format: str = '{h} {l} {u} {t} "{r}" {s} {b} "{f}" "{a}"'

    def __init__(self, appid: object = None, logger_root: str = "morello") -> None:
        #: ``id()`` of the owning application, or None for the site-wide manager.
        self.appid = appid
        #: First part of the logger names.
        self.logger_root = logger_root
        suffix = "" if appid is None else f".{appid}"
        #: The :class:`logging.Logger` for error (and general) messages.
        self.error_log = logging.getLogger(f"{logger_root}.error{suffix}")
        #: The :class:`logging.Logger` for access lines.
        self.access_log = logging.getLogger(f"{logger_root}.access{suffix}")
        self.error_log.setLevel(logging.INFO)
        self.access_log.setLevel(logging.INFO)
        # Without any handler up the chain, logging's last-resort handler
        # would print warnings and errors to stderr; silence it as CherryPy
        # does. Access records are INFO, which never reach it, and leaving
        # the access logger bare lets access() notice cheaply that nobody
        # listens.
        if not any(isinstance(h, logging.NullHandler) for h in self.error_log.handlers):
            self.error_log.addHandler(logging.NullHandler())
        # (format, atoms it uses), recomputed whenever access_log_format is
        # replaced, on the instance or on the class.
        self._access_format: tuple[str, tuple[tuple[str, _AtomGetter], ...]] = ("", ())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.error_log.name!r} {self.access_log.name!r}>"

    # ------------------------------------------------------------ writing

    def error(
        self,
        msg: str = "",
        context: str = "",
        severity: int = logging.INFO,
        traceback: bool = False,
    ) -> None:
        """Write ``msg`` to the error log, prefixed by the time and ``context``.

        This is for any message an application wants to log, not only
        errors. With ``traceback=True`` the traceback of the exception being
        handled (if any) is appended.
        """
        log = self.error_log
        if not log.isEnabledFor(severity):
            return
        exc_info = sys.exc_info() if traceback else (None, None, None)
        message = f"{self.time()} {context} {msg}"
        # Formatters that stamp records themselves use the unstamped text.
        unstamped = f"{context} {msg}" if context else msg
        log.log(
            severity,
            message,
            exc_info=exc_info if exc_info[0] else None,
            extra={"unstamped": unstamped},
        )

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Same as :meth:`error`."""
        self.error(*args, **kwargs)

    def access(self) -> None:
        """Write the access line of the current request.

        The data come from ``serving.request`` and ``serving.response``.
        Non-printable characters and ``"`` in every atom are escaped the way
        CherryPy does it (a backslash stays as it is). Nothing is formatted when no handler would
        receive the line, or only handlers that drop it (:func:`decline_access`).
        """
        log = self.access_log
        if not (log.isEnabledFor(logging.INFO) and _access_heard(log)):
            return
        try:
            line = self._format_access(serving.request, serving.response)
            log.log(logging.INFO, line)
        except Exception:
            self.error(traceback=True)

    def _format_access(self, request: Any, response: Any) -> str:
        fmt = self.access_log_format
        cached_fmt, atoms = self._access_format
        if fmt is not cached_fmt:
            atoms = _used_atoms(fmt)
            self._access_format = (fmt, atoms)
        values = {}
        for name, getter in atoms:
            value = getter(request, response)
            values[name] = _escape(value if isinstance(value, str) else str(value))
        return fmt.format_map(values)

    def time(self) -> str:
        """Local time in Apache's log format, e.g. ``[21/Nov/2026:05:42:27]``."""
        return _log_time()

    def reopen_files(self) -> None:
        """Close and reopen every file handler of both logs.

        Call it after moving the log files away (log rotation) so that writing
        continues in fresh files at the configured paths.
        """
        reopen_handlers([*self.error_log.handlers, *self.access_log.handlers])

    # ----------------------------------------------------------- handlers

    @staticmethod
    def _find(log: logging.Logger, kind: type[logging.Handler]) -> Any:
        return next((h for h in log.handlers if type(h) is kind), None)

    def _set_screen(self, log: logging.Logger, enable: bool, stream: TextIO) -> None:
        handler = self._find(log, _ScreenHandler)
        if enable and handler is None:
            handler = _ScreenHandler(stream)
            handler.setFormatter(logfmt)
            log.addHandler(handler)
        elif not enable and handler is not None:
            log.removeHandler(handler)

    @property
    def screen(self) -> bool:
        """Whether messages are printed: errors to stderr, access lines to stdout."""
        return any(self._find(log, _ScreenHandler) for log in (self.error_log, self.access_log))

    @screen.setter
    def screen(self, enable: bool) -> None:
        self._set_screen(self.error_log, enable, sys.stderr)
        self._set_screen(self.access_log, enable, sys.stdout)

    def _set_file(self, log: logging.Logger, filename: str | os.PathLike[str] | None) -> None:
        handler = self._find(log, _FileHandler)
        if handler is not None:
            if filename and handler.baseFilename == os.path.abspath(filename):
                return
            log.removeHandler(handler)
            handler.close()
        if filename:
            handler = _FileHandler(filename, encoding="utf-8")
            handler.setFormatter(logfmt)
            log.addHandler(handler)

    error_file = _file_property("error")
    access_file = _file_property("access")

    @property
    def wsgi(self) -> bool:
        """Whether error messages also go to ``wsgi.errors`` of the current request."""
        return self._find(self.error_log, WSGIErrorHandler) is not None

    @wsgi.setter
    def wsgi(self, enable: bool) -> None:
        handler = self._find(self.error_log, WSGIErrorHandler)
        if enable and handler is None:
            handler = WSGIErrorHandler()
            handler.setFormatter(logfmt)
            self.error_log.addHandler(handler)
        elif not enable and handler is not None:
            self.error_log.removeHandler(handler)


class GlobalLogManager(LogManager):
    """The site-wide manager (``morello.log``).

    While a request of a mounted application is being served, messages and
    access lines go to that application's log (which propagates back to
    this one); otherwise they are written here.
    """

    def _app_log(self) -> Any:
        log = getattr(getattr(serving.request, "app", None), "log", None)
        return None if log is self else log

    def error(
        self,
        msg: str = "",
        context: str = "",
        severity: int = logging.INFO,
        traceback: bool = False,
    ) -> None:
        """Write to the current application's error log, or to the site's."""
        app_log = self._app_log()
        if app_log is not None:
            app_log.error(msg, context, severity, traceback)
        else:
            super().error(msg, context, severity, traceback)

    def access(self) -> None:
        """Write the access line to the current application's log, or to the site's."""
        app_log = self._app_log()
        if app_log is not None:
            app_log.access()
        else:
            super().access()
