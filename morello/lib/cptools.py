"""Callables behind the built-in tools (``cherrypy.lib.cptools``)."""

from __future__ import annotations

import logging

from morello.errors import HTTPRedirect
from morello.serving import serving
from morello.urls import url


def trailing_slash(
    missing: bool = True, extra: bool = False, status: int | None = None, debug: bool = False
) -> None:
    """Redirect ``/dir`` to ``/dir/`` for index handlers (``missing``) and,
    if ``extra``, ``/page/`` to ``/page`` for the others."""
    request = serving.request
    path_info = request.path_info
    if request.is_index is True:
        if missing and not path_info.endswith("/"):
            raise HTTPRedirect(url(path_info + "/", request.query_string), status=status or 301)
    elif request.is_index is False and extra and path_info.endswith("/") and path_info != "/":
        raise HTTPRedirect(url(path_info[:-1], request.query_string), status=status or 301)


def log_traceback(severity: int = logging.ERROR, debug: bool = False) -> None:
    """Write the traceback of the error being handled to the error log."""
    from morello import log

    log("", "HTTP", severity=severity, traceback=True)


def log_request_headers(debug: bool = False) -> None:
    """Write the request headers to the error log."""
    from morello import log

    lines = [f"  {name}: {value}" for name, value in serving.request.header_list]
    log("\nRequest Headers:\n" + "\n".join(lines), "HTTP")


def log_hooks(debug: bool = False) -> None:
    """Write the hooks attached to this request to the error log."""
    from morello import log
    from morello.hooks import HOOK_POINTS

    hooks = serving.request.hooks
    points = list(HOOK_POINTS) + [p for p in hooks if p not in HOOK_POINTS]
    lines = []
    for point in points:
        lines.append(f"    {point}:")
        lines.extend(f"        {hook!r}" for hook in sorted(hooks.get(point, [])))
    log(f"\nRequest Hooks for {url()}:\n" + "\n".join(lines), "HTTP")
