"""Startup checks that warn about config mistakes before the first request."""

from __future__ import annotations

import warnings
from typing import Any

# Namespaces that have handlers at some level; anything else is a typo.
_KNOWN_NAMESPACES = {
    "checker", "engine", "error_page", "hooks", "log", "request", "response",
    "server", "tools", "tree", "wsgi",
}  # fmt: skip
# Namespaces only the global config applies.
_SITE_WIDE_NAMESPACES = {"checker", "engine", "server", "tree"}


class Checker:
    """Warn (``warnings.warn``) about suspicious application config.

    Runs when the engine starts, unless ``checker.on`` is False (it is off in
    the production, staging, embedded and test_suite environments).
    """

    on = True

    def __call__(self) -> None:
        if not self.on:
            return
        from morello import tree

        for script_name, app in tree.apps.items():
            config = getattr(app, "config", None)
            if isinstance(config, dict):
                self.check_app(script_name, app, config)

    def check_app(self, script_name: str, app: Any, config: dict[str, Any]) -> None:
        """Warn about sections and keys of one application's config."""
        known = _KNOWN_NAMESPACES | set(getattr(app, "toolboxes", {})) | set(app.namespaces)
        for section, values in config.items():
            if section == "global":
                continue  # quickstart hands one config to both config.update and mount
            if not section.startswith("/"):
                warnings.warn(
                    f"The application mounted at {script_name!r} has config section "
                    f"{section!r}, which does not start with '/' and will never match.",
                    stacklevel=2,
                )
            if script_name and section.startswith(script_name + "/"):
                warnings.warn(
                    f"Config section {section!r} of the application at {script_name!r} "
                    "starts with the script name; sections are relative to the mount point.",
                    stacklevel=2,
                )
            if not isinstance(values, dict):
                continue
            for key in values:
                namespace, dot, _ = key.partition(".")
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
