"""Config namespaces: route ``prefix.rest`` config keys to their handlers.

A handler is a callable ``handler(rest, value)``, or a context manager whose
``__enter__`` returns such a callable (to see all its keys before acting on
them), or an object with ``apply(entries)`` that takes all its keys at once
(toolboxes: the fastest form, as this runs for every request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from morello.hooks import Hook
from morello.serving import serving

_EMPTY: dict[str, Any] = {}


class NamespaceSet(dict):
    """Namespace name -> handler; calling it applies a config dict."""

    def __call__(self, config: Mapping[str, Any]) -> None:
        """Give each handler the keys of its namespace (all handlers run)."""
        # This runs for every request: keep it to one pass over the config.
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in config.items():
            dot = key.find(".")
            if dot > 0:
                prefix = key[:dot]
                if prefix in self:
                    bucket = grouped.get(prefix)
                    if bucket is None:
                        grouped[prefix] = bucket = {}
                    bucket[key[dot + 1 :]] = value
        for name, handler in self.items():
            entries = grouped.get(name, _EMPTY)
            apply_all = getattr(handler, "apply", None)
            if apply_all is not None:
                apply_all(entries)
                continue
            exit_ = getattr(handler, "__exit__", None)
            if exit_ is None:
                for key, value in entries.items():
                    handler(key, value)
                continue
            apply = handler.__enter__()
            try:
                for key, value in entries.items():
                    apply(key, value)
            except BaseException as exc:
                if not exit_(type(exc), exc, exc.__traceback__):
                    raise
            else:
                exit_(None, None, None)

    def copy(self) -> NamespaceSet:
        return NamespaceSet(self)

    def __repr__(self) -> str:
        return f"{type(self).__module__}.NamespaceSet({dict.__repr__(self)})"


def hooks_namespace(key: str, value: Any) -> None:
    """``hooks.<point>[.anything] = callable``: attach a hook to the request."""
    point = key.split(".", 1)[0]
    if isinstance(value, str):
        from morello.configfile import parse_value

        value = parse_value(value)
    if not isinstance(value, Hook):
        value = Hook(value)
    serving.request.hooks[point].append(value)


def request_namespace(key: str, value: Any) -> None:
    """``request.<attr>`` and ``request.body.<attr>``."""
    request = serving.request
    if key.startswith("body."):
        setattr(request.body, key[5:], value)
    else:
        setattr(request, key, value)


def response_namespace(key: str, value: Any) -> None:
    """``response.<attr>`` and ``response.headers.<Name>``."""
    response = serving.response
    if key.startswith("headers."):
        response.headers[key[8:]] = value
    else:
        setattr(response, key, value)


def error_page_namespace(key: str, value: Any) -> None:
    """``error_page.<code>`` (or ``error_page.default``) = template path or callable."""
    serving.request.error_page[key if key == "default" else int(key)] = value
