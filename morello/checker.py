"""Startup checks of the config: warnings as CherryPy's checker gives, and strict errors.

Started by the engine, :class:`Checker` warns about suspicious config (as
CherryPy does). ``morello serve`` also calls :meth:`Checker.check_strictly`
before serving: a config key that no namespace or tool handles, or a value
of the wrong type, then stops the start with a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import types
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

# Namespaces that have handlers at some level; anything else is a typo.
_KNOWN_NAMESPACES = {
    "checker", "engine", "error_page", "hooks", "log", "request", "response",
    "server", "tools", "tree", "wsgi",
}  # fmt: skip
# Namespaces only the global config applies.
_SITE_WIDE_NAMESPACES = {"checker", "engine", "server", "tree"}


# Handler objects and methods visited for their _cp_config, at most.
_MAX_HANDLERS = 5000


class ConfigError(ValueError):
    """A config key that nothing handles, or a value of the wrong type; one line."""


def _expected_types() -> dict[str, type]:
    """``namespace.name`` -> type of the default, for settings with plain values."""
    import morello
    from morello.serving import serving

    plain = (bool, int, float, str, bytes, tuple, list, dict)
    targets = {
        "request": serving.request, "response": serving.response,
        "server": morello.server, "engine": morello.engine, "log": morello.log,
    }  # fmt: skip
    expected = {}
    for namespace, target in targets.items():
        for name in dir(target):
            value = getattr(target, name, None)
            if not name.startswith("_") and type(value) in plain:
                expected[f"{namespace}.{name}"] = type(value)
    return expected


def _compatible(value: Any, wanted: type) -> bool:
    if isinstance(value, wanted):
        return True
    if wanted in (int, float):
        return type(value) in (int, float)  # a number is a number
    return wanted is str and isinstance(value, os.PathLike)  # file names


def _effective_sections(app: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each config section of ``app`` with the config requests there see.

    That is the global config, the root's ``_cp_config``, then the sections
    down to this one (``_cp_config`` of deeper handlers is not seen here).
    """
    from morello import config as global_config

    config = getattr(app, "config", None)
    if not isinstance(config, dict):
        return
    root = getattr(app, "root", None)
    merged = {"": {**global_config, **getattr(root, "_cp_config", {})}}
    # "/" always: the global config alone may switch a tool on. A section
    # sorts after the sections enclosing it.
    for section in sorted({"/", *(s for s in config if s.startswith("/"))}):
        parent = section
        while parent not in merged:  # '/a/b' -> '/a' -> '/' -> ''
            parent = "" if parent == "/" else parent[: parent.rfind("/")] or "/"
        values = config.get(section)
        values = values if isinstance(values, dict) else {}
        merged[section] = {**merged[parent], **values}
        yield section, merged[section]


def _tool_settings(config: dict[str, Any], namespace: str) -> dict[str, dict[str, Any]]:
    """``{tool: {arg: value}}`` from the ``<namespace>.<tool>.<arg>`` keys of ``config``."""
    tools: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        prefix, _, rest = key.partition(".")
        name, dot, arg = rest.partition(".")
        if prefix == namespace and dot:
            tools.setdefault(name, {})[arg] = value
    return tools


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _tool_names(toolboxes: Iterable[Any]) -> set[str]:
    from morello.tool import Tool

    return {
        name
        for toolbox in toolboxes
        for name in dir(toolbox)
        if not name.startswith("_") and isinstance(getattr(toolbox, name, None), Tool)
    }


def _app_namespaces(app: Any) -> set[str]:
    """Namespaces a request of ``app`` handles (CherryPy's list, and morello's built-in ones)."""
    from morello.configuration import Config

    request_class = getattr(app, "request_class", None)
    return (
        _KNOWN_NAMESPACES
        | set(Config.namespaces)
        | set(getattr(app, "toolboxes", {}))
        | set(getattr(app, "namespaces", {}))
        | set(getattr(request_class, "namespaces", {}))
    )


def _exposes(obj: Any) -> bool:
    """Whether ``obj``'s class (or ``obj`` itself) defines an exposed handler."""
    namespaces = [vars(cls) for cls in type(obj).__mro__ if cls is not object]
    namespaces.append(getattr(obj, "__dict__", {}))
    return any(
        getattr(value, "exposed", False) is True
        for namespace in namespaces
        for value in namespace.values()
    )


