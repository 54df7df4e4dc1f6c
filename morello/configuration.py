"""Configuration: the global config and how config levels are merged.

There are three levels, each overriding the one before: the global config
(``morello.config``), the application config (``tree.mount(root, '/x',
config)``, sections keyed by path) and ``_cp_config`` on handler objects
(merged along the dispatch path; a config-file section beats
``_cp_config`` at the same path). Keys are ``namespace.name``; each
namespace has a handler that applies its keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from morello import configfile
from morello.namespaces import NamespaceSet

# Every preset switches off development conveniences.
_DEPLOYED = {
    "engine.autoreload.on": False,
    "checker.on": False,
    "tools.log_headers.on": False,
    "request.show_tracebacks": False,
    "request.show_mismatched_params": False,
}

#: Presets selected with the ``environment`` key of the global config.
environments: dict[str, dict[str, Any]] = {
    "staging": dict(_DEPLOYED),
    "production": {**_DEPLOYED, "log.screen": False},
    # The host server owns the process: no reloading, no signal handling.
    "embedded": {**_DEPLOYED, "log.screen": False, "engine.SIGHUP": None, "engine.SIGTERM": None},
    "test_suite": {
        **_DEPLOYED,
        "request.show_tracebacks": True,
        "request.show_mismatched_params": True,
        "log.screen": False,
    },
}


def load(source: Any) -> dict[str, Any]:
    """A config dict from a dict (copied), a filename or an open file.

    A config file named by path is watched by the autoreloader, as a module is.
    """
    if isinstance(source, dict):
        return source.copy()
    config = configfile.load(source)
    if isinstance(source, (str, bytes, os.PathLike)):
        from morello import engine

        engine.autoreload.files.add(os.path.abspath(os.fsdecode(source)))
    return config


def merge(base: dict[str, dict[str, Any]], other: Any) -> None:
    """Merge sectioned config ``other`` into ``base``, section by section."""
    for section, values in load(other).items():
        if not isinstance(values, dict):
            raise ValueError(
                "Application config must include section headers, but the config "
                "you tried to merge has none. Wrap it in a dict keyed by path, for "
                'example {"/": config}.'
            )
        base.setdefault(section, {}).update(values)


class Config(dict):
    """The global config (``morello.config``).

    ``update()`` takes a flat dict, a dict with a ``'global'`` section, a
    filename or an open file. Calling the config makes a decorator that
    adds keys to a handler's ``_cp_config``.
    """

    #: Keys every fresh config starts with (tools that are on by default).
    defaults: dict[str, Any] = {
        "tools.log_tracebacks.on": True,
        "tools.log_headers.on": True,
        "tools.trailing_slash.on": True,
        "tools.encode.on": True,
    }
    environments = environments
    namespaces = NamespaceSet()

    def __init__(self, file: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.reset()
        if file is not None:
            self.update(file)
        if kwargs:
            self.update(kwargs)

    def reset(self) -> None:
        """Back to :attr:`defaults` (namespace handlers are not re-run)."""
        self.clear()
        dict.update(self, self.defaults)

    def update(self, config: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Merge ``config`` into the global config and apply its namespaces."""
        values = load(config) if config is not None else {}
        values.update(kwargs)
        if isinstance(values.get("global"), dict):
            values = dict(values["global"])
        if "tools.staticdir.dir" in values:
            values["tools.staticdir.section"] = "global"
        environment = values.get("environment")
        if environment:
            try:
                preset = self.environments[environment]
            except KeyError:
                known = ", ".join(sorted(self.environments))
                raise ValueError(
                    f"Unknown environment {environment!r}; choose one of: {known}."
                ) from None
            for key, value in preset.items():
                values.setdefault(key, value)
        dict.update(self, values)
        self.namespaces(values)

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self.namespaces({key: value})

    def __call__(self, **kwargs: Any) -> Callable[[Any], Any]:
        """Decorator: ``@config(**{'tools.gzip.on': True})`` on a handler."""

        def decorate(func: Any) -> Any:
            handler_config(func).update(kwargs)
            return func

        return decorate


def handler_config(obj: Any) -> dict[str, Any]:
    """The ``_cp_config`` dict of a handler function or class, created if missing."""
    conf = vars(obj).get("_cp_config")
    if conf is None:
        # A class may inherit one: extend a copy rather than the base class's.
        conf = obj._cp_config = dict(getattr(obj, "_cp_config", {}))
    return conf


def engine_namespace(key: str, value: Any) -> None:
    """``engine.<attr>`` and ``engine.<plugin>.<attr>`` (``.on`` subscribes)."""
    from morello import engine

    if key in ("SIGHUP", "SIGTERM"):
        engine.subscribe(key, value)
        return
    plugin_name, dot, attr = key.partition(".")
    if not dot:
        setattr(engine, key, value)
        return
    plugin = getattr(engine, plugin_name)
    toggle = getattr(plugin, "subscribe" if value else "unsubscribe", None)
    if attr == "on" and callable(toggle):
        toggle()
    else:
        setattr(plugin, attr, value)


def tree_namespace(key: str, value: Any) -> None:
    """``tree.<name> = app`` or ``{script_name: wsgi_app}``: graft onto the tree."""
    from morello import engine, tree

    mounts = value if isinstance(value, dict) else {value.script_name: value}
    for script_name, app in mounts.items():
        tree.graft(app, script_name)
        engine.log(f"Mounted: {app} on {script_name or '/'}")


def log_namespace(key: str, value: Any) -> None:
    """``log.<attr>`` on the global log (``log.screen``, ``log.error_file``...)."""
    from morello import log

    setattr(log, key, value)


def checker_namespace(key: str, value: Any) -> None:
    """``checker.<attr>`` on the config checker (``checker.on``)."""
    from morello import checker

    setattr(checker, key, value)
