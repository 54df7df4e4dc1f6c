"""Turn the ``app`` a worker was given into the WSGI callable it serves.

Accepted forms (``module`` is imported with the current directory first on
``sys.path``, as the command that started the master would expect)::

    "module"             the module mounts its applications on morello.tree
                         when imported; the tree is served
    "module:name"        a name (dotted attributes allowed) in the module:
                         - a morello Application or Tree: served as is
                         - a root handler object (exposed methods, _cp_config,
                           _cp_dispatch...): mounted at "" on morello.tree
                         - a class of root handlers: instantiated, then mounted
                         - a WSGI callable (environ, start_response): served as is
                         - a factory (no required arguments): called, and its
                           result classified the same way

The same applies to an object the master imported already. Every failure
is a :class:`BootError` whose message fits on one line, with the close name
when a module or object name looks misspelt.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
import sys
import types
from collections.abc import Callable
from typing import Any

from morello.sessions.prefork import refuse_ram_sessions

import morello
from morello.serving import loading_for_app_server

WSGIApp = Callable[..., Any]

# A factory may return another factory, but not endlessly.
_MAX_FACTORY_DEPTH = 3


class BootError(Exception):
    """The application cannot be loaded; ``str()`` is a one-line reason."""

    def __init__(self, reason: str, *, show_traceback: bool = False) -> None:
        super().__init__(reason)
        #: Whether the traceback of the cause helps (an error inside the user's code).
        self.show_traceback = show_traceback


def prepare_app(target: str | object, config_file: str | None = None, workers: int = 1) -> WSGIApp:
    """All a process does with the app before serving it; return the WSGI callable.

    Apply the ``[global]`` section of ``config_file``, load ``target`` (see
    :func:`load_app`), refuse RAM sessions shared by ``workers`` processes,
    and check the config strictly (unknown namespaces and tools, values of
    the wrong type, bad tool settings). Every failure is a :class:`BootError`.
    """
    if config_file:
        try:
            morello.config.update(config_file)
        except Exception as exc:
            raise BootError(
                f"bad config file {config_file!r}: {type(exc).__name__}: {exc}"
            ) from exc
    app = load_app(target, config_file)
    check_mounted(workers)
    return app


def check_mounted(workers: int) -> None:
    """Refuse what is mounted if ``workers`` processes cannot serve it or its config is wrong.

    That is RAM sessions shared by several workers, bad tool settings, and
    the mistakes of :meth:`morello.checker.Checker.mistakes`; each is a
    :class:`BootError`.
    """
    try:
        refuse_ram_sessions(morello.tree, workers)
        morello.checker.check_tools()
        morello.checker.check_strictly()
    except ValueError as exc:
        raise BootError(str(exc)) from None


def load_app(target: str | object, config_file: str | None = None) -> WSGIApp:
    """Import (if needed) and classify ``target``; return the WSGI callable to serve.

    ``config_file`` is the application config of a root handler mounted here.
    """
    with loading_for_app_server():
        if isinstance(target, str):
            obj, name = import_spec(target)
            if obj is morello.tree:
                return obj
        else:
            obj, name = target, _describe(target)
        return as_wsgi(obj, name, config_file)


def import_spec(spec: str) -> tuple[Any, str]:
    """Import ``"module[:name]"``; return the object and a description of it."""
    module_name, colon, attribute = spec.strip().partition(":")
    if not _is_dotted_name(module_name) or (colon and not _is_dotted_name(attribute)):
        raise BootError(f"bad application {spec!r}: expected 'module' or 'module:name'")
    module = import_module(module_name)
    if not colon:
        if not morello.tree.apps:
            raise BootError(
                f"module {module_name!r} mounted no application on morello.tree; "
                f"name one as '{module_name}:name'"
            )
        return morello.tree, "morello.tree"
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            roots = root_classes(obj) if obj is module else []
            names = [
                name
                for name in dir(obj)
                if not name.startswith("_")
                and not isinstance(getattr(obj, name, None), types.ModuleType)
            ]
            hint = _did_you_mean(part, roots) or _did_you_mean(part, names)
            if not hint and roots:
                hint = f"; its root handler classes: {', '.join(roots)}"
            missing = f"module {module_name!r} has no attribute {attribute!r}"
            raise BootError(missing + hint) from None
    return obj, f"{module_name}:{attribute}"


def root_classes(module: types.ModuleType) -> list[str]:
    """Names of the classes defined in ``module`` that have exposed methods."""
    return [
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and value.__module__ == module.__name__
        and any(getattr(v, "exposed", False) is True for v in vars(value).values())
    ]


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the candidate closest to ``name``, or nothing."""
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _sibling_modules(missing: str, cwd: str) -> list[str]:
    """Modules next to where ``missing`` was looked for (the cwd for a top-level one)."""
    parent, _, _ = missing.rpartition(".")
    path = getattr(sys.modules.get(parent), "__path__", None) if parent else [cwd]
    return [info.name for info in pkgutil.iter_modules(path)] if path else []