def _handler_configs(root: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, ``_cp_config``) of ``root`` and of the handlers and methods under it.

    Attributes are read without running properties; the walk follows
    objects that expose something, each once.
    """
    seen: set[int] = set()
    stack = [(root, "/")]
    while stack and len(seen) < _MAX_HANDLERS:
        obj, path = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        where = f"{type(obj).__qualname__} at {path!r}"
        config = _static(obj, "_cp_config")
        if isinstance(config, dict) and config:
            yield where, config
        for name in dir(obj):
            if name.startswith("_"):
                continue
            value = _static(obj, name)
            value = getattr(value, "__func__", value)  # staticmethod, classmethod
            if isinstance(value, types.FunctionType):
                config = getattr(value, "_cp_config", None)
                if isinstance(config, dict) and config and id(value) not in seen:
                    seen.add(id(value))
                    yield f"{value.__qualname__} at {path.rstrip('/') + '/' + name!r}", config
            elif not isinstance(value, (type, types.ModuleType)) and _exposes(value):
                stack.append((value, f"{path.rstrip('/')}/{name}"))


def _static(obj: Any, name: str) -> Any:
    try:
        return inspect.getattr_static(obj, name)
    except AttributeError:
        return None


class Checker:
    """Warn (``warnings.warn``) about suspicious global and application config.

    Runs when the engine starts, unless ``checker.on`` is False (it is off in
    the production, staging, embedded and test_suite environments).
    """

    on = True
    #: True where the start-up warnings were already shown for this code (a
    #: ``morello serve`` worker, after the master's pre-flight check showed
    #: them once): they are not repeated by every worker.
    quiet = False

    def __init__(self) -> None:
        # Taken when morello is imported, before any config changes the defaults.
        self.expected_types = _expected_types()
        self._warned: set[str] = set()

    def __call__(self) -> None:
        self.check_tools()  # errors, not warnings: they run even when the checker is off
        if not self.on or self.quiet:
            return
        from morello import config as global_config
        from morello import tree

        expected = self.expected_types
        self.check_types("global", global_config, expected)
        for script_name, app in tree.apps.items():
            config = getattr(app, "config", None)
            if isinstance(config, dict):
                self.check_app(script_name, app, config)
                for section, values in config.items():
                    if isinstance(values, dict):
                        self.check_types(section, values, expected)

    def check_tools(self) -> None:
        """Let tools reject their settings at startup (they raise ValueError).

        A tool with a ``check_config(settings)`` method (``tools.sessions``)
        gets its settings, wherever it is on, as requests see them in each
        config section of each mounted application.
        """
        from morello import tree

        for script_name, app in tree.apps.items():
            toolboxes = getattr(app, "toolboxes", {})
            for section, config in _effective_sections(app):
                for namespace, toolbox in toolboxes.items():
                    for name, settings in _tool_settings(config, namespace).items():
                        check = getattr(getattr(toolbox, name, None), "check_config", None)
                        if check is None or not settings.get("on"):
                            continue
                        try:
                            check(settings)
                        except ValueError as exc:
                            raise ValueError(
                                f"{exc} (config section {section!r} of the application "
                                f"at {script_name!r})"
                            ) from exc

    def warn(self, message: str, context: str = "CHECKER") -> None:
        """Log a start-up warning once per process, unless :attr:`quiet`.

        For warnings that matter even where ``checker.on`` is False (production).
        """
        if self.quiet or message in self._warned:
            return
        self._warned.add(message)
        import morello

        morello.log(message, context, severity=logging.WARNING)

    def check_strictly(self) -> None:
        """Raise :class:`ConfigError` for the first key of :meth:`mistakes`."""
        for mistake in self.mistakes():
            raise ConfigError(mistake)

    def mistakes(self) -> Iterator[str]:
        """One line for each config key that cannot work, with the closest valid name.

        That is a key of a namespace nothing handles, a tool that no toolbox
        has, or a value whose type differs from the setting's default, in
        the global config, each mounted application's config and the
        ``_cp_config`` of its handlers. Namespaces and tools the application
        registered before this runs are valid.
        """
        from morello import config as global_config
        from morello import tree

        apps = list(tree.apps.items())
        site_namespaces = {"master"}.union(*(_app_namespaces(app) for _, app in apps))
        site_namespaces |= _app_namespaces(None)
        site_toolboxes = {"tools": [_default_toolbox()]}
        for _, app in apps:
            for name, toolbox in getattr(app, "toolboxes", {}).items():
                site_toolboxes.setdefault(name, []).append(toolbox)
        yield from self._key_mistakes(
            "global config", global_config, site_namespaces, site_toolboxes,
            "morello.config.namespaces",
        )  # fmt: skip
        for script_name, app in apps:
            known = _app_namespaces(app)
            toolboxes = {name: [box] for name, box in getattr(app, "toolboxes", {}).items()}
            where = f"of the application at {script_name!r}"
            config = getattr(app, "config", None)
            for section, values in (config if isinstance(config, dict) else {}).items():
                if section != "global" and isinstance(values, dict):
                    yield from self._key_mistakes(
                        f"section [{section}] {where}", values, known, toolboxes, "app.namespaces"
                    )
            for handler, values in _handler_configs(getattr(app, "root", None)):
                yield from self._key_mistakes(
                    f"_cp_config of {handler} {where}", values, known, toolboxes, "app.namespaces"
                )

    def _key_mistakes(
        self,
        where: str,
        values: dict[str, Any],
        namespaces: set[str],
        toolboxes: dict[str, list[Any]],
        registry: str,
    ) -> Iterator[str]:
        """Mistakes among ``values``; ``registry`` is where a namespace would be registered."""
        for key, value in values.items():
            namespace, dot, rest = str(key).partition(".")
            if not dot:
                continue  # "environment" and other plain keys
            if namespace not in namespaces:
                hint = _did_you_mean(namespace, namespaces) or (
                    f"; keys of the application's own need a handler in "
                    f"{registry}[{namespace!r}]"
                )
                yield f"unknown config namespace {namespace!r} in {key!r} ({where}){hint}"
            elif namespace in toolboxes:
                tool, dot, _ = rest.partition(".")
                boxes = toolboxes[namespace]
                if not any(hasattr(box, tool) for box in boxes):
                    yield (
                        f"unknown tool {tool!r} in {key!r} ({where})"
                        f"{_did_you_mean(tool, _tool_names(boxes))}"
                    )
                elif not dot:
                    yield f"{key!r} ({where}) names no setting; did you mean '{key}.on'?"
            else:
                wanted = self.expected_types.get(key)
                sequences = isinstance(value, (list, tuple)) and wanted in (list, tuple)
                if wanted and value is not None and not (sequences or _compatible(value, wanted)):
                    yield (
                        f"{key!r} ({where}) is {value!r}, of type {type(value).__name__!r}; "
                        f"it takes a {wanted.__name__!r}"
                    )

    def check_types(self, section: str, values: Any, expected: dict[str, type]) -> None:
        """Warn about values whose type differs from the setting's default."""
        for key, value in values.items():
            wanted = expected.get(key)
            if wanted is None or value is None or _compatible(value, wanted):
                continue
            warnings.warn(
                f"The config entry {key!r} in section {section!r} is of type "
                f"{type(value).__name__!r}, which does not match the expected type "
                f"{wanted.__name__!r}.",
                stacklevel=2,
            )

    def check_app(self, script_name: str, app: Any, config: dict[str, Any]) -> None:
        """Warn about sections and keys of one application's config."""
        toolboxes = getattr(app, "toolboxes", {})
        known = _app_namespaces(app)
        for section, values in config.items():
            if section == "global":
                continue  # quickstart hands one config to both config.update and mount
            if not section.startswith("/"):
                warnings.warn(
                    f"The application mounted at {script_name!r} has config section "
                    f"{section!r}, which does not start with '/' and will never match.",
                    stacklevel=2,
                )
            if script_name and (section == script_name or section.startswith(script_name + "/")):
                warnings.warn(
                    f"Config section {section!r} of the application at {script_name!r} "
                    "starts with the script name; sections are relative to the mount point.",
                    stacklevel=2,
                )
            if not isinstance(values, dict):
                continue
            for key in values:
                namespace, dot, rest = key.partition(".")
                if not dot:
                    continue
                if namespace in _SITE_WIDE_NAMESPACES:
                    warnings.warn(
                        f"{key!r} in section {section!r} of the application at "
                        f"{script_name!r} has no effect: it is only allowed in site-wide "
                        "config. Move it to a [global] section and pass it to "
                        "morello.config.update() instead of tree.mount().",
                        stacklevel=2,
                    )
                elif namespace not in known:
                    warnings.warn(
                        f"Unknown config namespace {namespace!r} in {key!r} "
                        f"(section {section!r} of the application at {script_name!r})"
                        f"{_did_you_mean(namespace, known) or '.'}",
                        stacklevel=2,
                    )
                elif namespace in toolboxes and not hasattr(
                    toolboxes[namespace], rest.partition(".")[0]
                ):
                    tool = rest.partition(".")[0]
                    warnings.warn(
                        f"{key!r} names no tool of {namespace!r} (section {section!r} of "
                        f"the application at {script_name!r}); requests there will fail"
                        f"{_did_you_mean(tool, _tool_names([toolboxes[namespace]])) or '.'}",
                        stacklevel=2,
                    )


def _default_toolbox() -> Any:
    from morello import tools

    return tools
