"""Startup checks that warn about config mistakes before the first request."""

from __future__ import annotations

import os
import warnings
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
