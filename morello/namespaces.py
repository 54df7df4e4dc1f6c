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

# (handlers, config items) -> grouping; configs are few in practice, but bound them.
_GROUPINGS: dict[Any, list[tuple[Any, dict[str, Any]]]] = {}
_MAX_GROUPINGS = 1024


class NamespaceSet(dict):
    """Namespace name -> handler; calling it applies a config dict."""

    def __call__(self, config: Mapping[str, Any]) -> None:
        """Give each handler the keys of its namespace (all handlers run)."""
        for handler, entries in self._grouped(config):
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

    def _grouped(self, config: Mapping[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
        """``[(handler, {rest_of_key: value})]`` for every handler, in order.

        This runs for every request with the path's config, which is the
        same for most requests: equal handlers and config give the grouping
        remembered from before (the entries are shared, never mutated).
        """
        try:
            key: Any = (tuple(self.items()), tuple(config.items()))
            grouped = _GROUPINGS.get(key)
        except TypeError:  # an unhashable config value
            key = grouped = None
        if grouped is None:
            buckets: dict[str, dict[str, Any]] = {name: {} for name in self}
            for name, value in config.items():
                prefix, dot, rest = name.partition(".")
                if dot and prefix in buckets:
                    buckets[prefix][rest] = value
            grouped = [(handler, buckets[name]) for name, handler in self.items()]
            if key is not None and len(_GROUPINGS) < _MAX_GROUPINGS:
                _GROUPINGS[key] = grouped
        return grouped

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
