"""Dispatchers: map ``path_info`` to a page handler and the config for it.

The default :class:`Dispatcher` walks the application's object tree one URL
segment at a time; leftover segments become positional arguments and the
request parameters become keyword arguments of the handler.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable
from typing import Any

import morello
from morello.errors import HTTPError, MorelloException, NotFound
from morello.metrics.handlers import dispatched
from morello.serving import serving

_PUNCTUATION_TO_UNDERSCORE = str.maketrans(string.punctuation, "_" * len(string.punctuation))


class PageHandler:
    """A handler bound to its positional arguments and keyword arguments."""

    def __init__(self, callable: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callable = callable
        self.args = args
        self._kwargs = kwargs

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._kwargs

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self._kwargs = value

    def __call__(self) -> Any:
        args, kwargs = self.args, self.kwargs
        try:
            return self.callable(*args, **kwargs)
        except TypeError:
            # Mismatched arguments are the client's fault (404/400); any other
            # TypeError is a bug in the handler and propagates as a 500.
            check_arguments(self.callable, args, kwargs)
            raise


class LateParamPageHandler(PageHandler):
    """A page handler that reads ``request.params`` when it is called.

    Tools that run before the handler may change the parameters.
    """

    @property
    def kwargs(self) -> dict[str, Any]:
        kwargs = serving.request.params.copy()
        if self._kwargs:
            kwargs.update(self._kwargs)
        return kwargs

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        serving.request.kwargs = value
        self._kwargs = value


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def check_arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Raise the HTTPError a client gets for arguments that do not fit ``func``.

    Missing arguments and extra path segments or query parameters are 404
    (there is no such resource); surplus or duplicated body parameters are
    400 (the request was malformed). Returns quietly if the arguments fit.
    """
    signature = _signature(func)
    if signature is None:
        return
    request = serving.request
    show = getattr(request, "show_mismatched_params", False)
    params = signature.parameters.values()
    named = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    positional = [p for p in named if p.kind != p.KEYWORD_ONLY]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    takes_varkw = any(p.kind == p.VAR_KEYWORD for p in params)

    usage = {p.name: 0 for p in named}
    surplus_positional = max(len(args) - len(positional), 0)
    for param in positional[: len(args)]:
        usage[param.name] += 1
    extra_kwargs = set()
    for key in kwargs:
        if key in usage:
            usage[key] += 1
        else:
            extra_kwargs.add(key)
    for param in named:
        if param.default is not param.empty and usage[param.name] == 0:
            usage[param.name] = 1

    missing = [name for name, count in usage.items() if count == 0]
    if missing:
        raise HTTPError(404, f"Missing parameters: {','.join(missing)}" if show else None)
    if surplus_positional and not takes_varargs:
        raise HTTPError(404)

    body_params = set((request.body.params if request.body is not None else None) or ())
    query_params = set(kwargs) - body_params
    duplicated = [name for name, count in usage.items() if count > 1]
    if duplicated:
        status = 404 if query_params.intersection(duplicated) else 400
        raise HTTPError(
            status, f"Multiple values for parameters: {','.join(duplicated)}" if show else None
        )
    if extra_kwargs and not takes_varkw:
        extra_query = query_params & extra_kwargs
        if extra_query:
            message = f"Unexpected query string parameters: {', '.join(sorted(extra_query))}"
            raise HTTPError(404, message if show else None)
        extra_body = body_params & extra_kwargs
        if extra_body:
            message = f"Unexpected body parameters: {', '.join(sorted(extra_body))}"
            raise HTTPError(400, message if show else None)


#: CherryPy's name for :func:`check_arguments`.
test_callable_spec = check_arguments


