"""``tools.sessions``: give each request a session and save it at the end.

For each request where the tool is on: ``init`` (before the body is read)
creates the session from the cookie and sets the cookie; the lock is taken
when the data is first used (``locking='implicit'``), before the handler
(``'early'``), by the application (``'explicit'``) or not at all, changes
being merged at save (``'optimistic'``); ``save`` runs before finalize
(after the body is sent when streaming) and ``close`` releases any lock
left at the end of the request.

The settings are checked when the engine starts (``SessionTool.check_config``,
called by the config checker for every config section that switches the
tool on), so a bad one stops the startup instead of failing requests.
"""

from __future__ import annotations

import email.utils
import importlib
import inspect
import time
from typing import Any

import morello
from morello.lib import is_iterator
from morello.serving import ThreadLocalProxy, serving
from morello.tool import Tool

from .base import LOCKING_MODES, Session
from .file import FileSession
from .ram import RamSession

_STORES: dict[str, type[Session]] = {"ram": RamSession, "file": FileSession}
# Stores whose client library is an optional extra: (module, class, extra).
_OPTIONAL_STORES = {
    "memcached": ("memcached_store", "MemcachedSession", "memcached"),
    "redis": ("redis_store", "RedisSession", "redis"),
}
# Configurations already checked -> their store class.
_configured: dict[tuple[Any, ...], type[Session]] = {}


def _store_class(storage_type: str | None, storage_class: type[Session] | None) -> type[Session]:
    if storage_class is not None:
        if not (isinstance(storage_class, type) and issubclass(storage_class, Session)):
            raise ValueError(
                f"tools.sessions.storage_class must be a subclass of "
                f"morello.lib.sessions.Session, not {storage_class!r}"
            )
        return storage_class
    storage_type = str(storage_type or "ram").lower()
    if storage_type in _OPTIONAL_STORES:
        module, name, extra = _OPTIONAL_STORES[storage_type]
        try:
            return getattr(importlib.import_module(f"{__package__}.{module}"), name)
        except ImportError as exc:
            raise ValueError(
                f"tools.sessions.storage_type {storage_type!r} needs its client library "
                f"({exc.name}): pip install 'morello[{extra}]'"
            ) from exc
    try:
        return _STORES[storage_type]
    except KeyError:
        raise ValueError(
            f"unknown tools.sessions.storage_type {storage_type!r}; "
            "use 'ram', 'file', 'memcached' or 'redis'"
        ) from None


def _configure(
    storage_type: str | None,
    storage_class: type[Session] | None,
    locking: str,
    options: dict[str, Any],
) -> type[Session]:
    """The store class for these settings, checked (once per distinct configuration).

    Raises ValueError naming the bad setting and what is allowed.
    """
    key = (storage_type, storage_class, locking, tuple(sorted(options.items())))
    try:
        return _configured[key]
    except KeyError:
        cacheable = True
    except TypeError:  # unhashable option values: checked each time
        cacheable = False
    if locking not in LOCKING_MODES:
        raise ValueError(
            f"tools.sessions.locking must be one of {', '.join(map(repr, LOCKING_MODES))}, "
            f"not {locking!r}"
        )
    cls = _store_class(storage_type, storage_class)
    if locking == "optimistic" and cls._apply is Session._apply:
        raise ValueError(
            f"tools.sessions.locking 'optimistic' needs a store with _apply(); "
            f"{cls.__name__} has none"
        )
    if locking in ("implicit", "early") and cls.acquire_lock is Session.acquire_lock:
        raise ValueError(
            f"tools.sessions.locking {locking!r} needs a store with acquire_lock(); "
            f"{cls.__name__} has none (use locking='optimistic')"
        )
    cls.setup(**options)
    if cacheable:
        _configured[key] = cls
    return cls


def init(
    storage_type: str | None = None,
    path: str | None = None,
    path_header: str | None = None,
    name: str = "session_id",
    timeout: float = 60,
    domain: str | None = None,
    secure: bool | None = None,
    clean_freq: float = 5,
    persistent: bool = True,
    httponly: bool = True,
    samesite: str | None = "Lax",
    debug: bool = False,
    storage_class: type[Session] | None = None,
    locking: str = Session.locking,
    **kwargs: Any,
) -> None:
    """Create ``morello.session`` for this request and send its cookie.

    ``secure`` None (the default) marks the cookie ``Secure`` when the
    request came over TLS, directly or through ``tools.proxy``; True or
    False force it. ``kwargs`` go to the store (``storage_path``,
    ``lock_timeout``, ``lifetime``, ``serializer``, ``secret``...).
    """
    request = serving.request
    # An internal redirect runs the hooks again: keep the first session.
    if getattr(request, "_session_init_flag", False):
        return
    request._session_init_flag = True
    cls = _configure(storage_type, storage_class, locking, kwargs)
    morsel = request.cookie.get(name)
    session = cls(
        morsel.value if morsel is not None else None,
        timeout=timeout,
        clean_freq=clean_freq,
        debug=debug,
        locking=locking,
        **kwargs,
    )
    serving.session = session
    if "session" not in vars(morello):
        # The application deleted morello.session (CherryPy apps do when they
        # switch stores): bring the proxy back.
        morello.session = ThreadLocalProxy("session")
    if secure is None:
        secure = over_tls(request)

    def send_cookie(session_id: str | None) -> None:
        set_response_cookie(
            path=path,
            path_header=path_header,
            name=name,
            timeout=timeout if persistent else None,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            expired=session_id is None,
        )

    session.id_observers.append(send_cookie)
    send_cookie(session.id)