def import_module(name: str) -> types.ModuleType:
    """Import ``name`` with the current directory on ``sys.path``, or raise :class:`BootError`."""
    # Like any other Python command run from a project directory, the
    # application's own modules are found relative to where we were started.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == name or name.startswith(missing + "."):
            hint = _did_you_mean(missing.rpartition(".")[2], _sibling_modules(missing, cwd))
            raise BootError(f"no module named {missing!r} (from {cwd}){hint}") from None
        raise BootError(f"cannot import {name!r}: {exc}", show_traceback=True) from exc
    except BootError:
        raise
    except (Exception, SystemExit) as exc:  # a module that exits cannot be served either
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        raise BootError(f"error importing {name!r}: {reason}", show_traceback=True) from exc


def as_wsgi(obj: Any, name: str, config_file: str | None = None, depth: int = 0) -> WSGIApp:
    """Classify ``obj`` (see the module docstring) and return what to serve."""
    if isinstance(obj, (morello.Application, morello.Tree)):
        return obj
    if obj is None or isinstance(obj, (str, bytes, int, float, types.ModuleType)):
        raise BootError(f"{name} is {_kind(obj)}, not an application")
    if inspect.isclass(obj):
        return _as_wsgi_from_class(obj, name, config_file, depth)
    if is_root_handler(obj):
        morello.tree.mount(obj, "", config_file)
        return morello.tree
    if not callable(obj):
        raise BootError(f"{name} is {_kind(obj)} with no exposed handler, not an application")
    required, accepts_two = _positional_parameters(obj)
    if required == 0:
        # Even when it could also take (environ, start_response) as optional
        # arguments: def create_app(config=None, testing=False) is a factory.
        return _call_factory(obj, name, config_file, depth)
    if required <= 2 and accepts_two:
        return obj
    raise BootError(
        f"{name} is neither a WSGI application (environ, start_response) nor a "
        f"factory without required arguments: {_signature(obj)}"
    )


def _as_wsgi_from_class(obj: type, name: str, config_file: str | None, depth: int) -> WSGIApp:
    required, _accepts_two = _positional_parameters(obj)
    if required:
        raise BootError(
            f"{name} is a class whose constructor needs arguments {_signature(obj)}; "
            "name an instance or a factory instead"
        )
    instance = _call(obj, name)
    if isinstance(instance, (morello.Application, morello.Tree)):
        return instance
    if is_root_handler(instance) or getattr(obj, "exposed", False):
        morello.tree.mount(instance, "", config_file)
        return morello.tree
    return as_wsgi(instance, f"{name}()", config_file, depth + 1)


def _call_factory(factory: Any, name: str, config_file: str | None, depth: int) -> WSGIApp:
    if depth >= _MAX_FACTORY_DEPTH:
        raise BootError(f"{name} is a factory returning factories, {depth} levels deep")
    return as_wsgi(_call(factory, name), f"{name}()", config_file, depth + 1)


def _call(target: Any, name: str) -> Any:
    """``target()``; what the application raises becomes a :class:`BootError`."""
    try:
        return target()
    except Exception as exc:
        raise BootError(
            f"{name}() failed: {type(exc).__name__}: {exc}", show_traceback=True
        ) from exc


def is_root_handler(obj: Any) -> bool:
    """Whether ``obj`` looks like a root of morello's object-tree dispatcher.

    That is: it is exposed itself, has morello hooks (``_cp_config``,
    ``_cp_dispatch``), an exposed attribute, or an attribute that is
    itself such a handler (a root that only holds sub-trees).
    """
    if _exposes_something(obj):
        return True
    for value in _public_attributes(obj):
        if not inspect.isclass(value) and not callable(value) and _exposes_something(value):
            return True
    return False


def _exposes_something(obj: Any) -> bool:
    if getattr(obj, "exposed", False) is True:
        return True
    if hasattr(obj, "_cp_config") or hasattr(obj, "_cp_dispatch"):
        return True
    return any(getattr(value, "exposed", False) is True for value in _public_attributes(obj))


def _public_attributes(obj: Any) -> list[Any]:
    if isinstance(obj, (types.ModuleType, type)) or obj is None:
        return []
    values = []
    for attr in dir(obj):
        if attr.startswith("_"):
            continue
        try:
            values.append(inspect.getattr_static(obj, attr))
        except AttributeError:
            continue
    return values


def _positional_parameters(obj: Any) -> tuple[int, bool]:
    """(required positional parameters, whether two positional arguments are accepted)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return 2, True  # a builtin or extension callable: trust it to be WSGI
    required = 0
    accepted = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            accepted = 2**31
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            accepted += 1
            if parameter.default is parameter.empty:
                required += 1
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            required += 100  # cannot be called positionally at all
    return required, accepted >= 2


def _signature(obj: Any) -> str:
    """The parameter list, without annotations (which may be unresolved strings)."""
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return "(?)"
    plain = [str(p.replace(annotation=p.empty)) for p in parameters]
    return f"({', '.join(plain)})"


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _kind(obj: Any) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, types.ModuleType):
        return f"the module {obj.__name__!r}"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}:{name}" if module else str(name)
