"""Refuse RAM sessions when several worker processes serve the same app.

RAM sessions live in one process: with two workers a visitor's session
would exist in one of them only, and every other request would silently
start afresh. The master and the workers ask :func:`ram_session_users`
before serving with more than one process and refuse to start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .ram import RamSession


def _uses_ram(config: Mapping[str, Any]) -> bool:
    if not config.get("tools.sessions.on"):
        return False
    storage_class = config.get("tools.sessions.storage_class")
    if storage_class is not None:
        return isinstance(storage_class, type) and issubclass(storage_class, RamSession)
    return str(config.get("tools.sessions.storage_type") or "ram").lower() == "ram"


def _configs(tree: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, effective config) for the global config and each section of each app.

    Later levels override earlier ones as they do for a request: global
    config, then the root's ``_cp_config``, then the app's ``/`` section,
    then the deeper section.
    """
    import morello

    yield "global config", morello.config
    for script_name, app in getattr(tree, "apps", {}).items():
        mount = script_name or "/"
        root = dict(morello.config)
        root_config = getattr(app.root, "_cp_config", None)
        if isinstance(root_config, Mapping):
            root.update(root_config)
        root.update(app.config.get("/", {}))
        yield f"app {mount!r}", root
        for section, values in app.config.items():
            if section != "/" and section.startswith("/") and isinstance(values, Mapping):
                yield f"app {mount!r}, section [{section}]", {**root, **values}


def ram_session_users(tree: Any) -> list[str]:
    """Where ``tree`` (or the global config) turns on sessions stored in RAM."""
    return [where for where, config in _configs(tree) if _uses_ram(config)]


def refuse_ram_sessions(tree: Any, workers: int) -> None:
    """Raise ValueError naming the culprit when ``workers`` > 1 would share RAM sessions."""
    if workers <= 1:
        return
    users = ram_session_users(tree)
    if users:
        raise ValueError(
            f"RAM sessions cannot be shared by {workers} worker processes ({users[0]}); "
            "use tools.sessions.storage_type 'file' (one host), 'memcached' or 'redis' "
            "(several hosts), or run one worker"
        )