def over_tls(request: Any) -> bool:
    """Whether ``request`` reached us, or the proxy in front of us, over https.

    ``tools.proxy`` (which runs before ``init``) rewrites ``request.base``
    from the proxy's ``X-Forwarded-Proto``.
    """
    return request.scheme == "https" or request.base.startswith("https://")


# init's named parameters: the other settings are the store's options.
_INIT_PARAMETERS = frozenset(inspect.signature(init).parameters) - {"kwargs"}


def set_response_cookie(
    path: str | None = None,
    path_header: str | None = None,
    name: str = "session_id",
    timeout: float | None = 60,
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = True,
    samesite: str | None = "Lax",
    expired: bool = False,
) -> None:
    """Set the current session's cookie on the response (an expired one if ``expired``)."""
    request = serving.request
    cookie = serving.response.cookie
    cookie[name] = "" if expired else serving.session.id
    morsel = cookie[name]
    morsel["path"] = path or (path_header and request.headers.get(path_header)) or "/"
    if expired:
        # Browsers obey Max-Age before Expires: both must say "gone now".
        morsel["max-age"] = 0
        morsel["expires"] = email.utils.formatdate(0, usegmt=True)
    elif timeout:
        # Max-Age for current browsers, Expires for those that ignore it.
        morsel["max-age"] = int(timeout * 60)
        morsel["expires"] = email.utils.formatdate(time.time() + timeout * 60, usegmt=True)
    if domain is not None:
        morsel["domain"] = domain
    if secure:
        morsel["secure"] = True
    if httponly:
        morsel["httponly"] = True
    if samesite:
        morsel["samesite"] = samesite


def save() -> None:
    """Save the session (after the body when the response streams)."""
    session = getattr(serving, "session", None)
    request = serving.request
    response = serving.response
    if session is None or getattr(request, "_sessionsaved", False):
        return
    request._sessionsaved = True
    if response.stream:
        request.hooks.attach("on_end_request", session.save)
        return
    if is_iterator(response.body):
        response.collapse_body()
    session.save()


def close() -> None:
    """Release a lock the request still holds (e.g. after an error)."""
    session = getattr(serving, "session", None)
    if session is not None and session.locked:
        session.release_lock()


close.failsafe = True  # type: ignore[attr-defined]
close.priority = 90  # type: ignore[attr-defined]


def expire() -> None:
    """Delete the current session and tell the client to drop its cookie."""
    serving.session.expire()


def _lock_early() -> None:
    serving.session.acquire_lock()


class SessionTool(Tool):
    """``tools.sessions``: a session for each request, saved before finalize."""

    def __init__(self) -> None:
        super().__init__("before_request_body", init)

    def check_config(self, settings: dict[str, Any]) -> None:
        """Raise ValueError for bad ``tools.sessions.*`` ``settings`` (at engine start).

        Checks what ``init`` would: the store (``storage_type`` or
        ``storage_class``), ``locking`` and the store's own options (e.g. a
        file store's ``storage_path``, a Redis ``url``).
        """
        settings = {k: v for k, v in settings.items() if k not in ("on", "priority")}
        options = {k: v for k, v in settings.items() if k not in _INIT_PARAMETERS}
        _configure(
            settings.get("storage_type"),
            settings.get("storage_class"),
            settings.get("locking", Session.locking),
            options,
        )

    def _setup(self) -> None:
        hooks = serving.request.hooks
        conf = self._merged_args()
        priority = conf.pop("priority", self._priority)
        hooks.attach(self._point, self.callable, priority=priority, **conf)
        if conf.get("locking") == "early":
            # After the body is read, before the handler (CherryPy's order).
            hooks.attach("before_handler", _lock_early, priority=60)
        hooks.attach("before_finalize", save)
        hooks.attach("on_end_request", close)

    def regenerate(self) -> None:
        """Move the current session to a new id (call it after a login)."""
        serving.session.regenerate()
