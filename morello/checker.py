"""Startup checks that warn about config mistakes before the first request."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

# Namespaces that have handlers at some level; anything else is a typo.
_KNOWN_NAMESPACES = {
    "checker", "engine", "error_page", "hooks", "log", "request", "response",
    "server", "tools", "tree", "wsgi",
}  # fmt: skip
# Namespaces only the global config applies.
_SITE_WIDE_NAMESPACES = {"checker", "engine", "server", "tree"}


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


class Checker:
    """Warn (``warnings.warn``) about suspicious global and application config.

    Runs when the engine starts, unless ``checker.on`` is False (it is off in
    the production, staging, embedded and test_suite environments).
    """

    on = True

    def __init__(self) -> None:
        # Taken when morello is imported, before any config changes the defaults.
        self.expected_types = _expected_types()

    def __call__(self) -> None:
        self.check_tools()  # errors, not warnings: they run even when the checker is off
        if not self.on:
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
        known = _KNOWN_NAMESPACES | set(toolboxes) | set(app.namespaces)
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
                        f"(section {section!r} of the application at {script_name!r}).",
                        stacklevel=2,
                    )
                elif namespace in toolboxes and not hasattr(
                    toolboxes[namespace], rest.partition(".")[0]
                ):
                    warnings.warn(
                        f"{key!r} names no tool of {namespace!r} (section {section!r} of "
                        f"the application at {script_name!r}); requests there will fail.",
                        stacklevel=2,
                    )
