"""The Tool API: reusable request behaviour switched on per path by config.

A tool wraps a callable and the hook point it runs at. ``tools.<name>.on =
True`` in config (or the tool used as a decorator) attaches it to each
matching request; the other ``tools.<name>.<arg>`` keys become its keyword
arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from morello.configuration import handler_config
from morello.errors import NotFound
from morello.exposure import expose
from morello.hooks import Hook
from morello.serving import serving

_NO_CONFIG: dict[str, Any] = {}
# Plans remembered per toolbox; configs are few in practice, but bound them.
_MAX_PLANS = 1024
_ON_ERROR = (
    "Tools cannot be switched on directly. Switch them on in config, "
    "or use them as decorators on your page handlers."
)


def _argument_names(func: Callable[..., Any]) -> list[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


class Tool:
    """Attach ``callable`` at hook ``point`` when switched on.

    ``name`` is filled in when the tool is assigned to a :class:`Toolbox`.
    """

    namespace = "tools"

    def __init__(
        self,
        point: str | None,
        callable: Callable[..., Any],
        name: str | None = None,
        priority: int = 50,
    ) -> None:
        self._point = point
        self.callable = callable
        self._name = name
        self._priority = priority
        self.__doc__ = callable.__doc__
        # Expose the arguments as attributes so help() and completion see them.
        for arg in _argument_names(callable):
            setattr(self, arg, None)

    @property
    def on(self) -> bool:
        raise AttributeError(_ON_ERROR)

    @on.setter
    def on(self, value: bool) -> None:
        raise AttributeError(_ON_ERROR)

    def _merged_args(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """This tool's config for the current request, updated with ``overrides``."""
        conf = dict(overrides) if overrides else {}
        conf.update(serving.request.toolmaps[self.namespace].get(self._name, _NO_CONFIG))
        conf.pop("on", None)
        return conf

    def __call__(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Use the tool as a decorator: switch it on for one handler."""
        if args:
            raise TypeError(
                f"The {self._name!r} Tool does not accept positional arguments; "
                "you must use keyword arguments."
            )
        prefix = f"{self.namespace}.{self._name}."

        def decorate(func: Any) -> Any:
            conf = handler_config(func)
            conf[prefix + "on"] = True
            for key, value in kwargs.items():
                conf[prefix + key] = value
            return func

        return decorate

    def _hook(self) -> Hook:
        """The hook :meth:`_setup` attaches, built from the current request's config."""
        kwargs = self._merged_args()
        priority = kwargs.pop("priority", None)
        if priority is None:
            priority = getattr(self.callable, "priority", self._priority)
        return Hook(self._hook_callback(), None, priority, **kwargs)

    def _hook_callback(self) -> Callable[..., Any]:
        return self.callable

    def _setup(self) -> None:
        """Attach the tool to the current request (called when it is on)."""
        serving.request.hooks[self._point].append(self._hook())

    # A toolbox may build this tool's hook once per config and reuse it,
    # because this _setup does nothing else. Overrides of _setup lose the mark.
    _setup.attaches_one_hook = True  # type: ignore[attr-defined]


class HandlerTool(Tool):
    """A tool that may answer the request itself instead of the handler.

    The callable returns True when it produced the response (the page
    handler is then skipped). :meth:`handler` turns the tool into a page
    handler of its own.
    """

    def __init__(self, callable: Callable[..., Any], name: str | None = None) -> None:
        super().__init__("before_handler", callable, name)

    def handler(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        """A page handler that runs this tool (404 when it does not answer)."""

        @expose
        def handle(*_args: Any, **_kwargs: Any) -> Any:
            if not self.callable(*args, **self._merged_args(kwargs)):
                raise NotFound()
            return serving.response.body

        return handle

    def _wrapper(self, **kwargs: Any) -> None:
        if self.callable(**kwargs):
            serving.request.handler = None

    def _hook_callback(self) -> Callable[..., Any]:
        return self._wrapper


class HandlerWrapperTool(Tool):
    """A tool that wraps the page handler: ``newhandler(next_handler, *args, **kwargs)``."""

    def __init__(
        self,
        newhandler: Callable[..., Any],
        point: str = "before_handler",
        name: str | None = None,
        priority: int = 50,
    ) -> None:
        self.newhandler = newhandler
        self._point = point
        self._name = name
        self._priority = priority

    def callable(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        inner = serving.request.handler

        def wrap(*a: Any, **kw: Any) -> Any:
            return self.newhandler(inner, *a, **kw)

        serving.request.handler = wrap


class ErrorTool(Tool):
    """A tool that replaces ``request.error_response`` (the 500 page builder)."""

    def __init__(self, callable: Callable[..., Any], name: str | None = None) -> None:
        super().__init__(None, callable, name)

    def _wrapper(self) -> None:
        self.callable(**self._merged_args())

    def _setup(self) -> None:
        serving.request.error_response = self._wrapper


class Toolbox:
    """A namespace of tools (``tools``); also the config handler for it."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._plans: dict[Any, tuple[dict[str, Any], list[Any]]] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Tool):
            if value._name is None:
                value._name = name
            value.namespace = self.namespace
        object.__setattr__(self, name, value)

    def apply(self, entries: dict[str, Any]) -> None:
        """Set up this box's tools for the current request.

        ``entries`` are the box's config keys without the namespace
        (``'gzip.on'``, ``'gzip.compress_level'``...). They become
        ``request.toolmaps[namespace]``; every tool that is on is set up.
        """
        request = serving.request
        try:
            key: Any = tuple(entries.items())
            plan = self._plans.get(key)
        except TypeError:  # an unhashable config value: plan afresh each time
            key = plan = None
        if plan is None:
            plan = self._plan(entries)
            if key is not None and len(self._plans) < _MAX_PLANS:
                self._plans[key] = plan
        toolmap, steps = plan
        request.toolmaps[self.namespace] = dict(toolmap)
        hooks = request.hooks
        for point, step in steps:
            if point is None:
                step()
            else:
                hooks[point].append(step)

    def _plan(self, entries: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        """Group ``entries`` per tool; prepare the hooks of the tools that are on.

        Steps are ``(point, hook)`` for tools whose setup only attaches one
        hook (the hook depends on the config alone, so it is built once), or
        ``(None, setup)``: the tool's ``_setup`` runs for every request. Any
        object with a ``_setup()`` method serves as a tool.
        """
        toolmap: dict[str, dict[str, Any]] = {}
        for key, value in entries.items():
            tool_name, arg = key.split(".", 1)
            toolmap.setdefault(tool_name, {})[arg] = value
        serving.request.toolmaps[self.namespace] = toolmap
        steps: list[tuple[str | None, Callable[..., Any]]] = []
        for name, settings in toolmap.items():
            if settings.get("on", False):
                tool = getattr(self, name)
                if getattr(tool._setup, "attaches_one_hook", False):
                    steps.append((tool._point, tool._hook()))
                else:
                    steps.append((None, tool._setup))
        return toolmap, steps

    # The context-manager form of a namespace handler, for callers that use
    # it: collect the keys on enter, apply them at exit.
    def __enter__(self) -> Callable[[str, Any], None]:
        entries: dict[str, Any] = {}
        serving.request.toolmaps[self.namespace] = entries
        return entries.__setitem__

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if exc_type is None:
            self.apply(serving.request.toolmaps[self.namespace])

    def register(
        self, point: str, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: make the function a tool of this box at ``point``."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            setattr(self, kwargs.get("name", func.__name__), Tool(point, func, **kwargs))
            return func

        return decorate


# CherryPy keeps these with the tools (``_cptools.XMLRPCController``,
# ``_cptools.CachingTool``...); imported last because they build on this module.
from morello.lib.caching import CachingTool  # noqa: E402, F401
from morello.sessions.auth import SessionAuthTool  # noqa: E402, F401
from morello.sessions.tool import SessionTool  # noqa: E402, F401
from morello.xmlrpc import XMLRPCController  # noqa: E402, F401