class Dispatcher:
    """Find the handler by walking the object tree from ``app.root``.

    Each URL segment is looked up as an attribute (punctuation translated to
    ``_``); an object without the attribute may take over with its
    ``_cp_dispatch(vpath)`` method. The deepest exposed object (or ``default``
    method) wins; ``index`` handles paths ending at an object.
    """

    dispatch_method_name = "_cp_dispatch"

    def __init__(
        self,
        dispatch_method_name: str | None = None,
        translate: dict[int, Any] = _PUNCTUATION_TO_UNDERSCORE,
    ) -> None:
        if not isinstance(translate, dict):
            raise TypeError("The translate argument must be a dict (from str.maketrans).")
        self.translate = translate
        if dispatch_method_name:
            self.dispatch_method_name = dispatch_method_name

    def __call__(self, path_info: str) -> None:
        """Set ``request.handler`` and ``request.config`` for ``path_info``."""
        func, vpath = self.find_handler(path_info)
        request = serving.request
        if func:
            request.handler = LateParamPageHandler(
                func, *[seg.replace("%2F", "/") for seg in vpath]
            )
        else:
            request.handler = NotFound()

    def find_handler(self, path: str) -> tuple[Any, list[str]]:
        """Return ``(handler, virtual_path_segments)``; sets request.config/is_index.

        ``(None, [])`` means nothing matched. Records the handler's object path
        (``/orders/default``) for the per-handler metrics.
        """
        request = serving.request
        app = request.app
        app_config = app.config
        root = app.root
        fullpath = [seg for seg in path.strip("/").split("/") if seg]
        fullpath.append("index")
        total = len(fullpath)

        root_conf = dict(getattr(root, "_cp_config", ()))
        if "/" in app_config:
            root_conf.update(app_config["/"])
        # (name, node, config of that node, segments left after it)
        trail: list[tuple[str, Any, dict[str, Any], int]] = [("root", root, root_conf, total)]
        # The path consumed up to each trail node: where its handler is, for metrics.
        # Segments a _cp_dispatch consumed (ids, mostly) show as "*" from then on.
        paths = [""]
        custom_at = 0  # the trail index of the last _cp_dispatch step, once there is one
        previous = ""

        node = root
        remaining = fullpath[:]
        while remaining:
            name = remaining[0]
            before = len(remaining)
            # Most segments are plain words, which the default table leaves alone.
            if name.isalnum() and self.translate is _PUNCTUATION_TO_UNDERSCORE:
                attr = name
            else:
                attr = name.translate(self.translate)
            subnode = getattr(node, attr, None)
            if subnode is None:
                custom = getattr(node, self.dispatch_method_name, None)
                if (
                    custom
                    and callable(custom)
                    and not getattr(custom, "exposed", False)
                    and before > 1
                ):
                    index_name = remaining.pop()
                    subnode = custom(vpath=remaining)
                    remaining.append(index_name)
                    custom_at = len(trail)
                else:
                    remaining.pop(0)
            else:
                remaining.pop(0)
            left = len(remaining)
            if left > before:
                raise MorelloException(
                    "A vpath segment was added. Custom dispatchers may only remove "
                    f"elements. While trying to process {name} in {fullpath}"
                )
            if left == before:
                # The custom dispatcher consumed nothing: move on anyway.
                remaining.pop(0)
                left -= 1
            node = subnode

            conf = dict(getattr(node, "_cp_config", ())) if node is not None else {}
            consumed = total - before
            curpath = "/" + "/".join(fullpath[:consumed]) if consumed else ""
            for seg in fullpath[consumed : total - left]:
                curpath += "/" + seg
                section = app_config.get(curpath)
                if section:
                    conf.update(section)
            trail.append((name, node, conf, left))
            if custom_at:
                step = "/*" if custom_at == len(trail) - 1 else curpath[len(previous) :]
                paths.append(paths[-1] + step)
            else:
                paths.append(curpath)
            previous = curpath

        last = len(trail) - 1
        for i in range(last, -1, -1):
            _name, candidate, _conf, left = trail[i]
            if candidate is None:
                continue
            default = getattr(candidate, "default", None)
            if default is not None and getattr(default, "exposed", False):
                trail.insert(
                    i + 1, ("default", default, dict(getattr(default, "_cp_config", ())), left)
                )
                request.config = self._merged_config(trail, fullpath)
                request.is_index = path.endswith("/")
                dispatched(request.script_name, paths[i] + "/default")
                return default, fullpath[total - left : -1]
            if getattr(candidate, "exposed", False):
                request.config = self._merged_config(trail, fullpath)
                request.is_index = i == last
                dispatched(request.script_name, paths[i] or "/")
                return candidate, fullpath[total - left : -1]

        request.config = self._merged_config(trail, fullpath)
        dispatched(request.script_name, None)
        return None, []

    @staticmethod
    def _merged_config(
        trail: list[tuple[str, Any, dict[str, Any], int]], fullpath: list[str]
    ) -> dict[str, Any]:
        """The global config updated with each trail node's config, root first."""
        config = morello.config.copy()
        total = len(fullpath)
        for _name, _node, conf, left in trail:
            if conf:
                config.update(conf)
                if "tools.staticdir.dir" in conf:
                    # staticdir resolves its paths relative to the section that set it.
                    config["tools.staticdir.section"] = "/" + "/".join(fullpath[: total - left])
        return config


class MethodDispatcher(Dispatcher):
    """Dispatch to the method named after the HTTP verb (``GET``, ``POST``, ...)
    of the exposed resource the path leads to.

    Sets ``Allow`` to the resource's upper-case methods (HEAD implied by GET);
    an unsupported method gets 405.
    """

    def __call__(self, path_info: str) -> None:
        request = serving.request
        resource, vpath = self.find_handler(path_info)
        if not resource:
            request.handler = NotFound()
            return
        allowed = [name for name in dir(resource) if name.isupper()]
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        serving.response.headers["Allow"] = ", ".join(sorted(allowed))
        method = request.method.upper()
        func = getattr(resource, method, None)
        if func is None and method == "HEAD":
            func = getattr(resource, "GET", None)
        if func is None:
            request.handler = HTTPError(405)
            return
        handler_config = getattr(func, "_cp_config", None)
        if handler_config:
            request.config.update(handler_config)
        request.handler = LateParamPageHandler(func, *[seg.replace("%2F", "/") for seg in vpath])


# The other dispatchers live in their own module; CherryPy apps and config
# files name them here (``cherrypy.dispatch.VirtualHost``...).
from morello.dispatchers import (  # noqa: E402, F401
    RoutesDispatcher,
    VirtualHost,
    XMLRPCDispatcher,
)
