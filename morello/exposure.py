"""Marking handlers as reachable from URLs: ``expose`` and ``popargs``."""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

from morello.serving import serving

_DECORATABLE = (types.FunctionType, types.MethodType, type)


def expose(func: Any = None, alias: str | list[str] | None = None) -> Any:
    """Make a function, method or class reachable by the dispatcher.

    Works bare (``@expose``), called (``@expose()``) and with aliases
    (``@expose(alias='other')``, ``@expose(['a', 'b'])``): each alias becomes
    another attribute of the enclosing class body pointing at the handler.
    """

    def mark(f: Any, aliases: Any, namespace: dict[str, Any] | None) -> Any:
        f.exposed = True
        if aliases is not None and namespace is not None:
            for name in [aliases] if isinstance(aliases, (str, bytes)) else aliases:
                if isinstance(name, bytes):
                    name = name.decode()
                namespace[name.replace(".", "_")] = f
        return f

    if isinstance(func, _DECORATABLE):
        if alias is None:
            func.exposed = True
            return func
        return mark(func, alias, sys._getframe(1).f_locals)
    # Aliases are added to the caller's namespace: the class body being built.
    namespace = sys._getframe(1).f_locals
    if func is not None:
        alias = func  # @expose('name') / @expose(['a', 'b'])
    return lambda f: mark(f, alias, namespace)


def popargs(*names: str, handler: Any = None) -> Callable[..., Any]:
    """Turn leading path segments into request parameters.

    Decorate a class (``@popargs('year', 'month')``) or assign the result to
    ``_cp_dispatch`` in a class body. Each consumed segment is stored in
    ``request.params`` under the next name; dispatch then continues with the
    remaining segments from the same object, or with ``handler`` when given
    (a callable ``handler`` is called with the popped values and must return
    the next node).
    """
    call_handler = handler is not None and (callable(handler) or inspect.isclass(handler))

    def dispatch(owner: Any = None, vpath: list[str] | None = None) -> Any:
        if inspect.isclass(owner):
            from morello.dispatch import Dispatcher

            setattr(owner, Dispatcher.dispatch_method_name, dispatch)
            return owner
        popped = {}
        for name in names:
            if not vpath:
                break
            popped[name] = vpath.pop(0)
        if handler is not None:
            if call_handler:
                return handler(**popped)
            serving.request.params.update(popped)
            return handler
        serving.request.params.update(popped)
        if vpath:
            return getattr(owner, vpath.pop(0), None)
        return owner

    return dispatch
